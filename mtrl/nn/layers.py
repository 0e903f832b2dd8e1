"""Layers shared by the multi-task architectures: batched experts/modules, task embeddings.

* :class:`BatchedLinear` — ``n`` independent linear layers (experts, modules, parameter sets)
  stored as one ``(n, in, out)`` tensor and applied with one ``einsum``.
* :class:`TaskEmbedding` — one learned vector per task (a per-task parameter table).
* :func:`observe_task_losses` — hands an update's per-task losses to networks that react to
  them (PaCo's ``w``-reset), also through an :class:`~mtrl.nn.ensemble.Ensemble`.
* :func:`task_loss_mask` — the networks' per-task loss mask for the update being computed
  (PaCo's loss masking).
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

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


def observe_task_losses(network: nn.Module, losses: Tensor) -> None:
    """Give the submodules of ``network`` the per-task losses ``(T,)`` of the update that just
    stepped it.

    A module that adapts to its losses defines ``observe_task_losses(losses, state)``, where
    ``state`` maps its own parameter/buffer names to the live tensors (with a leading member
    dimension inside an :class:`~mtrl.nn.ensemble.Ensemble`), which it may update in place.
    Networks without such modules are left alone, so agents call this after every update.
    """
    from mtrl.nn.ensemble import Ensemble

    ensemble = isinstance(network, Ensemble)
    root = network.template if ensemble else network
    hooks = [(prefix, module.observe_task_losses) for prefix, module in root.named_modules()
             if hasattr(module, "observe_task_losses")]
    if not hooks:
        return
    if ensemble:
        tensors = network.member_state()
    else:
        tensors = dict(network.named_parameters())
        tensors.update(dict(network.named_buffers()))
    for prefix, hook in hooks:
        start = f"{prefix}." if prefix else ""
        state = {name[len(start):]: t for name, t in tensors.items() if name.startswith(start)}
        hook(losses.detach(), state)


def task_loss_mask(network: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """The per-task loss mask of ``network``'s submodules that mask exploding tasks (PaCo),
    for :class:`~mtrl.optim.TaskLoss`'s ``task_mask``: ``mask(losses (T,)) -> (T,) bool``,
    the OR of every such module's ``task_loss_mask``; ``None`` when no module masks.
    Members of an :class:`~mtrl.nn.ensemble.Ensemble` (also inside a grouped network) count.
    """
    from mtrl.nn.ensemble import Ensemble

    def walk(module: nn.Module) -> Iterator[nn.Module]:
        for sub in module.modules():
            yield sub
            if isinstance(sub, Ensemble):
                yield from walk(sub.template)

    masks = [sub.task_loss_mask for sub in walk(network) if hasattr(sub, "task_loss_mask")]
    if not masks:
        return None

    def mask(losses: Tensor) -> Tensor:
        out = masks[0](losses)
        for other in masks[1:]:
            out = out | other(losses)
        return out

    return mask
