"""Build the right vector env from a task spec."""

from __future__ import annotations

from typing import Sequence

from mtrl.envs.base import MultiTaskVectorEnv
from mtrl.envs.fake import FakeMultiTaskVectorEnv
from mtrl.envs.metaworld_env import MetaWorldVectorEnv
from mtrl.envs.tasks import is_fake, resolve_tasks


def make_vector_env(
    tasks: str | Sequence[str],
    envs_per_task: int = 1,
    seed: int = 0,
    num_workers: int | None = None,
    mode: str = "async",
    max_episode_steps: int | None = None,
    goal_seed: int | None = None,
    share_workers_with: MultiTaskVectorEnv | None = None,
) -> MultiTaskVectorEnv:
    """A vector env for ``tasks`` (any spec :func:`~mtrl.envs.tasks.resolve_tasks` accepts).

    ``"fake:<T>"`` gives a :class:`FakeMultiTaskVectorEnv` (horizon 50 by default), anything
    else a :class:`MetaWorldVectorEnv` (horizon 500 by default). ``goal_seed`` (default
    ``seed``) seeds the goal set alone; ``share_workers_with`` steps the new envs in another
    env's worker processes (used for evaluation envs; ignored where there are no workers).
    """
    names = resolve_tasks(tasks)
    if is_fake(names):
        return FakeMultiTaskVectorEnv(
            len(names), envs_per_task, seed, max_episode_steps or 50, num_workers, mode, goal_seed
        )
    share = share_workers_with if isinstance(share_workers_with, MetaWorldVectorEnv) else None
    return MetaWorldVectorEnv(
        names, envs_per_task, seed, num_workers, mode, max_episode_steps or 500,
        goal_seed=goal_seed, share_workers_with=share,
    )
