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
from mtrl.training.rundir import METRICS_FILE


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
                         num_workers: int | None = None, mode: str = "async",
                         backend: str = "metaworld") -> float:
    """Env steps per second of mtrl's vector env with random actions (``backend``: Meta-World
    in worker processes, or EnvPool's native envs)."""
    from mtrl.envs import make_vector_env

    env = (make_vector_env(tasks, envs_per_task, seed=0, backend=backend)
           if backend == "envpool" else
           make_vector_env(tasks, envs_per_task, seed=0, num_workers=num_workers, mode=mode))
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


def evaluation_seconds(tasks: str, episodes: int, envs_per_task: int = 10,
                       max_episode_steps: int | None = None) -> float:
    """Wall-clock of one official evaluation (``episodes`` per task, deterministic actions of
    a fresh multi-head agent, which never succeeds early: every episode runs to its time
    limit, the protocol's worst case) on Meta-World's envs in worker processes. The same for
    both backends: evaluation always runs Meta-World's envs on the benchmark's goals."""
    from mtrl.agents import SAC
    from mtrl.envs import make_vector_env
    from mtrl.training.evaluation import EVAL_SEED_OFFSET, evaluate

    env = make_vector_env(tasks, envs_per_task, seed=EVAL_SEED_OFFSET, goal_seed=0,
                          max_episode_steps=max_episode_steps)
    try:
        agent = SAC(env.obs_dim, env.act_dim, env.num_tasks,
                    {"type": "multihead", "hidden_sizes": [400, 400, 400], "activation": "relu"})
        start = time.perf_counter()
        evaluate(lambda obs, task: agent.act(obs, task, deterministic=True), env, episodes)
        return time.perf_counter() - start
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
    goals = make_goal_tasks(names, 0)
    models = []
    for name, task_goals in zip(names, goals):
        env = metaworld.env_dict.ALL_V3_ENVIRONMENTS[name]()
        env.set_task(task_goals[0])
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
        if agent.device.type == "cuda":  # time the device's work, not the launches
            torch.cuda.synchronize()

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    seconds = _timed(step, repeats)
    return {"seconds": seconds, "flops": float(counter.get_total_flops())}


def _sb3_sac(num_tasks: int, hidden_sizes: tuple[int, ...], device: str, obs_dim: int,
             act_dim: int) -> Any:
    """stable-baselines3 SAC with the given widths on observation + one-hot task input, its
    replay filled with 3,000 random rows."""
    import gymnasium as gym

    from mtrl.errors import require

    SB3SAC = require("stable_baselines3", "sb3", "mtrl bench (the SB3 update peer)").SAC

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
    return model


def sb3_update_seconds(num_tasks: int, batch_per_task: int = 128,
                       hidden_sizes: tuple[int, ...] = (400, 400, 400), repeats: int = 10,
                       device: str = "cpu", obs_dim: int = 39, act_dim: int = 4) -> float:
    """Seconds per stable-baselines3 SAC gradient step with the same network sizes and batch
    (observation + one-hot task input, batch ``batch_per_task * num_tasks``)."""
    model = _sb3_sac(num_tasks, hidden_sizes, device, obs_dim, act_dim)
    batch = batch_per_task * num_tasks
    model.train(gradient_steps=2, batch_size=batch)
    start = time.perf_counter()
    model.train(gradient_steps=repeats, batch_size=batch)
    return (time.perf_counter() - start) / repeats


def single_task_update_seconds(repeats: int = 25, rounds: int = 40,
                               hidden_sizes: tuple[int, ...] = (256, 256),
                               batch: int = 128, device: str = "cpu", obs_dim: int = 39,
                               act_dim: int = 4, threads: int = 1) -> dict[str, float]:
    """Seconds per update (sampling included) of mtrl's one-task SAC (one-hot MLP, twin
    critics) and of stable-baselines3's SAC at the learning benchmark's single-task sizes:
    CPU time (``time.process_time``) in ``rounds`` short alternating rounds of ``repeats``
    updates each, the median round of each library (the machine's speed drifts within
    seconds; short interleaved rounds see the same drift), with ``threads`` torch threads
    (the benchmark's one; restored afterwards). Keys ``mtrl_seconds``, ``sb3_seconds``."""
    from mtrl.agents import SAC

    spec = {"type": "mlp", "hidden_sizes": list(hidden_sizes), "activation": "relu"}
    agent = SAC(obs_dim, act_dim, 1, spec, device=device)
    replay = _filled_replay(1, obs_dim, act_dim, agent.device)
    model = _sb3_sac(1, hidden_sizes, device, obs_dim, act_dim)

    def sync() -> None:
        if agent.device.type == "cuda":
            torch.cuda.synchronize()

    def mtrl_round() -> None:
        for _ in range(repeats):
            agent.update(replay.sample(batch))
        sync()

    def sb3_round() -> None:  # one train() call per update, as SB3's loop calls it here
        for _ in range(repeats):  # (train_freq=1, gradient_steps=1)
            model.train(gradient_steps=1, batch_size=batch)
        sync()

    times: dict[str, list[float]] = {"mtrl_seconds": [], "sb3_seconds": []}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for warm_up in (mtrl_round, sb3_round):
            warm_up()
        for _ in range(rounds):
            for name, run in (("mtrl_seconds", mtrl_round), ("sb3_seconds", sb3_round)):
                start = time.process_time()
                run()
                times[name].append((time.process_time() - start) / repeats)
    finally:
        torch.set_num_threads(before)
    return {name: float(np.median(values)) for name, values in times.items()}


def compiled_vs_eager_update(num_tasks: int, batch_per_task: int = 128,
                             hidden_sizes: tuple[int, ...] = (400, 400, 400),
                             network: str = "multihead", repeats: int = 10, rounds: int = 3,
                             device: str = "cpu", obs_dim: int = 39, act_dim: int = 4,
                             **agent_options: Any) -> dict[str, float]:
    """Seconds per SAC update (sampling included) of an eager and a compiled
    (``agent.compile=true``) agent, side by side: ``rounds`` alternating rounds of ``repeats``
    updates each, on the same replay. The compiled agent's first two updates compile its
    pieces (the optimizers' steps compile at their second step); they are timed apart as
    ``compile_seconds`` and excluded from ``compiled_seconds``."""
    from mtrl.agents import SAC

    spec = {"type": network, "hidden_sizes": list(hidden_sizes), "activation": "relu"}
    agents = {mode: SAC(obs_dim, act_dim, num_tasks, spec, device=device,
                        compile=mode == "compiled", **agent_options)
              for mode in ("eager", "compiled")}
    replay = _filled_replay(num_tasks, obs_dim, act_dim, agents["eager"].device)

    def steps(mode: str) -> Callable[[], None]:
        def step() -> None:
            agents[mode].update(replay.sample(batch_per_task))
            if agents[mode].device.type == "cuda":
                torch.cuda.synchronize()
        return step

    start = time.perf_counter()
    for _ in range(2):
        steps("compiled")()
    compile_seconds = time.perf_counter() - start
    total = {"eager": 0.0, "compiled": 0.0}
    for round_ in range(rounds):
        for mode in total:
            total[mode] += _timed(steps(mode), repeats, warmup=2 if round_ == 0 else 0)
    return {"eager_seconds": total["eager"] / rounds,
            "compiled_seconds": total["compiled"] / rounds, "compile_seconds": compile_seconds}


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


# ------------------------------------------------------------- whole training runs
def _tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (Linux ``/proc``)."""
    from pathlib import Path

    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(status.split("VmRSS:")[1].split()[0]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


def training_run(preset: str, learning_steps: int, overrides: tuple[str, ...] = (),
                 device: str = "cpu") -> dict[str, float]:
    """Run ``mtrl train`` in a subprocess: ``learning_steps`` steps per task of random-action
    warm-up, then as many of learning. Returns the env steps/s of the learning phase
    (collection and updates together, one log interval) and the peak resident memory of the
    whole process tree (training and the preset's evaluation envs included)."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        argv = [sys.executable, "-m", "mtrl", "train", preset, "--run-dir", str(run_dir),
                "--device", device, f"train.steps_per_task={2 * learning_steps}",
                f"train.warmup_steps_per_task={learning_steps}",
                f"log.every={learning_steps}",
                "train.eval_episodes=1", "env.max_episode_steps=100", "log.progress=false", "log.tensorboard=false",
                *overrides]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss_bytes(proc.pid))
            time.sleep(0.2)
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark run failed: {proc.stderr.read().strip()[-500:]}")
        records = [json.loads(line) for line in (run_dir / METRICS_FILE).open()]
        rates = [r["time/env_steps_per_s"] for r in records if "time/env_steps_per_s" in r]
    return {"env_steps_per_s": rates[-1], "peak_rss_gb": peak / 2**30}


def envpool_figures(out: dict[str, Any], steps: int, cores: int) -> dict[str, Any]:
    """EnvPool's collection rate against mtrl's Python collector (``out``'s MT10 / MT50
    figures) and against the Python bound (``cores`` x the in-process rate of Meta-World's
    Python envs, one env per MT10 task stepped in turn); empty without EnvPool."""
    import importlib.util

    if importlib.util.find_spec("envpool") is None:
        return {"envpool": "not installed (pip install mtrl[envpool])"}
    from mtrl.envs.envpool_env import REFUSED_TASKS
    from mtrl.envs.tasks import resolve_tasks

    figures: dict[str, Any] = {}
    for bench_name, tasks in (("mt10", "MT10"), ("mt50", "MT50")):
        names = ",".join(t for t in resolve_tasks(tasks) if t not in REFUSED_TASKS)
        rate = mtrl_env_steps_per_s(names, steps, backend="envpool")
        figures[f"{bench_name}_envpool_steps_per_s"] = rate
        figures[f"{bench_name}_envpool_collector_vs_mtrl_collector"] = (
            rate / out[f"{bench_name}_collector_steps_per_s"])
    python_bound = mtrl_env_steps_per_s("MT10", steps, mode="sync") * cores
    figures["mt10_python_bound_steps_per_s"] = python_bound
    figures["envpool_collector_vs_python_bound"] = figures["mt10_envpool_steps_per_s"] / python_bound
    return figures


def run_suite(quick: bool = False, device: str = "cpu") -> dict[str, Any]:
    """Everything ``mtrl bench`` reports: raw figures and ratios (> 1: mtrl is faster).

    ``quick`` measures fewer steps and updates and compares with gymnasium on MT10 only (its
    MT50 vector envs take minutes to build on two cores)."""
    import os

    cores = os.cpu_count() or 1
    steps = 50 if quick else 300
    repeats = 3 if quick else 10
    out: dict[str, Any] = {"device": device, "cores": cores, "quick": quick}
    for bench_name, tasks in (("mt10", "MT10"), ("mt50", "MT50")):
        out[f"{bench_name}_collector_steps_per_s"] = mtrl_env_steps_per_s(tasks, steps)
        out[f"{bench_name}_physics_bound_steps_per_s"] = (
            physics_steps_per_s(tasks, steps) * cores)
    out["mt10_gym_async_steps_per_s"] = gym_env_steps_per_s("MT10", steps, "async")
    out["mt10_gym_sync_steps_per_s"] = gym_env_steps_per_s("MT10", steps, "sync")
    out["collector_vs_gym_async"] = (out["mt10_collector_steps_per_s"]
                                     / out["mt10_gym_async_steps_per_s"])
    out["collector_vs_gym_sync"] = (out["mt10_collector_steps_per_s"]
                                    / out["mt10_gym_sync_steps_per_s"])
    out["collector_vs_physics_bound"] = (out["mt10_collector_steps_per_s"]
                                         / out["mt10_physics_bound_steps_per_s"])
    out.update(envpool_figures(out, steps, cores))
    if not quick:  # gymnasium at MT50: one process per env and ~35 s of goal generation each
        for strategy in ("async", "sync"):
            out[f"mt50_gym_{strategy}_steps_per_s"] = gym_env_steps_per_s("MT50", steps,
                                                                          strategy)
            out[f"mt50_collector_vs_gym_{strategy}"] = (
                out["mt50_collector_steps_per_s"] / out[f"mt50_gym_{strategy}_steps_per_s"])
    for bench_name, tasks in (("mt10", 10), ("mt50", 50)):
        update = mtrl_update_seconds(tasks, repeats=repeats, device=device)
        out[f"{bench_name}_update_ms"] = 1e3 * update["seconds"]
        out[f"{bench_name}_update_gflop"] = update["flops"] / 1e9
        out[f"{bench_name}_sb3_update_ms"] = 1e3 * sb3_update_seconds(
            tasks, repeats=repeats, device=device)
    out["update_vs_sb3"] = out["mt10_sb3_update_ms"] / out["mt10_update_ms"]
    out["mt50_update_vs_sb3"] = out["mt50_sb3_update_ms"] / out["mt50_update_ms"]
    single = single_task_update_seconds(rounds=10 if quick else 40, device=device)
    out["single_task_update_ms"] = 1e3 * single["mtrl_seconds"]
    out["single_task_sb3_update_ms"] = 1e3 * single["sb3_seconds"]
    out["single_task_update_vs_sb3"] = single["sb3_seconds"] / single["mtrl_seconds"]
    compiled = compiled_vs_eager_update(10, repeats=repeats, device=device)
    out["mt10_update_eager_ms"] = 1e3 * compiled["eager_seconds"]
    out["mt10_update_compiled_ms"] = 1e3 * compiled["compiled_seconds"]
    out["mt10_update_compile_s"] = compiled["compile_seconds"]  # one-off, not in the ratio
    out["update_compiled_vs_eager"] = compiled["eager_seconds"] / compiled["compiled_seconds"]
    out["matmul_gflops"] = matmul_flops_per_s(1280, 400, device=device) / 1e9
    out["update_vs_matmul_rate"] = (out["mt10_update_gflop"] / out["mt10_update_ms"] * 1e3
                                    / out["matmul_gflops"])
    run_steps = 40 if quick else 200
    mt10 = training_run("mt10_mtmhsac", run_steps, device=device)
    out["mt10_train_env_steps_per_s"] = mt10["env_steps_per_s"]
    out["mt10_peak_rss_gb"] = mt10["peak_rss_gb"]
    update_only = 10 / (out["mt10_update_ms"] / 1e3)  # env steps/s if collection were free
    out["mt10_update_only_env_steps_per_s"] = update_only
    out["end_to_end_vs_update_only"] = mt10["env_steps_per_s"] / update_only
    mt50 = training_run("mt50_mtmhsac", run_steps // 4, device=device)
    out["mt50_train_env_steps_per_s"] = mt50["env_steps_per_s"]
    out["mt50_peak_rss_gb"] = mt50["peak_rss_gb"]
    if "mt10_envpool_steps_per_s" in out:  # the same training runs on EnvPool's envs
        from mtrl.envs.envpool_env import REFUSED_TASKS
        from mtrl.envs.tasks import resolve_tasks

        for bench_name, preset, learning in (("mt10", "mt10_mtmhsac", run_steps),
                                             ("mt50", "mt50_mtmhsac", run_steps // 4)):
            tasks = ",".join(t for t in resolve_tasks(bench_name.upper())
                             if t not in REFUSED_TASKS)  # MT50: 43 tasks
            pool = training_run(preset, learning, ("env.backend=envpool", f"env.tasks={tasks}"),
                                device=device)
            out[f"{bench_name}_envpool_train_env_steps_per_s"] = pool["env_steps_per_s"]
            out[f"{bench_name}_envpool_peak_rss_gb"] = pool["peak_rss_gb"]
        out["mt10_envpool_train_vs_metaworld_train"] = (
            out["mt10_envpool_train_env_steps_per_s"] / out["mt10_train_env_steps_per_s"])
    # one MT10 evaluation, both backends (their evaluation envs are Meta-World's)
    out["mt10_eval_episodes"] = 2 if quick else 50
    out["mt10_eval_seconds"] = evaluation_seconds("MT10", out["mt10_eval_episodes"],
                                                  max_episode_steps=100 if quick else None)
    return out


def format_suite(result: dict[str, Any]) -> str:
    """The benchmark figures as a console table."""
    rows = [(k, f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in result.items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
