"""Throughput measurements, each against a peer measured in the same run.

Used by ``benchmarks/throughput.py`` and ``mtrl bench``. Every function returns plain numbers
(rates per second, seconds, FLOP/s) so that callers can print tables and write JSON; nothing
here asserts an absolute time.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from mtrl.data import MultiTaskReplay


def _timed(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    """Mean seconds per call of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


# ------------------------------------------------------------------ env stepping
def mtrl_env_steps_per_s(tasks: str, steps: int, envs_per_task: int = 1,
                         num_workers: int | None = None, mode: str = "async") -> float:
    """Env steps per second of mtrl's vector env with random actions."""
    from mtrl.envs import make_vector_env

    env = make_vector_env(tasks, envs_per_task, seed=0, num_workers=num_workers, mode=mode)
    try:
        rng = np.random.default_rng(0)
        env.reset()
        actions = rng.uniform(-1, 1, (steps + 5, env.num_envs, env.act_dim)).astype(np.float32)
        for k in range(5):
            env.step(actions[k])
        start = time.perf_counter()
        for k in range(steps):
            env.step(actions[5 + k])
        return steps * env.num_envs / (time.perf_counter() - start)
    finally:
        env.close()


def gym_env_steps_per_s(benchmark: str, steps: int, strategy: str) -> float:
    """Env steps per second of ``gymnasium.make_vec("Meta-World/<benchmark>")`` (one process
    per env for ``async``, in-process for ``sync``) with random actions."""
    import gymnasium as gym
    import metaworld  # noqa: F401  (registers the Meta-World envs)

    envs = gym.make_vec(f"Meta-World/{benchmark}", vector_strategy=strategy, seed=0)
    try:
        envs.reset(seed=0)
        n = envs.num_envs
        rng = np.random.default_rng(0)
        act_dim = envs.single_action_space.shape[0]
        actions = rng.uniform(-1, 1, (steps + 5, n, act_dim)).astype(np.float32)
        for k in range(5):
            envs.step(actions[k])
        start = time.perf_counter()
        for k in range(steps):
            envs.step(actions[5 + k])
        return steps * n / (time.perf_counter() - start)
    finally:
        envs.close()


def physics_steps_per_s(tasks: str, steps: int) -> float:
    """Raw MuJoCo bound on one core: env steps per second when an env step is only
    ``frame_skip`` calls of ``mj_step`` on the same task models (no Python env logic)."""
    import mujoco

    from mtrl.envs.metaworld_env import make_goal_tasks
    from mtrl.envs.tasks import resolve_tasks
    import metaworld

    names = resolve_tasks(tasks)
    models = []
    for name in names:
        env = metaworld.env_dict.ALL_V3_ENVIRONMENTS[name]()
        env.set_task(make_goal_tasks([name], 0)[0][0])
        env.reset()
        models.append((env.model, env.data, env.frame_skip))
    start = time.perf_counter()
    for _ in range(steps):
        for model, data, frame_skip in models:
            mujoco.mj_step(model, data, nstep=frame_skip)
    return steps * len(models) / (time.perf_counter() - start)


# ------------------------------------------------------------------------ updates
def _filled_replay(num_tasks: int, obs_dim: int, act_dim: int, device: torch.device,
                   rows: int = 2000) -> MultiTaskReplay:
    rng = np.random.default_rng(0)
    replay = MultiTaskReplay(num_tasks, rows, obs_dim, act_dim, device)
    n = rows * num_tasks
    replay.add(rng.normal(size=(n, obs_dim)), rng.uniform(-1, 1, (n, act_dim)),
               rng.normal(size=n), rng.normal(size=(n, obs_dim)), np.zeros(n),
               np.arange(n) % num_tasks)
    return replay


def mtrl_update_seconds(num_tasks: int, batch_per_task: int = 128,
                        hidden_sizes: tuple[int, ...] = (400, 400, 400),
                        network: str = "multihead", repeats: int = 10, device: str = "cpu",
                        obs_dim: int = 39, act_dim: int = 4, **agent_options: Any) -> dict[str, float]:
    """Seconds per mtrl SAC update (sampling included) and FLOPs per update."""
    from torch.utils.flop_counter import FlopCounterMode

    from mtrl.agents import SAC

    spec = {"type": network, "hidden_sizes": list(hidden_sizes), "activation": "relu"}
    agent = SAC(obs_dim, act_dim, num_tasks, spec, device=device, **agent_options)
    replay = _filled_replay(num_tasks, obs_dim, act_dim, agent.device)

    def step() -> None:
        agent.update(replay.sample(batch_per_task))

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    seconds = _timed(step, repeats)
    if agent.device.type == "cuda":
        torch.cuda.synchronize()
    return {"seconds": seconds, "flops": float(counter.get_total_flops())}


def sb3_update_seconds(num_tasks: int, batch_per_task: int = 128,
                       hidden_sizes: tuple[int, ...] = (400, 400, 400), repeats: int = 10,
                       device: str = "cpu", obs_dim: int = 39, act_dim: int = 4) -> float:
    """Seconds per stable-baselines3 SAC gradient step with the same network sizes and batch
    (observation + one-hot task input, batch ``batch_per_task * num_tasks``)."""
    import gymnasium as gym
    from stable_baselines3 import SAC as SB3SAC

    class _Box(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim + num_tasks,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)

    model = SB3SAC("MlpPolicy", _Box(), policy_kwargs={"net_arch": list(hidden_sizes)},
                   buffer_size=4000, device=device, seed=0, verbose=0)
    from stable_baselines3.common.logger import configure

    model.set_logger(configure(None, []))
    rng = np.random.default_rng(0)
    for _ in range(3000):
        obs = rng.normal(size=(1, obs_dim + num_tasks)).astype(np.float32)
        model.replay_buffer.add(obs, obs, rng.uniform(-1, 1, (1, act_dim)), rng.normal(size=1),
                                np.zeros(1), [{}])
    batch = batch_per_task * num_tasks
    model.train(gradient_steps=2, batch_size=batch)
    start = time.perf_counter()
    model.train(gradient_steps=repeats, batch_size=batch)
    return (time.perf_counter() - start) / repeats


def matmul_flops_per_s(batch: int, width: int, repeats: int = 20, device: str = "cpu") -> float:
    """FLOP/s of a plain ``(batch, width) @ (width, width)`` matmul: the machine's rate at
    the update's shapes."""
    a = torch.randn(batch, width, device=device)
    b = torch.randn(width, width, device=device)

    def mm() -> None:
        a @ b
        if a.device.type == "cuda":
            torch.cuda.synchronize()

    return 2.0 * batch * width * width / _timed(mm, repeats, warmup=5)
