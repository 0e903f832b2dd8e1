"""A tiny pure-numpy multi-task env with the vector-env interface, for tests and smoke runs."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mtrl.envs.base import StepResult
from mtrl.envs.tasks import EnvError, fake_task_names

_GOAL_RADIUS = 0.7
_OFFSET_RADIUS = 0.05
_START_NOISE = 0.05
_SPEED = 0.1
_SUCCESS_DISTANCE = 0.1


class FakeMultiTaskVectorEnv:
    """2-D point-mass reaching; task ``t``'s goals sit around a centre on a circle of radius 0.7
    at angle ``2 pi t / T``, which is **not** observed: a policy must use ``task_id``.

    The point starts uniformly within 0.05 of the origin and moves by ``0.1 * action``
    (``act_dim=2``, clipped to [-1, 1]; position clipped to [-1, 1]^2). Each task has
    ``num_goals`` (50) seeded goals: centre + an offset of norm <= 0.05, sampled at every reset.
    ``obs = (x, y, offset_x, offset_y, steps / max_episode_steps, 1)``; ``reward = -distance``;
    ``success = distance < 0.1``. Same autoreset / mask / goal_index / terminate-on-success /
    state semantics as :class:`~mtrl.envs.metaworld_env.MetaWorldVectorEnv` (``goal_seed``,
    default ``seed``, seeds the goal set alone); fully vectorized (``num_workers`` and ``mode``
    are accepted and ignored). Random actions succeed in ~4% of
    episodes; moving straight at the goal succeeds in ~7 steps.
    """

    obs_dim: int = 6
    act_dim: int = 2
    num_goals: int = 50

    def __init__(
        self,
        num_tasks: int,
        envs_per_task: int = 1,
        seed: int = 0,
        max_episode_steps: int = 50,
        num_workers: int | None = None,
        mode: str = "sync",
        goal_seed: int | None = None,
    ) -> None:
        goal_seed = seed if goal_seed is None else goal_seed
        if num_tasks < 1 or envs_per_task < 1 or max_episode_steps < 1 or min(seed, goal_seed) < 0:
            raise EnvError(
                "need num_tasks, envs_per_task, max_episode_steps >= 1 and seeds >= 0, got "
                f"{num_tasks}, {envs_per_task}, {max_episode_steps}, {seed}, goal seed {goal_seed}"
            )
        self.task_names = fake_task_names(num_tasks)
        self.num_tasks = num_tasks
        self.envs_per_task = envs_per_task
        self.num_envs = num_tasks * envs_per_task
        self.max_episode_steps = max_episode_steps
        self.seed = seed
        self.task_id = np.repeat(np.arange(num_tasks, dtype=np.int64), envs_per_task)
        self.task_id.flags.writeable = False

        angle = 2.0 * np.pi * np.arange(num_tasks) / num_tasks
        self.task_centres = _GOAL_RADIUS * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        goal_rng = np.random.default_rng(np.random.SeedSequence(goal_seed).spawn(2)[0])
        sample_seed = np.random.SeedSequence(seed).spawn(2)[1]
        radius = _OFFSET_RADIUS * np.sqrt(goal_rng.random((num_tasks, self.num_goals)))
        theta = 2.0 * np.pi * goal_rng.random((num_tasks, self.num_goals))
        self.goal_offsets = np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=-1)
        """``(T, num_goals, 2)`` goal offsets from the task centres."""
        self._rng = np.random.default_rng(sample_seed)

        n = self.num_envs
        self._pos = np.zeros((n, 2))
        self._goal = np.zeros(n, dtype=np.int64)
        self._steps = np.zeros(n, dtype=np.int64)
        self._autoreset = True
        self._terminate_on_success = False
        self._needs_reset = True
        self._closed = False
        self._pending: tuple[np.ndarray, np.ndarray | None] | None = None

    def goal_positions(self) -> np.ndarray:
        """``(N, 2)`` current goal of every env (for oracle policies in tests)."""
        return self.task_centres[self.task_id] + self.goal_offsets[self.task_id, self._goal]

    def reset(self, goal_index: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Reset every env (goal ``goal_index[i]``, or sampled); returns ``obs (N, 6) float32``."""
        self._check_open()
        if goal_index is not None:
            index = np.asarray(goal_index)
            if (
                index.shape != (self.num_envs,)
                or not np.issubdtype(index.dtype, np.integer)
                or index.min() < 0
                or index.max() >= self.num_goals
            ):
                raise EnvError(
                    f"goal_index must be {self.num_envs} integers in [0, {self.num_goals}), "
                    f"got shape {index.shape} dtype {index.dtype}"
                )
        self._reset_envs(np.ones(self.num_envs, dtype=bool), goal_index)
        self._needs_reset = False
        return self._obs()

    def step(self, actions: np.ndarray, mask: np.ndarray | None = None) -> StepResult:
        """Step the envs where ``mask`` is True (all by default) with ``actions (N, 2)``."""
        self._check_open()
        if self._needs_reset:
            raise EnvError("call reset() before step() (and after set_state())")
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.num_envs, self.act_dim):
            raise EnvError(f"actions must have shape {(self.num_envs, self.act_dim)}, got {actions.shape}")
        active = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if active.shape != (self.num_envs,):
            raise EnvError(f"mask must have shape ({self.num_envs},), got {active.shape}")

        moved = np.clip(self._pos + _SPEED * np.clip(actions, -1.0, 1.0), -1.0, 1.0)
        self._pos = np.where(active[:, None], moved, self._pos)
        self._steps += active
        distance = np.linalg.norm(self._pos - self.goal_positions(), axis=1)
        success = active & (distance < _SUCCESS_DISTANCE)
        terminated = success & self._terminate_on_success
        truncated = active & (self._steps >= self.max_episode_steps)
        final_obs = self._obs()
        done = terminated | truncated
        if self._autoreset and done.any():
            self._reset_envs(done, None)
            obs = self._obs()
        else:
            obs = final_obs.copy()
        return StepResult(
            obs=obs,
            task_id=self.task_id,
            reward=np.where(active, -distance, 0.0).astype(np.float32),
            terminated=terminated,
            truncated=truncated,
            success=success,
            final_obs=final_obs,
        )

    def step_async(self, actions: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Store the step's arguments; :meth:`step_wait` runs it (no workers to overlap with)."""
        self._pending = (actions, mask)

    def step_wait(self) -> StepResult:
        """Run the step stored by :meth:`step_async`."""
        if self._pending is None:
            raise EnvError("step_wait() without a pending step_async()")
        (actions, mask), self._pending = self._pending, None
        return self.step(actions, mask)

    def set_autoreset(self, enabled: bool) -> None:
        """Same-step autoreset (default on)."""
        self._autoreset = bool(enabled)

    def set_terminate_on_success(self, enabled: bool) -> None:
        """End episodes with ``terminated=True`` at the first successful step (default off)."""
        self._terminate_on_success = bool(enabled)

    def get_state(self) -> dict[str, Any]:
        """Picklable resume state: the goal/start RNG and every env's episode in progress
        (position, goal, elapsed steps), so that :meth:`set_state` continues the episodes."""
        return {
            "task_names": list(self.task_names),
            "num_envs": self.num_envs,
            "rng": self._rng.bit_generator.state,
            "resumes_episodes": True,  # set_state continues them: no reset needed
            "episode": {"pos": self._pos.copy(), "goal": self._goal.copy(),
                        "steps": self._steps.copy(), "needs_reset": self._needs_reset,
                        "autoreset": self._autoreset,
                        "terminate_on_success": self._terminate_on_success},
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state`: the RNG and the episodes in progress, which the next
        :meth:`step` continues exactly. A state without episodes (older checkpoints) restores
        the RNG alone; the next call must then be :meth:`reset`."""
        if state.get("task_names") != self.task_names or state.get("num_envs") != self.num_envs:
            raise EnvError(
                f"env state is for {state.get('num_envs')} envs of {state.get('task_names')}, "
                f"not {self.num_envs} envs of {self.task_names}"
            )
        self._rng.bit_generator.state = state["rng"]
        episode = state.get("episode")
        if episode is None:
            self._needs_reset = True
            return
        self._pos = np.array(episode["pos"], dtype=np.float64)
        self._goal = np.array(episode["goal"], dtype=np.int64)
        self._steps = np.array(episode["steps"], dtype=np.int64)
        self._needs_reset = bool(episode["needs_reset"])
        self._autoreset = bool(episode["autoreset"])
        self._terminate_on_success = bool(episode["terminate_on_success"])

    def close(self) -> None:
        """Mark the env closed (nothing to release). Idempotent."""
        self._closed = True

    def __enter__(self) -> FakeMultiTaskVectorEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reset_envs(self, which: np.ndarray, goal_index: Sequence[int] | np.ndarray | None) -> None:
        count = int(which.sum())
        if goal_index is None:
            self._goal[which] = self._rng.integers(self.num_goals, size=count)
        else:
            self._goal[which] = np.asarray(goal_index)[which]
        self._pos[which] = self._rng.uniform(-_START_NOISE, _START_NOISE, size=(count, 2))
        self._steps[which] = 0

    def _obs(self) -> np.ndarray:
        offset = self.goal_offsets[self.task_id, self._goal]
        fraction = self._steps / self.max_episode_steps
        ones = np.ones(self.num_envs)
        return np.column_stack([self._pos, offset, fraction, ones]).astype(np.float32)

    def _check_open(self) -> None:
        if self._closed:
            raise EnvError("the environment is closed")
