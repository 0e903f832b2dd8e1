"""mtrl's multi-task vector envs as ``gymnasium.vector.VectorEnv``\\ s.

:func:`as_gymnasium` (or :class:`GymnasiumVectorEnv`) wraps any
:class:`~mtrl.envs.base.MultiTaskVectorEnv` (Meta-World v3 in worker processes, EnvPool, the fake
env) so that gymnasium's vector wrappers and other libraries' training loops drive mtrl's fast
collector::

    from gymnasium.wrappers.vector import RecordEpisodeStatistics
    from mtrl.envs import as_gymnasium, make_vector_env

    envs = RecordEpisodeStatistics(as_gymnasium(make_vector_env("MT10", seed=0)))
    obs, info = envs.reset()                 # obs (10, 39) float32, info["task_id"] (10,) int64
    obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())

What gymnasium sees:

* spaces: ``single_observation_space = Box(-inf, inf, (obs_dim,), float32)`` (``obs_dim +
  num_tasks`` with ``task_one_hot=True``, as Meta-World's ``use_one_hot``),
  ``single_action_space = Box(-1, 1, (act_dim,), float32)``, and the batched
  ``observation_space`` / ``action_space`` (``gymnasium.vector.utils.batch_space``);
* ``reset(seed=None, options=None) -> (obs, info)``; ``step(actions) -> (obs, reward,
  terminated, truncated, info)`` with ``reward`` float64 and the flags bool, like gymnasium's
  own vector envs; ``step_async`` / ``step_wait`` as in ``AsyncVectorEnv``;
* ``info["task_id"]`` (every env's task index, int64) and ``info["success"]`` (the step's
  success flag), each with its ``_key`` mask (all True), in every ``reset`` and ``step``;
* autoreset declared in ``metadata["autoreset_mode"]``: ``AutoresetMode.SAME_STEP`` (default,
  mtrl's native mode at no extra cost): where an episode ended, ``obs`` already starts the next
  one and the true last observation is in ``info["final_obs"]`` (an object array, ``None``
  elsewhere, as gymnasium's ``SyncVectorEnv`` does) with the mask ``info["_final_obs"]``, and
  the step's info of those envs in ``info["final_info"]`` / ``info["_final_info"]``.
  ``AutoresetMode.NEXT_STEP`` returns the last observation itself and shows the new episode's
  first observation at the next step (that env's action is then ignored: reward 0, flags
  False); gymnasium's observation wrappers (``TransformObservation``, ``NormalizeObservation``)
  accept only this mode, since they cannot transform ``info["final_obs"]``.

Seeding: mtrl envs are seeded once, when built (``make_vector_env(seed=...)``); every reset draws
the next goals from each env's seeded stream. ``reset(seed=s)`` seeds this object's
``np_random`` only, and warns when ``s`` differs from the construction seed.
``options={"goal_index": ...}`` resets env ``i`` to goal ``goal_index[i]`` (Meta-World's
enumerated goals; not with EnvPool); partial resets (``options["reset_mask"]``) are refused,
since mtrl envs reset all together (autoreset resets single envs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import logger as gym_logger
from gymnasium import spaces
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

from mtrl.envs.base import MultiTaskVectorEnv, StepResult
from mtrl.envs.tasks import EnvError

try:  # gymnasium >= 1.1
    from gymnasium.vector import AutoresetMode
except ImportError:  # pragma: no cover - gymnasium 1.0 has no autoreset modes
    AutoresetMode = None  # type: ignore[assignment,misc]

__all__ = ["GymnasiumVectorEnv", "as_gymnasium"]


class GymnasiumVectorEnv(VectorEnv):
    """A :class:`~mtrl.envs.base.MultiTaskVectorEnv` seen as a ``gymnasium.vector.VectorEnv``
    (see the module docstring for the conventions).

    Args:
        env: the mtrl vector env (its same-step autoreset is switched on).
        autoreset_mode: ``AutoresetMode.SAME_STEP`` (default) or ``AutoresetMode.NEXT_STEP``
            (or their values, ``"SameStep"`` / ``"NextStep"``).
        task_one_hot: append the one-hot task vector to every observation.
        close_env: whether :meth:`close` closes ``env`` (default True).

    Attributes:
        env: the wrapped mtrl env; ``task_names``, ``num_tasks`` and ``task_id`` are its own.
    """

    def __init__(self, env: MultiTaskVectorEnv, autoreset_mode: Any = None,
                 task_one_hot: bool = False, close_env: bool = True) -> None:
        if AutoresetMode is None:
            raise EnvError("the gymnasium adapter needs gymnasium >= 1.1 (autoreset modes)")
        mode = AutoresetMode.SAME_STEP if autoreset_mode is None else AutoresetMode(autoreset_mode)
        if mode not in (AutoresetMode.SAME_STEP, AutoresetMode.NEXT_STEP):
            raise EnvError(f"autoreset_mode must be SAME_STEP or NEXT_STEP, got {mode}; mtrl "
                           "envs always reset the envs whose episodes end")
        self.env = env
        self.autoreset_mode = mode
        self.metadata = {"autoreset_mode": mode, "render_modes": []}
        self.num_envs = env.num_envs
        self.task_names = list(env.task_names)
        self.num_tasks = env.num_tasks
        self.task_id = env.task_id
        self.task_one_hot = bool(task_one_hot)
        self._one_hot = np.eye(env.num_tasks, dtype=np.float32)[env.task_id] \
            if task_one_hot else None
        obs_dim = env.obs_dim + (env.num_tasks if task_one_hot else 0)
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.single_action_space = spaces.Box(-1.0, 1.0, (env.act_dim,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._close_env = close_env
        self._awaiting_reset = np.zeros(self.num_envs, dtype=bool)  # NEXT_STEP: shown next
        self._seed_warned = False
        env.set_autoreset(True)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every env: ``(obs (N, obs_dim) float32, info)``; ``info["task_id"]`` holds
        the envs' task indices. See the module docstring for ``seed`` and ``options``."""
        super().reset(seed=seed)
        if seed is not None and seed != getattr(self.env, "seed", seed) and \
                not self._seed_warned:
            gym_logger.warn(f"mtrl vector envs are seeded when built (seed "
                            f"{getattr(self.env, 'seed', None)}); reset(seed={seed}) does not "
                            "reseed them (build the env with make_vector_env(seed=...))")
            self._seed_warned = True
        goal_index = self._reset_options(options)
        obs = self.env.reset(goal_index=goal_index)
        self._awaiting_reset[:] = False
        return self._observe(obs), self._step_info(np.zeros(self.num_envs, dtype=bool))

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                 np.ndarray, dict[str, Any]]:
        """Step every env with ``actions (N, act_dim)`` (clipped to [-1, 1] by the env)."""
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: np.ndarray) -> None:
        """Start the step (worker processes / EnvPool threads step while the caller works)."""
        mask = ~self._awaiting_reset if self._awaiting_reset.any() else None
        self.env.step_async(np.asarray(actions), mask)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                 dict[str, Any]]:
        """Finish the step started by :meth:`step_async`: the gymnasium 5-tuple."""
        result = self.env.step_wait()
        done = result.done
        info = self._step_info(result.success)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            obs = result.final_obs  # equals result.obs where the episode goes on
            self._awaiting_reset = done.copy()
        else:
            obs = result.obs
            if done.any():
                self._add_final(info, result, done)
        return (self._observe(obs), result.reward.astype(np.float64),
                np.asarray(result.terminated, dtype=bool), np.asarray(result.truncated, dtype=bool),
                info)

    def close_extras(self, **kwargs: Any) -> None:
        """Close the mtrl env (unless built with ``close_env=False``)."""
        if self._close_env:
            self.env.close()

    def __repr__(self) -> str:
        return (f"GymnasiumVectorEnv({type(self.env).__name__}, tasks={self.num_tasks}, "
                f"num_envs={self.num_envs}, autoreset_mode={self.autoreset_mode.name})")

    # ------------------------------------------------------------------ internals
    def _reset_options(self, options: dict[str, Any] | None) -> np.ndarray | None:
        options = dict(options or {})
        goal_index = options.pop("goal_index", None)
        mask = options.pop("reset_mask", None)
        if mask is not None and not np.all(mask):
            raise EnvError("partial resets (options['reset_mask']) are not supported: mtrl "
                           "vector envs reset all envs together and autoreset ended episodes")
        if options:
            raise EnvError(f"unknown reset options {sorted(options)} (supported: goal_index, "
                           "reset_mask with every env)")
        return None if goal_index is None else np.asarray(goal_index)

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        if self._one_hot is None:
            return obs
        return np.concatenate([obs, self._one_hot], axis=1)

    def _step_info(self, success: np.ndarray) -> dict[str, Any]:
        every = np.ones(self.num_envs, dtype=bool)
        return {"task_id": np.array(self.task_id, dtype=np.int64), "_task_id": every,
                "success": np.asarray(success, dtype=bool).copy(), "_success": every.copy()}

    def _add_final(self, info: dict[str, Any], result: StepResult, done: np.ndarray) -> None:
        """``final_obs`` / ``final_info`` of the envs whose episode ended, as gymnasium's
        same-step ``SyncVectorEnv`` writes them (object array, ``None`` elsewhere)."""
        final = self._observe(result.final_obs)
        final_obs = np.full(self.num_envs, None, dtype=object)
        for i in np.flatnonzero(done):
            final_obs[i] = final[i]
        info["final_obs"], info["_final_obs"] = final_obs, done.copy()
        info["final_info"] = {
            "task_id": np.where(done, self.task_id, 0).astype(np.int64), "_task_id": done.copy(),
            "success": np.asarray(result.success, dtype=bool) & done, "_success": done.copy(),
        }
        info["_final_info"] = done.copy()


def as_gymnasium(env: MultiTaskVectorEnv, autoreset_mode: Any = None,
                 task_one_hot: bool = False, close_env: bool = True) -> GymnasiumVectorEnv:
    """``env`` as a ``gymnasium.vector.VectorEnv`` (:class:`GymnasiumVectorEnv`)."""
    return GymnasiumVectorEnv(env, autoreset_mode, task_one_hot, close_env)
