"""Meta-World v3 multi-task vector environment stepped by worker processes.

``metaworld`` (and with it MuJoCo) is imported only when goals are generated or envs are
built, so that ``import mtrl.envs`` stays light.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from mtrl.envs.base import StepResult
from mtrl.envs.tasks import EnvError, is_fake, resolve_tasks
from mtrl.envs.workers import InlinePool, Layout, WorkerGroup, WorkerPool, split_range

if TYPE_CHECKING:
    from metaworld.types import Task

OBS_DIM = 39
ACT_DIM = 4


def default_num_workers(num_envs: int) -> int:
    """One worker per usable core, never more than envs."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, num_envs))


def make_goal_tasks(task_names: Sequence[str], seed: int) -> list[list[Task]]:
    """The seeded goals (``metaworld.Task``, 50 per task) of every task, in ``task_names`` order.

    Generated exactly as Meta-World does (``metaworld._make_tasks`` with ``_MT_OVERRIDE``, so the
    goal is observable): for exactly the MT10 / MT50 lists via ``metaworld.MT10(seed=seed)`` /
    ``MT50(seed=seed)``, so goals equal the official benchmark's for the same seed. Goals of a
    task depend on the tasks before it in the list (one global RNG stream). Generating them
    steps every task's env hundreds of times (MT50: ~35 s on one core), so they are cached per
    process and on disk (:func:`goal_cache_dir`), keyed by the Meta-World version, tasks and seed.
    """
    return [list(goals) for goals in _goal_tasks(tuple(task_names), seed)]


def goal_cache_dir() -> Path | None:
    """Where generated goals are kept: ``$MTRL_CACHE_DIR`` (empty: no disk cache), else
    ``$XDG_CACHE_HOME/mtrl``, else ``~/.cache/mtrl``."""
    configured = os.environ.get("MTRL_CACHE_DIR")
    if configured is not None:
        return Path(configured) if configured.strip() else None
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except (RuntimeError, KeyError):  # no home directory: no disk cache
            return None
    return Path(base) / "mtrl"


@functools.lru_cache(maxsize=8)
def _goal_tasks(task_names: tuple[str, ...], seed: int) -> tuple[tuple[Task, ...], ...]:
    from metaworld.types import Task

    path = _goal_cache_path(task_names, seed)
    if path is not None and path.exists():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            stored = json.loads(path.read_text())
            return tuple(tuple(Task(name, base64.b64decode(data)) for data in stored[name])
                         for name in task_names)
    goals = _generate_goal_tasks(task_names, seed)
    if path is not None:
        with contextlib.suppress(OSError):  # a read-only home only costs the regeneration
            path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps({name: [base64.b64encode(t.data).decode() for t in tasks]
                               for name, tasks in zip(task_names, goals)})
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(text)
            partial.replace(path)
    return goals


def _goal_cache_path(task_names: tuple[str, ...], seed: int) -> Path | None:
    from importlib.metadata import version

    directory = goal_cache_dir()
    if directory is None:
        return None
    key = json.dumps([version("metaworld"), seed, list(task_names)])
    return directory / f"goals-{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"


def _generate_goal_tasks(task_names: tuple[str, ...], seed: int
                         ) -> tuple[tuple[Task, ...], ...]:
    import metaworld
    from metaworld import env_dict

    if task_names == tuple(env_dict.MT10_V3):
        tasks = metaworld.MT10(seed=seed).train_tasks
    elif task_names == tuple(env_dict.MT50_V3):
        tasks = metaworld.MT50(seed=seed).train_tasks
    else:
        classes = env_dict._get_env_dict(task_names)
        args_kwargs = env_dict._get_args_kwargs(env_dict.ALL_V3_ENVIRONMENTS, classes)
        tasks = metaworld._make_tasks(classes, args_kwargs, metaworld._MT_OVERRIDE, seed=seed)
    by_name: dict[str, list[Task]] = {name: [] for name in task_names}
    for task in tasks:
        by_name[task.env_name].append(task)
    return tuple(tuple(by_name[name]) for name in task_names)


def _layout(num_envs: int) -> Layout:
    n = num_envs
    return {
        "obs": ((n, OBS_DIM), "float32"),
        "final_obs": ((n, OBS_DIM), "float32"),
        "actions": ((n, ACT_DIM), "float32"),
        "reward": ((n,), "float32"),
        "terminated": ((n,), "bool"),
        "truncated": ((n,), "bool"),
        "success": ((n,), "bool"),
        "mask": ((n,), "bool"),
        "goal_index": ((n,), "int64"),
    }


_MODEL_FIELDS = ("body_pos", "body_quat", "site_pos", "site_quat", "geom_pos", "geom_quat",
                 "geom_size")
"""MjModel fields that Meta-World's resets move (object, goal and site placements)."""
_PLAIN = (np.ndarray, np.generic, int, float, bool, str, bytes, type(None))


def _is_plain(value: Any) -> bool:
    """Whether ``value`` is plain data (numbers, arrays, strings and containers of them)."""
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return isinstance(value, _PLAIN)


def _array_fields(obj: Any) -> dict[str, np.ndarray]:
    """The numpy array attributes of an ``MjData`` / ``MjModel``."""
    fields = {}
    for name in dir(obj):
        if not name.startswith("_"):
            with contextlib.suppress(Exception):
                value = getattr(obj, name)
                if isinstance(value, np.ndarray) and value.size:
                    fields[name] = value
    return fields


def _find_view(value: np.ndarray, owners: dict[str, dict[str, np.ndarray]]
               ) -> tuple[str, str, int] | None:
    """``(owner, field, byte offset)`` of an array that is a view into an MjData / MjModel
    field (Meta-World keeps such views, e.g. ``init_left_pad``, which move with the sim)."""
    start = value.__array_interface__["data"][0]
    for owner, fields in owners.items():
        for name, field in fields.items():
            base = field.__array_interface__["data"][0]
            if base <= start < base + field.nbytes and np.shares_memory(value, field):
                return owner, name, start - base
    return None


def raw_env_state(env: Any) -> dict[str, Any]:
    """Everything the next steps of a raw Meta-World env depend on, picklable.

    MuJoCo's integration state (``mj_getState`` with ``mjSTATE_INTEGRATION``: time, qpos, qvel,
    actuator state, solver warm start, controls, applied forces, mocap poses), the model poses
    that resets move (:data:`_MODEL_FIELDS`), the env's plain Python attributes (step
    counter, targets, previous frame of the observation, ...) and the states of its numpy
    generators (``np_random``). Attributes that are views into MjData / MjModel fields are
    recorded as views, so they keep moving with the simulation after
    :func:`set_raw_env_state`.
    """
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    physics = np.empty(mujoco.mj_stateSize(env.model, spec))
    mujoco.mj_getState(env.model, env.data, physics, spec)
    owners: dict[str, dict[str, np.ndarray]] | None = None
    attrs: dict[str, Any] = {}
    generators: dict[str, dict[str, Any]] = {}
    views: dict[str, tuple[str, str, int, tuple[int, ...], tuple[int, ...], str]] = {}
    for key, value in vars(env).items():
        if isinstance(value, np.ndarray) and value.base is not None:
            owners = owners or {"data": _array_fields(env.data), "model": _array_fields(env.model)}
            found = _find_view(value, owners)
            if found is not None:
                views[key] = (*found, value.shape, value.strides, value.dtype.str)
                continue
        if isinstance(value, np.random.Generator):
            generators[key] = value.bit_generator.state
        elif _is_plain(value):
            attrs[key] = value
    return {"physics": physics,
            "model": {name: getattr(env.model, name).copy() for name in _MODEL_FIELDS},
            "attrs": copy.deepcopy(attrs), "generators": copy.deepcopy(generators),
            "views": views}


def set_raw_env_state(env: Any, state: dict[str, Any]) -> None:
    """Restore :func:`raw_env_state` into an env of the same task, set to the same goal.

    No forward pass is run afterwards: it would read the restored warm start and change the
    solver's next result in the last bits, while every step begins with its own forward pass
    (quantities derived from the state are recomputed before they are read).
    """
    import mujoco

    for name, value in state["model"].items():
        getattr(env.model, name)[...] = value
    mujoco.mj_setState(env.model, env.data, np.asarray(state["physics"], dtype=np.float64),
                       mujoco.mjtState.mjSTATE_INTEGRATION)
    for key, value in copy.deepcopy(state["attrs"]).items():
        setattr(env, key, value)
    for key, rng_state in state["generators"].items():
        generator = getattr(env, key, None)
        if not isinstance(generator, np.random.Generator):
            generator = np.random.default_rng()
            setattr(env, key, generator)
        generator.bit_generator.state = copy.deepcopy(rng_state)
    for key, (owner, name, offset, shape, strides, dtype) in state["views"].items():
        field = getattr(getattr(env, owner), name)
        setattr(env, key, np.ndarray(shape, np.dtype(dtype), buffer=field, offset=offset,
                                     strides=strides))


@dataclass(frozen=True)
class BlockSpec:
    """What a worker needs to build envs ``lo..hi-1`` (goals arrive later via ``set_goals``)."""

    lo: int
    hi: int
    task_names: tuple[str, ...]
    env_seeds: tuple[int, ...]
    goal_seeds: tuple[np.random.SeedSequence, ...]
    max_episode_steps: int


class MetaWorldBlock:
    """A contiguous block of raw Meta-World envs stepped in a loop, reading and writing its rows
    of the shared arrays. Runs inside a worker process or in-process (``mode="sync"``)."""

    def __init__(self, spec: BlockSpec, arrays: dict[str, np.ndarray]) -> None:
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        self._spec = spec
        self._arrays = arrays
        self._envs = []
        for name, env_seed in zip(spec.task_names, spec.env_seeds):
            env = ALL_V3_ENVIRONMENTS[name](reward_function_version="v2")
            env.seed(env_seed)
            # The raw env raises once curr_path_length reaches max_path_length (500); the horizon
            # is counted here instead, so stepping past it (autoreset off) never raises.
            env.max_path_length = sys.maxsize
            self._envs.append(env)
        self._rngs = [np.random.default_rng(s) for s in spec.goal_seeds]
        self._steps = [0] * len(self._envs)
        self._goal = [-1] * len(self._envs)  # goal of the episode in progress (-1: none yet)
        self._goals: list[Sequence[Task]] = []
        self._autoreset = True
        self._terminate_on_success = False

    def set_goals(self, goals: dict[str, Sequence[Task]]) -> None:
        self._goals = [goals[name] for name in self._spec.task_names]

    def set_autoreset(self, enabled: bool) -> None:
        self._autoreset = enabled

    def set_terminate_on_success(self, enabled: bool) -> None:
        self._terminate_on_success = enabled

    def get_state(self) -> list[dict[str, Any]]:
        """Per env: goal RNG, current goal, elapsed steps and the simulator state
        (:func:`raw_env_state`; ``None`` before the env's first reset)."""
        return [{"goal_rng": rng.bit_generator.state, "goal": goal, "steps": steps,
                 "sim": raw_env_state(env) if goal >= 0 else None,
                 "autoreset": self._autoreset, "terminate_on_success": self._terminate_on_success}
                for env, rng, goal, steps in zip(self._envs, self._rngs, self._goal, self._steps)]

    def set_state(self, states: list[dict[str, Any]]) -> None:
        """Restore :meth:`get_state`: the env is set to its episode's goal, reset, then given
        the saved simulator state. Bare goal-RNG states (older checkpoints) restore the RNG."""
        for j, (rng, state) in enumerate(zip(self._rngs, states)):
            if "goal_rng" not in state:  # an older checkpoint: the RNG state alone
                rng.bit_generator.state = state
                continue
            if state["sim"] is not None:
                self._reset_env(j, int(state["goal"]))
                set_raw_env_state(self._envs[j], state["sim"])
            rng.bit_generator.state = state["goal_rng"]
            self._goal[j] = int(state["goal"])
            self._steps[j] = int(state["steps"])
            self._autoreset = bool(state["autoreset"])
            self._terminate_on_success = bool(state["terminate_on_success"])

    def reset(self) -> None:
        """Reset every env with goal ``goal_index[i]`` (``-1``: sample from the env's RNG)."""
        a = self._arrays
        for j in range(len(self._envs)):
            i = self._spec.lo + j
            a["obs"][i] = self._reset_env(j, int(a["goal_index"][i]))
        lo, hi = self._spec.lo, self._spec.hi
        a["final_obs"][lo:hi] = a["obs"][lo:hi]
        a["reward"][lo:hi] = 0.0
        for key in ("terminated", "truncated", "success"):
            a[key][lo:hi] = False

    def step(self) -> None:
        a = self._arrays
        obs, final_obs, actions, mask = a["obs"], a["final_obs"], a["actions"], a["mask"]
        reward, terminated, truncated, success = (
            a["reward"], a["terminated"], a["truncated"], a["success"]
        )
        for j, env in enumerate(self._envs):
            i = self._spec.lo + j
            if not mask[i]:
                final_obs[i] = obs[i]
                reward[i] = 0.0
                terminated[i] = truncated[i] = success[i] = False
                continue
            try:
                next_obs, r, _, _, info = env.step(actions[i].copy())
            except Exception as exc:
                raise EnvError(f"env {i} ({self._spec.task_names[j]}) step: {exc!r}") from exc
            self._steps[j] += 1
            succeeded = bool(info["success"])
            terminated[i] = done = succeeded and self._terminate_on_success
            truncated[i] = self._steps[j] >= self._spec.max_episode_steps
            success[i] = succeeded
            reward[i] = r
            final_obs[i] = next_obs
            if self._autoreset and (done or truncated[i]):
                obs[i] = self._reset_env(j, -1)
            else:
                obs[i] = next_obs

    def close(self) -> None:
        for env in self._envs:
            env.close()

    def _reset_env(self, j: int, goal: int) -> np.ndarray:
        goals = self._goals[j]
        if goal < 0:
            goal = int(self._rngs[j].integers(len(goals)))
        env = self._envs[j]
        try:
            env.set_task(goals[goal])
            obs, _ = env.reset()
        except Exception as exc:
            i = self._spec.lo + j
            raise EnvError(f"env {i} ({self._spec.task_names[j]}) reset: {exc!r}") from exc
        self._steps[j] = 0
        self._goal[j] = goal
        return obs


def _check_arguments(names: Sequence[str], envs_per_task: int, seed: int,
                     num_workers: int | None, mode: str, max_episode_steps: int,
                     goal_seed: int | None) -> None:
    """Raise :class:`EnvError` on arguments :class:`MetaWorldVectorEnv` cannot build."""
    if is_fake(names):
        raise EnvError(f"{names[0]!r} is a fake task; use FakeMultiTaskVectorEnv")
    if envs_per_task < 1 or max_episode_steps < 1 or seed < 0 or (goal_seed or 0) < 0:
        raise EnvError(
            "need envs_per_task >= 1, max_episode_steps >= 1 and seeds >= 0, got "
            f"{envs_per_task}, {max_episode_steps}, {seed}, goal seed {goal_seed}"
        )
    if mode not in ("async", "sync"):
        raise EnvError(f"mode must be 'async' or 'sync', got {mode!r}")
    if num_workers is not None and num_workers < 1:
        raise EnvError(f"num_workers must be >= 1, got {num_workers}")


class MetaWorldVectorEnv:
    """Meta-World v3 multi-task vector env (implements :class:`~mtrl.envs.base.MultiTaskVectorEnv`).

    ``num_envs = num_tasks * envs_per_task`` raw v3 envs (``reward_function_version="v2"``),
    task-major: env ``i`` runs task ``i // envs_per_task``. Every reset picks one of the task's
    ``num_goals`` (50) seeded goals (see :func:`make_goal_tasks`) with the env's own
    ``np.random.Generator``; env seeds and goal RNGs derive from ``seed`` and the env index only,
    so results do not depend on ``mode`` or ``num_workers``.

    ``goal_seed`` (default ``seed``) seeds the goal set alone: an evaluation env uses the
    training env's goals (as Meta-World's own evaluation does) with its own env seeds.

    ``mode="async"`` (default) steps contiguous blocks of envs in ``num_workers`` worker
    processes (default: one per core, at most ``num_envs``) over shared memory; ``"sync"`` steps
    them in this process (``num_workers`` is then 0). ``share_workers_with`` (an async env)
    places this env's envs in that env's worker processes instead of starting new ones (closing
    this env then leaves them running; closing that one stops them). Episodes are truncated at
    ``max_episode_steps``; ``terminated`` is True only with :meth:`set_terminate_on_success`.
    A dead or failing worker raises :class:`EnvError` (after at most ``timeout_s`` for a hung one)
    and closes the env. Use as a context manager or call :meth:`close`.
    """

    obs_dim: int = OBS_DIM
    act_dim: int = ACT_DIM

    def __init__(
        self,
        task_names: str | Sequence[str],
        envs_per_task: int = 1,
        seed: int = 0,
        num_workers: int | None = None,
        mode: str = "async",
        max_episode_steps: int = 500,
        timeout_s: float = 300.0,
        goal_seed: int | None = None,
        share_workers_with: MetaWorldVectorEnv | None = None,
    ) -> None:
        names = resolve_tasks(task_names)
        _check_arguments(names, envs_per_task, seed, num_workers, mode, max_episode_steps,
                         goal_seed)
        self.task_names = names
        self.num_tasks = len(names)
        self.envs_per_task = envs_per_task
        self.num_envs = self.num_tasks * envs_per_task
        self.max_episode_steps = max_episode_steps
        self.seed = seed
        self.mode = mode
        self.task_id = np.repeat(np.arange(self.num_tasks, dtype=np.int64), envs_per_task)
        self.task_id.flags.writeable = False

        shared_pool = None
        if mode == "async" and share_workers_with is not None:
            shared_pool = share_workers_with.worker_pool
        ranges = self._worker_ranges(num_workers, shared_pool)
        specs = self._block_specs(ranges)
        self._pool: WorkerGroup | InlinePool = self._start_blocks(specs, ranges, shared_pool,
                                                                  timeout_s)
        self.task_goals: list[list[Task]] = self._send_goals(
            specs, seed if goal_seed is None else goal_seed)
        self.num_goals = len(self.task_goals[0])
        self._buf = self._pool.arrays
        self._needs_reset = True
        self._stepping = False

    # ------------------------------------------------------------ construction
    def _worker_ranges(self, num_workers: int | None, shared_pool: WorkerPool | None
                       ) -> list[tuple[int, int]]:
        """Set :attr:`num_workers` and split the envs into one contiguous block per worker
        (one block in sync mode; a shared pool's size wins over ``num_workers``)."""
        if self.mode == "sync":
            self.num_workers = 0
            return [(0, self.num_envs)]
        pool_size = shared_pool.num_workers if shared_pool is not None else (
            num_workers or default_num_workers(self.num_envs))
        self.num_workers = min(pool_size, self.num_envs)
        return split_range(self.num_envs, self.num_workers)

    def _block_specs(self, ranges: Sequence[tuple[int, int]]) -> list[BlockSpec]:
        """What each block's worker builds: env ``i``'s task, env seed and goal RNG seed, all
        derived from ``seed`` and ``i`` alone (so results do not depend on the blocks)."""
        e = self.envs_per_task
        seeds = [np.random.SeedSequence(self.seed, spawn_key=(i,)).spawn(2)
                 for i in range(self.num_envs)]
        return [
            BlockSpec(
                lo=lo,
                hi=hi,
                task_names=tuple(self.task_names[i // e] for i in range(lo, hi)),
                env_seeds=tuple(int(seeds[i][0].generate_state(1)[0]) for i in range(lo, hi)),
                goal_seeds=tuple(seeds[i][1] for i in range(lo, hi)),
                max_episode_steps=self.max_episode_steps,
            )
            for lo, hi in ranges
        ]

    def _start_blocks(self, specs: Sequence[BlockSpec], ranges: Sequence[tuple[int, int]],
                      shared_pool: WorkerPool | None, timeout_s: float
                      ) -> WorkerGroup | InlinePool:
        """Build the blocks: in this process (sync), or as a group in new worker processes or
        in ``shared_pool``'s (async; returns while the workers are still building envs)."""
        factories = [functools.partial(MetaWorldBlock, spec) for spec in specs]
        layout = _layout(self.num_envs)
        if self.mode == "sync":
            return InlinePool(factories, ranges, layout)
        pool = shared_pool or WorkerPool(self.num_workers, timeout_s=timeout_s)
        try:
            group = pool.add_group(factories, ranges, layout)
        except BaseException:
            if shared_pool is None:
                pool.close()
            raise
        group.owns_pool = shared_pool is None
        return group

    def _send_goals(self, specs: Sequence[BlockSpec], goal_seed: int) -> list[list[Task]]:
        """Generate the goal sets (while async workers build their envs), wait for the blocks
        and give each its tasks' goals; returns the goals. Closes the blocks on failure."""
        try:
            task_goals = make_goal_tasks(self.task_names, goal_seed)
            self._pool.wait()
            goals = dict(zip(self.task_names, task_goals))
            self._pool.call(
                "set_goals", [({name: goals[name] for name in set(s.task_names)},) for s in specs]
            )
        except BaseException:
            self._pool.close()
            raise
        return task_goals

    # -------------------------------------------------------------- public API
    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the worker processes (empty in sync mode)."""
        return self._pool.pids

    @property
    def worker_pool(self) -> WorkerPool | None:
        """The worker processes this env steps in (``None`` in sync mode), for other envs to
        share (``share_workers_with``)."""
        return self._pool.pool if isinstance(self._pool, WorkerGroup) else None

    def reset(self, goal_index: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Reset every env (goal ``goal_index[i]``, or sampled); returns ``obs (N, 39) float32``."""
        self._check_idle()
        if goal_index is None:
            self._buf["goal_index"][:] = -1
        else:
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
            self._buf["goal_index"][:] = index
        self._call("reset")
        self._needs_reset = False
        return self._buf["obs"].copy()

    def step(self, actions: np.ndarray, mask: np.ndarray | None = None) -> StepResult:
        """:meth:`step_async` then :meth:`step_wait`."""
        self.step_async(actions, mask)
        return self.step_wait()

    def step_async(self, actions: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Start stepping with ``actions (N, 4)`` (clipped to [-1, 1]); envs where ``mask`` is
        False are not stepped. Returns at once in async mode: overlap work, then :meth:`step_wait`."""
        if self._needs_reset:
            raise EnvError("call reset() before step() (and after set_state())")
        self._check_idle()
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs, self.act_dim):
            raise EnvError(f"actions must have shape {(self.num_envs, self.act_dim)}, got {actions.shape}")
        if not np.isfinite(actions).all():
            raise EnvError("actions contain NaN or inf")
        np.clip(actions, -1.0, 1.0, out=self._buf["actions"])
        if mask is None:
            self._buf["mask"][:] = True
        else:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,):
                raise EnvError(f"mask must have shape ({self.num_envs},), got {mask.shape}")
            self._buf["mask"][:] = mask
        self._pool.send_step()
        self._stepping = True

    def step_wait(self) -> StepResult:
        """Wait for the step started by :meth:`step_async` and return its result (fresh arrays)."""
        if not self._stepping:
            raise EnvError("step_wait() without a pending step_async()")
        self._stepping = False
        self._pool.wait()
        b = self._buf
        return StepResult(
            obs=b["obs"].copy(),
            task_id=self.task_id,
            reward=b["reward"].copy(),
            terminated=b["terminated"].copy(),
            truncated=b["truncated"].copy(),
            success=b["success"].copy(),
            final_obs=b["final_obs"].copy(),
        )

    def set_autoreset(self, enabled: bool) -> None:
        """Same-step autoreset (default on). Off: a done env keeps stepping its old episode
        (no error past the horizon, ``truncated`` stays True) unless masked out or reset."""
        self._call("set_autoreset", bool(enabled))

    def set_terminate_on_success(self, enabled: bool) -> None:
        """End episodes with ``terminated=True`` at the first successful step (default off)."""
        self._call("set_terminate_on_success", bool(enabled))

    def get_state(self) -> dict[str, Any]:
        """Picklable resume state: every env's goal RNG and episode in progress (goal, elapsed
        steps, MuJoCo state and env attributes, see :func:`raw_env_state`) and the current
        observations, so that :meth:`set_state` continues the episodes."""
        self._check_idle()
        blocks = self._pool.call("get_state", [()] * len(self._pool.ranges))
        envs = [s for block in blocks for s in block]
        return {"task_names": list(self.task_names), "num_envs": self.num_envs,
                "goal_rng": [s["goal_rng"] for s in envs], "envs": envs,
                "resumes_episodes": True,  # set_state continues them: no reset needed
                "obs": self._buf["obs"].copy(), "needs_reset": self._needs_reset}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state`; the next :meth:`step` continues the saved episodes. A
        state with goal RNGs alone (older checkpoints) needs a :meth:`reset` next."""
        self._check_idle()
        if state.get("task_names") != self.task_names or state.get("num_envs") != self.num_envs:
            raise EnvError(
                f"env state is for {state.get('num_envs')} envs of {state.get('task_names')}, "
                f"not {self.num_envs} envs of {self.task_names}"
            )
        envs = state.get("envs", state["goal_rng"])
        self._pool.call("set_state", [(envs[lo:hi],) for lo, hi in self._pool.ranges])
        if "envs" in state:
            self._buf["obs"][:] = state["obs"]
            self._needs_reset = bool(state["needs_reset"])
        else:
            self._needs_reset = True

    def close(self) -> None:
        """Stop the workers and free the shared memory. Idempotent."""
        self._stepping = False
        self._pool.close()

    def __enter__(self) -> MetaWorldVectorEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_idle(self) -> None:
        if self._pool.closed:
            raise EnvError("the environment is closed")
        if self._stepping:
            raise EnvError("a step_async() is pending; call step_wait() first")

    def _call(self, method: str, *args: Any) -> None:
        self._check_idle()
        self._pool.call(method, [args] * len(self._pool.ranges))
