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
:mod:`mtrl.training.loop` (the checkpoint's learner is the student, so ``mtrl eval RUN_DIR`` works).

With ``distill.feature_regression_weight > 0`` (Actor-Mimic's feature regression, Parisotto et
al. 2016) the labels also hold each expert's last hidden layer on the same states, read in the
same expert forward (:class:`ExpertLabeller`): for an SB3 SAC expert the output of its actor's
``latent_pi`` (the input of its mean layer ``mu``), for an mtrl expert the input of its policy
network's output layer (:func:`mtrl.agents.distill.feature_module`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtrl.agents.distill import LabelledBatch, Student, captured_input, feature_module
from mtrl.agents.policy import TanhGaussianPolicy
from mtrl.config import DistillConfig, from_dict
from mtrl.data import MultiTaskReplay
from mtrl.envs import MultiTaskVectorEnv, StepResult
from mtrl.errors import MtrlError
from mtrl.training.evaluation import EvalResult, evaluate
from mtrl.training.experts import AgentExpert, Expert, SB3Expert, TaskExperts, load_experts
from mtrl.training.logging import MetricsLogger
from mtrl.training.loop import Trainer
from mtrl.training.rundir import EXPERT_EVAL_FILE, FINAL_EVAL_FILE


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


def expert_feature_layer(expert: Expert) -> nn.Module:
    """The module of ``expert`` whose input is its last hidden layer: an SB3 SAC actor's mean
    layer ``mu`` (fed by ``latent_pi``), or the output layer of an mtrl agent's one
    tanh-Gaussian policy network.

    Raises:
        MtrlError: the expert's features cannot be reached (another expert type, an SB3 actor
            without ``mu``, an mtrl agent with several policies, such as Distral, or a grouped
            network).
    """
    if isinstance(expert, SB3Expert):
        mu = getattr(getattr(expert.model.policy, "actor", None), "mu", None)
        if not isinstance(mu, nn.Module):
            raise MtrlError(f"expert {expert.source}: its SB3 actor has no mean layer 'mu' to "
                            "read latent_pi's features from (feature regression)")
        return mu
    if isinstance(expert, AgentExpert):
        agent = expert.agent
        roots = [m for m in (getattr(agent, "actor", None), getattr(agent, "policy", None))
                 if isinstance(m, nn.Module)]
        policies = {id(p): p for root in roots for p in root.modules()
                    if isinstance(p, TanhGaussianPolicy)}
        if len(policies) != 1:
            raise MtrlError(f"expert {expert.source}: a '{agent.name}' agent has "
                            f"{len(policies)} policy networks; feature regression needs one")
        try:
            return feature_module(next(iter(policies.values())).network)
        except MtrlError as exc:
            raise MtrlError(f"expert {expert.source}: {exc}") from None
    raise MtrlError(f"expert {getattr(expert, 'source', expert)}: its hidden features cannot be "
                    "reached (feature regression reads SB3 SAC and mtrl agent experts)")


class ExpertLabeller:
    """Labels task-major states with each task's expert: ``(mean, log_std)`` and the expert's
    last hidden layer, zero-padded to the widest expert's (``feature_dims``: each expert's
    size), read by a hook in the same forward.

    Raises:
        MtrlError: an expert whose features cannot be obtained (:func:`expert_feature_layer`).
    """

    def __init__(self, experts: TaskExperts, obs_dim: int) -> None:
        self.experts = experts
        self.layers = [expert_feature_layer(e) for e in experts.experts]
        probe = torch.zeros(experts.num_tasks, obs_dim, device=experts.device)
        self.feature_dims = [f.shape[-1] for f in self._blocks(probe)[2]]

    def _blocks(self, obs: Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        blocks = obs.view(self.experts.num_tasks, -1, obs.shape[-1])
        means, log_stds, features = [], [], []
        for expert, layer, block in zip(self.experts.experts, self.layers, blocks):
            with captured_input(layer) as inputs:
                mean, log_std = expert.distribution(block)
            if not inputs or inputs[-1].shape[0] != block.shape[0]:
                raise MtrlError(f"expert {expert.source}: its last hidden layer could not be "
                                "read (feature regression)")
            means.append(mean)
            log_stds.append(log_std)
            features.append(inputs[-1].detach().reshape(block.shape[0], -1))
        return means, log_stds, features

    def __call__(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(mean, log_std, features)`` of every row's own task expert."""
        means, log_stds, features = self._blocks(obs)
        width = max(self.feature_dims)
        padded = [F.pad(f.float(), (0, width - f.shape[-1])) for f in features]
        return (torch.cat(means).float(), torch.cat(log_stds).float(), torch.cat(padded))


class Distiller(Trainer):
    """Runs (or resumes) one distillation run in ``run_dir`` (run directory, checkpointing and
    evaluation logging as :class:`~mtrl.training.loop.Trainer`)."""

    config: DistillConfig  # type: ignore[assignment]

    @staticmethod
    def _resumed_config(checkpoint: dict[str, Any], overrides: tuple[str, ...]) -> Any:
        from omegaconf import OmegaConf

        data = OmegaConf.merge(OmegaConf.create(checkpoint["config"]),
                               OmegaConf.from_dotlist(list(overrides)))
        return from_dict(OmegaConf.to_container(data), DistillConfig)  # type: ignore[arg-type]

    def make_student(self, env: MultiTaskVectorEnv) -> Student:
        s, d = self.config.student, self.config.distill
        labeller = getattr(self, "labeller", None)
        return Student(env.obs_dim, env.act_dim, env.num_tasks,
                       network=dataclasses.asdict(s.network), lr=s.lr,
                       loss=d.loss, combiner=s.combiner,
                       log_std_min=s.log_std_min, log_std_max=s.log_std_max,
                       log_std_mode=s.log_std_mode, device=str(self.device),
                       seed=self.config.train.seed,
                       feature_regression_weight=d.feature_regression_weight,
                       expert_feature_dims=labeller.feature_dims if labeller else (),
                       feature_predictor_hidden=d.feature_predictor_hidden)

    def run(self) -> DistillResult:  # type: ignore[override]
        """Distil to ``train.steps_per_task``, evaluate student and experts, write the report."""
        return super().run()

    # ------------------------------------------------------------------ hooks
    def build_learner(self, env: MultiTaskVectorEnv) -> Student:  # type: ignore[override]
        """The student (after loading the experts, so a bad expert fails before any write)."""
        cfg = self.config
        self.experts: TaskExperts = load_experts(cfg.distill, env.task_names, env.obs_dim,
                                                 env.act_dim, self.device)
        # Actor-Mimic's feature regression labels the experts' hidden features too
        self.labeller: ExpertLabeller | None = (
            ExpertLabeller(self.experts, env.obs_dim)
            if cfg.distill.feature_regression_weight > 0 else None)
        self.task_t = torch.tensor(env.task_id, device=self.device)
        return self.make_student(env)

    def start(self, env: MultiTaskVectorEnv, rng: np.random.Generator, step: int) -> None:
        """Every env picks its first episode's driver."""
        self.by_expert = rng.random(env.num_envs) < expert_fraction(self.config, step)

    def loop_state(self) -> dict[str, Any]:
        """Which envs' episodes in flight the experts drive (a resume keeps them)."""
        return {"by_expert": self.by_expert.copy()}

    def load_loop_state(self, state: dict[str, Any]) -> None:
        self.by_expert = np.asarray(state["by_expert"], dtype=bool).copy()

    def actions(self, learner: Student, obs: np.ndarray,  # type: ignore[override]
                env: MultiTaskVectorEnv, rng: np.random.Generator, learning: bool) -> np.ndarray:
        """The student's actions, the expert's in envs whose episode the expert drives (also
        during warm-up: the first DAgger data)."""
        deterministic = not self.config.distill.stochastic_rollouts
        with torch.no_grad():
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            actions = learner.act_tensor(obs_t, self.task_t, deterministic)
            if self.by_expert.any():
                expert_actions = self.experts.act_tensor(obs_t, deterministic, learner.generator)
                mask = torch.as_tensor(self.by_expert, device=self.device)[:, None]
                actions = torch.where(mask, expert_actions, actions)
            return actions.cpu().numpy()

    def update(self, learner: Student, replay: MultiTaskReplay,  # type: ignore[override]
               sampler: torch.Generator) -> dict[str, torch.Tensor]:
        """One distillation step on a task-balanced batch labelled by the experts (DAgger)."""
        batch = replay.sample(self.config.replay.batch_per_task, sampler)
        if self.labeller is not None:
            mean, log_std, features = self.labeller(batch.obs)
            return learner.update(LabelledBatch(batch.obs, batch.task_id, mean, log_std,
                                                features))
        mean, log_std = self.experts.distribution(batch.obs)
        return learner.update(LabelledBatch(batch.obs, batch.task_id, mean, log_std))

    def after_step(self, result: StepResult, rng: np.random.Generator, step: int) -> None:
        """New episodes choose their driver."""
        done = result.done
        if done.any():
            self.by_expert[done] = rng.random(int(done.sum())) < expert_fraction(self.config,
                                                                                  step)

    def extra_scalars(self, step: int) -> dict[str, float]:
        return {"train/expert_fraction": expert_fraction(self.config, step)}

    def finish(self, final: EvalResult, eval_env: MultiTaskVectorEnv,
               logger: MetricsLogger) -> DistillResult:
        """Evaluate the experts on the same eval envs (``distill.evaluate_experts``)."""
        expert_result = None
        if self.config.distill.evaluate_experts:
            expert_result = evaluate(lambda o, t: self.experts.act(o), eval_env,
                                     self.config.train.eval_episodes, final.step)
            expert_result.write(self.run_dir / EXPERT_EVAL_FILE)
            logger.log(final.step, {f"eval/expert_success/{k}": v
                                    for k, v in expert_result.per_task.items()},
                       final.step * eval_env.num_tasks)
        return DistillResult(final, expert_result)

    def saved_result(self) -> DistillResult:
        student = EvalResult(**json.loads((self.run_dir / FINAL_EVAL_FILE).read_text()))
        expert_file = self.run_dir / EXPERT_EVAL_FILE
        experts = EvalResult(**json.loads(expert_file.read_text())) if expert_file.exists() \
            else None
        return DistillResult(student, experts)


def distill(config: DistillConfig, run_dir: str | Path, resume: bool = False,
            device: str | None = None, overrides: tuple[str, ...] = ()) -> DistillResult:
    """Run (or resume) a distillation; returns the final evaluations."""
    return Distiller(config, run_dir, resume, device, overrides).run()  # type: ignore[arg-type]
