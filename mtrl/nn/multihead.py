"""Multi-head network: a shared trunk and one output head per task (MT-MH-SAC)."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from mtrl.nn.base import TaskLinear, mlp_layers


class MultiHead(nn.Module):
    """Shared MLP trunk on the observation; a per-task linear head (batched weights)."""

    output_layer = "head"  # per-task output layer (the PopArt protocol, mtrl.optim.popart)

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: Sequence[int] = (400, 400, 400),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.trunk = mlp_layers(in_dim, hidden_sizes, activation)
        self.head = TaskLinear(hidden_sizes[-1], out_dim, num_tasks)

    def forward(self, x: Tensor, task_id: Tensor) -> Tensor:
        return self.head(self.trunk(x), task_id)
