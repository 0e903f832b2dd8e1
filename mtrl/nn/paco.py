"""PaCo: parameter-compositional multi-task RL (Sun et al. 2022, "PaCo: Parameter-Compositional
Multi-Task Reinforcement Learning"), following the authors' code (``paco-mtrl``,
``PaCoMTSacAlgorithm`` with ``CompositionalFC`` layers).

Every layer of the network (hidden and output) holds ``K`` parameter sets
``Phi = [phi_1..phi_K]`` (one batched tensor); task ``t`` uses the composed parameters
``theta_t = sum_k w_t[k] * phi_k`` with its own compositional vector ``w_t`` (a per-task
parameter, identity last activation as in the authors' MT10 config). A layer is linear, so
``x @ theta_t = sum_k w_t[k] * (x @ phi_k)``: we compute the ``K`` outputs with one einsum
and combine them with each row's ``w``; no per-task weights are materialised.

Loss masking and ``w``-reset (the paper's stabilisation): when a task's loss exceeds
``reset_threshold`` (3e3 in the authors' config), its rows are masked out of the gradient of
that very update, as in the reference, and after the step its ``w`` is reset to a random
convex combination of the ``w`` of the other (normal) tasks (``reset_method="interpolate"``;
``"copy"`` copies one of them). The mask reaches every gradient combiner through
:class:`~mtrl.optim.TaskLoss` (``task_mask`` from :meth:`PaCo.task_loss_mask`, collected by
:func:`mtrl.nn.layers.task_loss_mask`); the reset happens in :meth:`PaCo.observe_task_losses`,
which the agent calls after each update (:func:`mtrl.nn.layers.observe_task_losses`). Both
are decided on the device (no host sync); ``masked`` records the last update's mask.
``reset_threshold <= 0`` disables both.

Our choices: the ``K`` sets are initialised independently (like ``nn.Linear``) and ``w`` from
``N(0, 1/K)`` so every composed network starts at the usual initialisation scale (the authors'
code initialises the sets identically); each network (actor, each twin critic) has its own
``w`` (the reference shares one task-encoding layer between actor and critic), and a network
watches the losses of its own objective (the reference watches the sum of actor, critic and
temperature losses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from mtrl.errors import MtrlError
from mtrl.nn.base import make_activation
from mtrl.nn.layers import BatchedLinear, TaskEmbedding
from mtrl.nn.registry import register_network

RESET_METHODS = ("interpolate", "copy")


def reset_weights(w: Tensor, exploded: Tensor, method: str = "interpolate") -> Tensor:
    """``w (..., T, K)`` with the rows of ``exploded (T,)`` tasks replaced by a random convex
    combination (``interpolate``) or a random copy (``copy``) of the normal tasks' rows.

    Rows of normal tasks are returned unchanged; if every task exploded, ``w`` is unchanged.
    """
    num_tasks = w.shape[-2]
    normal = (~exploded).to(w.dtype)
    mix = torch.rand(*w.shape[:-2], num_tasks, num_tasks, device=w.device, dtype=w.dtype)
    if method == "copy":
        choice = (mix + 1.0) * normal - 1.0  # exploded sources get -1: never the argmax
        mix = nn.functional.one_hot(choice.argmax(-1), num_tasks).to(w.dtype)
    else:
        mix = mix * normal
        mix = mix / mix.sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    replace = (exploded & (normal.sum() > 0)).unsqueeze(-1)
    return torch.where(replace, mix @ w, w)


@dataclass
class PaCoOptions:
    """PaCo (Sun et al. 2022): K parameter sets composed per task."""

    num_param_sets: int = 5  # K
    reset_threshold: float = 3000.0  # task loss that masks the task and resets its w (<=0: off)
    reset_method: str = "interpolate"  # interpolate | copy


@register_network("paco", options=PaCoOptions)
class PaCo(nn.Module):
    """An MLP whose layers are task-specific compositions of ``K`` shared parameter sets.

    Args:
        in_dim, out_dim, num_tasks: sizes.
        hidden_sizes, activation: the MLP (paper: 3 x 400, ReLU).
        num_param_sets: ``K`` (paper: 5).
        reset_threshold: per-task loss above which the task is masked and its ``w`` reset
            (paper: 3000; ``<= 0`` disables).
        reset_method: ``interpolate`` (paper) or ``copy``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: Sequence[int] = (400, 400, 400),
        activation: str = "relu",
        num_param_sets: int = 5,
        reset_threshold: float = 3000.0,
        reset_method: str = "interpolate",
    ) -> None:
        super().__init__()
        if num_param_sets < 1:
            raise MtrlError(f"paco num_param_sets must be positive, got {num_param_sets}")
        if reset_method not in RESET_METHODS:
            raise MtrlError(
                f"paco reset_method must be one of {', '.join(RESET_METHODS)}, got '{reset_method}'"
            )
        self.reset_threshold, self.reset_method = float(reset_threshold), reset_method
        self.act = make_activation(activation)
        widths = [in_dim, *hidden_sizes, out_dim]
        self.layers = nn.ModuleList(
            BatchedLinear(num_param_sets, a, b) for a, b in zip(widths[:-1], widths[1:])
        )
        self.last_shared_weight = f"layers.{len(self.layers) - 1}.weight"  # shared param sets
        self.composition = TaskEmbedding(num_tasks, num_param_sets,
                                         init_std=1.0 / math.sqrt(num_param_sets))
        self.register_buffer("masked", torch.zeros(num_tasks, dtype=torch.bool))

    def forward(self, x: Tensor, task_id: Tensor) -> Tensor:
        w = self.composition(task_id)  # (B, K)
        h = x
        for i, layer in enumerate(self.layers):
            h = torch.einsum("bko,bk->bo", layer(h), w)
            if i < len(self.layers) - 1:
                h = self.act(h)
        return h

    def task_loss_mask(self, losses: Tensor) -> Tensor:
        """The tasks to leave out of the update whose per-task losses are ``losses``: those
        whose ``|L_t|`` exceeds the threshold or is not finite (none when disabled)."""
        if self.reset_threshold <= 0:
            return torch.zeros_like(losses, dtype=torch.bool)
        return ~(losses.abs() <= self.reset_threshold)

    def observe_task_losses(self, losses: Tensor, state: dict[str, Tensor]) -> None:
        """After an update: record its mask and reset the compositional vectors of the tasks
        whose loss exploded (``state``: this network's tensors, possibly stacked)."""
        if self.reset_threshold <= 0:
            return
        exploded = self.task_loss_mask(losses)
        with torch.no_grad():
            state["masked"].copy_(exploded.expand_as(state["masked"]))
            w = state["composition.weight"]
            w.copy_(reset_weights(w, exploded, self.reset_method))
