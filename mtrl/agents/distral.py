"""Distral (Teh et al. 2017): task policies regularised toward a shared, distilled policy.

Every task ``i`` maximises the KL- and entropy-regularised return

    E_{pi_i} sum_t gamma^t [ r_i + (alpha/beta) log pi_0(a_t|s_t) - (1/beta) log pi_i(a_t|s_t) ]

i.e. ``c_KL = alpha/beta`` on ``KL(pi_i || pi_0)`` and ``c_Ent = (1-alpha)/beta`` on the entropy
of ``pi_i``. With soft actor-critic machinery (one twin critic ensemble for all tasks, as in
:class:`~mtrl.agents.sac.SAC`) and the temperature ``tau_i = 1/beta`` the per-row regulariser is

    cost = tau_i [ (1 - alpha) log pi_i(a|s) + alpha KL(pi_i(.|s) || pi_0(.|s)) ]

(the paper's ``tau log pi_i - alpha tau log pi_0`` with the expectation of the KL part over
``a ~ pi_i`` taken in closed form: the KL of the tanh-Gaussians is that of their pre-tanh
Gaussians). The critic target is ``r + gamma (min Q'(s', a') - cost(s', a'))`` and the actor
minimises ``cost - min Q(s, a)`` over all policy parameters: the gradient reaching ``pi_0`` is
``alpha tau grad KL(pi_i || pi_0)``, the paper's distillation of the task policies into
``pi_0`` (maximum likelihood of ``pi_i``'s actions). ``learn_beta`` tunes ``tau_i`` per task
toward the SAC entropy target instead of keeping the paper's fixed ``beta``.

Two-column (the paper's ``pi_i ∝ pi_0^alpha exp(beta f_i)``): the task column outputs a
Gaussian ``f_i`` and ``pi_i``'s pre-tanh Gaussian is the normalised product
``N(m_0, s_0)^alpha N(m_f, s_f)^beta`` (precisions ``alpha / s_0^2 + beta / s_f^2``), so the
shared column is part of every task policy and receives the RL gradients of all tasks too.

The task policies are one network call for all tasks (any mtrl architecture with per-task
outputs), ``pi_0`` another (``shared_network``; it sees the task id unless
``shared_task_input`` is off, the paper's task-agnostic ``pi_0(a|s)``). Deterministic actions
(evaluation, ``mtrl eval``) come from ``pi_0`` by default (``eval_policy="task"``: ``pi_i``);
training rollouts sample ``pi_i``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mtrl.agents.kl import tanh_gaussian_kl
from mtrl.agents.policy import TanhGaussianPolicy, rsample
from mtrl.agents.sac import SAC
from mtrl.errors import MtrlError
from mtrl.nn import NetworkConfig, build_network, explicit_spec

EVAL_POLICIES = ("shared", "task")


@dataclass
class DistralOptions:
    """Distral (Teh et al. 2017), used when ``agent.name=distral`` (the section ``agent.distral``).

    Task policy ``pi_i`` maximises ``E sum_t gamma^t [r + (alpha/beta) log pi_0 - (1/beta) log pi_i]``
    (KL coefficient ``alpha/beta``, entropy coefficient ``(1-alpha)/beta``); the shared policy
    ``pi_0`` is distilled from the task policies by the same objective.
    """

    alpha: float = 0.5  # in (0, 1]: weight of KL(pi_i || pi_0) against the entropy of pi_i
    beta: float = 10.0  # inverse temperature (> 0); Distral's temperature is 1/beta
    learn_beta: bool = False  # tune 1/beta per task toward agent.target_entropy (SAC-style)
    two_column: bool = False  # pi_i = pi_0^alpha * exp(beta f_i): a shared and a task column
    shared_network: NetworkConfig = field(default_factory=lambda: NetworkConfig(type="mlp"))
    # the paper (Teh et al. 2017): pi_0(a|s) has no task input and the task policies act
    shared_task_input: bool = False  # True: pi_0(a|s, task) (a variant, not the paper's)
    eval_policy: str = "task"  # task (pi_i, the paper) | shared (pi_0): what deterministic acts use

    def validate(self, key: str) -> None:
        """One-line errors naming the key (``key``: the section, ``agent.distral``)."""
        if not 0.0 < self.alpha <= 1.0:
            raise MtrlError(f"{key}.alpha must be in (0, 1], got {self.alpha}")
        if self.beta <= 0:
            raise MtrlError(f"{key}.beta must be positive, got {self.beta}")
        if self.eval_policy not in EVAL_POLICIES:
            raise MtrlError(f"{key}.eval_policy must be one of {', '.join(EVAL_POLICIES)}, "
                            f"got '{self.eval_policy}'")
        sizes = self.shared_network.hidden_sizes
        if not sizes or min(sizes) <= 0:
            raise MtrlError(f"{key}.shared_network.hidden_sizes must be non-empty and positive")


class DistralPolicy(nn.Module):
    """The task policies ``pi_i`` and the distilled policy ``pi_0`` (tanh-Gaussians).

    ``forward(obs, task_id) -> (mean_i, log_std_i, mean_0, log_std_0)``: pre-tanh Gaussians of
    each row's task policy and of ``pi_0``, one call of each network.
    """

    def __init__(self, task_network: nn.Module, shared_network: nn.Module, act_dim: int,
                 log_std_min: float, log_std_max: float, alpha: float, beta: float,
                 two_column: bool, shared_task_input: bool, log_std_mode: str = "clip") -> None:
        super().__init__()
        self.task = TanhGaussianPolicy(task_network, act_dim, log_std_min, log_std_max,
                                       log_std_mode)
        self.shared = TanhGaussianPolicy(shared_network, act_dim, log_std_min, log_std_max,
                                         log_std_mode)
        self.two_column = two_column
        self.shared_task_input = shared_task_input
        self.log_alpha, self.log_beta = math.log(alpha), math.log(beta)

    def shared_policy(self, obs: Tensor, task_id: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, log_std)`` of ``pi_0``."""
        return self.shared(obs, task_id if self.shared_task_input else torch.zeros_like(task_id))

    def combine(self, shared: tuple[Tensor, Tensor],
                column: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Two-column task policy: the normalised ``N(shared)^alpha * N(column)^beta``."""
        (mean_0, log_std_0), (mean_f, log_std_f) = shared, column
        log_prec_0 = self.log_alpha - 2.0 * log_std_0
        log_prec_f = self.log_beta - 2.0 * log_std_f
        weight_0 = torch.sigmoid(log_prec_0 - log_prec_f)  # alpha prec_0 / (total precision)
        mean = weight_0 * mean_0 + (1.0 - weight_0) * mean_f
        return mean, -0.5 * torch.logaddexp(log_prec_0, log_prec_f)

    def task_policy(self, obs: Tensor, task_id: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, log_std)`` of each row's task policy ``pi_i``."""
        column = self.task(obs, task_id)
        if not self.two_column:
            return column
        return self.combine(self.shared_policy(obs, task_id), column)

    def forward(self, obs: Tensor, task_id: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        shared = self.shared_policy(obs, task_id)
        column = self.task(obs, task_id)
        task = self.combine(shared, column) if self.two_column else column
        return (*task, *shared)


class Distral(SAC):
    """Distral with SAC critics (see the module docstring).

    Args (besides :class:`~mtrl.agents.sac.SAC`'s):
        alpha: in (0, 1]; ``alpha/beta`` weighs ``KL(pi_i || pi_0)``, ``(1-alpha)/beta`` the
            entropy of ``pi_i``.
        beta: inverse temperature; the temperature ``1/beta`` replaces SAC's
            ``init_temperature`` (which must stay at its default).
        learn_beta: tune ``1/beta`` per task toward ``target_entropy`` (``alpha_lr``).
        two_column: ``pi_i ∝ pi_0^alpha exp(beta f_i)`` with a task column ``f_i``.
        shared_network: network spec of ``pi_0`` (default: ``network``).
        shared_task_input: whether ``pi_0`` sees the task id (paper: no, ``pi_0(a|s)``).
        eval_policy: ``task`` (``pi_i``, the paper) or ``shared`` (``pi_0``) for
            deterministic actions.
    """

    name = "distral"
    options = DistralOptions  # the config section agent.distral
    actor_aux = ("log_prob", "kl")

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        num_tasks: int,
        network: dict[str, Any],
        alpha: float = 0.5,
        beta: float = 10.0,
        learn_beta: bool = False,
        two_column: bool = False,
        shared_network: dict[str, Any] | None = None,
        shared_task_input: bool = False,
        eval_policy: str = "task",
        init_temperature: float = 1.0,
        **sac_options: Any,
    ) -> None:
        if not 0.0 < alpha <= 1.0:
            raise MtrlError(f"distral: alpha must be in (0, 1], got {alpha}")
        if beta <= 0:
            raise MtrlError(f"distral: beta must be positive, got {beta}")
        if init_temperature != 1.0:
            raise MtrlError("distral: agent.init_temperature does not apply; the temperature "
                            "is 1/agent.distral.beta")
        self.alpha, self.beta, self.learn_beta = alpha, beta, learn_beta
        self.two_column, self.shared_task_input = two_column, shared_task_input
        self.shared_network = explicit_spec(shared_network if shared_network is not None
                                            else network)
        self.set_eval_policy(eval_policy)
        super().__init__(obs_dim, act_dim, num_tasks, network, init_temperature=1.0 / beta,
                         **sac_options)
        self.init_kwargs = {
            **self.init_kwargs, "init_temperature": init_temperature, "alpha": alpha,
            "beta": beta, "learn_beta": learn_beta, "two_column": two_column,
            "shared_network": self.shared_network, "shared_task_input": shared_task_input,
            "eval_policy": eval_policy,
        }

    def make_actor(self, network: dict[str, Any], obs_dim: int, act_dim: int, num_tasks: int,
                   log_std_min: float, log_std_max: float, log_std_mode: str) -> DistralPolicy:
        shared_tasks = num_tasks if self.shared_task_input else 1
        return DistralPolicy(
            build_network(network, obs_dim, 2 * act_dim, num_tasks),
            build_network(self.shared_network, obs_dim, 2 * act_dim, shared_tasks),
            act_dim, log_std_min, log_std_max, self.alpha, self.beta, self.two_column,
            self.shared_task_input, log_std_mode,
        )

    def set_eval_policy(self, policy: str) -> None:
        """Which policy deterministic actions use: ``shared`` (``pi_0``) or ``task`` (``pi_i``)."""
        if policy not in EVAL_POLICIES:
            raise MtrlError(f"distral: eval policy must be one of {', '.join(EVAL_POLICIES)}, "
                            f"got '{policy}'")
        self.eval_policy = policy

    def action_distribution(self, obs: Tensor, task_id: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-tanh ``(mean, log_std)`` of the evaluated policy (``eval_policy``)."""
        if self.eval_policy == "shared":
            return self.actor.shared_policy(obs, task_id)
        return self.actor.task_policy(obs, task_id)

    # ------------------------------------------------------------------ acting
    def behaviour_distribution(self, obs: Tensor, task_id: Tensor) -> tuple[Tensor, Tensor]:
        """Data is collected with the task policies."""
        return self.actor.task_policy(obs, task_id)

    # ---------------------------------------------------------------- learning
    def policy_sample(self, policy_output: tuple[Tensor, ...], noise: Tensor,
                      alpha: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Sample ``pi_i``; cost ``tau [(1-alpha) log pi_i + alpha KL(pi_i || pi_0)]``
        (``alpha`` here is the rows' temperature ``tau``, SAC's name for it)."""
        mean, log_std, mean_0, log_std_0 = policy_output
        action, log_prob = rsample(mean, log_std, noise, self.tanh_correction)
        kl = tanh_gaussian_kl(mean, log_std, mean_0, log_std_0)
        cost = alpha * ((1.0 - self.alpha) * log_prob + self.alpha * kl)
        return action, cost, torch.stack([log_prob, kl], -1)

    def temperature_step(self, log_prob: Tensor) -> None:
        if self.learn_beta:
            super().temperature_step(log_prob)
