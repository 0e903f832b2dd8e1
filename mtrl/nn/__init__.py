"""Networks with the common interface ``forward(x, task_id)``; pick one by name.

Each architecture is one module of this package that registers itself, with its options
dataclass, by ``@register_network(name, options=...)`` (:mod:`mtrl.nn.registry`). The imports
below load the built-in architectures once, in this order, then every other module of the
package (sorted by name): that is the order of :data:`NETWORKS` (and of the ``agent.network``
sections of a config). A new architecture is a new module here; nothing else needs an edit.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from torch import nn

from mtrl.nn.base import TaskLinear, last_shared_weight_name, task_parameter_names
from mtrl.nn.ensemble import Ensemble, network_metrics, observe_task_losses, task_loss_mask
from mtrl.nn.grouped import GroupedNetwork
from mtrl.nn.registry import NETWORKS, NetworkConfig, register_network
from mtrl.registry import import_submodules

# the architectures (each registers itself on import; this order is the registry's)
from mtrl.nn.mlp import OneHotMLP
from mtrl.nn.multihead import MultiHead, MultiHeadOptions
from mtrl.nn.softmod import SoftModOptions, SoftModularization
from mtrl.nn.care import CARE, CareOptions
from mtrl.nn.film import FiLM, FiLMOptions
from mtrl.nn.paco import PaCo, PaCoOptions
from mtrl.nn.moore import MOORE, MooreOptions
from mtrl.nn.bronet import BroNet, BroNetOptions
from mtrl.nn.cross_stitch import CrossStitch, CrossStitchOptions
from mtrl.nn.routing import RoutingNetwork, RoutingOptions

import_submodules(__name__, __path__)  # any other architecture module (a new file) registers too


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
    cls = NETWORKS.lookup(kind)  # a one-line error listing the registered types
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
    "BroNetOptions",
    "CARE",
    "CareOptions",
    "CrossStitch",
    "CrossStitchOptions",
    "MOORE",
    "MooreOptions",
    "NETWORKS",
    "NetworkConfig",
    "Ensemble",
    "FiLM",
    "FiLMOptions",
    "GroupedNetwork",
    "MultiHead",
    "MultiHeadOptions",
    "OneHotMLP",
    "PaCo",
    "PaCoOptions",
    "RoutingNetwork",
    "RoutingOptions",
    "SoftModOptions",
    "SoftModularization",
    "TaskLinear",
    "build_network",
    "register_network",
    "explicit_spec",
    "network_metrics",
    "observe_task_losses",
    "task_loss_mask",
    "task_parameter_names",
    "last_shared_weight_name",
]
