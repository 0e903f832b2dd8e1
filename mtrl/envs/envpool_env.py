"""Meta-World v3 training envs from EnvPool's native C++ implementation (``env.backend=envpool``).

What the EnvPool backend trains on:

* The same 50 v3 tasks, observation layout (39 dims, goal visible as in MT10 / MT50:
  ``partially_observable=False``), actions, reward (Meta-World's v2 reward functions, 0..10)
  and ``success`` flag as :class:`~mtrl.envs.metaworld_env.MetaWorldVectorEnv`
  (``benchmarks/envpool_fidelity.py`` checks this task by task with Meta-World's scripted
  policies; tasks that disagree are in :data:`REFUSED_TASKS` and refused).
* **Goals are not Meta-World's 50 seeded goals per task**: EnvPool samples every episode's
  object and goal positions from the task's whole distribution (the same ranges Meta-World
  draws its 50 goals from), with each env's own seeded RNG; EnvPool has no way to set a goal.
  A policy trained here thus sees more goal variety than the official benchmark's 50. The
  official evaluation is unchanged: evaluation envs stay Meta-World's, in worker processes,
  on the 50 goals of the training seed (build them with ``backend="metaworld"``).
  ``reset(goal_index=...)`` raises :class:`~mtrl.errors.MtrlError`.

How it steps: one EnvPool pool per task (an EnvPool pool holds one task), each with
``envs_per_task`` envs and its own C++ threads; no worker processes. A step sends every pool
its rows of the one batched action array, then collects all pools (so the pools' threads run
at the same time). EnvPool's own time limit is switched off: the horizon is counted here, and
episodes that end are reset explicitly in the same step, so that mtrl's same-step autoreset
with true final observations holds (EnvPool's own autoreset would happen on the next step).

``envpool`` is imported only when such an env is built; without it the error says
``pip install mtrl[envpool]``.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from mtrl.envs.base import StepResult
from mtrl.envs.tasks import EnvError, is_fake, resolve_tasks
from mtrl.errors import MtrlError

OBS_DIM = 39
ACT_DIM = 4
_NO_LIMIT = 2**31 - 1  # EnvPool's max_episode_steps: never reached, the horizon is counted here

REFUSED_TASKS: dict[str, str] = {
    # benchmarks/envpool_fidelity.md (20 scripted episodes per task and backend, 3 same-state
    # episodes): EnvPool 1.2.5 vs metaworld 3.1.1
    "button-press-topdown-wall-v3": "EnvPool's reward is always 0",
    "dial-turn-v3": "scripted success 20/20 in Meta-World vs 0/20 in EnvPool",
    "door-lock-v3": "reward differs on the same state (p95 1.6, in grasp_reward)",
    "push-back-v3": "reward differs on the same state (p95 0.12, in grasp_reward and near_object)",
    "soccer-v3": "reward differs on the same state (p95 1.3, in grasp_reward)",
    "sweep-into-v3": "reward differs on the same state (p95 0.9, in grasp_reward)",
    "sweep-v3": "reward differs on the same state (p95 0.3)",
}
"""Tasks whose EnvPool version disagrees with Meta-World's (name -> why), from
``benchmarks/envpool_fidelity.md``; the EnvPool backend refuses them."""

INSTALL_HINT = "pip install mtrl[envpool]"


def import_envpool() -> Any:
    """The ``envpool`` module, or a one-line :class:`MtrlError` saying how to install it."""
    try:
        import envpool
        from envpool.mujoco.metaworld import registration  # noqa: F401  (the Meta-World ids)
    except ImportError:
        raise MtrlError(
            f"env.backend=envpool needs EnvPool (>= 1.2.5), which is not installed: {INSTALL_HINT}"
        ) from None
    return envpool


def envpool_task_id(task_name: str) -> str:
    """EnvPool's id of a Meta-World task: ``"reach-v3"`` -> ``"MetaWorld/Reach-v3"``."""
    name, version = task_name.rsplit("-", 1)
    return "MetaWorld/" + "".join(part[:1].upper() + part[1:] for part in name.split("-")) + \
        f"-{version}"


def env_seeds(seed: int, num_envs: int, generation: int = 0) -> list[int]:
    """Per-env EnvPool seeds (int31) derived from ``seed``, the env index and ``generation``."""
    return [int(np.random.SeedSequence(seed, spawn_key=(i, generation)).generate_state(1)[0])
            % 2**31 for i in range(num_envs)]


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class EnvPoolVectorEnv:
    """Meta-World v3 multi-task vector env on EnvPool (implements
    :class:`~mtrl.envs.base.MultiTaskVectorEnv`; see the module docstring for what differs).

    ``num_envs = num_tasks * envs_per_task``, task-major: env ``i`` runs task
    ``i // envs_per_task``. Env ``i`` is seeded from ``seed`` and ``i`` only, so the same seed
    gives the same episodes. ``num_threads`` is each pool's thread count (default: as many
    as envs per task, at most one per core). Episodes are truncated at ``max_episode_steps``;
    ``terminated`` is True only with :meth:`set_terminate_on_success`.
    """

    obs_dim: int = OBS_DIM
    act_dim: int = ACT_DIM
    backend: str = "envpool"

    def __init__(
        self,
        task_names: str | Sequence[str],
        envs_per_task: int = 1,
        seed: int = 0,
        max_episode_steps: int = 500,
        num_threads: int | None = None,
    ) -> None:
        names = resolve_tasks(task_names)
        if is_fake(names):
            raise EnvError(f"{names[0]!r} is a fake task; use FakeMultiTaskVectorEnv")
        refused = [name for name in names if name in REFUSED_TASKS]
        if refused:
            raise MtrlError(
                "the EnvPool backend refuses " + ", ".join(refused) + " (its EnvPool version "
                "disagrees with Meta-World's: " + "; ".join(REFUSED_TASKS[n] for n in refused)
                + "; see benchmarks/envpool_fidelity.md); use env.backend=metaworld"
            )
        if envs_per_task < 1 or max_episode_steps < 1 or seed < 0:
            raise EnvError(
                "need envs_per_task >= 1, max_episode_steps >= 1 and seed >= 0, got "
                f"{envs_per_task}, {max_episode_steps}, {seed}"
            )
        if num_threads is not None and num_threads < 1:
            raise EnvError(f"num_threads must be >= 1, got {num_threads}")
        self._envpool = import_envpool()
        self.task_names = names
        self.num_tasks = len(names)
        self.envs_per_task = envs_per_task
        self.num_envs = self.num_tasks * envs_per_task
        self.max_episode_steps = max_episode_steps
        self.seed = seed
        self.num_threads = num_threads or min(envs_per_task, _usable_cores())
        self.task_id = np.repeat(np.arange(self.num_tasks, dtype=np.int64), envs_per_task)
        self.task_id.flags.writeable = False
        n = self.num_envs
        self._obs = np.zeros((n, OBS_DIM), np.float32)
        self._steps = np.zeros(n, np.int64)
        self._autoreset = True
        self._terminate_on_success = False
        self._needs_reset = True
        self._pending: list[tuple[int, np.ndarray]] | None = None
        self._generation = 0
        self._episodes = 0  # resets so far (kept in get_state, seeds a resumed run apart)
        self._pools: list[Any] = []
        self._closed = False
        self._build_pools()

    # ----------------------------------------------------------------- public API
    def reset(self, goal_index: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Reset every env (goals sampled by EnvPool); returns ``obs (N, 39) float32``.

        Raises:
            MtrlError: ``goal_index`` given (EnvPool cannot set Meta-World's goals).
        """
        self._check_idle()
        if goal_index is not None:
            raise MtrlError(
                "the EnvPool backend samples goals from each task's distribution and cannot "
                "reset to Meta-World's enumerated goals (goal_index); evaluate with "
                "backend=metaworld envs"
            )
        local = np.arange(self.envs_per_task, dtype=np.int32)
        self._reset_rows([(k, local) for k in range(self.num_tasks)])
        self._needs_reset = False
        return self._obs.copy()

    def step(self, actions: np.ndarray, mask: np.ndarray | None = None) -> StepResult:
        """:meth:`step_async` then :meth:`step_wait`."""
        self.step_async(actions, mask)
        return self.step_wait()

    def step_async(self, actions: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Send ``actions (N, 4)`` (clipped to [-1, 1]) to the pools; envs where ``mask`` is
        False are not stepped. The pools' threads step while the caller works; then
        :meth:`step_wait`."""
        if self._needs_reset:
            raise EnvError("call reset() before step() (and after set_state())")
        self._check_idle()
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs, self.act_dim):
            raise EnvError(f"actions must have shape {(self.num_envs, self.act_dim)}, "
                           f"got {actions.shape}")
        if not np.isfinite(actions).all():
            raise EnvError("actions contain NaN or inf")
        actions = np.clip(actions, -1.0, 1.0).astype(np.float32, copy=False)
        if mask is None:
            active = np.ones(self.num_envs, bool)
        else:
            active = np.asarray(mask, bool)
            if active.shape != (self.num_envs,):
                raise EnvError(f"mask must have shape ({self.num_envs},), got {active.shape}")
        e = self.envs_per_task
        sent: list[tuple[int, np.ndarray]] = []
        for k, pool in enumerate(self._pools):
            rows = active[k * e:(k + 1) * e]
            if rows.all():
                local = np.arange(e, dtype=np.int32)
            elif rows.any():
                local = np.flatnonzero(rows).astype(np.int32)
            else:
                continue
            pool.send(np.ascontiguousarray(actions[k * e + local]), local)
            sent.append((k, local))
        self._pending = sent

    def step_wait(self) -> StepResult:
        """Collect the step started by :meth:`step_async` (same-step autoreset where done)."""
        if self._pending is None:
            raise EnvError("step_wait() without a pending step_async()")
        sent, self._pending = self._pending, None
        n, e = self.num_envs, self.envs_per_task
        final_obs = self._obs.copy()
        reward = np.zeros(n, np.float32)
        success = np.zeros(n, bool)
        own_done = np.zeros(n, bool)
        stepped = np.zeros(n, bool)
        for k, _ in sent:
            obs, rew, term, trunc, info = self._recv(k)
            rows = k * e + np.asarray(info["env_id"], np.int64)
            final_obs[rows] = obs
            reward[rows] = rew
            success[rows] = np.asarray(info["success"]) > 0.5
            own_done[rows] = np.logical_or(term, trunc)  # never expected: EnvPool's limit is off
            stepped[rows] = True
        self._steps[stepped] += 1
        terminated = success & self._terminate_on_success
        truncated = (stepped & (self._steps >= self.max_episode_steps)) | own_done
        self._obs[stepped] = final_obs[stepped]
        done = terminated | truncated
        to_reset = (done if self._autoreset else np.zeros(n, bool)) | own_done
        if to_reset.any():
            self._reset_rows([(k, np.flatnonzero(to_reset[k * e:(k + 1) * e]).astype(np.int32))
                              for k in range(self.num_tasks) if to_reset[k * e:(k + 1) * e].any()])
        return StepResult(
            obs=self._obs.copy(),
            task_id=self.task_id,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            success=success,
            final_obs=final_obs,
        )

    def set_autoreset(self, enabled: bool) -> None:
        """Same-step autoreset (default on). Off: a done env keeps stepping its old episode
        (``truncated`` stays True past the horizon) unless masked out or reset."""
        self._check_idle()
        self._autoreset = bool(enabled)

    def set_terminate_on_success(self, enabled: bool) -> None:
        """End episodes with ``terminated=True`` at the first successful step (default off)."""
        self._check_idle()
        self._terminate_on_success = bool(enabled)

    def get_state(self) -> dict[str, Any]:
        """Picklable resume state. EnvPool's RNGs and physics cannot be read out: the state
        holds the number of episodes so far, and :meth:`set_state` rebuilds the pools with
        seeds derived from it (a resumed run draws fresh goals rather than the first ones
        again). The next call after :meth:`set_state` must be :meth:`reset`."""
        self._check_idle()
        return {"backend": self.backend, "task_names": list(self.task_names),
                "num_envs": self.num_envs, "episodes": int(self._episodes)}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state` (rebuilds the pools); the next call must be :meth:`reset`."""
        self._check_idle()
        if state.get("backend") != self.backend or state.get("task_names") != self.task_names \
                or state.get("num_envs") != self.num_envs:
            raise EnvError(
                f"env state is for {state.get('num_envs')} {state.get('backend', 'metaworld')} "
                f"envs of {state.get('task_names')}, not {self.num_envs} envpool envs of "
                f"{self.task_names}"
            )
        self._episodes = int(state["episodes"])
        self._close_pools()
        self._build_pools(generation=1 + self._episodes)
        self._needs_reset = True

    def close(self) -> None:
        """Release the pools and their threads. Idempotent."""
        self._pending = None
        self._closed = True
        self._close_pools()

    def __enter__(self) -> EnvPoolVectorEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _build_pools(self, generation: int = 0) -> None:
        seeds = env_seeds(self.seed, self.num_envs, generation)
        e = self.envs_per_task
        try:
            for k, name in enumerate(self.task_names):
                self._pools.append(self._envpool.make_gymnasium(
                    envpool_task_id(name), num_envs=e, batch_size=e,
                    num_threads=self.num_threads, env_seed=seeds[k * e:(k + 1) * e],
                    max_episode_steps=_NO_LIMIT, partially_observable=False,
                ))
        except Exception as exc:
            self._close_pools()
            raise EnvError(f"EnvPool could not build {name}: {exc!r}") from exc
        self._generation = generation

    def _close_pools(self) -> None:
        pools, self._pools = self._pools, []
        for pool in pools:
            pool.close()

    def _recv(self, k: int, reset: bool = False) -> tuple:
        try:
            return self._pools[k].recv(reset=reset, return_info=True)
        except Exception as exc:
            raise EnvError(f"EnvPool {self.task_names[k]} {'reset' if reset else 'step'}: "
                           f"{exc!r}") from exc

    def _reset_rows(self, rows: list[tuple[int, np.ndarray]]) -> None:
        """Reset env ``local`` ids of pool ``k`` for every ``(k, local)``, all pools at once."""
        for k, local in rows:
            self._pools[k]._reset(local)  # EnvPool's reset(), split into send and receive
        e = self.envs_per_task
        for k, _ in rows:
            obs, info = self._recv(k, reset=True)
            index = k * e + np.asarray(info["env_id"], np.int64)
            self._obs[index] = obs
            self._steps[index] = 0
            self._episodes += len(index)

    def _check_idle(self) -> None:
        if self._closed:
            raise EnvError("the environment is closed")
        if self._pending is not None:
            raise EnvError("a step_async() is pending; call step_wait() first")
