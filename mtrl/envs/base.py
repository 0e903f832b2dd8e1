"""The interface shared by every multi-task vector environment in mtrl.

A vector env steps ``num_envs`` environments, each bound to one task, and returns batched
numpy arrays. Episodes that end are reset in the same step ("same-step autoreset"): the
returned ``obs`` is then the first observation of the next episode and ``final_obs`` holds
the true last observation of the finished one, so that the learner can bootstrap from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass
class StepResult:
    """Batched result of one vector step (all arrays have leading dimension ``num_envs``).

    Attributes:
        obs: ``(N, obs_dim) float32`` observation to act on next (already reset where done).
        task_id: ``(N,) int64`` task index of every env (constant over the env's lifetime).
        reward: ``(N,) float32``.
        terminated: ``(N,) bool`` true terminal state (do not bootstrap).
        truncated: ``(N,) bool`` time limit reached (bootstrap through it).
        success: ``(N,) bool`` the env's ``success`` flag at this step.
        final_obs: ``(N, obs_dim) float32`` true last observation where ``terminated | truncated``,
            equal to ``obs`` elsewhere.
    """

    obs: np.ndarray
    task_id: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    success: np.ndarray
    final_obs: np.ndarray

    @property
    def done(self) -> np.ndarray:
        """``terminated | truncated``."""
        return np.logical_or(self.terminated, self.truncated)


@runtime_checkable
class MultiTaskVectorEnv(Protocol):
    """What the trainer, the evaluator and the gymnasium adapter need from a multi-task vector
    environment. :class:`~mtrl.envs.metaworld_env.MetaWorldVectorEnv` (worker processes),
    :class:`~mtrl.envs.envpool_env.EnvPoolVectorEnv` and
    :class:`~mtrl.envs.fake.FakeMultiTaskVectorEnv` implement all of it.

    Envs are task-major: env ``i`` runs task ``i // envs_per_task``.
    """

    task_names: list[str]
    num_tasks: int
    envs_per_task: int
    num_envs: int  # num_tasks * envs_per_task
    obs_dim: int
    act_dim: int
    max_episode_steps: int
    seed: int  # the construction seed (envs are seeded once, when built)
    task_id: np.ndarray  # (num_envs,) int64, env i runs task task_id[i]

    def reset(self, goal_index: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Reset every env; returns ``obs (N, obs_dim) float32``.

        ``goal_index[i]`` (0 <= g < num goals) selects env i's goal for the new episode
        (evaluation enumerates goals); ``None`` samples goals from each env's seeded RNG.
        """

    def step(self, actions: np.ndarray, mask: np.ndarray | None = None) -> StepResult:
        """Step every env with ``actions (N, act_dim)``; envs where ``mask`` is False are not
        stepped (their rows repeat the last observation, reward 0, all flags False).
        Equivalent to :meth:`step_async` then :meth:`step_wait`."""

    def step_async(self, actions: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Start the step :meth:`step` describes and return (at once where workers or threads
        step the envs), so that the caller can work meanwhile (the trainer runs its updates)."""

    def step_wait(self) -> StepResult:
        """Finish the step started by :meth:`step_async` and return its result."""

    def set_autoreset(self, enabled: bool) -> None:
        """Turn same-step autoreset on (training) or off (evaluation, which resets itself)."""

    def set_terminate_on_success(self, enabled: bool) -> None:
        """End episodes (``terminated=True``) at the first step with ``success`` (evaluation)."""

    def get_state(self) -> dict[str, Any]:
        """Picklable resume state (RNGs, and the episodes in flight where the backend can read
        them out: then ``state["resumes_episodes"]`` is True)."""

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state` into an env built with the same tasks and sizes. Unless the
        state has ``resumes_episodes``, the next call must be :meth:`reset`."""

    def close(self) -> None:
        """Release workers and resources (idempotent)."""
