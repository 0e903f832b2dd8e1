"""The network registry and the network spec that :func:`mtrl.nn.build_network` takes.

An architecture registers itself in its own module::

    @dataclass
    class PaCoOptions:
        num_param_sets: int = 5

    @register_network("paco", options=PaCoOptions)
    class PaCo(nn.Module):
        def __init__(self, in_dim, out_dim, num_tasks, hidden_sizes=(400, 400),
                     activation="relu", num_param_sets=5): ...

and its options become the config section ``agent.network.paco`` (passed to the constructor as
keyword arguments when ``agent.network.type=paco``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from torch import nn

from mtrl.registry import Registry

NETWORKS: Registry[Callable[..., nn.Module]] = Registry("network type")
"""Network type -> class ``cls(in_dim, out_dim, num_tasks, hidden_sizes=, activation=,
**options)``, in registration order."""


def register_network(name: str, options: Optional[type] = None) -> Callable[[Any], Any]:
    """Class decorator: register a network type under ``name`` with its options dataclass
    (the config section ``agent.network.<name>``; ``None``: the type has no options)."""
    return NETWORKS.register(name, options)


@dataclass
class NetworkConfig:
    """Architecture of the actor and critic networks (``agent.network.type`` selects it).

    In a loaded config, the section named after each registered type (``multihead``,
    ``softmod``, ``care``, ``film``, ``paco``, ``moore``, ``bronet``, ``cross_stitch``,
    ``routing``, ...)
    holds that architecture's options (:mod:`mtrl.config` adds them from :data:`NETWORKS`).
    """

    type: str = "multihead"  # a registered type: mlp | multihead | softmod | care | film | paco
    #                          | moore | bronet | cross_stitch | routing (mtrl.nn.NETWORKS)
    hidden_sizes: list[int] = field(default_factory=lambda: [400, 400, 400])
    activation: str = "relu"
    # One network of this type per task group, trained side by side: lists of task names or
    # 0-based indices, each task in exactly one group (as `mtrl group --disjoint` writes;
    # `mtrl train --groups FILE` reads that JSON). [] = one network for all tasks.
    groups: list[list[Any]] = field(default_factory=list)
