"""BroNet (Nauman et al. 2024, BRO; the critic and actor of BRC, Nauman et al. 2025).

``Dense -> LayerNorm -> ReLU``, then ``num_blocks`` residual blocks
``x + LN(Dense(ReLU(LN(Dense(x)))))``, then an output ``Dense``. LayerNorm inside every block
keeps a wide, deep value network trainable (with weight decay, the "regularised" of BRC).
Dense layers use orthogonal initialisation with gain sqrt(2) and zero biases, as the
authors' code does.

The task enters as a one-hot concatenated to the input (``task_input=True``, like
:class:`~mtrl.nn.mlp.OneHotMLP`), or not at all (``task_input=False``) when the agent already
appends a learned task embedding to the input (``agent.task_encoding=embedding``, BRC).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from mtrl.errors import MtrlError
from mtrl.nn.base import make_activation, one_hot
from mtrl.nn.registry import register_network


def _dense(in_dim: int, out_dim: int) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(layer.weight, math.sqrt(2.0))
    nn.init.zeros_(layer.bias)
    return layer


class BroBlock(nn.Module):
    """``x + LN(Dense(act(LN(Dense(x)))))``: zero dense weights and biases give the identity."""

    def __init__(self, width: int, activation: str = "relu") -> None:
        super().__init__()
        self.dense1, self.norm1 = _dense(width, width), nn.LayerNorm(width)
        self.act = make_activation(activation)
        self.dense2, self.norm2 = _dense(width, width), nn.LayerNorm(width)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.norm2(self.dense2(self.act(self.norm1(self.dense1(x)))))


@dataclass
class BroNetOptions:
    """BroNet (Nauman et al. 2024/2025): residual blocks with LayerNorm. Its width is the
    network's ``hidden_sizes`` (one width, e.g. ``[4096]``)."""

    num_blocks: int = 1  # residual blocks (BRC: critic 2, actor 1)
    task_input: bool = True  # one-hot task id in the input; False with agent.task_encoding=embedding

    def validate(self, key: str) -> None:
        """One-line error naming ``key`` (the section, e.g. ``agent.network.bronet``)."""
        if self.num_blocks < 0:
            raise MtrlError(f"{key}: num_blocks must be >= 0, got {self.num_blocks}")


@register_network("bronet", options=BroNetOptions)
class BroNet(nn.Module):
    """BroNet on ``[x, one_hot(task_id)]`` (or on ``x`` alone with ``task_input=False``).

    Args:
        in_dim, out_dim, num_tasks: as every mtrl network.
        hidden_sizes: the width of every layer, one value (``[w]``, or ``w`` repeated; paper:
            critic 4096, actor 256); the depth is ``num_blocks``.
        activation: the nonlinearity (``relu`` in the paper).
        num_blocks: residual blocks (paper: critic 2, actor 1).
        task_input: concatenate the one-hot task id to the input.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: Sequence[int] = (256,),
        activation: str = "relu",
        num_blocks: int = 1,
        task_input: bool = True,
    ) -> None:
        super().__init__()
        widths = set(hidden_sizes)
        if len(widths) != 1:
            raise MtrlError(f"bronet: every layer has one width, so hidden_sizes must be one "
                            f"value such as [256], got {list(hidden_sizes)}")
        (width,) = widths
        self.num_tasks, self.task_input = num_tasks, task_input
        self.stem = nn.Sequential(_dense(in_dim + (num_tasks if task_input else 0), width),
                                  nn.LayerNorm(width), make_activation(activation))
        self.blocks = nn.Sequential(*(BroBlock(width, activation) for _ in range(num_blocks)))
        self.head = _dense(width, out_dim)
        self.last_shared_weight = "head.weight"  # every layer is shared

    def forward(self, x: Tensor, task_id: Tensor) -> Tensor:
        if self.task_input:
            x = torch.cat([x, one_hot(task_id, self.num_tasks, x.dtype)], -1)
        return self.head(self.blocks(self.stem(x)))
