"""Agents: acting and learning. Pick one with ``agent.name``.

Each agent is a module of this package; its class registers itself in :data:`AGENT_CLASSES`
(a subclass of :class:`Agent` that sets ``name``, with its ``options`` dataclass if it has
any). The imports below load the built-in agents once, in this order, then every other module
of the package (sorted by name): a new agent is a new module here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mtrl.agents.base import AGENT_CLASSES, Agent, agent_from_payload, load_agent
from mtrl.agents.distill import Student
from mtrl.agents.distral import Distral, DistralOptions
from mtrl.agents.sac import SAC, resolve_device
from mtrl.errors import MtrlError
from mtrl.registry import import_submodules

import_submodules(__name__, __path__)  # any other agent module (a new file) registers too


def build_agent(
    agent_config: Any, obs_dim: int, act_dim: int, num_tasks: int, device: str, seed: int
) -> Agent:
    """Construct the agent named by ``agent_config.name`` from its config section.

    Every config field other than ``name`` is passed as a keyword argument (the ``network``
    section as a plain dict). A sub-section named after an agent (``distral``) holds that
    agent's own options: its fields are passed to that agent only, as keyword arguments.
    """
    options = dataclasses.asdict(agent_config)
    name = options.pop("name")
    cls = AGENT_CLASSES.lookup(name)  # a one-line error listing the registered agents
    if not cls.trained_by_rl:
        raise MtrlError(f"agent '{name}' is trained by `mtrl distill`, not by RL training")
    own = options.pop(name, None) or {}
    options = {key: value for key, value in options.items() if key not in AGENT_CLASSES}
    options.update(own)
    return cls(obs_dim=obs_dim, act_dim=act_dim, num_tasks=num_tasks, device=device,
               seed=seed, **options)


__all__ = [
    "AGENT_CLASSES", "SAC", "Distral", "DistralOptions", "Student", "Agent", "agent_from_payload",
    "build_agent", "load_agent", "resolve_device",
]
