"""Gradient combiners: per-task losses in, parameter gradients out.

A combiner turns a :class:`~mtrl.optim.task_loss.TaskLoss` into ``.grad`` on its parameters
and returns the detached loss vector ``(T,)``. Combiners are ``nn.Module`` so that any state
they keep (weights, statistics) is checkpointed with the agent. Pick one by name with
:func:`build_combiner`.
"""

from __future__ import annotations

import abc
from typing import Any, Callable

from torch import Tensor, nn

from mtrl.errors import MtrlError
from mtrl.optim.task_loss import TaskLoss


class GradientCombiner(nn.Module, abc.ABC):
    """Base class: ``backward(loss) -> losses (T,)`` writes gradients into ``.grad``."""

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        self.num_tasks = num_tasks

    @abc.abstractmethod
    def backward(self, loss: TaskLoss) -> Tensor:
        """Write the combined gradient of ``loss`` into ``.grad``; return the losses (T,)."""


class MeanCombiner(GradientCombiner):
    """The plain weighted average of the task losses (``loss.weights``, default ``1/T``)."""

    def backward(self, loss: TaskLoss) -> Tensor:
        values = loss.values()
        (values * loss.weights).sum().backward()
        return values.detach()


COMBINERS: dict[str, Callable[..., GradientCombiner]] = {
    "mean": MeanCombiner,
}


def build_combiner(name: str, num_tasks: int, **options: Any) -> GradientCombiner:
    """The combiner registered under ``name``."""
    try:
        cls = COMBINERS[name]
    except KeyError:
        raise MtrlError(
            f"unknown gradient combiner '{name}' (choose from {', '.join(COMBINERS)})"
        ) from None
    return cls(num_tasks, **options)
