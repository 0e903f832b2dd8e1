"""Gradient combiners: per-task losses in, parameter gradients out.

A combiner turns a :class:`~mtrl.optim.task_loss.TaskLoss` into ``.grad`` on its parameters
and returns the detached loss vector ``(T,)``. Combiners are ``nn.Module`` so that any state
they keep (weights, statistics) is checkpointed with the agent. Pick one by name with
:func:`build_combiner`.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, ClassVar, Optional

from torch import Tensor, nn

from mtrl.optim.task_loss import TaskLoss
from mtrl.registry import Registry

COMBINERS: Registry[Callable[..., "GradientCombiner"]] = Registry("gradient combiner")
"""Name -> combiner class ``cls(num_tasks, seed=, **options)``, in registration order: ``mean``
here, then each module of :mod:`mtrl.optim` registers its own (``@register_combiner``)."""


def register_combiner(name: str, options: Optional[type] = None) -> Callable[[Any], Any]:
    """Class decorator: register a gradient combiner under ``name`` with its options dataclass
    (the config section ``agent.combiners.<name>``, given to the constructor as keyword
    arguments; ``None``: no options)."""
    return COMBINERS.register(name, options)


class GradientCombiner(nn.Module, abc.ABC):
    """Base class: ``backward(loss) -> losses (T,)`` writes gradients into ``.grad``.

    Protocol for an agent, per optimizer step: ``zero_grad``; ``combiner.backward(loss)``;
    ``optimizer.step()``; ``combiner.after_step(loss)``. Combiners with learned state (task
    weights, log-variances, logits) update it themselves, with their own small optimizer,
    inside ``backward`` or ``after_step``; all of it is in ``state_dict()``.

    Args:
        num_tasks: ``T``.
        seed: seeds the combiner's own randomness (PCGrad's projection order).
    """

    positive_losses: ClassVar[bool] = False
    """True for methods that balance loss *magnitudes* (log-losses, loss ratios) and so
    assume positive task losses: use them on regression losses such as SAC's critic."""

    def __init__(self, num_tasks: int, seed: int = 0) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.seed = seed

    @abc.abstractmethod
    def backward(self, loss: TaskLoss) -> Tensor:
        """Write the combined gradient of ``loss`` into ``.grad``; return the losses (T,)."""

    def after_step(self, loss: TaskLoss) -> None:
        """Called after the parameter step with the same ``loss`` (FAMO re-evaluates it)."""

    def metrics(self) -> dict[str, Tensor]:
        """Device tensors worth logging (e.g. the current task weights ``(T,)``)."""
        return {}


@register_combiner("mean")
class MeanCombiner(GradientCombiner):
    """The plain weighted average of the task losses (``loss.weights``, default ``1/T``)."""

    def backward(self, loss: TaskLoss) -> Tensor:
        values = loss.values()
        (values * loss.weights).sum().backward()
        return values.detach()


def build_combiner(name: str, num_tasks: int, **options: Any) -> GradientCombiner:
    """The combiner registered under ``name``."""
    return COMBINERS.lookup(name)(num_tasks, **options)
