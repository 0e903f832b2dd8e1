"""Soft modularization (Yang et al. 2020, "Multi-Task Reinforcement Learning with Soft
Modularization"), following the authors' code (``ModularGatedCascadeCondNet``).

Data flow for one row ``(x, task)``:

1. observation embedding ``f(x)``: an MLP of ``hidden_sizes`` (last layer without activation);
   task embedding ``h(task)``: a linear map of the one-hot task id (a per-task table plus a
   shared bias) of the same width ``D``.
2. routing input ``e = MLP(relu(h(task) * f(x)))`` (``routing_layers`` layers of
   ``routing_hidden``, the last one without activation).
3. routing weights, one ``m x m`` matrix per layer after the first:
   ``P_1 = softmax(W_1 relu(e))`` and, for later layers,
   ``P_l = softmax(W_l relu((V_l [P_1, ..., P_{l-1}]) * e))`` (each layer conditions on the
   weights of all earlier ones). Entry ``P_l[i, j]`` is the weight of module ``i`` of layer
   ``l-1`` in the input of module ``j`` of layer ``l``; the softmax runs over ``i``, so the
   weights into every module are non-negative and sum to one (the authors' convention).
   A last routing head gives the softmax weights over the modules of the final layer.
4. base network: ``L`` layers of ``m`` modules (``module_hidden`` wide each, stored as one
   batched tensor per layer). Layer 1 modules all read ``relu(f(x))``; module ``j`` of layer
   ``l`` reads ``relu(sum_i P_l[i, j] * out_i)``. The output is a shared linear layer on
   ``relu(sum_j w_j * out_j)``.

The paper's task-loss re-weighting by ``softmax(-log alpha)`` is the agent option
``agent.temperature_weighting`` (on in the softmod presets). Per-task parameters: the task
embedding table only. As in the authors' MT10/MT50 configs there is no batch norm in modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtrl.errors import MtrlError
from mtrl.nn.base import make_activation, mlp_layers
from mtrl.nn.layers import BatchedLinear, TaskEmbedding
from mtrl.nn.registry import register_network


@dataclass
class SoftModOptions:
    """Soft modularization (Yang et al. 2020); ``hidden_sizes`` is the observation embedding."""

    num_layers: int = 2  # module layers L (paper: 2 MT10, 4 MT50)
    num_modules: int = 2  # modules per layer m (paper: 2 MT10, 4 MT50)
    module_hidden: int = 256  # module width d (paper: 256 MT10, 128 MT50)
    routing_hidden: int = 256  # routing network width
    routing_layers: int = 2  # routing layers on the obs * task embedding product


@register_network("softmod", options=SoftModOptions)
class SoftModularization(nn.Module):
    """Soft modularization network.

    Args:
        in_dim, out_dim, num_tasks: sizes.
        hidden_sizes: the observation-embedding MLP (paper: ``[400, 400]``); its last size is
            the embedding width ``D`` shared with the task embedding.
        activation: activation of every hidden layer.
        num_layers: module layers ``L`` (paper: 2 for MT10, 4 for MT50).
        num_modules: modules per layer ``m`` (paper: 2 for MT10, 4 for MT50).
        module_hidden: width of each module ``d`` (paper: 256 for MT10, 128 for MT50).
        routing_hidden: width of the routing MLP (paper: 256).
        routing_layers: layers of the routing MLP on the embedding product (paper: 2).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: Sequence[int] = (400, 400),
        activation: str = "relu",
        num_layers: int = 2,
        num_modules: int = 2,
        module_hidden: int = 256,
        routing_hidden: int = 256,
        routing_layers: int = 2,
    ) -> None:
        super().__init__()
        if num_layers < 2 or num_modules < 1 or module_hidden < 1 or routing_hidden < 1:
            raise MtrlError(
                "softmod needs num_layers >= 2 and positive num_modules, module_hidden, "
                f"routing_hidden (got {num_layers}, {num_modules}, {module_hidden}, "
                f"{routing_hidden})"
            )
        if routing_layers < 0:
            raise MtrlError(f"softmod routing_layers must be >= 0, got {routing_layers}")
        self.num_layers, self.num_modules = num_layers, num_modules
        sizes = list(hidden_sizes)
        embed_dim = sizes[-1]
        self.act = make_activation(activation)
        # f(x): MLP whose last layer has no activation (its output also feeds the router)
        self.obs_embed = nn.Sequential(
            *mlp_layers(in_dim, sizes[:-1], activation),
            nn.Linear(sizes[-2] if len(sizes) > 1 else in_dim, embed_dim),
        )
        self.task_embed = TaskEmbedding(num_tasks, embed_dim)
        self.task_bias = nn.Parameter(torch.zeros(embed_dim))
        router: list[nn.Module] = []
        width = embed_dim
        for _ in range(routing_layers):
            router.append(nn.Linear(width, routing_hidden))
            width = routing_hidden
        self.router = nn.ModuleList(router)
        mm = num_modules * num_modules
        self.route_first = nn.Linear(width, mm)
        self.route_cond = nn.ModuleList(
            nn.Linear(layer * mm, width) for layer in range(1, num_layers)
        )  # conditions layer l+1's routing (and the last head) on all earlier weights
        self.route_next = nn.ModuleList(nn.Linear(width, mm) for _ in range(num_layers - 2))
        self.route_last = nn.Linear(width, num_modules)
        self.module_layers = nn.ModuleList(
            BatchedLinear(num_modules, embed_dim if layer == 0 else module_hidden, module_hidden)
            for layer in range(num_layers)
        )
        self.head = nn.Linear(module_hidden, out_dim)
        self.last_shared_weight = "head.weight"

    def routing(self, x: Tensor, task_id: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        """Routing weights ``[P_1..P_{L-1}]`` (each ``(B, m, m)``, softmax over dim 1 = ``i``),
        the final-layer weights ``(B, m)``, and ``f(x)`` (pre-activation)."""
        obs = self.obs_embed(x)
        e = (self.task_embed(task_id) + self.task_bias) * obs
        if len(self.router) > 0:
            e = self.act(e)
            for i, layer in enumerate(self.router):
                e = layer(e)
                if i < len(self.router) - 1:
                    e = self.act(e)
        m = self.num_modules
        weights = [F.softmax(self.route_first(self.act(e)).view(-1, m, m), dim=1)]
        for cond_layer, next_layer in zip(self.route_cond[:-1], self.route_next):
            cond = self.act(cond_layer(torch.cat([w.flatten(1) for w in weights], -1)) * e)
            weights.append(F.softmax(next_layer(cond).view(-1, m, m), dim=1))
        cond = self.act(self.route_cond[-1](torch.cat([w.flatten(1) for w in weights], -1)) * e)
        return weights, F.softmax(self.route_last(cond), dim=-1), obs

    def forward(self, x: Tensor, task_id: Tensor) -> Tensor:
        weights, last, obs = self.routing(x, task_id)
        out = self.module_layers[0](self.act(obs))  # (B, m, d)
        for layer, route in zip(self.module_layers[1:], weights):
            out = layer(self.act(torch.einsum("bij,bid->bjd", route, out)))
        return self.head(self.act(torch.einsum("bj,bjd->bd", last, out)))
