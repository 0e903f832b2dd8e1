"""Routing networks (Rosenbaum, Klinger & Riemer 2017, "Routing Networks: Adaptive Selection of
Non-linear Functions for Multi-Task Learning"; Rosenbaum et al. 2019, "Routing networks and the
challenges of modular and compositional computation").

At every routed depth ``d`` the network holds a shared set of ``num_modules`` modules
(``Linear -> activation``, one batched ``(m, in, out)`` tensor per depth,
:class:`~mtrl.nn.layers.BatchedLinear`) and, where the depth's input and output widths agree,
the paper's ``pass`` choice (the identity: skip the depth). A **router** makes a *hard* choice,
exactly one of them per depth; the chosen path is an ordinary MLP that trains by
backpropagation, and the router trains by reinforcement learning (REINFORCE).

The router is the paper's multi-agent form: one agent per task, each a tabular categorical
policy per depth, ``pi_t(c | d) = softmax(router_logits[t, d])`` (the per-task tabular agents
were the paper's best routers; we train them with the paper's REINFORCE rule rather than WPL).
After the routed depths a per-task output layer (``head``, also PopArt's ``output_layer``)
gives the outputs; ``routed_layers < len(hidden_sizes)`` routes only the last hidden layers
and shares the first ones as a plain trunk (the paper routes the layers above a shared trunk).

**Which decisions are used, and credited.** Decisions live in the buffer ``route (T, D)``:

* training forwards (``module.training`` and autograd enabled: the loss forwards of actor and
  critic, also inside ``vmap`` / ``torch.func``) follow ``route``: the sampled decisions;
* all other forwards take the router's greedy choice ``argmax router_logits``: eval mode
  (``module.eval()``), and every forward without autograd (acting, the Bellman targets: the
  target critic is a Polyak copy whose ``router_logits`` are a Polyak average of the live
  ones, so it follows the live router's greedy path; its own ``route`` is never used).

:meth:`RoutingNetwork.observe_task_losses` (the agent calls it after each optimizer step with
that step's per-task losses, :func:`mtrl.nn.observe_task_losses`) rewards the decisions in
``route`` (exactly those that produced the losses; nothing resamples them between the loss
forward and the hook), takes one REINFORCE step on ``router_logits`` and then samples the
decisions of the next update. In SAC: the critic's hook credits the critic-loss forward (the
target critic and the actor-loss forward of the critic are not credited), the actor's hook
credits the actor-loss forward (acting and the next actions of the targets are greedy). Each
of the twin critics (an :class:`~mtrl.nn.Ensemble` member) has its own router and decisions;
both are credited with the task's critic loss, which sums over the two critics (the agent
hands over no per-member loss): the other member's term is noise independent of the choice.

**REINFORCE.** One decision per task and depth per update (all of a task's rows in the batch
share it: the reward the network receives is the per-task loss ``L_t`` of the update, not a
per-row one; the paper samples per example). Reward ``r_t = -L_t``; advantage
``A_t = r_t - b_t`` with ``b_t`` a bias-corrected exponential average of task ``t``'s past
rewards (``baseline_decay``), divided by their running standard deviation and clipped to
``[-5, 5]`` with ``normalize_advantage`` (task losses differ in scale by orders of magnitude
between tasks and over training, and one exploding loss must not wipe out a choice); the
advantage is 0 until a task has a baseline (two rewards with normalisation, one without).
The step on the logits of task ``t``, depth ``d``, choice ``c`` is the policy gradient of the
tabular softmax, ``router_logits[t, d] += router_lr * A_t * (one_hot(c) - pi_t(. | d))``.
The optional collaboration reward (``collaboration_reward = rho``, default 0; our form of the
paper's reward for reusing modules, which the paper derives from the modules' history of
selection) adds, for the choice ``c`` of task ``t`` at depth ``d``, ``rho`` times the mean
probability with which the other tasks' routers currently choose ``c`` at ``d`` (the policies
are slow averages of past choices), minus its expectation under ``pi_t`` as baseline, in
advantage units. Non-finite losses give no step.

**Randomness.** Decisions are drawn by Gumbel-max from the router's own counter-based stream
(:func:`hashed_uniform` of the buffers ``noise_seed`` and ``draws``): on the device, without a
host sync, independent per ensemble member, reproducible from the agent's seed and restored
exactly from a checkpoint; torch's global random state is only used for ``noise_seed`` at
construction (inside the agent's seeded initialisation).

**Module collapse** (routers settling on few modules, a central challenge in the 2019 paper)
is reported by
:meth:`RoutingNetwork.network_metrics` (:func:`mtrl.nn.network_metrics`; the training loop
logs it at each log interval as ``train/<actor|critic>/routing/...``): distinct modules among
the tasks' greedy choices per depth (``modules_used_d<d>``), the expected number of distinct
modules their sampling policies use (``modules_expected_d<d>``), the share of tasks whose
greedy choice is ``pass`` (``pass_d<d>``), and the router's entropy (nats; mean, and per task).
A fresh router is uniform (zero logits) and its ties go to the lowest index, so
``modules_used`` reads 1 until the first REINFORCE steps; ``modules_expected`` does not.

**Cost.** Every module of a depth runs on every row (one batched matmul) and each row keeps
its route's output: an update costs about ``num_modules`` times the hidden-layer FLOPs of an
MLP of the same sizes (as PaCo's ``K`` parameter sets). The router is ``T x D x C`` logits.

Per-task parameters (:func:`~mtrl.nn.base.task_parameter_names`): the head. The router's
logits are a parameter (so that the target network's copy is Polyak-averaged) that no loss
differentiates; optimizers skip it or see zero gradients (AdamW's decoupled weight decay still
shrinks it by ``lr * weight_decay`` per step). The last shared weight (GradNorm's ``W``) is the
last routed depth's module weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtrl.errors import MtrlError
from mtrl.nn.base import TaskLinear, make_activation, mlp_layers
from mtrl.nn.layers import BatchedLinear
from mtrl.nn.registry import register_network

ADVANTAGE_CLIP = 5.0  # |A| bound of the normalised advantage (in running standard deviations)
_STD_EPS = 1e-8


@dataclass
class RoutingOptions:
    """Routing networks (Rosenbaum et al. 2017/2019): hard per-task routes through shared
    modules, a tabular REINFORCE router per task."""

    num_modules: int = 4  # shared modules per routed depth
    routed_layers: int = 0  # routed depths = the last hidden layers (0: every hidden layer)
    allow_pass: bool = True  # the identity choice at depths whose widths agree
    router_lr: float = 0.003  # REINFORCE step size on the router's logits (0: frozen router)
    baseline_decay: float = 0.99  # exponential average of each task's reward (the baseline)
    normalize_advantage: bool = True  # divide by the running std of the rewards, clip to +-5
    collaboration_reward: float = 0.0  # rho: reward for choices other tasks make (paper's)

    def validate(self, key: str) -> None:
        """One-line error naming ``key`` (the section, e.g. ``agent.network.routing``)."""
        check_options(self.num_modules, self.routed_layers, self.router_lr,
                      self.baseline_decay, self.collaboration_reward, key)


def check_options(num_modules: int, routed_layers: int, router_lr: float,
                  baseline_decay: float, collaboration_reward: float,
                  key: str = "routing") -> None:
    """Raise :class:`MtrlError` for an invalid option (``key`` names the section)."""
    if num_modules < 1:
        raise MtrlError(f"{key}.num_modules must be >= 1, got {num_modules}")
    if routed_layers < 0:
        raise MtrlError(f"{key}.routed_layers must be >= 0 (0: every hidden layer), "
                        f"got {routed_layers}")
    if not router_lr >= 0:
        raise MtrlError(f"{key}.router_lr must be >= 0, got {router_lr}")
    if not 0.0 <= baseline_decay < 1.0:
        raise MtrlError(f"{key}.baseline_decay must be in [0, 1), got {baseline_decay}")
    if not collaboration_reward >= 0:
        raise MtrlError(f"{key}.collaboration_reward must be >= 0, got {collaboration_reward}")


@register_network("routing", options=RoutingOptions)
class RoutingNetwork(nn.Module):
    """Hard-routed shared modules with a per-task REINFORCE router and a per-task head.

    Args:
        in_dim, out_dim, num_tasks: sizes.
        hidden_sizes, activation: the widths of the path (the presets: 3 x 400, ReLU); each
            routed depth maps the previous width to its own.
        num_modules: shared modules per routed depth.
        routed_layers: how many of the last hidden layers are routed (0: all of them); the
            others form a shared trunk.
        allow_pass: offer the identity choice at routed depths whose in/out widths agree.
        router_lr: REINFORCE step size on the logits (0: the router never learns).
        baseline_decay: decay of the per-task reward average used as baseline.
        normalize_advantage: advantages in units of the running reward std, clipped to +-5.
        collaboration_reward: ``rho``, reward for choosing what the other tasks choose.
    """

    output_layer = "head"  # per-task output layer (the PopArt protocol)

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: Sequence[int] = (400, 400, 400),
        activation: str = "relu",
        num_modules: int = 4,
        routed_layers: int = 0,
        allow_pass: bool = True,
        router_lr: float = 0.003,
        baseline_decay: float = 0.99,
        normalize_advantage: bool = True,
        collaboration_reward: float = 0.0,
    ) -> None:
        super().__init__()
        check_options(num_modules, routed_layers, router_lr, baseline_decay,
                      collaboration_reward)
        sizes = list(hidden_sizes)
        if not sizes:
            raise MtrlError("routing needs at least one hidden layer (hidden_sizes)")
        depth = routed_layers or len(sizes)
        if depth > len(sizes):
            raise MtrlError(f"routing.routed_layers ({routed_layers}) exceeds the number of "
                            f"hidden layers ({len(sizes)})")
        shared = sizes[: len(sizes) - depth]
        self.num_tasks, self.num_modules, self.depth = num_tasks, num_modules, depth
        self.router_lr, self.baseline_decay = float(router_lr), float(baseline_decay)
        self.normalize_advantage = bool(normalize_advantage)
        self.collaboration_reward = float(collaboration_reward)
        self.act = make_activation(activation)
        self.trunk = mlp_layers(in_dim, shared, activation)
        widths = [shared[-1] if shared else in_dim, *sizes[len(shared):]]
        self.routed = nn.ModuleList(
            BatchedLinear(num_modules, a, b) for a, b in zip(widths[:-1], widths[1:])
        )
        self.pass_at = tuple(bool(allow_pass) and a == b for a, b in zip(widths[:-1], widths[1:]))
        self.num_choices = num_modules + (1 if any(self.pass_at) else 0)  # pass = index m
        mask = torch.zeros(depth, self.num_choices, dtype=torch.bool)
        mask[:, :num_modules] = True
        for d, allowed in enumerate(self.pass_at):
            mask[d, num_modules:] = allowed
        self.register_buffer("choice_mask", mask, persistent=False)
        self.router_logits = nn.Parameter(torch.zeros(num_tasks, depth, self.num_choices))
        # the router's own random stream (counter-based, on the device, checkpointed): the
        # seed comes from torch's stream at construction (the agent's seed), then draw k of
        # the decisions hashes (seed, k); no host sync, no global random state during training
        self.register_buffer("noise_seed", torch.randint(0, 2**31 - 1, (), dtype=torch.int64))
        self.register_buffer("draws", torch.zeros((), dtype=torch.int64))
        self.register_buffer("route", sample_routes(self.router_logits.detach(), mask,
                                                    self.noise_seed, self.draws))
        self.draws.add_(1)
        self.register_buffer("reward_mean", torch.zeros(num_tasks))  # EMA sums (not corrected)
        self.register_buffer("reward_sq", torch.zeros(num_tasks))
        self.register_buffer("reward_count", torch.zeros(num_tasks))
        self.head = TaskLinear(widths[-1], out_dim, num_tasks)
        self.last_shared_weight = f"routed.{depth - 1}.weight"

    # ------------------------------------------------------------------ routing
    def greedy_routes(self) -> Tensor:
        """Each task's most probable choice per depth, ``(T, D)`` (ties: the lowest index)."""
        return masked_logits(self.router_logits.detach(), self.choice_mask).argmax(-1)

    def routes(self, task_id: Tensor) -> Tensor:
        """The choices of the rows, ``(B, D)``: the sampled ``route`` in a training forward
        (train mode, autograd on), the greedy ones otherwise (see the module docstring)."""
        if self.training and torch.is_grad_enabled():
            return self.route[task_id]
        return self.greedy_routes()[task_id]

    def forward(self, x: Tensor, task_id: Tensor) -> Tensor:
        h = self.trunk(x)
        routes = self.routes(task_id)
        m = self.num_modules
        for d, layer in enumerate(self.routed):
            choice = routes[..., d]
            out = layer(h)  # (B, m, out): every module on every row (one batched matmul)
            index = choice.clamp(max=m - 1).unsqueeze(-1).unsqueeze(-1)
            y = self.act(out.gather(-2, index.expand(*choice.shape, 1, out.shape[-1])).squeeze(-2))
            if self.pass_at[d]:
                y = torch.where((choice == m).unsqueeze(-1), h, y)
            h = y
        return self.head(h, task_id)

    # ------------------------------------------------------------------ the router's RL
    def observe_task_losses(self, losses: Tensor, state: dict[str, Tensor]) -> None:
        """Reward the decisions in ``route`` with ``-losses`` (the update that just stepped
        used them), take one REINFORCE step on the logits, sample the next decisions.

        ``state``: this network's live tensors by name, with leading member dimensions inside
        an :class:`~mtrl.nn.Ensemble` (each member has its own router and decisions)."""
        logits, route = state["router_logits"], state["route"]
        mask = state["choice_mask"]
        with torch.no_grad():
            probs = masked_logits(logits, mask.unsqueeze(-3)).softmax(-1)  # (*E, T, D, C)
            reward = -losses.to(logits.dtype).expand_as(state["reward_mean"])
            advantage = self.advantage(reward, state)  # (*E, T)
            chosen = F.one_hot(route, self.num_choices).to(logits.dtype)
            score = chosen - probs  # grad of log pi(c) w.r.t. the logits
            step = advantage[..., None, None] * score
            if self.collaboration_reward > 0 and self.num_tasks > 1:
                others = (probs.sum(-3, keepdim=True) - probs) / (self.num_tasks - 1)
                bonus = self.collaboration_reward * others  # reward of each choice
                gain = ((bonus * chosen).sum(-1, keepdim=True)
                        - (bonus * probs).sum(-1, keepdim=True))  # minus its expectation
                step = step + gain * score
            logits.add_(self.router_lr * step)
            self.update_baseline(reward, state)
            route.copy_(sample_routes(logits, mask.unsqueeze(-3), state["noise_seed"],
                                      state["draws"]))
            state["draws"].add_(1)

    def advantage(self, reward: Tensor, state: dict[str, Tensor]) -> Tensor:
        """``r - b`` against the baseline of the rewards seen before (normalised and clipped
        with ``normalize_advantage``); 0 where there is no baseline yet or ``r`` is not
        finite."""
        count = state["reward_count"]
        correction = (1.0 - self.baseline_decay ** count).clamp(min=_STD_EPS)
        mean = state["reward_mean"] / correction
        advantage = reward - mean
        ready = count >= 1
        if self.normalize_advantage:
            var = (state["reward_sq"] / correction - mean.square()).clamp(min=0.0)
            advantage = (advantage / (var.sqrt() + _STD_EPS)).clamp(-ADVANTAGE_CLIP, ADVANTAGE_CLIP)
            ready = count >= 2
        return torch.where(ready & torch.isfinite(reward), advantage,
                           torch.zeros_like(advantage))

    def update_baseline(self, reward: Tensor, state: dict[str, Tensor]) -> None:
        """Fold the finite rewards into the exponential averages of ``r`` and ``r^2``."""
        finite = torch.isfinite(reward)
        r = torch.where(finite, reward, torch.zeros_like(reward))
        decay = torch.where(finite, torch.full_like(r, self.baseline_decay), torch.ones_like(r))
        state["reward_mean"].mul_(decay).add_((1.0 - decay) * r)
        state["reward_sq"].mul_(decay).add_((1.0 - decay) * r.square())
        state["reward_count"].add_(finite.to(r.dtype))

    # ------------------------------------------------------------------ module collapse
    def network_metrics(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Module usage and router entropy (means over ensemble members), see the module
        docstring; scalars, and ``routing/entropy_per_task`` of shape ``(T,)``."""
        with torch.no_grad():
            logits = masked_logits(state["router_logits"], state["choice_mask"].unsqueeze(-3))
            probs = logits.softmax(-1)  # (*E, T, D, C)
            lead = tuple(range(probs.dim() - 3))  # member dims
            entropy = torch.special.entr(probs).sum(-1)  # (*E, T, D)
            m = self.num_modules
            greedy = F.one_hot(logits.argmax(-1), self.num_choices).to(probs.dtype)
            used = greedy[..., :m].amax(-3).sum(-1)  # (*E, D)
            expected = (1.0 - (1.0 - probs[..., :m]).prod(-3)).sum(-1)
            passes = greedy[..., m:].sum(-1).mean(-2) if self.num_choices > m else None
            metrics = {"routing/entropy": entropy.mean(),
                       "routing/entropy_per_task": entropy.mean(-1).mean(lead) if lead
                       else entropy.mean(-1)}
            for d in range(self.depth):
                metrics[f"routing/modules_used_d{d}"] = used[..., d].mean()
                metrics[f"routing/modules_expected_d{d}"] = expected[..., d].mean()
                if self.pass_at[d] and passes is not None:
                    metrics[f"routing/pass_d{d}"] = passes[..., d].mean()
            return metrics

    def extra_repr(self) -> str:
        return (f"tasks={self.num_tasks}, depth={self.depth}, modules={self.num_modules}, "
                f"pass_at={self.pass_at}, router_lr={self.router_lr}")


def masked_logits(logits: Tensor, mask: Tensor) -> Tensor:
    """``logits`` with the choices that ``mask`` forbids (pass where widths differ) at -inf."""
    return logits.masked_fill(~mask, float("-inf"))


def sample_routes(logits: Tensor, mask: Tensor, seed: Tensor, draw: Tensor) -> Tensor:
    """One choice per ``(..., task, depth)`` from ``softmax(logits)`` over the allowed choices
    (Gumbel-max on :func:`hashed_uniform` noise of ``seed`` and ``draw``, each of shape
    ``(...)``: ensemble members draw from their own streams)."""
    scores = masked_logits(logits, mask).log_softmax(-1)
    u = hashed_uniform(seed, draw, tuple(scores.shape[seed.dim():]))
    return (scores - torch.log(-torch.log(u))).argmax(-1)


_MASK32 = 0xFFFFFFFF


def _mul32(x: Tensor, c: int) -> Tensor:
    """``x * c mod 2^32`` for ``x < 2^32`` in int64 without overflow (16-bit halves of c)."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: Tensor) -> Tensor:
    """A 32-bit integer hash (murmur3's finaliser)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def hashed_uniform(seed: Tensor, draw: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Uniform noise in ``(0, 1)`` of shape ``(*seed.shape, *shape)``: a hash of ``(seed,
    draw, element index)``, computed on the device with int64 arithmetic (a counter-based
    stream: the same seed and draw give the same noise, on any device)."""
    lead = seed.shape
    index = torch.arange(math.prod(shape), device=seed.device, dtype=torch.int64).view(shape)
    view = lead + (1,) * len(shape)
    h = _mix32(index + 0x9E3779B9)
    h = _mix32(h ^ (draw.view(view) & _MASK32))
    h = _mix32(h ^ ((draw.view(view) >> 32) & _MASK32))
    h = _mix32(h ^ (seed.view(view) & _MASK32))
    return ((h >> 8).to(torch.float32) + 0.5) / float(1 << 24)
