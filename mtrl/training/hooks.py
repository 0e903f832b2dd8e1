"""Hooks: work that runs inside the training loop without the loop importing it.

A module of a higher layer (e.g. :mod:`mtrl.analysis.affinity`, ``train.affinity_every``)
registers a factory with :func:`register_hook`; for every run the loop calls each factory with
the run's config and uses the :class:`TrainingHook` it returns (``None``: not active in this
run). A hook runs after every learning vector step, and checkpoints its own state as entries of
the checkpoint's ``trainer`` section, so a resumed run continues it exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import torch


class TrainingHook(Protocol):
    """What the loop calls on an active hook."""

    def after_update_step(self, learner: Any, replay: Any, step: int, per_step: int,
                          logger: Any) -> None:
        """After a vector step past warm-up; ``step``: steps per task so far, ``per_step``:
        steps per task of one vector step (see :func:`crossed`)."""

    def state_dict(self) -> dict[str, Any]:
        """Entries for the checkpoint's ``trainer`` section (keys unique to this hook)."""

    def load_state_dict(self, trainer: Mapping[str, Any], device: torch.device) -> None:
        """Restore from a checkpoint's ``trainer`` section (``device``: the replay's)."""


HookFactory = Callable[[Any, Path, Sequence[str], "int | None"], "TrainingHook | None"]
"""``factory(config, run_dir, task_names, resume_step)``: the run's hook, or ``None``."""

_HOOKS: dict[str, HookFactory] = {}


def register_hook(name: str, factory: HookFactory) -> HookFactory:
    """Make every training run call ``factory`` (registering a name again replaces it)."""
    _HOOKS[name] = factory
    return factory


def registered_hooks() -> tuple[str, ...]:
    """Names of the registered hook factories."""
    return tuple(_HOOKS)


def build_hooks(config: Any, run_dir: Path, task_names: Sequence[str],
                resume_step: int | None) -> list[TrainingHook]:
    """The hooks active in a run, in registration order."""
    hooks = (factory(config, run_dir, task_names, resume_step) for factory in _HOOKS.values())
    return [hook for hook in hooks if hook is not None]


def crossed(step: int, per_step: int, interval: int) -> bool:
    """Whether the vector step that reached ``step`` (steps per task) crossed a multiple of
    ``interval``."""
    return step // interval != (step - per_step) // interval
