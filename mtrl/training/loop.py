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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from mtrl.agents import Agent, build_agent, resolve_device
from mtrl.config import Config, from_dict, to_dict, to_yaml
from mtrl.data import MultiTaskReplay
from mtrl.envs import MultiTaskVectorEnv, StepResult, make_vector_env
from mtrl.errors import MtrlError
from mtrl.serialization import atomic_save, load_file, restore_generator
from mtrl.training.evaluation import EVAL_SEED_OFFSET, EvalResult, evaluate
from mtrl.training.hooks import TrainingHook, build_hooks, registered_hooks
from mtrl.training.logging import (MetricsLogger, flatten_metrics, interval_line, progress_bar,
                                   success_line)
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
    """Running returns of the training envs; finished episodes summarised per task."""

    returns: np.ndarray
    lengths: np.ndarray
    successes: np.ndarray
    finished_return: np.ndarray
    finished_success: np.ndarray
    finished_count: np.ndarray

    @classmethod
    def create(cls, num_envs: int, num_tasks: int) -> "EpisodeStats":
        return cls(np.zeros(num_envs), np.zeros(num_envs), np.zeros(num_envs, bool),
                   np.zeros(num_tasks), np.zeros(num_tasks), np.zeros(num_tasks))

    def record(self, reward: np.ndarray, success: np.ndarray, done: np.ndarray,
               task_id: np.ndarray, num_tasks: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Add one vector step; returns the episodes it finished as ``(task_id, return,
        length)`` (``None`` when none did)."""
        self.returns += reward
        self.lengths += 1
        self.successes |= success
        if not done.any():
            return None
        finished = (task_id[done], self.returns[done].copy(), self.lengths[done].copy())
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
        :meth:`finish`'s result (the final :class:`EvalResult` here)."""
        cfg = self.config
        random.seed(cfg.train.seed)
        env = make_train_env(cfg)
        eval_env: MultiTaskVectorEnv | None = None
        logger: MetricsLogger | None = None
        try:
            learner = self.build_learner(env)
            replay = MultiTaskReplay(env.num_tasks, cfg.replay.capacity_per_task, env.obs_dim,
                                     env.act_dim, self.device)
            # the run dir is only written once the config has proved buildable
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / CONFIG_FILE).write_text(to_yaml(cfg))
            rng = np.random.default_rng(cfg.train.seed)
            sampler = torch.Generator(self.device)  # replay sampling stream, checkpointed
            sampler.manual_seed(cfg.train.seed + 2)
            vec_step = 0
            stats = EpisodeStats.create(env.num_envs, env.num_tasks)
            sums = MetricSums()
            obs: np.ndarray | None = None  # the observation the loop acts on next
            if self.checkpoint is not None:
                vec_step, rng, obs = self._restore(self.checkpoint, learner, replay, env,
                                                   sampler, stats, sums)
            per_step = env.num_envs // env.num_tasks
            resume_step = None if self.checkpoint is None else vec_step * per_step
            logger = MetricsLogger(self.run_dir, env.task_names, cfg.log.tensorboard,
                                   resume_step)
            hooks = build_hooks(cfg, self.run_dir, env.task_names, resume_step)
            if self.checkpoint is not None:
                eval_env = self._restore_side_streams(self.checkpoint, env, hooks, replay)
            total = math.ceil(cfg.train.steps_per_task / per_step)
            if vec_step >= total and (self.run_dir / FINAL_EVAL_FILE).exists():
                return self.saved_result()

            def every(interval: int) -> bool:
                return (vec_step * per_step) // interval != ((vec_step - 1) * per_step) // interval

            def learn() -> None:
                for _ in range(cfg.train.updates_per_step):
                    sums.add(self.update(learner, replay, sampler))
            warmup = math.ceil(cfg.train.warmup_steps_per_task / per_step)
            if obs is None:  # a fresh run, or a checkpoint without the episodes in flight
                obs = env.reset()
            loop = {} if self.checkpoint is None else self.checkpoint["trainer"].get("loop", {})
            if loop:  # a subclass's saved loop state replaces what start() would set up
                self.load_loop_state(loop)
            else:
                self.start(env, rng, vec_step * per_step)

            def save() -> None:
                assert obs is not None
                self._save(learner, replay, env, vec_step, rng, sampler, obs, stats, sums,
                           eval_env, hooks)
            bar = progress_bar(total * per_step, vec_step * per_step, cfg.log.progress)
            clock, clock_step = time.perf_counter(), vec_step
            stop = GracefulInterrupt()
            consistent = True  # False mid-iteration: a checkpoint there could not resume exactly
            try:
                while vec_step < total:
                    consistent = False
                    learning = vec_step >= warmup
                    actions = self.actions(learner, obs, env, rng, learning)
                    result = step_and_learn(env, actions, learn if learning else None,
                                            self.overlap)
                    replay.add(obs, actions, result.reward, result.final_obs,
                               result.terminated, env.task_id)
                    finished = stats.record(result.reward, result.success, result.done,
                                            env.task_id, env.num_tasks)
                    if finished is not None:  # e.g. BRC's per-task reward statistics
                        learner.observe_episodes(*finished)
                    obs = result.obs
                    vec_step += 1
                    bar.update(per_step)
                    step = vec_step * per_step
                    self.after_step(result, rng, step)
                    if every(cfg.log.every) or vec_step == total:
                        now = time.perf_counter()
                        rate = (vec_step - clock_step) * env.num_envs / max(now - clock, 1e-9)
                        scalars = training_scalars(sums, stats, env.task_names, rate, len(replay))
                        scalars.update(self.extra_scalars(step))
                        logger.log(step, scalars, step * env.num_tasks)
                        bar.write(interval_line(step, total * per_step, scalars,
                                                env.task_names))
                        clock, clock_step = now, vec_step
                    if vec_step > warmup:
                        for hook in hooks:
                            hook.after_update_step(learner, replay, step, per_step, logger)
                    if every(cfg.train.eval_every) and vec_step < total:
                        eval_env = eval_env or make_eval_env(cfg, env)
                        self._log_eval(evaluate_agent(learner, eval_env, cfg.train.eval_episodes,
                                                      step), logger, bar, env.num_tasks)
                    if every(cfg.train.checkpoint_every) and vec_step < total:
                        save()
                    consistent = True
                    if stop.requested:
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                if consistent:  # a second signal mid-iteration keeps the last checkpoint
                    save()
                bar.close()
                raise
            finally:
                stop.restore()
            bar.close()
            eval_env = eval_env or make_eval_env(cfg, env)
            final = evaluate_agent(learner, eval_env, cfg.train.eval_episodes, total * per_step)
            self._log_eval(final, logger, None, env.num_tasks)
            outcome = self.finish(final, eval_env, logger)
            save()
            final.write(self.run_dir / FINAL_EVAL_FILE)
            return outcome
        finally:
            env.close()
            if eval_env is not None:
                eval_env.close()
            if logger is not None:
                logger.close()

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
        """One update on a task-balanced batch; returns its metrics as device tensors."""
        return learner.update(replay.sample(self.config.replay.batch_per_task, sampler))

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
        env.set_state(trainer["env"])
        for key, value in trainer.get("episode_stats", {}).items():
            getattr(stats, key)[...] = value
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
