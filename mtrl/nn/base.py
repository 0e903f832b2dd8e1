"""Building blocks shared by every mtrl architecture.

Every network maps ``(x (B, in_dim) float, task_id (B,) int64) -> (B, out_dim)``. Parameters
that belong to one task are stored as batched tensors with a leading task dimension and the
module that owns them lists their names in ``task_parameters`` so that gradient combiners can
tell them from shared parameters (:func:`task_parameter_names`). Each architecture also names
its last shared weight matrix (``last_shared_weight``, :func:`last_shared_weight_name`), the
layer on which GradNorm measures gradient norms.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from mtrl.errors import MtrlError
from mtrl.nn.layers import BatchedLinear

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
}


def make_activation(name: str) -> nn.Module:
    """The activation module of that name (``relu``, ``tanh``, ``elu``, ``gelu``, ...)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise MtrlError(
            f"unknown activation '{name}' (choose from {', '.join(ACTIVATIONS)})"
        ) from None


def mlp_layers(in_dim: int, hidden_sizes: Iterable[int], activation: str) -> nn.Sequential:
    """``Linear -> activation`` for each hidden size (no output layer)."""
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [nn.Linear(in_dim, size), make_activation(activation)]
        in_dim = size
    return nn.Sequential(*layers)


def stacked_linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Every member's ``F.linear`` at once, from stacked parameters ``weight (E, out, in)``
    and ``bias (E, out)`` (or ``(E, n, out)``, a bias per row): ``x (n, in)`` shared by the
    members, or ``x (E, n, in)`` their own, -> ``(E, n, out)``.

    The ops are the ones ``torch.vmap`` runs for a vmapped ``F.linear`` (one matmul against
    all members' rows for a shared input, a batched matmul otherwise, then the bias), without
    vmap's per-call overhead: the same forward and gradients bit for bit, except that for a
    shared input without grad vmap computes the weight gradient with a batched matmul (the
    same sums, which can round differently; at the learning benchmark's sizes they were
    equal to the bit).
    """
    members, out_dim, in_dim = weight.shape
    if x.dim() == 2:
        y = torch.mm(weight.reshape(members * out_dim, in_dim), x.t())
        y = y.view(members, out_dim, x.shape[0]).transpose(1, 2).contiguous()
    else:
        y = torch.bmm(x, weight.transpose(1, 2))
    if bias.dim() == 2:  # (E, out); (E, n, out): a bias per row (MGDA's probe)
        bias = bias.unsqueeze(1)
    return bias * 1 + y  # "* 1": vmap's addmm decomposition (beta * bias)


def stacked_sequential(layers: nn.Sequential, state: dict[str, Tensor], prefix: str,
                       x: Tensor) -> Tensor:
    """``layers`` (``nn.Linear`` and elementwise activations, as :func:`mlp_layers` builds)
    run for every member at once with the stacked ``state`` (keys ``f"{prefix}{i}.weight"``);
    see :func:`stacked_linear`."""
    for index, layer in enumerate(layers):
        if isinstance(layer, nn.Linear):
            x = stacked_linear(x, state[f"{prefix}{index}.weight"],
                               state[f"{prefix}{index}.bias"])
        else:
            x = layer(x)
    return x


class TaskLinear(BatchedLinear):
    """A separate linear layer per task: a :class:`BatchedLinear` with one member per task
    (``weight (T, in, out)``, ``bias (T, out)``, each slice initialised like ``nn.Linear``).

    ``forward(x, task_id)`` computes every task's output with one matmul and gathers each row's
    own task, so the gradient of a row reaches only its task's slice (exact isolation) and any
    ordering of rows works. The extra cost is ``T * out`` output columns, small for heads.
    """

    task_parameters = ("weight", "bias")

    def __init__(self, in_dim: int, out_dim: int, num_tasks: int) -> None:
        super().__init__(num_tasks, in_dim, out_dim)
        self.num_tasks = num_tasks

    def forward(self, x: Tensor, task_id: Tensor) -> Tensor:
        all_tasks = x @ self.weight.permute(1, 0, 2).reshape(self.in_dim, -1)
        all_tasks = all_tasks.view(*x.shape[:-1], self.num_tasks, self.out_dim)
        index = task_id.view(*task_id.shape, 1, 1).expand(*x.shape[:-1], 1, self.out_dim)
        return all_tasks.gather(-2, index).squeeze(-2) + self.bias[task_id]

    def extra_repr(self) -> str:
        return f"in={self.in_dim}, out={self.out_dim}, tasks={self.num_tasks}"


def task_parameter_names(module: nn.Module) -> set[str]:
    """Full names of the parameters of ``module`` that belong to one task each."""
    names: set[str] = set()
    for prefix, sub in module.named_modules():
        for local in getattr(sub, "task_parameters", ()):
            names.add(f"{prefix}.{local}" if prefix else local)
    return names


def last_linear(sequence: nn.Sequential, prefix: str) -> str:
    """The name of the weight of the last ``nn.Linear`` in ``sequence`` (under ``prefix``);
    empty if there is none."""
    linear = [i for i, layer in enumerate(sequence) if isinstance(layer, nn.Linear)]
    return f"{prefix}.{linear[-1]}.weight" if linear else ""


def last_shared_weight_name(module: nn.Module) -> str:
    """Full name of the last weight matrix that all tasks share (GradNorm's ``W``).

    Each architecture names it in its ``last_shared_weight`` attribute (module-local name);
    the outermost module that declares one wins (an ensemble or a policy wrapping a network
    maps it to its own parameter names). Empty when no module declares one.
    """
    for prefix, sub in module.named_modules():
        local = getattr(sub, "last_shared_weight", "")
        if local:
            return f"{prefix}.{local}" if prefix else local
    return ""


def one_hot(task_id: Tensor, num_tasks: int, dtype: torch.dtype) -> Tensor:
    """``(B,) -> (B, T)`` one-hot encoding (vmap-safe: no data-dependent size check)."""
    classes = torch.arange(num_tasks, device=task_id.device)
    return (task_id[..., None] == classes).to(dtype)
