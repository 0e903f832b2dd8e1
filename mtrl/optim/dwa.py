"""DWA, dynamic weight averaging (Liu et al. 2019, "End-to-End Multi-Task Learning with
Attention", Sec. 3.3).

Task ``i``'s loss weight for the coming period is

    w_i = T exp(r_i / temp) / sum_j exp(r_j / temp),    r_i = L_i(t-1) / L_i(t-2),

the relative descending rate of its loss: a task whose loss falls slower (ratio nearer 1, or
rising) gets more weight; the weights sum to ``T``. The paper averages each task's loss over
an **epoch**, uses ``w_i = 1`` for the first two epochs and ``temp = 2``. RL has no epochs: mtrl
averages each task's loss over a **window of** ``window`` **updates** (default 5000: with one
update per vector step that is the default ``log.every`` of 5000 steps per task, one log
window), keeps ``w_i = 1`` during the first two windows, and from then on uses the weights
from the two last complete windows. The network's gradient is the one of
``sum_i (w_i / T) L_i``, so equal weights give exactly ``mean``.

The ratio of loss averages assumes positive losses (``positive_losses``): SAC's critic, not its
actor. The window sums, the two last averages and the weights are buffers and the update
counters are extra state, so ``state_dict`` holds all of it; everything stays on the device
(no host synchronisation: the window boundary is counted on the host).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mtrl.errors import MtrlError
from mtrl.optim.combiners import GradientCombiner, register_combiner
from mtrl.optim.task_loss import TaskLoss

_TINY = 1e-20


def dwa_weights(previous: Tensor, earlier: Tensor, temperature: float = 2.0) -> Tensor:
    """``T softmax(r / temp)`` with ``r = previous / earlier``, the ratio of each task's loss
    average over the last window to the one before it (positive losses)."""
    ratio = previous / earlier.clamp_min(_TINY)
    return previous.shape[-1] * torch.softmax(ratio / temperature, -1)


@dataclass
class DWAOptions:
    """DWA, dynamic weight averaging (Liu et al. 2019); positive losses."""

    window: int = 5000  # updates per loss-averaging window (the paper's epoch)
    temperature: float = 2.0  # softmax temperature of the loss ratios (paper: 2)


@register_combiner("dwa", options=DWAOptions)
class DWA(GradientCombiner):
    """Dynamic weight averaging (Liu et al. 2019) over windows of ``window`` updates.

    Args:
        window: updates per loss-averaging window (the paper's epoch); default 5000.
        temperature: the softmax temperature (paper: 2; larger = more uniform weights).
    """

    positive_losses = True

    def __init__(self, num_tasks: int, seed: int = 0, window: int = 5000,
                 temperature: float = 2.0) -> None:
        super().__init__(num_tasks, seed)
        if window < 1:
            raise MtrlError(f"dwa: window must be >= 1 update, got {window}")
        if temperature <= 0:
            raise MtrlError(f"dwa: temperature must be positive, got {temperature}")
        self.window, self.temperature = int(window), float(temperature)
        self.updates = 0  # updates in the current window
        self.windows = 0  # complete windows so far
        self.register_buffer("window_sum", torch.zeros(num_tasks))
        self.register_buffer("previous", torch.ones(num_tasks))  # L(t-1): last window's mean
        self.register_buffer("earlier", torch.ones(num_tasks))  # L(t-2)
        self.register_buffer("weights", torch.ones(num_tasks))  # sum T

    def backward(self, loss: TaskLoss) -> Tensor:
        values = loss.values()
        (values * self.weights * loss.weights).sum().backward()  # w_i / T with the 1/T weights
        losses = values.detach()
        self.observe(losses)
        return losses

    def observe(self, losses: Tensor) -> None:
        """Add one update's losses ``(T,)`` to the window; at its end, update the weights."""
        self.window_sum.add_(losses)
        self.updates += 1
        if self.updates < self.window:
            return
        self.earlier.copy_(self.previous)
        self.previous.copy_(self.window_sum / self.window)
        self.window_sum.zero_()
        self.updates = 0
        self.windows += 1
        if self.windows >= 2:
            self.weights.copy_(dwa_weights(self.previous, self.earlier, self.temperature))

    def metrics(self) -> dict[str, Tensor]:
        return {"weights": self.weights}

    def get_extra_state(self) -> dict[str, Any]:
        return {"updates": self.updates, "windows": self.windows}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.updates, self.windows = int(state["updates"]), int(state["windows"])

    def extra_repr(self) -> str:
        return f"window={self.window}, temperature={self.temperature}"
