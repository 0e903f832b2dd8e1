"""Networks with the common interface ``forward(x, task_id)``; pick one by name."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

from torch import nn

from mtrl.errors import MtrlError
from mtrl.nn.base import TaskLinear, last_shared_weight_name, task_parameter_names
from mtrl.nn.bronet import BroNet
from mtrl.nn.care import CARE
from mtrl.nn.cross_stitch import CrossStitch
from mtrl.nn.ensemble import Ensemble, observe_task_losses, task_loss_mask
from mtrl.nn.film import FiLM
from mtrl.nn.grouped import GroupedNetwork
from mtrl.nn.mlp import OneHotMLP
from mtrl.nn.moore import MOORE
from mtrl.nn.multihead import MultiHead
from mtrl.nn.paco import PaCo
from mtrl.nn.softmod import SoftModularization

NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "mlp": OneHotMLP,
    "multihead": MultiHead,
    "softmod": SoftModularization,
    "care": CARE,
    "film": FiLM,
    "paco": PaCo,
    "moore": MOORE,
    "bronet": BroNet,
    "cross_stitch": CrossStitch,
}


def explicit_spec(spec: Any) -> dict[str, Any]:
    """``spec`` as a plain dict whose architecture options (``spec[<type>]``) list every
    constructor default, so that a saved spec rebuilds the same network after a default
    changes."""
    if dataclasses.is_dataclass(spec):
        spec = dataclasses.asdict(spec)  # type: ignore[arg-type]
    spec = dict(spec)
    cls = NETWORKS.get(spec.get("type", ""))
    if cls is None:
        return spec
    skip = {"self", "in_dim", "out_dim", "num_tasks", "hidden_sizes", "activation"}
    defaults = {name: p.default for name, p in inspect.signature(cls).parameters.items()
                if name not in skip and p.default is not inspect.Parameter.empty}
    if defaults:
        spec[spec["type"]] = {**defaults, **dict(spec.get(spec["type"]) or {})}
    return spec


def build_network(spec: Any, in_dim: int, out_dim: int, num_tasks: int) -> nn.Module:
    """Build the architecture named by ``spec["type"]`` (a ``NetworkConfig`` or its dict).

    Architecture-specific options live in ``spec[<type>]`` when the architecture has any;
    they are passed to its constructor as keyword arguments. With ``spec["groups"]`` (task
    index lists) the result is a :class:`GroupedNetwork`: one such network per group.
    """
    if dataclasses.is_dataclass(spec):
        spec = dataclasses.asdict(spec)  # type: ignore[arg-type]
    if spec.get("groups"):
        base = {**spec, "groups": []}
        return GroupedNetwork(lambda n: build_network(base, in_dim, out_dim, n), spec["groups"],
                              num_tasks)
    kind = spec["type"]
    try:
        cls = NETWORKS[kind]
    except KeyError:
        raise MtrlError(
            f"unknown network type '{kind}' (choose from {', '.join(NETWORKS)})"
        ) from None
    return cls(
        in_dim,
        out_dim,
        num_tasks,
        hidden_sizes=tuple(spec["hidden_sizes"]),
        activation=spec["activation"],
        **dict(spec.get(kind) or {}),
    )


__all__ = [
    "BroNet",
    "CARE",
    "CrossStitch",
    "MOORE",
    "NETWORKS",
    "Ensemble",
    "FiLM",
    "GroupedNetwork",
    "MultiHead",
    "OneHotMLP",
    "PaCo",
    "SoftModularization",
    "TaskLinear",
    "build_network",
    "explicit_spec",
    "observe_task_losses",
    "task_loss_mask",
    "task_parameter_names",
    "last_shared_weight_name",
]
