"""The parts of BRC (Nauman et al. 2025, "Bigger, Regularized, Categorical") that SAC composes.

* :func:`categorical_projection` / :func:`expected_value` — the categorical (C51, Bellemare
  et al. 2017) critic: values are distributions over fixed atoms ``z`` on ``[v_min, v_max]``.
* :class:`RewardNormalizer` — per-task reward scales that fit each task's returns into the
  critic's support.
* :class:`EmbeddedCritic` / :class:`EmbeddedActor` — a learned, L2-normalised task embedding
  appended to the critic's input (trained by the critic loss) and, detached, to the actor's.

``SAC(critic_loss="categorical", critic_ensemble="mean", task_encoding="embedding",
reward_normalization=True, weight_decay=...)`` with BroNet networks is BRC; every piece also
works alone and with any architecture and gradient combiner.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtrl.nn.layers import TaskEmbedding


def categorical_projection(atoms: Tensor, probs: Tensor, support: Tensor) -> Tensor:
    """Project the distribution with mass ``probs (B, K')`` on ``atoms (B, K')`` onto the
    fixed, evenly spaced ``support (K,)``: ``(B, K)`` probabilities.

    Atoms outside the support are clipped to its ends; an atom between two support points
    splits its mass between them in proportion to its distance (an atom on a support point
    puts all its mass there). Total mass is conserved.
    """
    num = support.shape[0]
    v_min, v_max = support[0], support[-1]
    position = (atoms.clamp(v_min, v_max) - v_min) * ((num - 1) / (v_max - v_min))  # [0, K-1]
    lower = position.floor().clamp(0, num - 1)
    upper_weight = position - lower  # 0 on a support point (and at the top end)
    lower_index = lower.long()
    upper_index = (lower_index + 1).clamp_max(num - 1)
    out = torch.zeros(*atoms.shape[:-1], num, device=atoms.device, dtype=probs.dtype)
    out.scatter_add_(-1, lower_index, probs * (1.0 - upper_weight))
    out.scatter_add_(-1, upper_index, probs * upper_weight)
    return out


def expected_value(logits: Tensor, support: Tensor) -> Tensor:
    """``sum_j softmax(logits)_j z_j`` over the last dimension."""
    return (torch.softmax(logits, -1) * support).sum(-1)


def discounted_values(rewards: np.ndarray, gamma: float, truncated: bool) -> np.ndarray:
    """The discounted Monte-Carlo value at every step of one episode,
    ``v_t = r_t + gamma v_{t+1}``; a truncated episode's tail ``v_L`` is the value of earning
    its mean reward forever, ``mean(r) / (1 - gamma)`` (a terminated one's is 0)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    values = np.empty_like(rewards)
    tail = rewards.mean() / (1.0 - gamma) if truncated and rewards.size else 0.0
    for t in range(rewards.size - 1, -1, -1):
        tail = rewards[t] + gamma * tail
        values[t] = tail
    return values


class RewardNormalizer(nn.Module):
    """Per-task reward scales of BRC: task ``i``'s rewards are multiplied by
    ``v_max / (G_i + lambda_i)``.

    ``G_i`` is the largest absolute discounted Monte-Carlo value seen at any step of task
    ``i``'s completed episodes (:func:`discounted_values`; a time-limited episode's tail is
    bootstrapped with its mean reward), as the authors' code computes it.
    ``lambda_i = -alpha_i * target_entropy / (2 (1 - gamma))`` is the entropy bonus the soft
    value adds on top (the code's correction, with task ``i``'s temperature). A task without a
    completed episode keeps scale 1.

    The statistics are buffers (checkpointed with the agent's state).
    """

    def __init__(self, num_tasks: int, gamma: float, v_max: float) -> None:
        super().__init__()
        if not 0.0 <= gamma < 1.0:
            raise ValueError(f"reward normalisation needs gamma in [0, 1), got {gamma}")
        self.gamma = gamma
        self.horizon = 1.0 / (1.0 - gamma)
        self.v_max = v_max
        self.register_buffer("max_value", torch.zeros(num_tasks))
        self.register_buffer("seen", torch.zeros(num_tasks, dtype=torch.bool))

    def observe(self, task_id: np.ndarray, rewards: Sequence[np.ndarray],
                truncated: np.ndarray) -> None:
        """Update ``G`` with completed episodes: their tasks, per-step rewards and whether
        each ended at the time limit (one entry per episode)."""
        pairs = [(task, np.abs(discounted_values(episode, self.gamma, bool(cut))).max())
                 for task, episode, cut in zip(np.asarray(task_id, dtype=np.int64), rewards,
                                               np.asarray(truncated, dtype=bool))
                 if len(episode)]
        if not pairs:
            return
        task = torch.tensor([t for t, _ in pairs], device=self.seen.device)
        value = torch.tensor([v for _, v in pairs], dtype=self.max_value.dtype,
                             device=self.seen.device)
        self.max_value.scatter_reduce_(0, task, value, "amax")  # on the device: no host sync
        self.seen[task] = True

    def scale(self, alpha: Tensor, target_entropy: float) -> Tensor:
        """``(T,)`` reward multipliers given the tasks' temperatures ``alpha (T,)``."""
        correction = -alpha * self.horizon * target_entropy / 2.0
        denominator = (self.max_value + correction).clamp_min(1e-6)
        return torch.where(self.seen, self.v_max / denominator, torch.ones_like(denominator))


class EmbeddedCritic(nn.Module):
    """``critic([x, e(task)], task)`` with ``e(task)`` a learned per-task vector of unit norm.

    The embedding is one table shared by the critic ensemble's members (the authors' code),
    trained with the critic; the target critic copies it (Polyak-averaged like the rest).
    ``template`` and ``member_state`` are the ensemble's (PopArt, PaCo reach through).
    """

    def __init__(self, ensemble: nn.Module, num_tasks: int, dim: int) -> None:
        super().__init__()
        self.ensemble = ensemble
        self.task_embedding = TaskEmbedding(num_tasks, dim, init_std=1.0)

    def embed(self, task_id: Tensor, detach: bool = False) -> Tensor:
        """``(B, dim)`` unit-norm task vectors (``detach``: as constants)."""
        table = self.task_embedding.weight
        return F.normalize((table.detach() if detach else table)[task_id], dim=-1)

    def forward(self, x: Tensor, task_id: Tensor) -> Tensor:
        return self.ensemble(torch.cat([x, self.embed(task_id)], -1), task_id)

    @property
    def template(self) -> nn.Module:
        return self.ensemble.template

    def member_state(self) -> dict[str, Tensor]:
        return self.ensemble.member_state()


class EmbeddedActor(nn.Module):
    """``policy([obs, stop_gradient(e(task))], task)``: the actor reads the critic's task
    embedding as a constant, so the actor loss never moves it (and the actor's parameters,
    state dict and optimizer do not include it)."""

    def __init__(self, policy: nn.Module, critic: EmbeddedCritic) -> None:
        super().__init__()
        self.policy = policy
        object.__setattr__(self, "_critic", critic)  # not a submodule: the critic owns it

    def forward(self, obs: Tensor, task_id: Tensor):  # type: ignore[no-untyped-def]
        embedding = self._critic.embed(task_id, detach=True)
        return self.policy(torch.cat([obs, embedding], -1), task_id)
