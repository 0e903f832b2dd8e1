"""Gradient combiners (how per-task losses become parameter gradients) and PopArt."""

from mtrl.optim.combiners import COMBINERS, GradientCombiner, MeanCombiner, build_combiner
from mtrl.optim.dwa import DWA, dwa_weights
from mtrl.optim.gradient_methods import (
    cagrad,
    cagrad_coefficients,
    famo_coefficients,
    gradnorm_weight_grad,
    pcgrad,
    pcgrad_coefficients,
    uncertainty_coefficients,
)
from mtrl.optim.mgda import MGDA, min_norm_2, min_norm_weights
from mtrl.optim.popart import PopArt, TaskAffineOutput, output_layer_name, with_task_output
from mtrl.optim.surgery import CAGrad, PCGrad, TaskGradientCombiner
from mtrl.optim.task_loss import TaskLoss
from mtrl.optim.weighting import FAMO, FixedWeights, GradNorm, UncertaintyWeighting

COMBINERS.update({
    "pcgrad": PCGrad,
    "cagrad": CAGrad,
    "gradnorm": GradNorm,
    "uncertainty": UncertaintyWeighting,
    "famo": FAMO,
    "fixed": FixedWeights,
    "mgda": MGDA,
    "dwa": DWA,
})

__all__ = [
    "CAGrad", "COMBINERS", "DWA", "FAMO", "FixedWeights", "GradNorm", "GradientCombiner",
    "MGDA", "MeanCombiner", "PCGrad", "PopArt", "TaskAffineOutput", "TaskGradientCombiner",
    "TaskLoss",
    "UncertaintyWeighting", "build_combiner", "cagrad", "cagrad_coefficients",
    "dwa_weights", "famo_coefficients", "gradnorm_weight_grad", "min_norm_2",
    "min_norm_weights", "output_layer_name", "pcgrad",
    "pcgrad_coefficients", "uncertainty_coefficients", "with_task_output",
]
