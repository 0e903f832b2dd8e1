"""MT-SAC's network: an MLP on the observation concatenated with the one-hot task id."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from mtrl.nn.base import mlp_layers, one_hot, stacked_linear, stacked_sequential
from mtrl.nn.registry import register_network


@register_network("mlp")
class OneHotMLP(nn.Module):
    """``MLP([x, one_hot(task_id)])`` with a shared output layer (Meta-World's MT-SAC)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: Sequence[int] = (400, 400, 400),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.trunk = mlp_layers(in_dim + num_tasks, hidden_sizes, activation)
        self.head = nn.Linear(hidden_sizes[-1], out_dim)
        self.last_shared_weight = "head.weight"  # every layer is shared

    def forward(self, x: Tensor, task_id: Tensor) -> Tensor:
        features = self.trunk(torch.cat([x, one_hot(task_id, self.num_tasks, x.dtype)], -1))
        return self.head(features)

    def stacked_forward(self, state: dict[str, Tensor], x: Tensor, task_id: Tensor) -> Tensor:
        """Every member of an :class:`~mtrl.nn.Ensemble` of this network at once, from their
        stacked ``state``: ``(E, B, out_dim)``, with the ops ``vmap`` over the members runs
        (:func:`~mtrl.nn.base.stacked_linear`), at a fraction of its overhead."""
        inputs = torch.cat([x, one_hot(task_id, self.num_tasks, x.dtype)], -1)
        features = stacked_sequential(self.trunk, state, "trunk.", inputs)
        return stacked_linear(features, state["head.weight"], state["head.bias"])
