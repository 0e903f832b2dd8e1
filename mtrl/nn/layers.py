"""Layers shared by the multi-task architectures: batched experts/modules, task embeddings.

* :class:`BatchedLinear` — ``n`` independent linear layers (experts, modules, parameter sets)
  stored as one ``(n, in, out)`` tensor and applied with one ``einsum``.
* :class:`TaskEmbedding` — one learned vector per task (a per-task parameter table).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class BatchedLinear(nn.Module):
    """``n`` independent linear layers: ``weight (n, in, out)``, ``bias (n, out)``.

    ``forward(x)`` accepts a shared input ``(B, in)`` (every member sees the same rows) or one
    input per member ``(B, n, in)``, and returns ``(B, n, out)``. Each member is initialised
    like ``nn.Linear`` (uniform in ``±1/sqrt(in)``).
    """

    def __init__(self, num: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.num, self.in_dim, self.out_dim = num, in_dim, out_dim
        self.weight = nn.Parameter(torch.empty(num, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(num, out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == self.weight.dim() - 1:  # (B, in): shared input
            return torch.einsum("bi,nio->bno", x, self.weight) + self.bias
        return torch.einsum("bni,nio->bno", x, self.weight) + self.bias

    def extra_repr(self) -> str:
        return f"num={self.num}, in={self.in_dim}, out={self.out_dim}"


class TaskEmbedding(nn.Module):
    """A learned vector per task, ``weight (T, dim)``; ``forward(task_id) -> (B, dim)``.

    Listed as a per-task parameter: row ``t`` only receives gradient from task ``t``'s rows.
    ``init_std`` sets a normal initialisation; by default rows are initialised like the
    weight of ``nn.Linear(T, dim)`` applied to a one-hot (uniform in ``±1/sqrt(T)``).
    """

    task_parameters = ("weight",)

    def __init__(self, num_tasks: int, dim: int, init_std: float | None = None) -> None:
        super().__init__()
        self.num_tasks, self.dim = num_tasks, dim
        self.weight = nn.Parameter(torch.empty(num_tasks, dim))
        if init_std is None:
            bound = 1.0 / math.sqrt(num_tasks)
            nn.init.uniform_(self.weight, -bound, bound)
        else:
            nn.init.normal_(self.weight, 0.0, init_std)

    def forward(self, task_id: Tensor) -> Tensor:
        return self.weight[task_id]

    def extra_repr(self) -> str:
        return f"tasks={self.num_tasks}, dim={self.dim}"
