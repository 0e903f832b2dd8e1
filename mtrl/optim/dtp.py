"""DTP, dynamic task prioritization (Guo et al. 2018, "Dynamic Task Prioritization for Multitask
Learning", ECCV, Sec. 3.2, task-level prioritization).

Each task's loss is weighted by the focal form of its key performance indicator (KPI)
``kappa_i`` in ``[0, 1]``,

    w_i = -(1 - kappa_i)^gamma log kappa_i,

so a task that performs badly (small ``kappa``) gets a large weight and a mastered one a weight
near 0. The paper smooths each KPI with an exponential moving average and borrows the focusing
parameter ``gamma`` from the focal loss (Lin et al. 2017), whose default is 2; mtrl uses
``gamma = 2``.

**The KPI in RL (mtrl's choice).** ``kappa_i`` is task ``i``'s recent **training success
rate**: whenever training episodes finish, the training loop hands their success flags to the
agent (``observe_episodes``), which forwards them here. For each task with finished episodes
in that batch, ``kappa_i <- smoothing * kappa_i + (1 - smoothing) * rate_i``, ``rate_i`` the
fraction of that task's just-finished episodes that succeeded (``smoothing`` is the paper's
``1 - alpha``; default 0.9 per finished-episode batch). Before any episode of a task has
finished, ``kappa_i = 0.5`` (no information; it is the start of the moving average). For the
weight to stay finite, ``kappa`` is clipped into ``[eps, 1 - eps]`` in the focal form.

The weights are normalised to mean 1 and the network's gradient is the one of
``sum_i (w_i / T) L_i`` (times the loss's own weights, ``1/T`` by default): equal KPIs give
exactly ``mean``. The weights are positive and do not depend on the losses' sign, so DTP works
on the actor as well as on the critic. The KPIs and episode counts are extra state and the
weights a buffer, so ``state_dict`` holds all of it and a resumed run continues exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtrl.data.episodes import Episodes
from mtrl.errors import MtrlError
from mtrl.optim.combiners import GradientCombiner, register_combiner
from mtrl.optim.task_loss import TaskLoss


def dtp_weights(kappa: np.ndarray | Tensor, gamma: float = 2.0, eps: float = 0.01) -> np.ndarray:
    """The focal weights ``-(1 - k)^gamma log k`` of the KPIs ``kappa (T,)`` clipped into
    ``[eps, 1 - eps]``, normalised to mean 1 (all ones when the KPIs are equal)."""
    k = np.clip(np.asarray(kappa, dtype=np.float64), eps, 1.0 - eps)
    focal = -((1.0 - k) ** gamma) * np.log(k)
    if np.all(k == k[0]):
        return np.ones_like(k)
    return focal / focal.mean()


@dataclass
class DTPOptions:
    """DTP, dynamic task prioritization (Guo et al. 2018); KPI = training success rate."""

    gamma: float = 2.0  # focusing parameter of the focal form (focal-loss default 2)
    smoothing: float = 0.9  # EMA weight of the previous KPI, per finished-episode batch
    eps: float = 0.01  # KPIs are clipped into [eps, 1 - eps] so that the weights stay finite

    def validate(self, key: str) -> None:
        if self.gamma < 0:
            raise MtrlError(f"{key}: gamma must be >= 0, got {self.gamma}")
        if not 0.0 <= self.smoothing < 1.0:
            raise MtrlError(f"{key}: smoothing must be in [0, 1), got {self.smoothing}")
        if not 0.0 < self.eps < 0.5:
            raise MtrlError(f"{key}: eps must be in (0, 0.5), got {self.eps}")


@register_combiner("dtp", options=DTPOptions)
class DTP(GradientCombiner):
    """Dynamic task prioritization (Guo et al. 2018) with the training success rate as KPI.

    Args:
        gamma: focusing parameter of ``-(1 - kappa)^gamma log kappa`` (default 2; 0 gives
            ``-log kappa``).
        smoothing: EMA weight of the previous KPI per batch of finished episodes (default 0.9).
        eps: KPIs are clipped into ``[eps, 1 - eps]`` (default 0.01).
    """

    def __init__(self, num_tasks: int, seed: int = 0, gamma: float = 2.0,
                 smoothing: float = 0.9, eps: float = 0.01) -> None:
        super().__init__(num_tasks, seed)
        DTPOptions(gamma, smoothing, eps).validate("dtp")
        self.gamma, self.smoothing, self.eps = float(gamma), float(smoothing), float(eps)
        self.kappa = np.full(num_tasks, 0.5)  # smoothed training success rate per task
        self.episodes = np.zeros(num_tasks, np.int64)  # finished episodes seen per task
        self.register_buffer("weights", torch.ones(num_tasks))  # mean 1

    def backward(self, loss: TaskLoss) -> Tensor:
        values = loss.values()
        (values * self.weights * loss.weights).sum().backward()
        return values.detach()

    def observe_episodes(self, episodes: Episodes) -> None:
        """Finished training episodes: update the KPIs of their tasks and the weights."""
        if len(episodes) == 0:
            return
        task_id = np.asarray(episodes.task_id, np.int64)
        count = np.bincount(task_id, minlength=self.num_tasks)
        successes = np.bincount(task_id, np.asarray(episodes.success, np.float64),
                                self.num_tasks)
        seen = count > 0
        rate = successes[seen] / count[seen]
        self.kappa[seen] = self.smoothing * self.kappa[seen] + (1.0 - self.smoothing) * rate
        self.episodes += count
        self.weights.copy_(torch.as_tensor(dtp_weights(self.kappa, self.gamma, self.eps),
                                           dtype=self.weights.dtype))

    def metrics(self) -> dict[str, Tensor]:
        return {"dtp_weights": self.weights}

    def get_extra_state(self) -> dict[str, Any]:
        return {"kappa": self.kappa.tolist(), "episodes": self.episodes.tolist()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.kappa = np.asarray(state["kappa"], np.float64)
        self.episodes = np.asarray(state["episodes"], np.int64)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, smoothing={self.smoothing}, eps={self.eps}"
