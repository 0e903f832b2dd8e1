"""Multi-task soft actor-critic (Haarnoja et al. 2018; Meta-World's MT-SAC / MT-MH-SAC).

One update, top to bottom:

1. critic targets (no grad): ``y = r + gamma * (1 - terminated) * (min_i Q'_i(s', a') - alpha_t log pi(a'|s'))``
2. critic loss per row: ``0.5 * sum_i (Q_i(s, a) - y)^2`` (twin critics fused in one ensemble);
   reduced per task and handed to the critic's gradient combiner.
3. actor loss per row: ``alpha_t log pi(a|s) - min_i Q_i(s, a)``, with the critic's weights
   as constants (no critic weight gradient is computed); reduced per task, actor combiner.
4. per-task temperature: ``-log alpha_t * (log pi + target_entropy)`` averaged over task t's rows.
5. Polyak averaging of the target critic.

Each task has its own temperature (``shared_temperature``: one for all tasks, as the one-hot
MT-SAC baselines of PCGrad, CAGrad and FAMO use). With ``temperature_weighting`` the task losses of actor and
critic are weighted by ``softmax(-log alpha)`` (soft modularization, Yang et al. 2020).

Gradient combiners (``mtrl.optim``) turn each per-task loss vector into gradients; the
actor's loss has no sign, so combiners that balance positive losses (``gradnorm``,
``uncertainty``, ``famo``) are for the critic only.

With ``popart`` (Hessel et al. 2019) the critic outputs normalised values ``n``; task ``t``'s
value is ``sigma_t n + mu_t``. Each update moves the statistics toward the batch's targets and
rescales the per-task output layer of the critic and of its target (outputs preserved), then
regresses ``n`` on ``(y - mu_t) / sigma_t`` (``critic_loss`` is in these normalised units).
The actor minimises ``(alpha_t log pi - Q_t) / sigma_t``: SAC's objective for each task (same
optimum, the temperature tuned as usual in reward units) with gradients whose scale does not
depend on the task's reward scale.

BRC (Nauman et al. 2025; :mod:`mtrl.agents.brc`) is options of the same agent:

* ``critic_loss="categorical"``: each critic outputs logits over ``num_bins`` atoms ``z`` on
  ``[v_min, v_max]``; the target is the C51 projection of ``r + gamma (1 - terminated)
  (z - alpha_t log pi(a'|s'))`` with the target critics' distribution at ``(s', a')``, the loss
  per row the cross-entropy summed over the critics, and ``Q`` the expected value.
* ``critic_ensemble``: ``min`` (SAC's clipped double Q) or ``mean`` (BRC: mean of the critics'
  probabilities; for the MSE critic the mean of their values).
* ``task_encoding="embedding"``: a learned unit-norm task vector appended to the critic's
  input (trained by the critic loss) and, detached, to the actor's.
* ``reward_normalization``: task ``t``'s rewards scaled by ``v_max / (G_t + lambda_t)`` from
  completed episodes (:meth:`SAC.observe_episodes`).
* ``weight_decay``: AdamW on actor and critic (0: Adam, as before).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from mtrl.agents.base import Agent
from mtrl.agents.compiled import CompiledUpdate
from mtrl.agents.brc import (EmbeddedActor, EmbeddedCritic, RewardNormalizer,
                             categorical_projection)
from mtrl.agents.policy import TANH_CORRECTIONS, TanhGaussianPolicy, rsample
from mtrl.data import Batch, Episodes
from mtrl.errors import MtrlError
from mtrl.nn import (Ensemble, build_network, explicit_spec, last_shared_weight_name,
                     observe_task_losses, task_loss_mask, task_parameter_names)
from mtrl.optim import (PopArt, TaskLoss, build_combiner, call_with, output_layer_name,
                        with_task_output)


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class SAC(Agent):
    """Multi-task SAC with per-task temperatures and pluggable gradient combiners.

    Args:
        obs_dim, act_dim, num_tasks: problem sizes.
        network: network spec (``{"type", "hidden_sizes", "activation", ...}``) used for the
            actor and for each of the twin critics.
        actor_combiner, critic_combiner: gradient-combiner names (``mean`` by default).
        combiners: options per combiner name (``{"cagrad": {"c": 0.4}}``), given to the
            combiner(s) of that name.
        popart: PopArt-normalised critic; ``popart_beta`` is the statistics' step size.
        temperature_weighting: weight task losses by ``softmax(-log alpha)``.
        log_std_mode: ``clip`` (SB3, initial std ~1) or ``tanh`` (CARE code) log-std bounds.
        alpha_beta1: Adam's beta1 for the temperature (0.9; BRC's code uses 0.5).
        tanh_correction: ``bounded`` (``log(1 - tanh^2 + 1e-6)``, the original SAC code,
            garage, SB3, CARE) or ``exact`` (the JAX baselines) term of ``log pi``.
        shared_temperature: one SAC temperature for all tasks instead of one per task.
        critic_network: network spec of the critics (default: ``network``).
        critic_loss: ``mse`` (regression) or ``categorical`` (cross-entropy on ``num_bins``
            atoms on ``[v_min, v_max]``).
        critic_ensemble: ``min`` or ``mean`` of the twin critics (targets and actor).
        task_encoding: ``one_hot`` (the networks see the task id only) or ``embedding`` (a
            learned ``task_embedding_dim``-d unit vector appended to actor and critic inputs).
        reward_normalization: per-task reward scales from completed episodes (BRC).
        weight_decay: AdamW's decoupled weight decay on actor and critic (0: Adam).
        compile: run the update's pieces compiled with ``torch.compile``
            (:mod:`mtrl.agents.compiled`; combinations it cannot compile are refused).
        seed: seeds parameter initialisation and the agent's sampling noise.
    """

    name = "sac"
    actor_aux: tuple[str, ...] = ("log_prob",)  # per-row aux columns of policy_sample

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        num_tasks: int,
        network: dict[str, Any],
        actor_lr: float = 3e-4,
        critic_lr: float = 3e-4,
        alpha_lr: float = 3e-4,
        alpha_beta1: float = 0.9,
        gamma: float = 0.99,
        tau: float = 0.005,
        init_temperature: float = 1.0,
        target_entropy: float | None = None,
        log_std_min: float = -20.0,
        log_std_max: float = 2.0,
        log_std_mode: str = "clip",
        tanh_correction: str = "bounded",
        shared_temperature: bool = False,
        actor_update_every: int = 1,
        target_update_every: int = 1,
        temperature_weighting: bool = False,
        actor_combiner: str = "mean",
        critic_combiner: str = "mean",
        combiners: dict[str, dict[str, Any]] | None = None,
        popart: bool = False,
        popart_beta: float = 3e-4,
        critic_network: dict[str, Any] | None = None,
        critic_loss: str = "mse",
        critic_ensemble: str = "min",
        num_bins: int = 101,
        v_min: float = -10.0,
        v_max: float = 10.0,
        task_encoding: str = "one_hot",
        task_embedding_dim: int = 32,
        reward_normalization: bool = False,
        weight_decay: float = 0.0,
        compile: bool = False,
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        self.init_kwargs = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        check_critic_options(critic_loss, critic_ensemble, num_bins, v_min, v_max,
                             task_encoding, task_embedding_dim, weight_decay, popart)
        if task_encoding == "embedding" and type(self).make_actor is not SAC.make_actor:
            raise MtrlError(f"agent.task_encoding=embedding is not supported by agent "
                            f"'{self.name}' (its actor is not SAC's policy)")
        if reward_normalization and not 0.0 <= gamma < 1.0:
            raise MtrlError("agent.reward_normalization needs agent.gamma < 1")
        if tanh_correction not in TANH_CORRECTIONS:
            raise MtrlError(f"agent.tanh_correction must be one of "
                            f"{', '.join(TANH_CORRECTIONS)}, got '{tanh_correction}'")
        self.tanh_correction = tanh_correction
        self.obs_dim, self.act_dim, self.num_tasks = obs_dim, act_dim, num_tasks
        self.device = resolve_device(device)
        self.init_kwargs["device"] = str(self.device)
        self.init_kwargs["network"] = explicit_spec(network)
        if critic_network is not None:
            self.init_kwargs["critic_network"] = explicit_spec(critic_network)
        self.categorical = critic_loss == "categorical"
        self.critic_ensemble = critic_ensemble
        self.support = torch.linspace(v_min, v_max, num_bins, device=self.device)
        self.gamma, self.tau = gamma, tau
        self.actor_update_every = actor_update_every
        self.target_update_every = target_update_every
        self.temperature_weighting = temperature_weighting
        self.target_entropy = -float(act_dim) if target_entropy is None else target_entropy

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            embed = task_embedding_dim if task_encoding == "embedding" else 0
            actor = self.make_actor(network, obs_dim + embed, act_dim, num_tasks,
                                    log_std_min, log_std_max, log_std_mode)
            critic_spec = network if critic_network is None else critic_network
            outputs = num_bins if self.categorical else 1
            members = [build_network(critic_spec, obs_dim + act_dim + embed, outputs, num_tasks)
                       for _ in range(2)]
            if popart:  # PopArt rescales a per-task output layer (added if the net has none)
                members = [with_task_output(m, 1, num_tasks) for m in members]
            critic: nn.Module = Ensemble(members)
            self._critic_ensemble = critic  # the Ensemble itself (PaCo's loss hooks)
            if embed:
                critic = EmbeddedCritic(critic, num_tasks, embed)
                actor = EmbeddedActor(actor, critic)
            self.critic = critic.to(self.device)
            self.actor = actor.to(self.device)
        self.reward_normalizer = (RewardNormalizer(num_tasks, gamma, v_max).to(self.device)
                                  if reward_normalization else None)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.popart = PopArt(num_tasks, popart_beta).to(self.device) if popart else None
        self._critic_output = (
            output_layer_name(self.critic.template, num_tasks) if popart else None
        )
        self.shared_temperature = shared_temperature
        self.log_alpha_param = torch.full(
            (1 if shared_temperature else num_tasks,), math.log(init_temperature),
            device=self.device, requires_grad=True,
        )
        options = combiners or {}
        self.actor_combiner = build_combiner(
            actor_combiner, num_tasks, seed=seed + 2, **options.get(actor_combiner, {})
        ).to(self.device)
        self.critic_combiner = build_combiner(
            critic_combiner, num_tasks, seed=seed + 3, **options.get(critic_combiner, {})
        ).to(self.device)
        if self.actor_combiner.positive_losses:
            raise MtrlError(
                f"agent.actor_combiner={actor_combiner} balances positive losses; the actor "
                "loss alpha log pi - Q has no sign (use it as agent.critic_combiner)"
            )
        if weight_decay > 0:  # decoupled weight decay (AdamW), BRC's regularisation
            self.actor_optimizer: torch.optim.Optimizer = torch.optim.AdamW(
                self.actor.parameters(), lr=actor_lr, weight_decay=weight_decay, foreach=True)
            self.critic_optimizer: torch.optim.Optimizer = torch.optim.AdamW(
                self.critic.parameters(), lr=critic_lr, weight_decay=weight_decay,
                foreach=True)
        else:  # foreach: the single-tensor loop's numbers (bit for bit), fewer op launches
            self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=actor_lr,
                                                    foreach=True)
            self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=critic_lr,
                                                     foreach=True)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha_param], lr=alpha_lr,
                                                betas=(alpha_beta1, 0.999), foreach=True)
        self.generator = torch.Generator(self.device)
        self.generator.manual_seed(seed + 1)
        self.num_updates = 0
        self._actor_task_params = task_parameter_names(self.actor)
        self._critic_task_params = task_parameter_names(self.critic)
        self._actor_shared_layer = last_shared_weight_name(self.actor)
        self._critic_shared_layer = last_shared_weight_name(self.critic)
        self._actor_mask = task_loss_mask(self.actor)
        self._critic_mask = task_loss_mask(self.critic)
        self.compiled = CompiledUpdate(self) if compile else None

    def make_actor(self, network: dict[str, Any], obs_dim: int, act_dim: int, num_tasks: int,
                   log_std_min: float, log_std_max: float, log_std_mode: str) -> nn.Module:
        """The policy module (subclasses with another policy parameterisation override this)."""
        return TanhGaussianPolicy(build_network(network, obs_dim, 2 * act_dim, num_tasks),
                                  act_dim, log_std_min, log_std_max, log_std_mode)

    @property
    def log_alpha(self) -> Tensor:
        """``(T,)`` log-temperatures (one shared value repeated with ``shared_temperature``)."""
        return self.log_alpha_param.expand(self.num_tasks)

    # ------------------------------------------------------------------ acting
    def action_distribution(self, obs: Tensor, task_id: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-tanh ``(mean, log_std)`` of the policy (e.g. to use the agent as an expert)."""
        return self.actor(obs, task_id)

    # ---------------------------------------------------------------- learning
    def task_weights(self, batch: Batch | None = None) -> Tensor | None:
        """Per-task loss weights summing to one: ``softmax(-log alpha)`` when temperature
        weighting is on, times the batch's ``task_weights`` (active task sampling) when it has
        them, renormalised; ``None`` (every task ``1/T``) when neither applies."""
        weights = (torch.softmax(-self.log_alpha.detach(), 0) if self.temperature_weighting
                   else None)
        share = None if batch is None else batch.task_weights
        if share is None:
            return weights
        if weights is None:
            return share
        weights = weights * share
        return weights / weights.sum()

    def policy_sample(self, policy_output: tuple[Tensor, ...], noise: Tensor,
                      alpha: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(action, cost, aux)`` of a reparameterised sample from the actor's output.

        ``cost`` is the per-row regulariser the soft value subtracts and the actor minimises
        beside ``-Q``: ``alpha * log pi`` for SAC (``alpha``: each row's temperature). ``aux``
        is ``log pi`` (or columns named by ``actor_aux``, ``log pi`` first; the others are
        reported per task).
        """
        action, log_prob = rsample(*policy_output, noise, self.tanh_correction)
        return action, alpha * log_prob, log_prob

    def ensemble_q(self, critic_out: Tensor) -> Tensor:
        """``(n,)`` values from the critics' outputs ``(2, n, 1 or num_bins)``: the min or mean
        over critics (categorical: the expected value, of the mean probabilities with
        ``mean``)."""
        if self.categorical:
            probs = torch.softmax(critic_out, -1)
            if self.critic_ensemble == "mean":
                return (probs.mean(0) * self.support).sum(-1)
            return (probs * self.support).sum(-1).min(0).values
        q = critic_out.squeeze(-1)
        return q.mean(0) if self.critic_ensemble == "mean" else q.min(0).values

    def ensemble_probs(self, logits: Tensor) -> Tensor:
        """``(n, num_bins)`` distribution of the critics' logits ``(2, n, num_bins)``: their
        mean probabilities, or the probabilities of the critic with the lower expected value."""
        probs = torch.softmax(logits, -1)
        if self.critic_ensemble == "mean":
            return probs.mean(0)
        lower = (probs * self.support).sum(-1).argmin(0)  # (n,)
        return probs.gather(0, lower.view(1, -1, 1).expand(1, *probs.shape[1:])).squeeze(0)

    def policy_noise(self, rows: int) -> Tensor:
        """``(rows, act_dim)`` standard-normal noise from the agent's generator."""
        return torch.randn(rows, self.act_dim, device=self.device, generator=self.generator)

    def critic_targets(self, batch: Batch, noise: Tensor | None = None) -> Tensor:
        """Soft Bellman targets ``(T*b,)`` (categorical: projected target distributions
        ``(T*b, num_bins)``); bootstraps through truncations. ``noise``: the next actions'
        standard-normal noise ``(T*b, act_dim)`` (default: drawn from the agent's generator)."""
        with torch.no_grad():
            if noise is None:
                noise = self.policy_noise(batch.next_obs.shape[0])
            alpha = self.log_alpha.exp()[batch.task_id]
            next_action, next_cost, _ = self.policy_sample(
                self.actor(batch.next_obs, batch.task_id), noise, alpha
            )
            next_out = self.critic_target(
                torch.cat([batch.next_obs, next_action], -1), batch.task_id
            )
            if self.categorical:
                keep = self.gamma * (1.0 - batch.terminated)
                atoms = batch.reward[:, None] + keep[:, None] * (
                    self.support - next_cost[:, None])
                return categorical_projection(atoms, self.ensemble_probs(next_out),
                                              self.support)
            next_q = self.ensemble_q(next_out)
            if self.popart is not None:
                next_q = self.popart.denormalize(next_q, batch.task_id)
            soft_value = next_q - next_cost
            return batch.reward + self.gamma * (1.0 - batch.terminated) * soft_value

    def critic_loss(self, batch: Batch, target: Tensor) -> TaskLoss:
        """Per-task twin-critic regression loss (on normalised targets with PopArt)."""
        if self.popart is not None:
            target = self.popart.normalize(target, batch.task_id)

        own = dict(self.critic.named_parameters())

        def rows(params: dict[str, Tensor], obs: Tensor, action: Tensor, y: Tensor,
                 task: Tensor) -> Tensor:
            q = call_with(self.critic, params, own, torch.cat([obs, action], -1), task)
            if self.categorical:  # cross-entropy to the target distribution, summed over critics
                return -(y * torch.log_softmax(q, -1)).sum(-1).sum(0)
            return 0.5 * (q.squeeze(-1) - y).pow(2).sum(0)

        return TaskLoss(
            rows, own,
            (batch.obs, batch.action, target, batch.task_id), self.num_tasks,
            self._critic_task_params, self.task_weights(batch), self._critic_shared_layer,
            self._critic_mask,
        )

    def actor_loss(self, batch: Batch, noise: Tensor | None = None) -> TaskLoss:
        """Per-task policy loss; the critic enters as constants. Aux output: log pi.
        ``noise``: the actions' standard-normal noise (default: from the agent's generator)."""
        critic_state = {k: v.detach() for k, v in self.critic.named_parameters()}
        own = dict(self.actor.named_parameters())
        alpha = self.log_alpha.detach().exp()[batch.task_id]
        if noise is None:
            noise = self.policy_noise(batch.obs.shape[0])

        popart_rows: tuple[Tensor, ...] = ()
        if self.popart is not None:
            popart_rows = (self.popart.sigma[batch.task_id], self.popart.mean[batch.task_id])

        def rows(params: dict[str, Tensor], obs: Tensor, task: Tensor, eps: Tensor,
                 alpha_rows: Tensor, *popart: Tensor) -> tuple[Tensor, Tensor]:
            out = call_with(self.actor, params, own, obs, task)
            action, cost, aux = self.policy_sample(out, eps, alpha_rows)
            q = functional_call(self.critic, critic_state, (torch.cat([obs, action], -1), task))
            q = self.ensemble_q(q)
            if popart:  # (alpha log pi - (sigma q + mu)) / sigma, q normalised
                sigma, mu = popart
                return (cost - mu) / sigma - q, aux
            return cost - q, aux

        return TaskLoss(
            rows, own,
            (batch.obs, batch.task_id, noise, alpha, *popart_rows),
            self.num_tasks, self._actor_task_params, self.task_weights(batch),
            self._actor_shared_layer, self._actor_mask,
        )

    def popart_step(self, target: Tensor) -> None:
        """Update PopArt's statistics with ``target (T*b,)`` and preserve the critics' outputs."""
        assert self.popart is not None and self._critic_output is not None
        old_mean, old_sigma = self.popart.update(target.view(self.num_tasks, -1))
        for critic in (self.critic, self.critic_target):
            state = critic.member_state()
            self.popart.preserve_outputs_(state[f"{self._critic_output}.weight"],
                                          state[f"{self._critic_output}.bias"],
                                          old_mean, old_sigma)

    def reward_scale(self) -> Tensor | None:
        """``(T,)`` per-task reward multipliers of reward normalisation (None when off)."""
        if self.reward_normalizer is None:
            return None
        return self.reward_normalizer.scale(self.log_alpha.detach().exp(), self.target_entropy)

    def observe_episodes(self, episodes: Episodes) -> None:
        """Completed training episodes: reward statistics, and the combiners that watch
        episodes (DTP's success rates)."""
        if self.reward_normalizer is not None:
            self.reward_normalizer.observe(episodes.task_id, episodes.rewards,
                                           episodes.truncated)
        for combiner in (self.actor_combiner, self.critic_combiner):
            observe = getattr(combiner, "observe_episodes", None)
            if observe is not None:
                observe(episodes)

    def update(self, batch: Batch) -> dict[str, Tensor]:
        if self.compiled is not None:  # this update, its pieces compiled (mtrl.agents.compiled
            return self.compiled.update(batch)  # mirrors it: edit both; test_compile.py checks)
        metrics: dict[str, Tensor] = {}
        scale = self.reward_scale()
        if scale is not None:
            batch = dataclasses.replace(batch, reward=batch.reward * scale[batch.task_id])
            metrics["reward_scale_per_task"] = scale
        target = self.critic_targets(batch)
        if self.popart is not None:
            self.popart_step(target)
            metrics["popart_sigma"] = self.popart.sigma
        critic_loss = self.critic_loss(batch, target)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_losses = self.critic_combiner.backward(critic_loss)
        self.critic_optimizer.step()
        observe_task_losses(self._critic_ensemble, critic_losses)  # networks that adapt (PaCo)
        self.critic_combiner.after_step(critic_loss)
        metrics["critic_loss"] = critic_losses.mean()
        metrics["critic_loss_per_task"] = critic_losses
        metrics["target_q"] = ((target * self.support).sum(-1) if self.categorical
                               else target).mean()
        metrics.update({f"critic_{k}": v for k, v in self.critic_combiner.metrics().items()})

        if self.num_updates % self.actor_update_every == 0:
            metrics.update(self.actor_step(batch))

        if self.num_updates % self.target_update_every == 0:
            with torch.no_grad():
                torch._foreach_lerp_(
                    list(self.critic_target.parameters()), list(self.critic.parameters()),
                    self.tau,
                )
        self.num_updates += 1
        return metrics

    def actor_step(self, batch: Batch) -> dict[str, Tensor]:
        """One actor step and one temperature step; their metrics."""
        actor_loss = self.actor_loss(batch)
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_losses = self.actor_combiner.backward(actor_loss)
        self.actor_optimizer.step()
        observe_task_losses(self.actor, actor_losses)
        assert actor_loss.aux is not None  # (T*b,) log pi, or (T*b, k) columns actor_aux
        aux = actor_loss.aux.view(self.num_tasks, batch.rows_per_task, -1).mean(1)
        log_prob = aux[:, 0]
        self.actor_combiner.after_step(actor_loss)
        self.temperature_step(log_prob)
        metrics = {f"actor_{k}": v for k, v in self.actor_combiner.metrics().items()}
        metrics.update({f"{name}_per_task": aux[:, i]
                        for i, name in enumerate(self.actor_aux[1:], 1)})
        return {"actor_loss": actor_losses.mean(), "entropy": -log_prob.mean(),
                "alpha": self.log_alpha.detach().exp(), **metrics}

    def temperature_loss(self, log_prob: Tensor) -> Tensor:
        """The temperatures' loss given each task's mean ``log_prob`` ``(T,)``."""
        gap = log_prob + self.target_entropy
        # per task: each temperature its task's mean; shared: one temperature, all rows' mean
        return -(self.log_alpha * gap).mean() if self.shared_temperature else \
            -(self.log_alpha * gap).sum()

    def temperature_step(self, log_prob: Tensor) -> None:
        """Move each task's temperature toward its entropy target (``log_prob``: (T,) means)."""
        alpha_loss = self.temperature_loss(log_prob)
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()

    # ------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha_param.detach().clone(),
            "actor_combiner": self.actor_combiner.state_dict(),
            "critic_combiner": self.critic_combiner.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
            **self.progress_state(),
            **({"popart": self.popart.state_dict()} if self.popart is not None else {}),
            **({"reward_normalizer": self.reward_normalizer.state_dict()}
               if self.reward_normalizer is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha_param.copy_(state["log_alpha"])
        self.actor_combiner.load_state_dict(state["actor_combiner"])
        self.critic_combiner.load_state_dict(state["critic_combiner"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        self.load_progress_state(state)
        if self.popart is not None:
            self.popart.load_state_dict(state["popart"])
        if self.reward_normalizer is not None:
            self.reward_normalizer.load_state_dict(state["reward_normalizer"])


CRITIC_LOSSES = ("mse", "categorical")
CRITIC_ENSEMBLES = ("min", "mean")
TASK_ENCODINGS = ("one_hot", "embedding")


def check_critic_options(critic_loss: str, critic_ensemble: str, num_bins: int, v_min: float,
                         v_max: float, task_encoding: str, task_embedding_dim: int,
                         weight_decay: float, popart: bool) -> None:
    """Raise :class:`MtrlError` (one line, with the config key) for invalid BRC options."""
    for key, value, allowed in (("critic_loss", critic_loss, CRITIC_LOSSES),
                                ("critic_ensemble", critic_ensemble, CRITIC_ENSEMBLES),
                                ("task_encoding", task_encoding, TASK_ENCODINGS)):
        if value not in allowed:
            raise MtrlError(f"agent.{key} must be one of {', '.join(allowed)}, got '{value}'")
    if critic_loss == "categorical" and popart:
        raise MtrlError("agent.popart does not combine with agent.critic_loss=categorical: the "
                        "categorical critic's support [v_min, v_max] is fixed (use "
                        "agent.reward_normalization to fit returns into it)")
    if num_bins < 2:
        raise MtrlError(f"agent.num_bins must be >= 2, got {num_bins}")
    if not v_min < v_max:
        raise MtrlError(f"agent.v_min must be below agent.v_max, got [{v_min}, {v_max}]")
    if task_embedding_dim <= 0:
        raise MtrlError(f"agent.task_embedding_dim must be positive, got {task_embedding_dim}")
    if weight_decay < 0:
        raise MtrlError(f"agent.weight_decay must be >= 0, got {weight_decay}")
