"""Multi-head network: a shared trunk and one output head per task (MT-MH-SAC)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from mtrl.nn.base import TaskLinear, last_linear, mlp_layers, one_hot
from mtrl.nn.registry import register_network


@dataclass
class MultiHeadOptions:
    """Multi-head network (MT-MH-SAC, Meta-World / Meta-World+ baselines)."""

    task_input: bool = True  # trunk sees obs + one-hot task id (the references); False: obs only


@register_network("multihead", options=MultiHeadOptions)
class MultiHead(nn.Module):
    """Shared MLP trunk; a per-task linear head (batched weights).

    With ``task_input`` (default) the trunk sees the observation and the one-hot task id, as
    in Meta-World's MT-MH-SAC and the Meta-World+ baselines; without it the trunk sees the
    observation only and the task enters through the head alone.
    """

    output_layer = "head"  # per-task output layer (the PopArt protocol, mtrl.optim.popart)

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: Sequence[int] = (400, 400, 400),
        activation: str = "relu",
        task_input: bool = True,
    ) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.task_input = task_input
        self.trunk = mlp_layers(in_dim + (num_tasks if task_input else 0), hidden_sizes,
                                activation)
        self.head = TaskLinear(hidden_sizes[-1], out_dim, num_tasks)
        self.last_shared_weight = last_linear(self.trunk, "trunk")

    def features(self, x: Tensor, task_id: Tensor) -> Tensor:
        """The trunk's output ``(B, hidden_sizes[-1])``."""
        if self.task_input:
            x = torch.cat([x, one_hot(task_id, self.num_tasks, x.dtype)], -1)
        return self.trunk(x)

    def forward(self, x: Tensor, task_id: Tensor) -> Tensor:
        return self.head(self.features(x, task_id), task_id)
