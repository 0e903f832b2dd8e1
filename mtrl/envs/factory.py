"""Build the right vector env from a task spec."""

from __future__ import annotations

from typing import Sequence

from mtrl.envs.base import MultiTaskVectorEnv
from mtrl.envs.envpool_env import EnvPoolVectorEnv
from mtrl.envs.fake import FakeMultiTaskVectorEnv
from mtrl.envs.metaworld_env import MetaWorldVectorEnv
from mtrl.envs.tasks import is_fake, resolve_tasks
from mtrl.errors import MtrlError

BACKENDS: tuple[str, ...] = ("metaworld", "envpool")
"""Meta-World v3 implementations: ``metaworld`` (the Python package, in worker processes) and
``envpool`` (EnvPool's native C++ envs; training only, see :mod:`mtrl.envs.envpool_env`)."""


def make_vector_env(
    tasks: str | Sequence[str],
    envs_per_task: int = 1,
    seed: int = 0,
    num_workers: int | None = None,
    mode: str = "async",
    max_episode_steps: int | None = None,
    goal_seed: int | None = None,
    share_workers_with: MultiTaskVectorEnv | None = None,
    backend: str = "metaworld",
) -> MultiTaskVectorEnv:
    """A vector env for ``tasks`` (any spec :func:`~mtrl.envs.tasks.resolve_tasks` accepts).

    ``"fake:<T>"`` gives a :class:`FakeMultiTaskVectorEnv` (horizon 50 by default, whatever
    the backend), anything else a :class:`MetaWorldVectorEnv` (``backend="metaworld"``) or an
    :class:`~mtrl.envs.envpool_env.EnvPoolVectorEnv` (``backend="envpool"``), horizon 500 by
    default. ``goal_seed`` (default ``seed``) seeds the goal set alone; ``share_workers_with``
    steps the new envs in another env's worker processes (used for evaluation envs; ignored
    where there are no workers). The EnvPool backend has no workers (``num_workers`` and
    ``mode`` are ignored) and no goal sets: a ``goal_seed`` there is an error, since
    evaluation envs must be Meta-World's.

    Raises:
        MtrlError: unknown backend, EnvPool not installed, or ``goal_seed`` with EnvPool.
    """
    if backend not in BACKENDS:
        raise MtrlError(f"env.backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    names = resolve_tasks(tasks)
    if is_fake(names):
        return FakeMultiTaskVectorEnv(
            len(names), envs_per_task, seed, max_episode_steps or 50, num_workers, mode, goal_seed
        )
    if backend == "envpool":
        if goal_seed is not None:
            raise MtrlError("the EnvPool backend cannot use Meta-World's goal sets (goal_seed); "
                            "build evaluation envs with backend='metaworld'")
        return EnvPoolVectorEnv(names, envs_per_task, seed, max_episode_steps or 500)
    share = share_workers_with if isinstance(share_workers_with, MetaWorldVectorEnv) else None
    return MetaWorldVectorEnv(
        names, envs_per_task, seed, num_workers, mode, max_episode_steps or 500,
        goal_seed=goal_seed, share_workers_with=share,
    )
