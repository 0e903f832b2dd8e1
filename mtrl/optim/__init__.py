"""Gradient combiners (how per-task losses become parameter gradients) and PopArt.

Each combiner registers itself, with its options dataclass, by
``@register_combiner(name, options=...)`` in the module that defines it. The imports below load
the built-in combiner modules once, in this order, then every other module of the package (sorted
by name): that is the order of :data:`COMBINERS` (and of the ``agent.combiners`` sections of a
config): mean, pcgrad, cagrad, gradnorm, uncertainty, famo, fixed, mgda, dwa, then new ones. A
new combiner is a new module here; nothing else needs an edit.
"""

from mtrl.optim.combiners import (
    COMBINERS,
    GradientCombiner,
    MeanCombiner,
    build_combiner,
    register_combiner,
)
from mtrl.optim.gradient_methods import (
    cagrad,
    cagrad_coefficients,
    famo_coefficients,
    gradnorm_weight_grad,
    pcgrad,
    pcgrad_coefficients,
    uncertainty_coefficients,
)
from mtrl.optim.popart import PopArt, TaskAffineOutput, output_layer_name, with_task_output
from mtrl.optim.task_loss import TaskLoss, call_with

# the combiner modules (each registers its combiners on import; this order is the registry's)
from mtrl.optim.surgery import CAGrad, CAGradOptions, PCGrad, PCGradOptions, TaskGradientCombiner
from mtrl.optim.weighting import (
    FAMO,
    FAMOOptions,
    FixedWeights,
    FixedWeightsOptions,
    GradNorm,
    GradNormOptions,
    UncertaintyOptions,
    UncertaintyWeighting,
)
from mtrl.optim.mgda import MGDA, MGDAOptions, min_norm_2, min_norm_weights
from mtrl.optim.dwa import DWA, DWAOptions, dwa_weights
from mtrl.registry import import_submodules

import_submodules(__name__, __path__)  # any other combiner module (a new file) registers too

__all__ = [
    "CAGrad", "CAGradOptions", "COMBINERS", "DWA", "DWAOptions", "FAMO", "FAMOOptions",
    "FixedWeights", "FixedWeightsOptions", "GradNorm", "GradNormOptions", "GradientCombiner",
    "MGDA", "MGDAOptions", "MeanCombiner", "PCGrad", "PCGradOptions", "PopArt",
    "TaskAffineOutput", "TaskGradientCombiner", "TaskLoss", "UncertaintyOptions", "call_with",
    "UncertaintyWeighting", "build_combiner", "cagrad", "cagrad_coefficients",
    "dwa_weights", "famo_coefficients", "gradnorm_weight_grad", "min_norm_2",
    "min_norm_weights", "output_layer_name", "pcgrad",
    "pcgrad_coefficients", "register_combiner", "uncertainty_coefficients", "with_task_output",
]
