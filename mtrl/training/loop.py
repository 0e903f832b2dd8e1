"""The training loop: collect -> store -> update -> evaluate -> checkpoint.

Step counts are per task: one vector step advances every task by ``env.envs_per_task`` env
steps. After ``warmup_steps_per_task`` steps of uniform random actions, every vector step runs
one batched policy forward for all envs and ``updates_per_step`` agent updates on task-balanced
batches. Time limits are truncations: the true final observation is stored and bootstrapped.
"""

from __future__ import annotations

import json
import math
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mtrl.agents import Agent, build_agent, resolve_device
from mtrl.config import Config, from_dict, to_dict, to_yaml
from mtrl.data import Episodes, MultiTaskReplay
from mtrl.data.task_sampling import ActiveTaskSampler, build_task_sampler
from mtrl.envs import MultiTaskVectorEnv, StepResult, make_vector_env
from mtrl.errors import MtrlError
from mtrl.serialization import atomic_save, load_file, restore_generator
from mtrl.training.evaluation import EVAL_SEED_OFFSET, EvalResult, evaluate
from mtrl.training.hooks import TrainingHook, build_hooks, crossed, registered_hooks
from mtrl.training.logging import (MetricsLogger, flatten_metrics, interval_line,
                                   network_scalars, progress_bar, success_line)
from mtrl.training.rundir import CHECKPOINT_FILE, CONFIG_FILE, FINAL_EVAL_FILE


def make_train_env(config: Config) -> MultiTaskVectorEnv:
    """The training envs of a config (``env.backend``: Meta-World's or EnvPool's)."""
    env = config.env
    return make_vector_env(env.tasks, env.envs_per_task, config.train.seed, env.num_workers,
                           env.mode, env.max_episode_steps, backend=env.backend)


def make_eval_env(config: Config, train_env: MultiTaskVectorEnv | None = None
                  ) -> MultiTaskVectorEnv:
    """Evaluation envs: separate from the training envs and seeded apart from them, on the
    training goals (as Meta-World's evaluation does); stepped in ``train_env``'s worker
    processes when given, so that evaluation starts no processes of its own."""
    env = config.env
    return make_vector_env(env.tasks, env.eval_envs_per_task,
                           config.train.seed + EVAL_SEED_OFFSET, env.num_workers, env.mode,
                           env.max_episode_steps, goal_seed=config.train.seed,
                           share_workers_with=train_env)


def evaluate_agent(agent: Agent, env: MultiTaskVectorEnv, episodes: int, step: int) -> EvalResult:
    """The official protocol with the agent's deterministic actions."""
    return evaluate(lambda o, t: agent.act(o, t, deterministic=True), env, episodes, step)


@dataclass
class EpisodeStats:
    """Running returns (and per-step rewards) of the training envs; finished episodes
    summarised per task."""

    returns: np.ndarray
    lengths: np.ndarray
    successes: np.ndarray
    finished_return: np.ndarray
    finished_success: np.ndarray
    finished_count: np.ndarray
    step_rewards: np.ndarray  # (num_envs, capacity): the episodes in flight, step by step

    @classmethod
    def create(cls, num_envs: int, num_tasks: int) -> "EpisodeStats":
        return cls(np.zeros(num_envs), np.zeros(num_envs), np.zeros(num_envs, bool),
                   np.zeros(num_tasks), np.zeros(num_tasks), np.zeros(num_tasks),
                   np.zeros((num_envs, 500)))

    def record(self, result: StepResult, num_tasks: int) -> Episodes | None:
        """Add one vector step; returns the episodes it finished (``None`` when none did)."""
        step = self.lengths.astype(np.int64)
        if step.max(initial=0) >= self.step_rewards.shape[1]:  # an episode longer than seen
            width = self.step_rewards.shape[1]
            self.step_rewards = np.pad(self.step_rewards, ((0, 0), (0, width)))
        self.step_rewards[np.arange(len(step)), step] = result.reward
        self.returns += result.reward
        self.lengths += 1
        self.successes |= result.success
        done, task_id = result.done, result.task_id
        if not done.any():
            return None
        ended = np.flatnonzero(done)
        finished = Episodes(
            task_id[done], self.returns[done].copy(), self.lengths[done].copy(),
            self.successes[done].copy(), (result.truncated & ~result.terminated)[done],
            tuple(self.step_rewards[i, : step[i] + 1].copy() for i in ended))
        self.finished_return += np.bincount(task_id, self.returns * done, num_tasks)
        self.finished_success += np.bincount(task_id, self.successes * done, num_tasks)
        self.finished_count += np.bincount(task_id, done, num_tasks)
        self.returns[done] = 0.0
        self.lengths[done] = 0.0
        self.successes[done] = False
        return finished

    def pop(self) -> dict[str, np.ndarray]:
        """Mean return and success per task of the episodes finished since the last pop."""
        seen = self.finished_count > 0
        if not seen.all():
            return {}
        out = {"episode_return_per_task": self.finished_return / self.finished_count,
               "success_per_task": self.finished_success / self.finished_count}
        self.finished_return[:] = 0
        self.finished_success[:] = 0
        self.finished_count[:] = 0
        return out


def overlap_enabled(setting: bool | str, device: torch.device) -> bool:
    """``train.overlap`` resolved: ``"auto"`` overlaps when the learner runs on CUDA (the CPU
    cores are then free for the env workers), not when it shares the CPU with them."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


def step_and_learn(env: MultiTaskVectorEnv, actions: np.ndarray,
                   learn: Callable[[], None] | None, overlap: bool) -> StepResult:
    """One vector step, with the learner's updates (``learn``, if any) run while the worker
    processes step the envs when ``overlap`` is on, after the step otherwise."""
    if learn is not None and overlap:
        env.step_async(actions)
        learn()
        return env.step_wait()
    result = env.step(actions)
    if learn is not None:
        learn()
    return result


def training_scalars(sums: "MetricSums", stats: "EpisodeStats", task_names: list[str],
                     env_steps_per_s: float, replay_size: int) -> dict[str, float]:
    """The scalars logged at each log interval (update means, episode stats, rates)."""
    scalars = flatten_metrics(sums.pop_means(), task_names, "train/")
    scalars.update(flatten_metrics(stats.pop(), task_names, "train/"))
    scalars["time/env_steps_per_s"] = env_steps_per_s
    scalars["train/replay_size"] = float(replay_size)
    return scalars


class MetricSums:
    """Sums of update metrics as device tensors (no host sync until :meth:`pop_means`)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.count += 1

    def pop_means(self) -> dict[str, torch.Tensor]:
        means = {k: v / self.count for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return means


class GracefulInterrupt:
    """Turns the first Ctrl-C (SIGINT) or SIGTERM (e.g. a cluster stopping the job) into a
    flag that the loop checks between iterations, so the checkpoint written on interrupt is a
    consistent state; a second signal acts at once. Only active in the main thread."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        self.restore()

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}


@dataclass
class RunState:
    """What the steps of one training run share (and a checkpoint saves): the envs, learner,
    replay, random streams, episode statistics and metric sums, the logger and hooks, the
    vector step reached and the observation acted on next."""

    env: MultiTaskVectorEnv
    learner: Agent
    replay: MultiTaskReplay
    rng: np.random.Generator  # action stream (warm-up actions, subclasses' draws)
    sampler: torch.Generator  # replay sampling stream
    stats: EpisodeStats
    sums: MetricSums
    logger: MetricsLogger
    per_step: int  # env steps per task in one vector step
    total: int  # vector steps of the whole run
    warmup: int  # vector steps of uniform random actions
    vec_step: int = 0  # vector steps done
    obs: np.ndarray | None = None  # the observation acted on next (None: reset first)
    hooks: list[TrainingHook] = field(default_factory=list)
    eval_env: MultiTaskVectorEnv | None = None  # built at the first evaluation

    @property
    def step(self) -> int:
        """Env steps per task so far."""
        return self.vec_step * self.per_step

    def crossed(self, interval: int) -> bool:
        """Whether the last vector step crossed a multiple of ``interval`` steps per task."""
        return crossed(self.step, self.per_step, interval)


class RateMeter:
    """Env steps per second between log intervals."""

    def __init__(self, vec_step: int) -> None:
        self.time, self.vec_step = time.perf_counter(), vec_step

    def rate(self, vec_step: int, num_envs: int) -> float:
        """Env steps per second since the last call (or construction); restarts the clock."""
        now = time.perf_counter()
        rate = (vec_step - self.vec_step) * num_envs / max(now - self.time, 1e-9)
        self.time, self.vec_step = now, vec_step
        return rate


class Trainer:
    """Runs (or resumes) one training run in ``run_dir``."""

    def __init__(self, config: Config, run_dir: str | Path, resume: bool = False,
                 device: str | None = None, overrides: tuple[str, ...] = ()) -> None:
        self.run_dir = Path(run_dir)
        checkpoint_path = self.run_dir / CHECKPOINT_FILE
        self.checkpoint: dict[str, Any] | None = None
        if resume:
            if checkpoint_path.exists():
                self.checkpoint = load_file(checkpoint_path)
                config = self._resumed_config(self.checkpoint, overrides)
        elif (self.run_dir / CONFIG_FILE).exists() or checkpoint_path.exists():
            raise MtrlError(
                f"run directory {self.run_dir} already holds a run (use --resume to continue it, "
                "or choose another --run-dir)"
            )
        if device is not None:
            config.train.device = device
        self.config = config
        self.device = resolve_device(config.train.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise MtrlError("--device cuda asked for, but no CUDA device is available")
        self.overlap = overlap_enabled(config.train.overlap, self.device)
        # replay.task_sampling=active: the tasks' loss weights (None: uniform); built with the
        # replay, checkpointed in the trainer section
        self.task_sampler: ActiveTaskSampler | None = None
        if getattr(config.train, "affinity_every", 0) and "affinity" not in registered_hooks():
            raise MtrlError("train.affinity_every needs the affinity hook: import "
                            "mtrl.analysis first (the mtrl command does)")

    @staticmethod
    def _resumed_config(checkpoint: dict[str, Any], overrides: tuple[str, ...]) -> Config:
        """The run's own config, with command-line overrides (e.g. a longer budget) on top."""
        from omegaconf import OmegaConf

        data = OmegaConf.merge(OmegaConf.create(checkpoint["config"]),
                               OmegaConf.from_dotlist(list(overrides)))
        return from_dict(OmegaConf.to_container(data))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ run
    def run(self) -> Any:
        """Train to ``train.steps_per_task``, evaluate, write ``final_eval.json``; returns
        :meth:`finish`'s result (the final :class:`EvalResult` here).

        The steps: :meth:`_prepare` (learner, replay, run dir, random streams, a resume's
        restore, logger), :meth:`_attach_hooks`, :meth:`_begin` (first observation, the
        subclass's loop state), :meth:`_train` (the iterations, each :meth:`_iteration`),
        :meth:`_conclude` (final evaluation, last checkpoint)."""
        random.seed(self.config.train.seed)
        env = make_train_env(self.config)
        run: RunState | None = None
        try:
            run = self._prepare(env)
            self._attach_hooks(run)
            if run.vec_step >= run.total and (self.run_dir / FINAL_EVAL_FILE).exists():
                return self.saved_result()
            self._begin(run)
            self._train(run)
            return self._conclude(run)
        finally:
            env.close()
            if run is not None:
                if run.eval_env is not None:
                    run.eval_env.close()
                run.logger.close()

    def _prepare(self, env: MultiTaskVectorEnv) -> RunState:
        """Build the learner and the replay, write the run dir (only once the config has proved
        buildable), seed the random streams, restore a checkpoint, open the logger."""
        cfg = self.config
        learner = self.build_learner(env)
        replay = MultiTaskReplay(env.num_tasks, cfg.replay.capacity_per_task, env.obs_dim,
                                 env.act_dim, self.device)
        self.task_sampler = build_task_sampler(cfg.replay, env.num_tasks, self.device)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / CONFIG_FILE).write_text(to_yaml(cfg))
        rng = np.random.default_rng(cfg.train.seed)
        sampler = torch.Generator(self.device)  # replay sampling stream, checkpointed
        sampler.manual_seed(cfg.train.seed + 2)
        stats = EpisodeStats.create(env.num_envs, env.num_tasks)
        sums = MetricSums()
        vec_step, obs = 0, None
        if self.checkpoint is not None:
            vec_step, rng, obs = self._restore(self.checkpoint, learner, replay, env, sampler,
                                               stats, sums)
        per_step = env.num_envs // env.num_tasks
        resume_step = None if self.checkpoint is None else vec_step * per_step
        logger = MetricsLogger(self.run_dir, env.task_names, cfg.log.tensorboard, resume_step)
        return RunState(env=env, learner=learner, replay=replay, rng=rng, sampler=sampler,
                        stats=stats, sums=sums, logger=logger, per_step=per_step,
                        total=math.ceil(cfg.train.steps_per_task / per_step),
                        warmup=math.ceil(cfg.train.warmup_steps_per_task / per_step),
                        vec_step=vec_step, obs=obs)

    def _attach_hooks(self, run: RunState) -> None:
        """Build the training hooks; on a resume, restore them and the evaluation envs."""
        resume_step = None if self.checkpoint is None else run.step
        run.hooks = build_hooks(self.config, self.run_dir, run.env.task_names, resume_step)
        if self.checkpoint is not None:
            run.eval_env = self._restore_side_streams(self.checkpoint, run.env, run.hooks,
                                                      run.replay)

    def _begin(self, run: RunState) -> None:
        """The first observation (reset unless the checkpoint continues the episodes in flight)
        and the subclass's loop state (restored, or set up by :meth:`start`)."""
        if run.obs is None:  # a fresh run, or a checkpoint without the episodes in flight
            run.obs = run.env.reset()
        loop = {} if self.checkpoint is None else self.checkpoint["trainer"].get("loop", {})
        if loop:  # a subclass's saved loop state replaces what start() would set up
            self.load_loop_state(loop)
        else:
            self.start(run.env, run.rng, run.step)

    def _train(self, run: RunState) -> None:
        """Iterate to ``run.total`` vector steps. The first Ctrl-C / SIGTERM stops after the
        iteration in progress and writes a checkpoint (:class:`GracefulInterrupt`)."""
        bar = progress_bar(run.total * run.per_step, run.step, self.config.log.progress)
        meter = RateMeter(run.vec_step)
        stop = GracefulInterrupt()
        consistent = True  # False mid-iteration: a checkpoint there could not resume exactly
        try:
            while run.vec_step < run.total:
                consistent = False
                self._iteration(run, bar, meter)
                consistent = True
                if stop.requested:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            if consistent:  # a second signal mid-iteration keeps the last checkpoint
                self._save_run(run)
            bar.close()
            raise
        finally:
            stop.restore()
        bar.close()

    def _iteration(self, run: RunState, bar: Any, meter: RateMeter) -> None:
        """One vector step: collect (and learn), then what is due at this step: the log
        interval, the hooks, an evaluation, a checkpoint."""
        cfg = self.config
        result = self._collect(run)
        bar.update(run.per_step)
        step = run.step
        self.after_step(result, run.rng, step)
        if run.crossed(cfg.log.every) or run.vec_step == run.total:
            self._log_interval(run, bar, meter)
        if run.vec_step > run.warmup:
            for hook in run.hooks:
                hook.after_update_step(run.learner, run.replay, step, run.per_step, run.logger)
        if run.crossed(cfg.train.eval_every) and run.vec_step < run.total:
            run.eval_env = run.eval_env or make_eval_env(cfg, run.env)
            self._log_eval(evaluate_agent(run.learner, run.eval_env, cfg.train.eval_episodes,
                                          step), run.logger, bar, run.env.num_tasks)
        if run.crossed(cfg.train.checkpoint_every) and run.vec_step < run.total:
            self._save_run(run)

    def _collect(self, run: RunState) -> StepResult:
        """Act, step the envs (with the updates once warm-up is over), store the transitions,
        count the finished episodes and advance ``run`` by one vector step."""
        env, obs = run.env, run.obs
        assert obs is not None
        learning = run.vec_step >= run.warmup
        actions = self.actions(run.learner, obs, env, run.rng, learning)
        result = step_and_learn(env, actions, (lambda: self._learn(run)) if learning else None,
                                self.overlap)
        run.replay.add(obs, actions, result.reward, result.final_obs, result.terminated,
                       env.task_id)
        finished = run.stats.record(result, env.num_tasks)
        if finished is not None:  # e.g. BRC's per-task reward statistics, DTP's success rates
            run.learner.observe_episodes(finished)
            if self.task_sampler is not None:  # active task sampling's success rates
                self.task_sampler.observe_episodes(finished.task_id, finished.success)
        run.obs = result.obs
        run.vec_step += 1
        return result

    def _learn(self, run: RunState) -> None:
        """``train.updates_per_step`` updates; their metrics are summed on the device."""
        for _ in range(self.config.train.updates_per_step):
            run.sums.add(self.update(run.learner, run.replay, run.sampler))

    def _log_interval(self, run: RunState, bar: Any, meter: RateMeter) -> None:
        """Log the interval's training scalars and print its line."""
        step, env = run.step, run.env
        rate = meter.rate(run.vec_step, env.num_envs)
        scalars = training_scalars(run.sums, run.stats, env.task_names, rate, len(run.replay))
        scalars.update(network_scalars(run.learner, env.task_names))  # e.g. routing usage
        if self.task_sampler is not None:  # what drives the tasks' update shares
            scalars.update(flatten_metrics(self.task_sampler.state_metrics(), env.task_names,
                                           "train/"))
        scalars.update(self.extra_scalars(step))
        run.logger.log(step, scalars, step * env.num_tasks)
        bar.write(interval_line(step, run.total * run.per_step, scalars, env.task_names))

    def _conclude(self, run: RunState) -> Any:
        """The final evaluation, :meth:`finish`, the last checkpoint and ``final_eval.json``."""
        cfg = self.config
        run.eval_env = run.eval_env or make_eval_env(cfg, run.env)
        final = evaluate_agent(run.learner, run.eval_env, cfg.train.eval_episodes,
                               run.total * run.per_step)
        self._log_eval(final, run.logger, None, run.env.num_tasks)
        outcome = self.finish(final, run.eval_env, run.logger)
        self._save_run(run)
        final.write(self.run_dir / FINAL_EVAL_FILE)
        return outcome

    def _save_run(self, run: RunState) -> None:
        """Checkpoint ``run`` (see :meth:`_save`)."""
        assert run.obs is not None
        self._save(run.learner, run.replay, run.env, run.vec_step, run.rng, run.sampler, run.obs,
                   run.stats, run.sums, run.eval_env, run.hooks)

    # ------------------------------------------------ hooks (the Distiller overrides them)
    def build_learner(self, env: MultiTaskVectorEnv) -> Agent:
        """The agent that acts and learns (the config's RL agent)."""
        cfg = self.config
        return build_agent(cfg.agent, env.obs_dim, env.act_dim, env.num_tasks,
                           str(self.device), cfg.train.seed)

    def start(self, env: MultiTaskVectorEnv, rng: np.random.Generator, step: int) -> None:
        """Called once before the first vector step (after a resume's restore, unless
        :meth:`load_loop_state` restores the loop's own state instead)."""

    def actions(self, learner: Agent, obs: np.ndarray, env: MultiTaskVectorEnv,
                rng: np.random.Generator, learning: bool) -> np.ndarray:
        """The actions of one vector step: uniform random during warm-up, else the policy's."""
        if not learning:
            return rng.uniform(-1, 1, (env.num_envs, env.act_dim))
        return learner.act(obs, env.task_id)

    def update(self, learner: Agent, replay: MultiTaskReplay,
               sampler: torch.Generator) -> dict[str, torch.Tensor]:
        """One update on a task-balanced batch; returns its metrics as device tensors. With
        active task sampling the batch carries the tasks' loss weights (the same rows), and the
        metrics their probabilities (``train/task_prob/<task>``: the interval's mean)."""
        batch = replay.sample(self.config.replay.batch_per_task, sampler)
        if self.task_sampler is None:
            return learner.update(batch)
        metrics = learner.update(self.task_sampler.weigh(batch))
        return {**metrics, **self.task_sampler.metrics()}

    def after_step(self, result: StepResult, rng: np.random.Generator, step: int) -> None:
        """Called after every vector step with its result (``step``: steps per task so far)."""

    def extra_scalars(self, step: int) -> dict[str, float]:
        """Scalars logged beside the training metrics at each log interval."""
        return {}

    def finish(self, final: EvalResult, eval_env: MultiTaskVectorEnv,
               logger: MetricsLogger) -> Any:
        """After the final evaluation (before the last checkpoint): the run's result."""
        return final

    def saved_result(self) -> Any:
        """The result of a run that had already finished (resumed with nothing left to do)."""
        return EvalResult(**json.loads((self.run_dir / FINAL_EVAL_FILE).read_text()))

    def _log_eval(self, result: EvalResult, logger: MetricsLogger, bar: Any,
                  num_tasks: int) -> None:
        scalars = {"eval/success_rate": result.success_rate,
                   **{f"eval/success/{k}": v for k, v in result.per_task.items()}}
        if result.mean_return is not None:
            scalars["eval/mean_return"] = result.mean_return
        logger.log(result.step, scalars, result.step * num_tasks)
        line = f"eval @ {result.step} steps/task: success {result.success_rate:.3f}  " \
               f"[{success_line(result.per_task)}]"
        (bar.write if bar is not None else print)(line)

    # ------------------------------------------------------------ checkpoint
    def loop_state(self) -> dict[str, Any]:
        """A subclass's own loop state to checkpoint (e.g. what :meth:`start` and
        :meth:`after_step` keep); empty by default."""
        return {}

    def load_loop_state(self, state: dict[str, Any]) -> None:
        """Restore a non-empty :meth:`loop_state` on a resume, instead of calling
        :meth:`start` (whose draws from the action RNG would shift the stream)."""

    def _save(self, agent: Agent, replay: MultiTaskReplay, env: MultiTaskVectorEnv,
              vec_step: int, rng: np.random.Generator, sampler: torch.Generator,
              obs: np.ndarray, stats: EpisodeStats, sums: MetricSums,
              eval_env: MultiTaskVectorEnv | None = None,
              hooks: Sequence[TrainingHook] = ()) -> None:
        """Write everything the loop's next iteration depends on, so that a resumed run
        continues the uninterrupted one: learner, replay, every random stream, the envs'
        episodes in flight and the observation acted on next, and the partial log interval
        (episode statistics and update-metric sums)."""
        atomic_save(
            {
                "learner": {"agent": agent.name, "kwargs": agent.init_kwargs,
                            "state": agent.state_dict()},
                "replay": replay.state_dict(),
                "trainer": {"vec_step": vec_step, "rng": rng.bit_generator.state,
                            "python_random": random.getstate(),
                            "sampler": sampler.get_state(),
                            "env": env.get_state(),
                            "obs": np.array(obs, copy=True),
                            "episode_stats": {k: v.copy() for k, v in asdict(stats).items()},
                            "metric_sums": {"sums": {k: v.detach().cpu()
                                                     for k, v in sums.sums.items()},
                                            "count": sums.count},
                            "eval_env": None if eval_env is None else eval_env.get_state(),
                            **{k: v for hook in hooks for k, v in hook.state_dict().items()},
                            "loop": self.loop_state(),
                            **({"task_sampler": self.task_sampler.state_dict()}
                               if self.task_sampler is not None else {}),
                            "steps_per_task": vec_step * (env.num_envs // env.num_tasks)},
                "config": to_dict(self.config),
                "task_names": env.task_names,
            },
            self.run_dir / CHECKPOINT_FILE,
        )

    def _restore(self, checkpoint: dict[str, Any], agent: Agent, replay: MultiTaskReplay,
                 env: MultiTaskVectorEnv, sampler: torch.Generator, stats: EpisodeStats,
                 sums: MetricSums) -> tuple[int, np.random.Generator, np.ndarray | None]:
        """Load :meth:`_save`'s state into the run's objects; returns the vector step, the
        action RNG and the observation to act on next (``None`` where the env state does not
        continue the episodes in flight, i.e. lacks ``resumes_episodes``: the envs must then
        be reset)."""
        if checkpoint.get("task_names") != env.task_names:
            raise MtrlError("checkpoint was made for other tasks than this run's config")
        agent.load_state_dict(checkpoint["learner"]["state"])
        replay.load_state_dict(checkpoint["replay"])
        trainer = checkpoint["trainer"]
        rng = np.random.default_rng()
        rng.bit_generator.state = trainer["rng"]
        random.setstate(trainer["python_random"])
        restore_generator(sampler, trainer["sampler"])
        if self.task_sampler is not None and "task_sampler" in trainer:
            self.task_sampler.load_state_dict(trainer["task_sampler"])
        env.set_state(trainer["env"])
        for key, value in trainer.get("episode_stats", {}).items():
            setattr(stats, key, np.array(value, copy=True))  # step_rewards may have grown
        if "metric_sums" in trainer:
            sums.sums = {k: v.to(self.device) for k, v in trainer["metric_sums"]["sums"].items()}
            sums.count = int(trainer["metric_sums"]["count"])
        obs = trainer.get("obs")
        if obs is None or not trainer["env"].get("resumes_episodes", False):
            return int(trainer["vec_step"]), rng, None  # the env needs a reset after set_state
        return int(trainer["vec_step"]), rng, np.asarray(obs)

    def _restore_side_streams(self, checkpoint: dict[str, Any], env: MultiTaskVectorEnv,
                              hooks: Sequence[TrainingHook], replay: MultiTaskReplay
                              ) -> MultiTaskVectorEnv | None:
        """Restore what does not touch the learner but shapes the logs: the evaluation envs
        (built now if the checkpointed run had built them) and the hooks' state."""
        trainer = checkpoint["trainer"]
        eval_env = None
        if trainer.get("eval_env") is not None:
            eval_env = make_eval_env(self.config, env)
            eval_env.set_state(trainer["eval_env"])
        for hook in hooks:
            hook.load_state_dict(trainer, replay.device)
        return eval_env

def train(config: Config, run_dir: str | Path, resume: bool = False, device: str | None = None,
          overrides: tuple[str, ...] = ()) -> EvalResult:
    """Train (or resume) a run; returns the final evaluation."""
    return Trainer(config, run_dir, resume, device, overrides).run()
