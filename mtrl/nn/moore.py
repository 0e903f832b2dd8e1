"""MOORE: mixture of orthogonal experts (Hendawy et al. 2024, "Multi-Task Reinforcement
Learning with Mixture of Orthogonal Experts"), following the authors' SAC networks
(``MetaworldSACMixtureMH{Actor,Critic}Network`` with ``--orthogonal --activation Linear
--agg_activation Linear Tanh``).

For one row ``(x, task)``:

1. ``k`` expert MLPs (``hidden_sizes``, ReLU between layers, no activation after the last;
   batched) give ``U = [u_1..u_k]``, ``(k, d)``.
2. Gram-Schmidt makes the rows orthonormal: ``V = GS(U)``, ``V V^T = I_k``. We compute it as
   ``V = L^{-1} U`` with ``L`` the Cholesky factor of the Gram matrix ``U U^T``: the unique
   orthonormal basis with ``U = L V``, ``L`` lower triangular with positive diagonal, is
   exactly the Gram-Schmidt basis, and this form is batched (no loop over experts). A jitter
   of ``1e-6`` times the mean squared norm keeps ``U U^T`` positive definite.
3. task weights ``w_t`` (a per-task table, ``k`` entries, no bias, Xavier-uniform as the
   authors' bias-free linear task encoder) mix the basis: ``z = tanh(w_t^T V)``.
4. a per-task output head (multi-head, batched :class:`~mtrl.nn.base.TaskLinear`).

Needs ``hidden_sizes[-1] >= num_experts`` (``k`` orthonormal vectors in ``d`` dimensions).
Per-task parameters: the task weights and the heads. Presets: 4 experts (MT10), 6 (MT50).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from mtrl.errors import MtrlError
from mtrl.nn.base import TaskLinear, make_activation
from mtrl.nn.layers import BatchedLinear, TaskEmbedding
from mtrl.nn.registry import register_network

JITTER = 1e-6


def orthonormalize(u: Tensor) -> Tensor:
    """Gram-Schmidt over the second-to-last dim: ``(..., k, d) -> (..., k, d)`` orthonormal rows,
    ``v_1 = u_1 / |u_1|``, ``v_i`` the normalised part of ``u_i`` orthogonal to ``v_1..v_{i-1}``.
    """
    k = u.shape[-2]
    gram = u @ u.transpose(-1, -2)
    scale = gram.diagonal(dim1=-2, dim2=-1).mean(-1, keepdim=True).unsqueeze(-1)
    eye = torch.eye(k, dtype=u.dtype, device=u.device)
    chol, _ = torch.linalg.cholesky_ex(gram + JITTER * scale * eye)
    return torch.linalg.solve_triangular(chol, u, upper=False)


@dataclass
class MooreOptions:
    """MOORE (Hendawy et al. 2024): Gram-Schmidt-orthogonalised experts, multi-head."""

    num_experts: int = 4  # k (paper: 4 MT10, 6 MT50)


@register_network("moore", options=MooreOptions)
class MOORE(nn.Module):
    """Orthogonalised mixture of ``k`` expert encoders with per-task weights and heads.

    ``head`` is a per-task output layer (``output_layer``: PopArt rescales it).

    Args:
        in_dim, out_dim, num_tasks: sizes.
        hidden_sizes: each expert's MLP (paper: 3 x 400).
        activation: activation between expert layers.
        num_experts: ``k`` (paper: 4 for MT10, 6 for MT50).
    """

    output_layer = "head"

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: Sequence[int] = (400, 400, 400),
        activation: str = "relu",
        num_experts: int = 4,
    ) -> None:
        super().__init__()
        sizes = list(hidden_sizes)
        if num_experts < 1 or sizes[-1] < num_experts:
            raise MtrlError(
                f"moore needs 1 <= num_experts <= hidden_sizes[-1] (got {num_experts} experts, "
                f"width {sizes[-1]})"
            )
        self.act = make_activation(activation)
        widths = [in_dim, *sizes]
        self.experts = nn.ModuleList(
            BatchedLinear(num_experts, a, b) for a, b in zip(widths[:-1], widths[1:])
        )
        self.last_shared_weight = f"experts.{len(self.experts) - 1}.weight"
        self.task_weights = TaskEmbedding(num_tasks, num_experts)
        bound = math.sqrt(6.0 / (num_tasks + num_experts))  # xavier_uniform of Linear(T, k)
        nn.init.uniform_(self.task_weights.weight, -bound, bound)
        self.head = TaskLinear(sizes[-1], out_dim, num_tasks)

    def representations(self, x: Tensor) -> Tensor:
        """The orthonormal expert representations ``V``, ``(B, k, d)``."""
        h = self.experts[0](x)
        for layer in self.experts[1:]:
            h = layer(self.act(h))
        return orthonormalize(h)

    def forward(self, x: Tensor, task_id: Tensor) -> Tensor:
        z = torch.einsum("bk,bkd->bd", self.task_weights(task_id), self.representations(x))
        return self.head(torch.tanh(z), task_id)
