"""Several networks of one architecture evaluated as one (the fused twin critics of SAC), and
the walks over networks (ensembles included) that hand per-task losses to the modules that
react to them: :func:`observe_task_losses` (PaCo's ``w``-reset, the routing network's router)
and :func:`task_loss_mask` (PaCo's loss masking); and :func:`network_metrics`, what modules
report about themselves for the training log (the routing network's module usage)."""

from __future__ import annotations

import copy
import weakref
from typing import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from mtrl.nn.base import last_shared_weight_name, task_parameter_names


def _flat(name: str) -> str:
    return name.replace(".", "__")


class Ensemble(nn.Module):
    """``n`` independently initialised copies of a network, stacked and run with ``vmap`` (or
    the network's own stacked evaluation, :meth:`call`).

    Each parameter of the member architecture is stored once with a leading member dimension,
    so the members' matmuls become batched matmuls. ``forward(*inputs) -> (n, ...)``; all
    members see the same inputs.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        params, buffers = stack_module_state(members)  # type: ignore[arg-type]
        self.size = len(members)
        self._names = list(params)
        for name, value in params.items():
            self.register_parameter(_flat(name), nn.Parameter(value.detach().clone()))
        for name, value in buffers.items():
            self.register_buffer(_flat(name), value.detach().clone())
        self._buffer_names = list(buffers)
        template = copy.deepcopy(members[0]).to("meta")
        object.__setattr__(self, "_template", template)  # not a submodule: no own parameters
        self.task_parameters = tuple(_flat(n) for n in task_parameter_names(members[0]))
        self.last_shared_weight = _flat(last_shared_weight_name(members[0]))

    def train(self, mode: bool = True) -> "Ensemble":
        """Train / eval mode for the ensemble and its member architecture (the template is not
        a submodule, so ``nn.Module.train`` alone would not reach it)."""
        super().train(mode)
        self.template.train(mode)
        return self

    @property
    def template(self) -> nn.Module:
        """The member architecture (parameters on the meta device)."""
        return self._template  # type: ignore[return-value]

    def member_state(self) -> dict[str, Tensor]:
        """Stacked parameters and buffers keyed by the member's own names."""
        state = {name: getattr(self, _flat(name)) for name in self._names}
        state.update({name: getattr(self, _flat(name)) for name in self._buffer_names})
        return state

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.call(self.member_state(), *inputs)

    def call(self, state: dict[str, Tensor], *inputs: Tensor) -> Tensor:
        """Run the members with the given stacked ``state`` (e.g. detached or target copies).

        A member architecture that defines ``stacked_forward(state, *inputs)`` (the one-hot
        MLP) evaluates the stacked members itself, with the ops ``vmap`` would run (the same
        numbers, up to the rounding of one weight gradient:
        :func:`~mtrl.nn.base.stacked_linear`; a test compares them); the others, and every
        call inside a ``torch.func`` transform (per-task gradients, whose nested vmap orders
        its sums differently), run under ``vmap``."""
        stacked = getattr(self.template, "stacked_forward", None)
        if stacked is not None and not _inside_functorch_transform():
            return stacked(state, *inputs)

        def one(member_state: dict[str, Tensor]) -> Tensor:
            return functional_call(self.template, member_state, inputs)

        return torch.vmap(one, randomness="different")(state)


def _inside_functorch_transform() -> bool:
    """Whether a ``torch.func`` transform (``vmap``, ``grad``) is running this code (True when
    this torch cannot tell: the vmap path is right everywhere)."""
    peek = getattr(torch._C._functorch, "peek_interpreter_stack", None)
    return peek is None or peek() is not None


_loss_hook_prefixes: "weakref.WeakKeyDictionary[nn.Module, list[str]]" = (
    weakref.WeakKeyDictionary())
"""Where each network's ``observe_task_losses`` hooks are (:func:`observe_task_losses`)."""


def observe_task_losses(network: nn.Module, losses: Tensor) -> None:
    """Give the submodules of ``network`` the per-task losses ``(T,)`` of the update that just
    stepped it.

    A module that adapts to its losses defines ``observe_task_losses(losses, state)``, where
    ``state`` maps its own parameter/buffer names to the live tensors (with a leading member
    dimension inside an :class:`~mtrl.nn.ensemble.Ensemble`), which it may update in place.
    Networks without such modules are left alone, so agents call this after every update.
    """
    ensemble = isinstance(network, Ensemble)
    root = network.template if ensemble else network
    prefixes = _loss_hook_prefixes.get(network)
    if prefixes is None:  # found once per network (architectures do not change once built)
        prefixes = [prefix for prefix, module in root.named_modules()
                    if hasattr(module, "observe_task_losses")]
        _loss_hook_prefixes[network] = prefixes
    if not prefixes:
        return
    hooks = [(prefix, root.get_submodule(prefix).observe_task_losses) for prefix in prefixes]
    if ensemble:
        tensors = network.member_state()
    else:
        tensors = dict(network.named_parameters())
        tensors.update(dict(network.named_buffers()))
    for prefix, hook in hooks:
        start = f"{prefix}." if prefix else ""
        state = {name[len(start):]: t for name, t in tensors.items() if name.startswith(start)}
        hook(losses.detach(), state)


def network_metrics(network: nn.Module) -> dict[str, Tensor]:
    """What the submodules of ``network`` report about themselves, for the training log.

    A module that has something to report defines ``network_metrics(state) -> {key: tensor}``
    (scalars, or ``(T,)`` vectors whose key ends in ``_per_task``), where ``state`` maps its
    own parameter/buffer names to the live tensors, with leading member dimensions inside an
    :class:`Ensemble` (also nested, e.g. in a grouped network), as for
    :func:`observe_task_losses`. Keys are the modules' own; a key that an earlier module
    already reported gets that module's path in front. Empty when no module reports.
    """
    out: dict[str, Tensor] = {}

    def visit(root: nn.Module, tensors: dict[str, Tensor], path: str) -> None:
        for prefix, module in root.named_modules():
            start = f"{prefix}." if prefix else ""
            own = {name[len(start):]: t for name, t in tensors.items() if name.startswith(start)}
            report = getattr(module, "network_metrics", None)
            if report is not None:
                where = f"{path}{prefix}".strip(".")
                for key, value in report(own).items():
                    out[f"{where}/{key}" if key in out and where else key] = value
            if isinstance(module, Ensemble):
                inner = {name: own[_flat(name)] for name in module.member_state()}
                visit(module.template, inner, f"{path}{start}")

    tensors = dict(network.named_parameters())
    tensors.update(dict(network.named_buffers()))
    visit(network, tensors, "")
    return out


def task_loss_mask(network: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """The per-task loss mask of ``network``'s submodules that mask exploding tasks (PaCo),
    for :class:`~mtrl.optim.TaskLoss`'s ``task_mask``: ``mask(losses (T,)) -> (T,) bool``,
    the OR of every such module's ``task_loss_mask``; ``None`` when no module masks.
    Members of an :class:`~mtrl.nn.ensemble.Ensemble` (also inside a grouped network) count.
    """
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
