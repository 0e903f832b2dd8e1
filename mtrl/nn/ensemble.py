"""Several networks of one architecture evaluated as one (the fused twin critics of SAC)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state

from mtrl.nn.base import last_shared_weight_name, task_parameter_names


def _flat(name: str) -> str:
    return name.replace(".", "__")


class Ensemble(nn.Module):
    """``n`` independently initialised copies of a network, stacked and run with ``vmap``.

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
        """Run the members with the given stacked ``state`` (e.g. detached or target copies)."""

        def one(member_state: dict[str, Tensor]) -> Tensor:
            return functional_call(self.template, member_state, inputs)

        return torch.vmap(one, randomness="different")(state)
