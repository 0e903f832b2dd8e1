"""The student of policy distillation (Rusu et al. 2016; Parisotto et al. 2016, Actor-Mimic).

One multi-task tanh-Gaussian policy (any mtrl architecture) is fitted by supervised learning to
each task's expert on states labelled by that expert:

* ``kl``: ``KL(expert || student)`` of the tanh-Gaussian policies, per state (closed form,
  equal to the KL of the pre-tanh Gaussians), the cross-entropy of Policy Distillation for
  continuous actions;
* ``mse``: ``|tanh(mean_student) - tanh(mean_expert)|^2``, regression of the mean action.

With ``feature_regression_weight`` ``beta > 0`` the student also does Actor-Mimic's feature
regression (Parisotto et al. 2016, "Actor-Mimic: Deep Multitask and Transfer Reinforcement
Learning", the feature regression objective): a prediction network ``f_i`` per task maps the
student's last hidden layer ``h(s)`` (the input of its output layer) into the space of task
``i``'s expert's last hidden layer ``h_i(s)``, and each row's loss becomes
``L_policy + beta * |f_i(h(s)) - h_i(s)|^2`` (squared L2 norm over the expert's features).
The gradient of that term trains both ``f_i`` and the student. The ``T`` prediction networks
are batched tensors ``(T, d_student, d_expert)`` (a linear map, or an MLP with one hidden layer
of ``feature_predictor_hidden`` units), trained by the student's optimizer and saved with it;
experts with fewer features than the widest one are zero-padded and masked out of the norm.

The loss is reduced per task and handed to a gradient combiner (``mean`` by default), like
every mtrl loss. The loop that gathers and labels the states is :mod:`mtrl.training.distill`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from mtrl.agents.base import Agent
from mtrl.agents.kl import tanh_gaussian_kl
from mtrl.agents.policy import TanhGaussianPolicy
from mtrl.agents.sac import resolve_device
from mtrl.errors import MtrlError
from mtrl.nn import (GroupedNetwork, build_network, explicit_spec, last_shared_weight_name,
                     task_parameter_names)
from mtrl.nn.base import make_activation
from mtrl.nn.layers import BatchedLinear
from mtrl.optim import TaskLoss, build_combiner

LOSSES = ("kl", "mse")
PREDICTOR = "feature_predictor."  # prefix of the prediction networks' parameters in an update


@dataclass
class LabelledBatch:
    """Task-major states with their expert's pre-tanh action distribution (and, for
    Actor-Mimic's feature regression, the expert's last hidden layer, zero-padded to the
    widest expert's)."""

    obs: Tensor  # (T*b, obs_dim)
    task_id: Tensor  # (T*b,)
    expert_mean: Tensor  # (T*b, act_dim)
    expert_log_std: Tensor  # (T*b, act_dim)
    expert_features: Tensor | None = None  # (T*b, widest expert feature size)


def feature_module(network: nn.Module) -> nn.Module:
    """The submodule of an mtrl network whose input is its last hidden layer: its ``head``
    (MLP, multi-head, soft modularization, FiLM, MOORE, BroNet, cross-stitch), else its last
    linear layer in definition order (CARE's trunk output, PaCo's last parameter-set layer).

    Raises:
        MtrlError: a grouped network (each group has its own hidden layer) or a network
            without a linear layer.
    """
    if isinstance(network, GroupedNetwork):
        raise MtrlError("feature regression needs one hidden layer per row; grouped networks "
                        "(network.groups) have one per group")
    head = getattr(network, "head", None)
    if isinstance(head, nn.Module):
        return head
    linear = [m for m in network.modules() if isinstance(m, (nn.Linear, BatchedLinear))]
    if not linear:
        raise MtrlError(f"feature regression: {type(network).__name__} has no linear output "
                        "layer whose input is its last hidden layer")
    return linear[-1]


@contextmanager
def captured_input(module: nn.Module) -> Iterator[list[Tensor]]:
    """Within the block, the first positional input of every call of ``module`` is appended
    to the yielded list (also under ``functional_call``, ``vmap`` and ``grad``)."""
    inputs: list[Tensor] = []
    handle = module.register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
    try:
        yield inputs
    finally:
        handle.remove()


class FeaturePredictor(nn.Module):
    """Actor-Mimic's per-task feature prediction networks ``f_i``, batched over tasks.

    Each layer is a :class:`~mtrl.nn.layers.BatchedLinear` with one member per task
    (``weight (T, in, out)``); ``forward`` applies task ``i``'s member to task ``i``'s rows
    with one batched matmul over the task blocks, so a task's loss reaches only its own slice.

    Args:
        num_tasks: ``T``.
        in_dim: the student's last hidden size.
        out_dims: each task's expert's feature size (outputs are padded to the largest;
            the buffer ``mask (T, out)`` marks each task's real features).
        hidden: width of one hidden layer (0: a linear map).
        activation: of the hidden layer.
    """

    def __init__(self, num_tasks: int, in_dim: int, out_dims: Sequence[int], hidden: int = 0,
                 activation: str = "relu") -> None:
        super().__init__()
        out_dim = max(out_dims)
        widths = [in_dim, *([hidden] if hidden else []), out_dim]
        self.layers = nn.ModuleList(
            BatchedLinear(num_tasks, a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.act = make_activation(activation)
        self.task_parameters = tuple(f"layers.{i}.{name}" for i in range(len(self.layers))
                                     for name in ("weight", "bias"))
        mask = torch.arange(out_dim)[None, :] < torch.tensor(list(out_dims))[:, None]
        self.register_buffer("mask", mask.float())

    def forward(self, h: Tensor, task_id: Tensor, rows_per_task: int,
                target: Tensor | None = None) -> Tensor:
        """``f_task(h) (n, out)`` for task-major rows in blocks of ``rows_per_task`` rows (one
        task each); with ``target`` (the experts' padded features) the per-row squared error
        ``|f_task(h) - target|^2`` over the task's expert's features ``(n,)`` instead."""
        groups = h.shape[0] // rows_per_task
        tasks = task_id.view(groups, rows_per_task)[:, 0]
        x = h.view(groups, rows_per_task, h.shape[-1])
        for i, layer in enumerate(self.layers):
            x = torch.bmm(x, layer.weight[tasks]) + layer.bias[tasks].unsqueeze(1)
            if i < len(self.layers) - 1:
                x = self.act(x)
        prediction = x.reshape(h.shape[0], -1)
        if target is None:
            return prediction
        return ((prediction - target).pow(2) * self.mask[task_id]).sum(-1)


class Student(Agent):
    """A multi-task policy distilled from per-task experts.

    Args:
        obs_dim, act_dim, num_tasks: problem sizes.
        network: network spec of the policy (``{"type", "hidden_sizes", "activation", ...}``).
        lr: Adam step size.
        loss: ``kl`` or ``mse`` (module docstring).
        combiner: gradient combiner of the per-task losses.
        seed: seeds initialisation and sampling noise.
        feature_regression_weight: Actor-Mimic's ``beta`` (0: policy regression only and no
            prediction networks, exactly the plain student; module docstring).
        expert_feature_dims: each task's expert's last hidden size (needed when ``beta > 0``).
        feature_predictor_hidden: hidden width of each ``f_i`` (0: linear).
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
        feature_regression_weight: float = 0.0,
        expert_feature_dims: Sequence[int] = (),
        feature_predictor_hidden: int = 0,
    ) -> None:
        if loss not in LOSSES:
            raise MtrlError(f"distillation loss must be one of {', '.join(LOSSES)}, got '{loss}'")
        if not feature_regression_weight >= 0.0:
            raise MtrlError("distill.feature_regression_weight must be >= 0, got "
                            f"{feature_regression_weight}")
        if feature_predictor_hidden < 0:
            raise MtrlError("distill.feature_predictor_hidden must be >= 0, got "
                            f"{feature_predictor_hidden}")
        expert_feature_dims = [int(d) for d in expert_feature_dims]
        if feature_regression_weight > 0 and (len(expert_feature_dims) != num_tasks
                                              or min(expert_feature_dims, default=0) < 1):
            raise MtrlError(f"feature regression needs the feature sizes of all {num_tasks} "
                            f"experts, got {expert_feature_dims}")
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
        self.feature_regression_weight = float(feature_regression_weight)
        self.feature_predictor: FeaturePredictor | None = None
        if self.feature_regression_weight > 0:
            self._feature_module = feature_module(self.policy.network)
            with torch.no_grad(), captured_input(self._feature_module) as inputs:
                self.policy(torch.zeros(1, obs_dim, device=self.device),
                            torch.zeros(1, dtype=torch.int64, device=self.device))
            if len(inputs) != 1 or inputs[0].dim() != 2:
                raise MtrlError("feature regression: the student's output layer does not read "
                                "one (rows, features) hidden layer")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + 3)
                self.feature_predictor = FeaturePredictor(
                    num_tasks, inputs[0].shape[-1], expert_feature_dims,
                    feature_predictor_hidden,
                    self.init_kwargs["network"].get("activation", "relu")).to(self.device)
        self.combiner = build_combiner(combiner, num_tasks, seed=seed + 2).to(self.device)
        self.optimizer = torch.optim.Adam(self.trained_parameters().values(), lr=lr)
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(seed + 1)
        self.num_updates = 0
        self._task_params = task_parameter_names(self.policy)
        if self.feature_predictor is not None:
            self._task_params |= {PREDICTOR + n
                                  for n in task_parameter_names(self.feature_predictor)}
        self._shared_layer = last_shared_weight_name(self.policy)

    def trained_parameters(self) -> dict[str, nn.Parameter]:
        """The parameters of an update by name: the policy's, and with feature regression the
        prediction networks' under ``feature_predictor.``."""
        params = dict(self.policy.named_parameters())
        if self.feature_predictor is not None:
            params.update({PREDICTOR + n: p
                           for n, p in self.feature_predictor.named_parameters()})
        return params

    def action_distribution(self, obs: Tensor, task_id: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-tanh ``(mean, log_std)`` of the student."""
        return self.policy(obs, task_id)

    def distill_loss(self, batch: LabelledBatch) -> TaskLoss:
        """Per-task distillation loss; aux columns per row: ``(kl, action_mse)``, and with
        feature regression also ``feature_error`` (the unweighted ``|f_i(h) - h_i|^2``)."""
        use_kl = self.loss == "kl"
        if self.feature_predictor is None:
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

        if batch.expert_features is None:
            raise MtrlError("feature regression (distill.feature_regression_weight > 0) needs "
                            "the experts' features in the labelled batch")
        predictor, beta = self.feature_predictor, self.feature_regression_weight
        rows_per_task = batch.obs.shape[0] // self.num_tasks

        def feature_rows(params: dict[str, Tensor], obs: Tensor, task: Tensor, mean_e: Tensor,
                         log_std_e: Tensor, features_e: Tensor) -> tuple[Tensor, Tensor]:
            policy = {n: p for n, p in params.items() if not n.startswith(PREDICTOR)}
            f_params = {n[len(PREDICTOR):]: p for n, p in params.items()
                        if n.startswith(PREDICTOR)}
            with captured_input(self._feature_module) as hidden:
                mean, log_std = functional_call(self.policy, policy, (obs, task))
            kl = tanh_gaussian_kl(mean_e, log_std_e, mean, log_std)
            mse = (torch.tanh(mean) - torch.tanh(mean_e)).pow(2).sum(-1)
            error = functional_call(predictor, f_params,
                                    (hidden[-1], task, rows_per_task, features_e))
            loss = (kl if use_kl else mse) + beta * error
            return loss, torch.stack([kl, mse, error], -1)

        return TaskLoss(
            feature_rows, self.trained_parameters(),
            (batch.obs, batch.task_id, batch.expert_mean, batch.expert_log_std,
             batch.expert_features.to(batch.obs.dtype)),
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
        aux = loss.aux.view(self.num_tasks, -1, loss.aux.shape[-1]).mean(1)
        metrics = {"distill_loss": losses.mean(), "distill_loss_per_task": losses,
                   "kl_per_task": aux[:, 0], "action_mse_per_task": aux[:, 1]}
        if self.feature_predictor is not None:
            metrics["feature_loss"] = aux[:, 2].mean()
            metrics["feature_loss_per_task"] = aux[:, 2]
        return {**metrics, **{f"combiner_{k}": v for k, v in self.combiner.metrics().items()}}

    def state_dict(self) -> dict[str, Any]:
        state = {
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "combiner": self.combiner.state_dict(),
            **self.progress_state(),
        }
        if self.feature_predictor is not None:
            state["feature_predictor"] = self.feature_predictor.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (self.feature_predictor is None) != ("feature_predictor" not in state):
            raise MtrlError("student state and student disagree on feature regression "
                            "(distill.feature_regression_weight)")
        self.policy.load_state_dict(state["policy"])
        if self.feature_predictor is not None:
            self.feature_predictor.load_state_dict(state["feature_predictor"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.combiner.load_state_dict(state["combiner"])
        self.load_progress_state(state)
