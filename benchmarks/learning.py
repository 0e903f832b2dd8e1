"""Learning benchmark: mtrl side by side with stable-baselines3, same sizes, budget and seeds.

    python benchmarks/learning.py [--quick] [--json FILE] [--out DIR] [--jobs N] [--seeds N]
                                  [--suites single,multitask,peer,brc,mtsac,mgda,dwa,dtp]
                                  [--peer-out DIR] [--peer-tasks T1,T2,...]
                                  [--mtrl-set KEY=VALUE ...]

Several suites, every run evaluated at its end (the **final** evaluation, not a maximum over
time) with the official Meta-World protocol (deterministic actions, 50 episodes per task on
the benchmark's 50 goals, success = success at any step):

* ``single``: mtrl SAC on ``MT1:<task>`` vs stable-baselines3 SAC (``mtrl expert``, SB3's own
  SAC on the same env, mtrl's one-task vector env: a goal out of the task's 50 per episode)
  for each task of ``SINGLE_TASKS``.
* ``multitask``: mtrl's multi-head SAC on ``MULTI_TASKS`` at once vs one SB3 expert per task,
  at the same steps and updates per task (each update of the multi-task agent uses
  ``batch_per_task`` rows of every task, as each expert's update uses ``batch_per_task`` rows).
  The experts of the tasks that are also single-task tasks are those runs (same settings).
* ``brc``, ``mtsac``, ``mgda``, ``dwa``, ``dtp`` (``VARIANTS``): one method changed, on
  ``MULTI_TASKS`` beside the multi-task suite's multi-head SAC runs of the same seeds and
  budget: BRC at a CPU width (:func:`_brc_config`), MT-SAC (the peer suite's algorithm), or
  multi-head SAC with that gradient combiner (its mt10 preset's options).
* ``peer``: the same algorithm in both libraries on ``PEER_TASKS`` (or ``--peer-tasks``) at
  once: MT-SAC, one network on the observation and the one-hot task id, one temperature for
  all tasks. mtrl: ``VARIANTS["mtsac"]``; SB3: its SAC on the tasks' envs
  stepped together (a ``VecEnv`` with one-hot observations, :func:`sb3_multitask_vec_env`),
  one update per vector step on ``batch_per_task`` x tasks rows drawn uniformly from its one
  buffer (mtrl draws ``batch_per_task`` rows of each task), ``steps`` x tasks transitions.

Settings shared by both libraries (``SETTINGS``): 2 x 256 ReLU networks (SB3's default size;
3 x 400 costs 3x the compute on the 2-core machine these figures come from), batch 128
(per task), Adam lr 3e-4, gamma 0.99, tau 0.005, 2,000 warm-up steps of uniform random
actions, one update per env step, automatic temperature from 1.0 toward -|A|, 30,000 steps
(per task). Each run is one process with one torch thread; ``--jobs`` runs (default 2, one per
core) go side by side, ordered so that the mtrl and SB3 runs of a task and seed run at the
same time on the same machine.

JSON (``--json``): per task and overall, final success per seed, mean and a 95% bootstrap CI
over seeds, wall-clock seconds per run, and the ratios

* ``single_task_success_ratio_vs_sb3``: mtrl's mean single-task success / SB3's;
* ``multitask_success_ratio_vs_experts``: multi-head SAC's mean success / the experts' mean;
* ``wallclock_ratio_vs_sb3``: mtrl's mean wall-clock per single-task run / SB3's (< 1: mtrl
  is faster);
* ``multitask_wallclock_ratio_vs_experts``: one multi-task run / the experts' summed time;
* ``multitask_peer_success_ratio_vs_sb3``, ``multitask_peer_wallclock_ratio_vs_sb3``: the peer
  suite's mtrl / SB3 mean success and mean wall-clock per run;
* ``<variant>_success_ratio_vs_multihead``, ``<variant>_wallclock_ratio_vs_multihead``
  (``brc_...``, ``mgda_...``, ...): the variant / multi-head SAC, mean success and wall-clock
  per run (the same budget, env steps and evaluation: the difference is the update);
  ``<variant>_success_ratio_vs_experts``: the variant / the multi-task suite's SB3 experts of
  the same seeds.

Finished runs are kept in ``--out`` (one directory each) and reused when the benchmark is run
again, so an interrupted benchmark continues where it stopped; ``--report-only`` writes the
JSON of the seeds whose runs have all finished (``seeds_done``), training nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtrl.training.rundir import CHECKPOINT_FILE

# drawer-close-v3 is the "harder" single task: its reward is exactly 0 while the gripper action
# is negative, the trap a near-deterministic initial policy falls into (issue 14)
SINGLE_TASKS = ["reach-v3", "drawer-close-v3"]
MULTI_TASKS = ["reach-v3", "drawer-close-v3", "window-open-v3", "button-press-topdown-v3"]
# the peer suite (MT-SAC in both libraries): two tasks, so that 3 seeds of both fit in an hour
# of the 2-core machine; drawer-close is where multi-task SAC collapses (see the README)
PEER_TASKS = ["reach-v3", "drawer-close-v3"]
# rows against the multi-task suite's multi-head SAC: the same tasks, budget and seeds, one
# method changed (the combiners: the options of their mt10_* presets)
VARIANTS: dict[str, list[str]] = {
    "brc": [],  # BRC's own config: _brc_config
    # MT-SAC (the peer suite's algorithm) on the multi-task suite's tasks
    "mtsac": ["agent.network.type=mlp", "agent.shared_temperature=true"],
    "mgda": ["agent.actor_combiner=mgda", "agent.critic_combiner=mgda",
             "agent.combiners.mgda.gradients=representation",
             "agent.combiners.mgda.normalization=none", "agent.combiners.mgda.iterations=50"],
    "dwa": ["agent.critic_combiner=dwa", "agent.combiners.dwa.window=5000",
            "agent.combiners.dwa.temperature=2.0"],
    "dtp": ["agent.actor_combiner=dtp", "agent.critic_combiner=dtp",
            "agent.combiners.dtp.gamma=2.0", "agent.combiners.dtp.smoothing=0.9",
            "agent.combiners.dtp.eps=0.01"],
}
SETTINGS: dict[str, Any] = {
    "hidden_sizes": [256, 256], "batch_per_task": 128, "lr": 3e-4, "gamma": 0.99,
    "tau": 0.005, "warmup_steps": 2000, "steps": 30_000, "eval_episodes": 50,
    "init_temperature": 1.0, "buffer": 1_000_000, "seeds": 3,
    "mtrl_overrides": [],  # --mtrl-set: extra mtrl config overrides (ablations)
}
QUICK: dict[str, Any] = {  # a smoke run for the tests: tiny networks, a few hundred steps
    "hidden_sizes": [32, 32], "batch_per_task": 32, "warmup_steps": 100, "steps": 300,
    "eval_episodes": 2, "buffer": 10_000, "seeds": 1,
}
RESULT_FILE = "bench_result.json"


@dataclass(frozen=True)
class Run:
    """One training run of the benchmark."""

    library: str  # mtrl | sb3
    tasks: tuple[str, ...]
    seed: int
    method: str = ""  # "" (single task, or mtrl's multi-head SAC) | "mtsac" (peer) | a VARIANT

    @property
    def name(self) -> str:
        label = "mt" + str(len(self.tasks)) if len(self.tasks) > 1 else self.tasks[0]
        library = f"{self.library}-{self.method}" if self.method else self.library
        return f"{library}_{label}_s{self.seed}"


def run_one(run: Run, settings: dict[str, Any], out: str) -> dict[str, Any]:
    """Train and evaluate one run in its own directory (reused if it already finished).

    An interrupted mtrl run resumes from its last checkpoint (exact in ``env.mode=sync``, so
    the result is the uninterrupted run's); its wall-clock is the sum of its segments up to the
    checkpoint each resumed from. An interrupted SB3 run starts again from scratch."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    run_dir = Path(out) / run.name
    result_path = run_dir / RESULT_FILE
    if result_path.is_file():
        return json.loads(result_path.read_text())
    resume = run.library == "mtrl" and (run_dir / CHECKPOINT_FILE).is_file()
    if run_dir.exists() and not resume:  # nothing to resume from: start again from scratch
        import shutil

        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    prior_seconds, segments = _resume_clock(run_dir, resume)
    start = time.perf_counter()
    with open(run_dir / "console.log", "a") as console, contextlib.redirect_stdout(console):
        per_task = (_train_mtrl(run, settings, run_dir, resume) if run.library == "mtrl"
                    else _train_sb3(run, settings, run_dir))
    result = {"library": run.library, "tasks": list(run.tasks), "seed": run.seed,
              "per_task": per_task, "seconds": prior_seconds + time.perf_counter() - start,
              "segments": segments}
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _resume_clock(run_dir: Path, resume: bool) -> tuple[float, int]:
    """Seconds the run's earlier segments spent up to the checkpoint this segment resumes from,
    and this segment's number (1: a fresh run); the clock's file is updated for the next."""
    clock_path = run_dir / "segments.json"
    clock = json.loads(clock_path.read_text()) if resume and clock_path.is_file() else {}
    prior, segments = clock.get("prior_seconds", 0.0), clock.get("segments", 0) + 1
    if resume and "started" in clock:  # the work after the checkpoint is redone: not counted
        prior += max((run_dir / CHECKPOINT_FILE).stat().st_mtime - clock["started"], 0.0)
    clock_path.write_text(json.dumps({"prior_seconds": prior, "segments": segments,
                                      "started": time.time()}) + "\n")
    return prior, segments


def _common(settings: dict[str, Any], seed: int) -> list[str]:
    steps = settings["steps"]
    return [
        f"replay.batch_per_task={settings['batch_per_task']}",
        f"train.steps_per_task={steps}", f"train.warmup_steps_per_task={settings['warmup_steps']}",
        "train.updates_per_step=1", f"train.eval_every={steps}", f"train.checkpoint_every={max(steps // 10, 1)}",
        f"train.eval_episodes={settings['eval_episodes']}", f"train.seed={seed}",
        "train.device=cpu", "env.mode=sync", "env.eval_envs_per_task=10",
        "log.tensorboard=false", "log.progress=false", f"log.every={max(steps // 10, 1)}",
    ]


def _train_mtrl(run: Run, settings: dict[str, Any], run_dir: Path,
                resume: bool = False) -> dict[str, float]:
    from mtrl.config import load_config
    from mtrl.training.loop import train

    if run.method == "brc":
        return dict(train(_brc_config(run, settings), run_dir, resume).per_task)
    tasks = f"MT1:{run.tasks[0]}" if len(run.tasks) == 1 else ",".join(run.tasks)
    network = "mlp" if len(run.tasks) == 1 else "multihead"  # a variant may change it
    lr = settings["lr"]
    capacity = settings["buffer"] // len(run.tasks)
    config = load_config(None, [
        f"env.tasks={tasks}", "env.envs_per_task=1", f"agent.network.type={network}",
        f"agent.network.hidden_sizes={settings['hidden_sizes']}",
        f"agent.actor_lr={lr}", f"agent.critic_lr={lr}", f"agent.alpha_lr={lr}",
        f"agent.gamma={settings['gamma']}", f"agent.tau={settings['tau']}",
        f"agent.init_temperature={settings['init_temperature']}",
        f"replay.capacity_per_task={min(capacity, settings['steps'])}",
        *_common(settings, run.seed), *VARIANTS.get(run.method, []),
        *settings["mtrl_overrides"],
    ])
    return dict(train(config, run_dir, resume).per_task)


def _brc_config(run: Run, settings: dict[str, Any]) -> Any:
    """BRC at a CPU width (the ``quick_brc`` preset's agent: BroNet critics of width 192, an
    actor of width 128, categorical critic, task embeddings, reward normalisation, initial
    temperature 0.1 as in the paper) with the benchmark's budget, batch, lr, gamma and tau."""
    from mtrl.config import load_config

    lr = settings["lr"]
    return load_config("quick_brc", [
        f"env.tasks={','.join(run.tasks)}", "env.envs_per_task=1",
        f"agent.actor_lr={lr}", f"agent.critic_lr={lr}", f"agent.alpha_lr={lr}",
        f"agent.gamma={settings['gamma']}", f"agent.tau={settings['tau']}",
        f"replay.capacity_per_task={min(settings['buffer'] // len(run.tasks), settings['steps'])}",
        *_common(settings, run.seed), *settings["mtrl_overrides"],
    ])


def _train_sb3(run: Run, settings: dict[str, Any], run_dir: Path) -> dict[str, float]:
    if len(run.tasks) > 1:
        return _train_sb3_mtsac(run, settings, run_dir)
    from mtrl.config import ExpertConfig, load_config
    from mtrl.training.experts import train_expert

    (task,) = run.tasks
    config = load_config(None, [
        f"task={task}", f"sac.net_arch={settings['hidden_sizes']}",
        f"sac.learning_rate={settings['lr']}", f"sac.gamma={settings['gamma']}",
        f"sac.tau={settings['tau']}", f"sac.ent_coef=auto_{settings['init_temperature']}",
        f"replay.capacity_per_task={settings['buffer']}", *_common(settings, run.seed),
    ], schema=ExpertConfig)
    return dict(train_expert(config, run_dir).per_task)


def one_hot_observations(obs: np.ndarray, task_id: np.ndarray, num_tasks: int) -> np.ndarray:
    """``[obs, one_hot(task_id)]`` rows (the input of an SB3 policy trained on many tasks)."""
    return np.concatenate([obs, np.eye(num_tasks, dtype=np.float32)[task_id]], -1)


def sb3_multitask_vec_env(env: Any) -> Any:
    """An mtrl multi-task vector env as a stable-baselines3 ``VecEnv``: observations carry the
    one-hot task id; a finished episode's last observation is ``info["terminal_observation"]``
    and a time limit is ``info["TimeLimit.truncated"]`` (SB3 bootstraps through it)."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import VecEnv

    class OneHotVecEnv(VecEnv):
        def __init__(self) -> None:
            space = gym.spaces.Box(-np.inf, np.inf, (env.obs_dim + env.num_tasks,), np.float32)
            super().__init__(env.num_envs, space, gym.spaces.Box(-1.0, 1.0, (env.act_dim,),
                                                                np.float32))
            self.succeeded = np.zeros(env.num_envs, dtype=bool)

        def observe(self, obs: np.ndarray) -> np.ndarray:
            return one_hot_observations(obs, env.task_id, env.num_tasks)

        def reset(self) -> np.ndarray:
            self.succeeded[:] = False
            return self.observe(env.reset())

        def step_async(self, actions: np.ndarray) -> None:
            env.step_async(np.asarray(actions, dtype=np.float32))

        def step_wait(self) -> Any:
            result = env.step_wait()
            self.succeeded |= result.success
            final_obs = self.observe(result.final_obs)
            infos: list[dict[str, Any]] = [{} for _ in range(env.num_envs)]
            for i in np.flatnonzero(result.done):
                infos[i] = {"terminal_observation": final_obs[i],
                            "TimeLimit.truncated": bool(result.truncated[i]
                                                        and not result.terminated[i]),
                            "is_success": bool(self.succeeded[i])}
                self.succeeded[i] = False
            return self.observe(result.obs), result.reward, result.done, infos

        def close(self) -> None:
            env.close()

        def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
            return [getattr(self, attr_name)] * env.num_envs

        def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
            setattr(self, attr_name, value)

        def env_method(self, method_name: str, *args: Any, indices: Any = None,
                       **kwargs: Any) -> list[Any]:
            return [getattr(self, method_name)(*args, **kwargs)]

        def env_is_wrapped(self, wrapper_class: Any, indices: Any = None) -> list[bool]:
            return [False] * env.num_envs

    return OneHotVecEnv()


def _train_sb3_mtsac(run: Run, settings: dict[str, Any], run_dir: Path) -> dict[str, float]:
    """SB3's SAC as MT-SAC on ``run.tasks`` at once: one env per task stepped together, one
    update per vector step on ``batch_per_task`` rows per task (drawn uniformly from the
    shared buffer, as SB3 does), one temperature; the official evaluation on the tasks' goals."""
    import torch
    from stable_baselines3 import SAC

    from mtrl.envs.factory import make_vector_env
    from mtrl.training.evaluation import EVAL_SEED_OFFSET, evaluate

    tasks, seed = ",".join(run.tasks), run.seed
    train_env = make_vector_env(tasks, 1, seed, mode="sync")
    eval_env = make_vector_env(tasks, 10, seed + EVAL_SEED_OFFSET, mode="sync", goal_seed=seed)
    n = train_env.num_tasks
    try:
        model = SAC(
            "MlpPolicy", sb3_multitask_vec_env(train_env), learning_rate=settings["lr"],
            buffer_size=min(settings["buffer"], settings["steps"] * n),
            learning_starts=settings["warmup_steps"] * n,
            batch_size=settings["batch_per_task"] * n, tau=settings["tau"],
            gamma=settings["gamma"], train_freq=1, gradient_steps=1,
            ent_coef=f"auto_{settings['init_temperature']}",
            policy_kwargs={"net_arch": list(settings["hidden_sizes"])}, seed=seed,
            device="cpu", verbose=0)
        model.learn(settings["steps"] * n)

        def policy(obs: np.ndarray, task_id: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return model.predict(one_hot_observations(obs, task_id, n),
                                     deterministic=True)[0]

        result = evaluate(policy, eval_env, settings["eval_episodes"], settings["steps"])
        result.write(run_dir / "final_eval.json")
        return dict(result.per_task)
    finally:
        train_env.close()
        eval_env.close()


def bootstrap_ci(values: list[float], resamples: int = 10_000, seed: int = 0
                 ) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of ``values``."""
    data = np.asarray(values, dtype=np.float64)
    if len(data) < 2:
        return float(data.mean()), float(data.mean())
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), (resamples, len(data)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summary(values: list[float]) -> dict[str, Any]:
    """Per-seed values, their mean and 95% bootstrap CI."""
    low, high = bootstrap_ci(values)
    return {"per_seed": [round(v, 4) for v in values], "mean": round(float(np.mean(values)), 4),
            "ci95": [round(low, 4), round(high, 4)]}


def per_task_seeds(results: list[dict[str, Any]], task: str) -> list[float]:
    """Final success of ``task`` in each seed's run (seed order)."""
    return [r["per_task"][task] for r in sorted(results, key=lambda r: r["seed"])]


def overall_seeds(results: dict[str, list[dict[str, Any]]], tasks: list[str]) -> list[float]:
    """Per seed, the mean success over ``tasks`` (``results``: task -> runs of all seeds)."""
    table = np.array([per_task_seeds(results[t], t) for t in tasks])
    return [float(v) for v in table.mean(0)]


SUITES = ("single", "multitask", "peer", *VARIANTS)


def plan(settings: dict[str, Any], single: list[str], multi: list[str],
         peer: list[str] | None = None, suites: tuple[str, ...] = SUITES) -> list[Run]:
    """All runs: the single-task suite seed by seed, then the multi-task suite, then the peer
    suite, each seed by seed (an interrupted benchmark has whole seeds of the first suites
    first), mtrl's and SB3's runs of the same tasks and seed next to each other."""
    seeds = range(settings["seeds"])
    runs: list[Run] = []
    if "single" in suites:
        for seed in seeds:
            for task in single:
                runs += [Run("mtrl", (task,), seed), Run("sb3", (task,), seed)]
    if "multitask" in suites:
        for seed in seeds:
            runs.append(Run("mtrl", tuple(multi), seed))
            experts = [t for t in multi if "single" not in suites or t not in single]
            runs += [Run("sb3", (t,), seed) for t in experts]
    if "peer" in suites and peer:
        for seed in seeds:
            runs += [Run(lib, tuple(peer), seed, "mtsac") for lib in ("mtrl", "sb3")]
    for variant in VARIANTS:  # on the multi-task suite's tasks, beside its multi-head SAC
        if variant in suites:
            runs += [Run("mtrl", tuple(multi), seed, variant) for seed in seeds]
    return runs


def report(results: dict[Run, dict[str, Any]], settings: dict[str, Any], single: list[str],
           multi: list[str], peer: list[str] | None = None) -> dict[str, Any]:
    """The benchmark's JSON (see the module docstring); a suite appears once one seed of it
    has all its runs."""
    def complete(needed: list[Run]) -> list[int]:
        if not needed or not all(r.tasks for r in needed):  # a suite without tasks
            return []
        return [s for s in range(settings["seeds"])
                if all(dataclasses.replace(r, seed=s) in results for r in needed)]

    def runs(run: Run, seeds: list[int]) -> list[dict[str, Any]]:
        return [results[dataclasses.replace(run, seed=s)] for s in seeds]

    out: dict[str, Any] = {"settings": settings, "machine": f"{platform.machine()}, "
                           f"{os.cpu_count()} cores", "single_task": {}, "multitask": {},
                           "multitask_peer": {}, "variants": {}, "seeds_done": {}}
    libraries = ("mtrl", "sb3")
    seeds = complete([Run(lib, (t,), 0) for lib in libraries for t in single])
    out["seeds_done"]["single_task"] = len(seeds)
    if seeds:
        single_runs = {lib: {t: runs(Run(lib, (t,), 0), seeds) for t in single}
                       for lib in libraries}
        for task in single:
            out["single_task"][task] = {
                lib: {**summary(per_task_seeds(single_runs[lib][task], task)),
                      "seconds": summary([r["seconds"] for r in single_runs[lib][task]])}
                for lib in libraries}
        overall = {lib: summary(overall_seeds(single_runs[lib], single)) for lib in libraries}
        out["single_task"]["overall"] = overall
        seconds = {lib: float(np.mean([r["seconds"] for t in single
                                       for r in single_runs[lib][t]])) for lib in libraries}
        out["single_task_success_ratio_vs_sb3"] = _ratio(overall["mtrl"]["mean"],
                                                        overall["sb3"]["mean"])
        out["wallclock_ratio_vs_sb3"] = round(seconds["mtrl"] / seconds["sb3"], 4)

    multihead = Run("mtrl", tuple(multi), 0)
    expert_runs = [Run("sb3", (t,), 0) for t in multi]

    def experts_of(seeds: list[int]) -> dict[str, list[dict[str, Any]]]:
        """Each multi-task suite task's SB3 expert runs of those seeds."""
        return {r.tasks[0]: runs(r, seeds) for r in expert_runs}

    seeds = complete([multihead, *expert_runs])
    out["seeds_done"]["multitask"] = len(seeds)
    if seeds:
        mt_runs = runs(multihead, seeds)
        experts = experts_of(seeds)
        for task in multi:
            out["multitask"][task] = {
                "mtrl_multihead": summary(per_task_seeds(mt_runs, task)),
                "sb3_experts": summary(per_task_seeds(experts[task], task))}
        mt_overall = summary(overall_seeds({t: mt_runs for t in multi}, multi))
        experts_overall = summary(overall_seeds(experts, multi))
        out["multitask"]["overall"] = {"mtrl_multihead": mt_overall,
                                       "sb3_experts": experts_overall}
        out["multitask"]["seconds"] = {
            "mtrl_multihead": summary([r["seconds"] for r in mt_runs]),
            "sb3_experts_summed": summary([sum(results[Run("sb3", (t,), s)]["seconds"]
                                               for t in multi) for s in seeds])}
        out["multitask_success_ratio_vs_experts"] = _ratio(mt_overall["mean"],
                                                          experts_overall["mean"])
        out["multitask_wallclock_ratio_vs_experts"] = round(
            out["multitask"]["seconds"]["mtrl_multihead"]["mean"]
            / out["multitask"]["seconds"]["sb3_experts_summed"]["mean"], 4)

    for variant in VARIANTS:  # against the multi-head SAC runs of the same seeds
        other = Run("mtrl", tuple(multi), 0, variant)
        seeds = complete([other, multihead])
        out["seeds_done"][variant] = len(seeds)
        if not seeds:
            continue
        name, v_runs, mh_runs = f"mtrl_{variant}", runs(other, seeds), runs(multihead, seeds)
        row: dict[str, Any] = {task: {name: summary(per_task_seeds(v_runs, task)),
                                      "mtrl_multihead": summary(per_task_seeds(mh_runs, task))}
                               for task in multi}
        v_overall = summary(overall_seeds({t: v_runs for t in multi}, multi))
        mh_overall = summary(overall_seeds({t: mh_runs for t in multi}, multi))
        row["overall"] = {name: v_overall, "mtrl_multihead": mh_overall}
        row["seconds"] = {name: summary([r["seconds"] for r in v_runs]),
                          "mtrl_multihead": summary([r["seconds"] for r in mh_runs])}
        out["variants"][variant] = row
        out[f"{variant}_success_ratio_vs_multihead"] = _ratio(v_overall["mean"],
                                                             mh_overall["mean"])
        out[f"{variant}_wallclock_ratio_vs_multihead"] = round(
            row["seconds"][name]["mean"] / row["seconds"]["mtrl_multihead"]["mean"], 4)
        if set(seeds) <= set(complete(expert_runs)):  # the experts of the same seeds
            experts_mean = summary(overall_seeds(experts_of(seeds), multi))["mean"]
            out[f"{variant}_success_ratio_vs_experts"] = _ratio(v_overall["mean"], experts_mean)

    pair = {lib: Run(lib, tuple(peer or ()), 0, "mtsac") for lib in libraries}
    seeds = complete(list(pair.values())) if peer else []
    out["seeds_done"]["multitask_peer"] = len(seeds)
    if seeds:
        peer_runs = {lib: runs(pair[lib], seeds) for lib in libraries}
        for task in peer or ():
            out["multitask_peer"][task] = {
                f"{lib}_mtsac": summary(per_task_seeds(peer_runs[lib], task))
                for lib in libraries}
        peer_overall = {lib: summary(overall_seeds({t: peer_runs[lib] for t in peer or ()},
                                                   list(peer or ()))) for lib in libraries}
        out["multitask_peer"]["overall"] = {f"{lib}_mtsac": peer_overall[lib]
                                            for lib in libraries}
        out["multitask_peer"]["seconds"] = {
            f"{lib}_mtsac": summary([r["seconds"] for r in peer_runs[lib]]) for lib in libraries}
        out["multitask_peer_success_ratio_vs_sb3"] = _ratio(peer_overall["mtrl"]["mean"],
                                                           peer_overall["sb3"]["mean"])
        out["multitask_peer_wallclock_ratio_vs_sb3"] = round(
            out["multitask_peer"]["seconds"]["mtrl_mtsac"]["mean"]
            / out["multitask_peer"]["seconds"]["sb3_mtsac"]["mean"], 4)
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b > 0 else None


VARIANT_LABELS = {"brc": "BRC", "mtsac": "MT-SAC", "mgda": "MH-SAC + MGDA-UB",
                  "dwa": "MH-SAC + DWA", "dtp": "MH-SAC + DTP"}


def markdown(data: dict[str, Any]) -> str:
    """The README table of a benchmark JSON."""
    def cell(s: dict[str, Any]) -> str:
        return f"{s['mean']:.2f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"

    lines = ["| suite | task | mtrl | peer | mtrl s/run | peer s/run |", "|---|---|---|---|---|---|"]
    single = data["single_task"]
    for task, row in single.items():
        if task != "overall":
            lines.append(f"| single (vs SB3 SAC) | {task} | {cell(row['mtrl'])} | "
                         f"{cell(row['sb3'])} | {row['mtrl']['seconds']['mean']:.0f} | "
                         f"{row['sb3']['seconds']['mean']:.0f} |")
    if "overall" in single:
        o = single["overall"]
        lines.append(f"| single (vs SB3 SAC) | **mean** | {cell(o['mtrl'])} | {cell(o['sb3'])} "
                     "| | |")
    def section(label: str, rows: dict[str, Any], left: str, right: str,
                right_seconds: str = "", note: str = "") -> None:
        """Per-task rows and a mean row (with wall-clock) of a suite comparing two columns."""
        for task, row in rows.items():
            if task not in ("overall", "seconds"):
                lines.append(f"| {label} | {task} | {cell(row[left])} | {cell(row[right])} | | |")
        if "overall" in rows:
            o, s = rows["overall"], rows["seconds"]
            lines.append(f"| {label} | **mean** | {cell(o[left])} | {cell(o[right])} | "
                         f"{s[left]['mean']:.0f} | {s[right_seconds or right]['mean']:.0f}{note} |")

    section("multi-task MH-SAC (vs SB3 experts)", data["multitask"], "mtrl_multihead",
            "sb3_experts", "sb3_experts_summed", " (summed)")
    for variant, rows in data["variants"].items():
        section(f"multi-task {VARIANT_LABELS.get(variant, variant)} (vs mtrl MH-SAC)", rows,
                f"mtrl_{variant}", "mtrl_multihead")
    section("multi-task MT-SAC (vs SB3 MT-SAC)", data["multitask_peer"], "mtrl_mtsac",
            "sb3_mtsac")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke version (tests)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--out", default="runs/learning_benchmark", help="run directories")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side")
    parser.add_argument("--seeds", type=int, help="seeds per configuration")
    parser.add_argument("--report-only", action="store_true",
                        help="no training: the JSON of the runs in --out that have finished")
    parser.add_argument("--suites", default=",".join(SUITES),
                        help=f"comma-separated suites to run (of {', '.join(SUITES)})")
    parser.add_argument("--peer-out", help="run directories of the SB3 runs (default: --out), "
                        "so that an ablation's mtrl runs (--out) meet the same SB3 runs")
    parser.add_argument("--peer-tasks", default=",".join(PEER_TASKS),
                        help="comma-separated tasks of the peer suite (e.g. the multi-task "
                             "suite's, to compare MT-SAC in both libraries there)")
    parser.add_argument("--mtrl-set", action="append", default=[], metavar="KEY=VALUE",
                        help="an mtrl config override for every mtrl run (an ablation; give "
                             "it its own --out)")
    args = parser.parse_args(argv)
    settings = {**SETTINGS, **(QUICK if args.quick else {}), "mtrl_overrides": args.mtrl_set}
    if args.seeds:
        settings["seeds"] = args.seeds
    suites = tuple(args.suites.split(","))
    unknown = sorted(set(suites) - set(SUITES))
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)} (choose from {', '.join(SUITES)})")
    single = SINGLE_TASKS[:1] if args.quick else SINGLE_TASKS
    multi = MULTI_TASKS[:2] if args.quick else MULTI_TASKS
    peer = args.peer_tasks.split(",")
    runs = plan(settings, single, multi, peer, suites)

    def out_dir(run: Run) -> str:
        return args.peer_out if run.library == "sb3" and args.peer_out else args.out

    results: dict[Run, dict[str, Any]] = {}
    if args.report_only:
        for run in runs:
            path = Path(out_dir(run)) / run.name / RESULT_FILE
            if path.is_file():
                results[run] = json.loads(path.read_text())
        runs = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {run: pool.submit(run_one, run, settings, out_dir(run)) for run in runs}
        for run, future in futures.items():
            results[run] = future.result()
            print(f"{run.name}: {results[run]['per_task']} in {results[run]['seconds']:.0f} s",
                  file=sys.stderr, flush=True)
    data = report(results, settings, single, multi, peer)
    text = json.dumps(data, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(text)
    print(markdown(data), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
