"""Gradient combiners (how per-task losses become parameter gradients)."""

from mtrl.optim.combiners import COMBINERS, GradientCombiner, MeanCombiner, build_combiner
from mtrl.optim.task_loss import TaskLoss

__all__ = ["COMBINERS", "GradientCombiner", "MeanCombiner", "TaskLoss", "build_combiner"]
