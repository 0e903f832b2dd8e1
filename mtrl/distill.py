"""Policy distillation from per-task experts (``mtrl distill CONFIG``).

Policy Distillation (Rusu et al. 2016) / Actor-Mimic (Parisotto et al. 2016) with DAgger-style
data (Ross et al. 2011): every vector step, each env is driven either by its task's expert or by
the student; an env picks its driver at the start of each episode, the expert with probability
``beta(step)`` that decays linearly from ``distill.expert_rollouts_start`` to ``..._end`` over
``..._steps`` steps per task. The visited states go into per-task buffers (the aggregated DAgger
dataset); each update samples a task-balanced batch, labels every state with its task's expert
(``(mean, log_std)`` of the expert's tanh-Gaussian) and takes one step of the student's
distillation loss (:mod:`mtrl.agents.distill`). The student is evaluated with the official
protocol every ``train.eval_every`` steps and at the end, the experts once at the end on the same
eval envs; the report compares them task by task. Checkpoints and ``--resume`` work as in
:mod:`mtrl.train` (the checkpoint's learner is the student, so ``mtrl eval RUN_DIR`` works).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrl.agents.distill import LabelledBatch, Student
from mtrl.config import DistillConfig, from_dict, to_yaml
from mtrl.data import MultiTaskReplay
from mtrl.envs import MultiTaskVectorEnv
from mtrl.evaluation import EvalResult, evaluate
from mtrl.experts import TaskExperts, load_experts
from mtrl.logging import MetricsLogger, progress_bar
from mtrl.train import (CONFIG_FILE, FINAL_EVAL_FILE, EpisodeStats, GracefulInterrupt,
                        MetricSums, Trainer, evaluate_agent, make_eval_env, make_train_env,
                        step_and_learn, training_scalars)

EXPERT_EVAL_FILE = "expert_eval.json"


@dataclass
class DistillResult:
    """Final evaluations of the student and (when evaluated) of the experts."""

    student: EvalResult
    experts: EvalResult | None


def expert_fraction(config: DistillConfig, step: int) -> float:
    """Probability that an episode starting at ``step`` (per task) is driven by the expert."""
    d = config.distill
    if d.expert_rollouts_steps == 0:
        return d.expert_rollouts_end
    progress = min(step / d.expert_rollouts_steps, 1.0)
    return d.expert_rollouts_start + progress * (d.expert_rollouts_end - d.expert_rollouts_start)


def format_comparison(student: EvalResult, experts: EvalResult | None) -> str:
    """Per-task success of the student beside its expert's, with the means."""
    width = max(len(n) for n in student.per_task)
    lines = [f"{'task':<{width}}  student   expert", f"{'-' * width}  -------  -------"]
    for name, rate in student.per_task.items():
        expert = f"{experts.per_task[name]:7.3f}" if experts is not None else "      -"
        lines.append(f"{name:<{width}}  {rate:7.3f}  {expert}")
    mean_expert = f"{experts.success_rate:7.3f}" if experts is not None else "      -"
    lines += [f"{'-' * width}  -------  -------",
              f"{'mean':<{width}}  {student.success_rate:7.3f}  {mean_expert}",
              f"(final evaluation, {student.episodes_per_task} episodes per task, deterministic "
              f"actions, step {student.step})"]
    return "\n".join(lines)


class Distiller(Trainer):
    """Runs (or resumes) one distillation run in ``run_dir`` (run directory, checkpointing and
    evaluation logging as :class:`~mtrl.train.Trainer`)."""

    config: DistillConfig  # type: ignore[assignment]

    @staticmethod
    def _resumed_config(checkpoint: dict[str, Any], overrides: tuple[str, ...]) -> Any:
        from omegaconf import OmegaConf

        data = OmegaConf.merge(OmegaConf.create(checkpoint["config"]),
                               OmegaConf.from_dotlist(list(overrides)))
        return from_dict(OmegaConf.to_container(data), DistillConfig)  # type: ignore[arg-type]

    def make_student(self, env: MultiTaskVectorEnv) -> Student:
        s = self.config.student
        return Student(env.obs_dim, env.act_dim, env.num_tasks,
                       network=dataclasses.asdict(s.network), lr=s.lr,
                       loss=self.config.distill.loss, combiner=s.combiner,
                       log_std_min=s.log_std_min, log_std_max=s.log_std_max,
                       device=str(self.device), seed=self.config.train.seed)

    def run(self) -> DistillResult:  # type: ignore[override]
        """Distil to ``train.steps_per_task``, evaluate student and experts, write the report."""
        cfg = self.config
        random.seed(cfg.train.seed)
        env = make_train_env(cfg)  # type: ignore[arg-type]
        eval_env: MultiTaskVectorEnv | None = None
        logger: MetricsLogger | None = None
        try:
            experts = load_experts(cfg.distill, env.task_names, env.obs_dim, env.act_dim,
                                   self.device)
            student = self.make_student(env)
            replay = MultiTaskReplay(env.num_tasks, cfg.replay.capacity_per_task, env.obs_dim,
                                     env.act_dim, self.device)
            self.run_dir.mkdir(parents=True, exist_ok=True)  # experts and student are buildable
            (self.run_dir / CONFIG_FILE).write_text(to_yaml(cfg))
            rng = np.random.default_rng(cfg.train.seed)
            sampler = torch.Generator(self.device)  # replay sampling stream, checkpointed
            sampler.manual_seed(cfg.train.seed + 2)
            vec_step = 0
            if self.checkpoint is not None:
                vec_step, rng = self._restore(self.checkpoint, student, replay, env, sampler)
            per_step = env.num_envs // env.num_tasks
            logger = MetricsLogger(self.run_dir, env.task_names, cfg.log.tensorboard,
                                   None if self.checkpoint is None else vec_step * per_step)
            total = math.ceil(cfg.train.steps_per_task / per_step)
            if vec_step >= total and (self.run_dir / FINAL_EVAL_FILE).exists():
                return self._saved_result()

            def every(interval: int) -> bool:
                return (vec_step * per_step) // interval != ((vec_step - 1) * per_step) // interval

            deterministic = not cfg.distill.stochastic_rollouts
            task_t = torch.tensor(env.task_id, device=self.device)
            stats = EpisodeStats.create(env.num_envs, env.num_tasks)
            sums = MetricSums()

            def learn() -> None:
                for _ in range(cfg.train.updates_per_step):
                    batch = replay.sample(cfg.replay.batch_per_task, sampler)
                    mean, log_std = experts.distribution(batch.obs)  # DAgger labels
                    sums.add(student.update(LabelledBatch(batch.obs, batch.task_id, mean,
                                                          log_std)))

            warmup = math.ceil(cfg.train.warmup_steps_per_task / per_step)
            obs = env.reset()
            by_expert = rng.random(env.num_envs) < expert_fraction(cfg, vec_step * per_step)
            bar = progress_bar(total * per_step, vec_step * per_step, cfg.log.progress)
            clock, clock_step = time.perf_counter(), vec_step
            stop = GracefulInterrupt()
            try:
                while vec_step < total:
                    learning = vec_step >= warmup
                    actions = self._act(student, experts, obs, task_t, by_expert, deterministic)
                    result = step_and_learn(env, actions, learn if learning else None,
                                            self.overlap)
                    replay.add(obs, actions, result.reward, result.final_obs,
                               result.terminated, env.task_id)
                    stats.record(result.reward, result.success, result.done, env.task_id,
                                 env.num_tasks)
                    obs = result.obs
                    vec_step += 1
                    bar.update(per_step)
                    step = vec_step * per_step
                    done = result.done
                    if done.any():  # new episodes choose their driver
                        by_expert[done] = rng.random(int(done.sum())) < expert_fraction(cfg, step)
                    if every(cfg.log.every) or vec_step == total:
                        now = time.perf_counter()
                        rate = (vec_step - clock_step) * env.num_envs / max(now - clock, 1e-9)
                        scalars = training_scalars(sums, stats, env.task_names, rate, len(replay))
                        scalars["train/expert_fraction"] = expert_fraction(cfg, step)
                        logger.log(step, scalars, step * env.num_tasks)
                        clock, clock_step = now, vec_step
                    if every(cfg.train.eval_every) and vec_step < total:
                        eval_env = eval_env or make_eval_env(cfg, env)  # type: ignore[arg-type]
                        self._log_eval(evaluate_agent(student, eval_env, cfg.train.eval_episodes,
                                                      step), logger, bar, env.num_tasks)
                    if every(cfg.train.checkpoint_every) and vec_step < total:
                        self._save(student, replay, env, vec_step, rng, sampler)
                    if stop.requested:
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                self._save(student, replay, env, vec_step, rng, sampler)
                bar.close()
                raise
            finally:
                stop.restore()
            bar.close()
            eval_env = eval_env or make_eval_env(cfg, env)  # type: ignore[arg-type]
            final = evaluate_agent(student, eval_env, cfg.train.eval_episodes, total * per_step)
            self._log_eval(final, logger, None, env.num_tasks)
            expert_result = None
            if cfg.distill.evaluate_experts:
                expert_result = evaluate(lambda o, t: experts.act(o), eval_env,
                                         cfg.train.eval_episodes, total * per_step)
                expert_result.write(self.run_dir / EXPERT_EVAL_FILE)
                logger.log(final.step, {f"eval/expert_success/{k}": v
                                        for k, v in expert_result.per_task.items()},
                           final.step * env.num_tasks)
            self._save(student, replay, env, vec_step, rng, sampler)
            final.write(self.run_dir / FINAL_EVAL_FILE)
            return DistillResult(final, expert_result)
        finally:
            env.close()
            if eval_env is not None:
                eval_env.close()
            if logger is not None:
                logger.close()

    def _act(self, student: Student, experts: TaskExperts, obs: np.ndarray, task_t: torch.Tensor,
             by_expert: np.ndarray, deterministic: bool) -> np.ndarray:
        """The student's actions, the expert's in envs whose episode the expert drives."""
        with torch.no_grad():
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            actions = student.act_tensor(obs_t, task_t, deterministic)
            if by_expert.any():
                expert_actions = experts.act_tensor(obs_t, deterministic, student.generator)
                mask = torch.as_tensor(by_expert, device=self.device)[:, None]
                actions = torch.where(mask, expert_actions, actions)
            return actions.cpu().numpy()

    def _saved_result(self) -> DistillResult:
        student = EvalResult(**json.loads((self.run_dir / FINAL_EVAL_FILE).read_text()))
        expert_file = self.run_dir / EXPERT_EVAL_FILE
        experts = EvalResult(**json.loads(expert_file.read_text())) if expert_file.exists() \
            else None
        return DistillResult(student, experts)


def distill(config: DistillConfig, run_dir: str | Path, resume: bool = False,
            device: str | None = None, overrides: tuple[str, ...] = ()) -> DistillResult:
    """Run (or resume) a distillation; returns the final evaluations."""
    return Distiller(config, run_dir, resume, device, overrides).run()  # type: ignore[arg-type]
