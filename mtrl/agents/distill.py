"""The student of policy distillation (Rusu et al. 2016; Parisotto et al. 2016, Actor-Mimic).

One multi-task tanh-Gaussian policy (any mtrl architecture) is fitted by supervised learning to
each task's expert on states labelled by that expert:

* ``kl``: ``KL(expert || student)`` of the tanh-Gaussian policies, per state (closed form,
  equal to the KL of the pre-tanh Gaussians), the cross-entropy of Policy Distillation for
  continuous actions;
* ``mse``: ``|tanh(mean_student) - tanh(mean_expert)|^2``, regression of the mean action.

The loss is reduced per task and handed to a gradient combiner (``mean`` by default), like
every mtrl loss. The loop that gathers and labels the states is :mod:`mtrl.training.distill`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call

from mtrl.agents.base import Agent
from mtrl.agents.kl import tanh_gaussian_kl
from mtrl.agents.policy import TanhGaussianPolicy
from mtrl.agents.sac import resolve_device
from mtrl.errors import MtrlError
from mtrl.nn import build_network, explicit_spec, last_shared_weight_name, task_parameter_names
from mtrl.optim import TaskLoss, build_combiner

LOSSES = ("kl", "mse")


@dataclass
class LabelledBatch:
    """Task-major states with their expert's pre-tanh action distribution."""

    obs: Tensor  # (T*b, obs_dim)
    task_id: Tensor  # (T*b,)
    expert_mean: Tensor  # (T*b, act_dim)
    expert_log_std: Tensor  # (T*b, act_dim)


class Student(Agent):
    """A multi-task policy distilled from per-task experts.

    Args:
        obs_dim, act_dim, num_tasks: problem sizes.
        network: network spec of the policy (``{"type", "hidden_sizes", "activation", ...}``).
        lr: Adam step size.
        loss: ``kl`` or ``mse`` (module docstring).
        combiner: gradient combiner of the per-task losses.
        seed: seeds initialisation and sampling noise.
    """

    name = "student"
    trained_by_rl = False

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        num_tasks: int,
        network: dict[str, Any],
        lr: float = 3e-4,
        loss: str = "kl",
        combiner: str = "mean",
        log_std_min: float = -20.0,
        log_std_max: float = 2.0,
        log_std_mode: str = "clip",
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        if loss not in LOSSES:
            raise MtrlError(f"distillation loss must be one of {', '.join(LOSSES)}, got '{loss}'")
        self.init_kwargs = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.obs_dim, self.act_dim, self.num_tasks = obs_dim, act_dim, num_tasks
        self.device = resolve_device(device)
        self.init_kwargs["device"] = str(self.device)
        self.init_kwargs["network"] = explicit_spec(network)
        self.loss = loss
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.policy = TanhGaussianPolicy(
                build_network(network, obs_dim, 2 * act_dim, num_tasks),
                act_dim, log_std_min, log_std_max, log_std_mode,
            ).to(self.device)
        self.combiner = build_combiner(combiner, num_tasks, seed=seed + 2).to(self.device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(seed + 1)
        self.num_updates = 0
        self._task_params = task_parameter_names(self.policy)
        self._shared_layer = last_shared_weight_name(self.policy)

    def action_distribution(self, obs: Tensor, task_id: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-tanh ``(mean, log_std)`` of the student."""
        return self.policy(obs, task_id)

    def distill_loss(self, batch: LabelledBatch) -> TaskLoss:
        """Per-task distillation loss; aux columns: ``(kl, action_mse)`` per row."""
        use_kl = self.loss == "kl"

        def rows(params: dict[str, Tensor], obs: Tensor, task: Tensor, mean_e: Tensor,
                 log_std_e: Tensor) -> tuple[Tensor, Tensor]:
            mean, log_std = functional_call(self.policy, params, (obs, task))
            kl = tanh_gaussian_kl(mean_e, log_std_e, mean, log_std)
            mse = (torch.tanh(mean) - torch.tanh(mean_e)).pow(2).sum(-1)
            return (kl if use_kl else mse), torch.stack([kl, mse], -1)

        return TaskLoss(
            rows, dict(self.policy.named_parameters()),
            (batch.obs, batch.task_id, batch.expert_mean, batch.expert_log_std),
            self.num_tasks, self._task_params, shared_layer=self._shared_layer,
        )

    def update(self, batch: LabelledBatch) -> dict[str, Tensor]:
        loss = self.distill_loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        losses = self.combiner.backward(loss)
        self.optimizer.step()
        self.combiner.after_step(loss)
        self.num_updates += 1
        assert loss.aux is not None
        aux = loss.aux.view(self.num_tasks, -1, 2).mean(1)
        return {"distill_loss": losses.mean(), "distill_loss_per_task": losses,
                "kl_per_task": aux[:, 0], "action_mse_per_task": aux[:, 1],
                **{f"combiner_{k}": v for k, v in self.combiner.metrics().items()}}

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "combiner": self.combiner.state_dict(),
            **self.progress_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.combiner.load_state_dict(state["combiner"])
        self.load_progress_state(state)
