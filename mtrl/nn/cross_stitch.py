"""Cross-stitch networks (Misra et al. 2016, "Cross-stitch Networks for Multi-task Learning").

One network **column** per task; after every hidden layer a learned ``T x T`` cross-stitch
matrix ``alpha`` mixes the columns' activations,

    h~_s = sum_t alpha[s, t] h_t        (s, t: columns),

and the mixed activations feed each column's next layer. Row ``b`` of a batch is answered by
column ``task_id[b]``: its output layer (a per-task :class:`~mtrl.nn.base.TaskLinear`, the
``head``, also PopArt's ``output_layer``) reads that column's mixed last hidden layer.

As in the paper: cross-stitch units act on the activations (after the nonlinearity) of every
hidden layer, and each ``alpha`` is initialised near the identity with ``alpha_same`` (0.9 in
the paper's best setting) on the diagonal and ``(1 - alpha_same) / (T - 1)`` elsewhere, so
every row sums to one; ``alpha`` is unconstrained during training. The paper raised the
learning rate of the cross-stitch units (by 10^2-10^3, with SGD): ``alpha_lr_scale`` stores
``alpha / scale`` as the parameter, which multiplies the step size of ``alpha`` by ``scale``
under Adam (default 1: Adam's steps do not shrink with small gradients the way SGD's do).
Columns take the observation alone (the task enters by the choice of column).

Storage (as PaCo's parameter sets): each layer's column weights are one ``(T, in, out)``
tensor (:class:`~mtrl.nn.layers.BatchedLinear`), the ``alpha`` of all layers one ``(L, T, T)``
tensor; activations are kept as ``(T, B, d)`` so that a layer is one batched matmul and a
cross-stitch unit one ``(T, T) @ (T, B*d)`` matmul. No loop over tasks.

**Cost.** Cross-stitching means every column is computed for every row (a row's output depends
on all columns through ``alpha``): one update costs about ``T`` times the hidden-layer FLOPs of a
single MLP of the same sizes (``T = 10``: ~10x the multi-head trunk; ``T = 50``: ~50x), plus
``L T^2 B d`` for the units, and keeps ``T`` times the activations (MT10, 3 x 400, 1280 rows:
about 20 MB per layer and tensor; MT50, 6400 rows: about 0.5 GB). Parameters: ``T`` MLPs.
Measured: a full MT10 SAC update (3 x 400, CPU, one thread) took about 15x the ``multihead`` one.

Per-task parameters (:func:`~mtrl.nn.base.task_parameter_names`): the heads only. A column's
weights are *not* per-task: through ``alpha`` every task's loss reaches every column (with an
identity ``alpha`` the columns are independent networks). The last shared weight (GradNorm's
``W``; MGDA-UB's representation is its output) is the last hidden layer of the columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from mtrl.errors import MtrlError
from mtrl.nn.base import TaskLinear, make_activation
from mtrl.nn.layers import BatchedLinear
from mtrl.nn.registry import register_network


def stitch_init(num_tasks: int, alpha_same: float = 0.9) -> Tensor:
    """The paper's near-identity cross-stitch matrix: ``alpha_same`` on the diagonal, the rest
    of each row spread evenly over the other columns (rows sum to one)."""
    if num_tasks == 1:
        return torch.ones(1, 1)
    eye = torch.eye(num_tasks)
    return alpha_same * eye + (1.0 - alpha_same) / (num_tasks - 1) * (1.0 - eye)


@dataclass
class CrossStitchOptions:
    """Cross-stitch networks (Misra et al. 2016): one column per task, T x T mixing units."""

    alpha_same: float = 0.9  # initial diagonal of each unit (rows sum to 1; paper: 0.9)
    alpha_lr_scale: float = 1.0  # step-size multiplier of the units (the paper raised it)


@register_network("cross_stitch", options=CrossStitchOptions)
class CrossStitch(nn.Module):
    """One MLP column per task, mixed after every hidden layer by learned ``T x T`` units.

    Args:
        in_dim, out_dim, num_tasks: sizes.
        hidden_sizes, activation: each column's MLP (the presets: 3 x 400, ReLU).
        alpha_same: initial diagonal of every cross-stitch matrix (paper: 0.9; 1 = identity,
            independent columns at the start).
        alpha_lr_scale: multiplies the step size of the cross-stitch units (paper: raised).
    """

    output_layer = "head"  # per-task output layer (the PopArt protocol)

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: Sequence[int] = (400, 400, 400),
        activation: str = "relu",
        alpha_same: float = 0.9,
        alpha_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= alpha_same <= 1.0:
            raise MtrlError(f"cross_stitch alpha_same must be in [0, 1], got {alpha_same}")
        if alpha_lr_scale <= 0:
            raise MtrlError(f"cross_stitch alpha_lr_scale must be positive, got {alpha_lr_scale}")
        sizes = list(hidden_sizes)
        self.num_tasks = num_tasks
        self.act = make_activation(activation)
        widths = [in_dim, *sizes]
        self.columns = nn.ModuleList(
            BatchedLinear(num_tasks, a, b) for a, b in zip(widths[:-1], widths[1:])
        )
        self.alpha_lr_scale = float(alpha_lr_scale)
        init = stitch_init(num_tasks, alpha_same) / self.alpha_lr_scale
        self.stitch = nn.Parameter(init.expand(len(sizes), -1, -1).clone())  # (L, T, T)
        self.head = TaskLinear(sizes[-1], out_dim, num_tasks)
        self.last_shared_weight = f"columns.{len(self.columns) - 1}.weight"

    def alphas(self) -> Tensor:
        """The cross-stitch matrices ``(L, T, T)``: ``alpha[l, s, t]`` is the weight of column
        ``t``'s activations in column ``s``'s input to layer ``l + 1``."""
        return self.stitch * self.alpha_lr_scale

    def columns_forward(self, x: Tensor) -> Tensor:
        """Every column's mixed last hidden layer for every row: ``(T, B, d)``."""
        alpha = self.alphas()
        h = x
        for i, layer in enumerate(self.columns):
            # (B, in) @ (T, in, out) -> (T, B, out); then (T, B, in) @ (T, in, out)
            h = self.act(torch.matmul(h, layer.weight) + layer.bias.unsqueeze(-2))
            t, b, d = h.shape
            h = (alpha[i] @ h.reshape(t, b * d)).view(t, b, d)
        return h

    def forward(self, x: Tensor, task_id: Tensor) -> Tensor:
        h = self.columns_forward(x)  # (T, B, d)
        index = task_id.view(1, -1, 1).expand(1, -1, h.shape[-1])
        own = h.gather(0, index).squeeze(0)  # row b: column task_id[b]
        return self.head(own, task_id)

    def extra_repr(self) -> str:
        return f"columns={self.num_tasks}, alpha_lr_scale={self.alpha_lr_scale}"
