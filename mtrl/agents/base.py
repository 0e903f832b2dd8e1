"""What every mtrl agent offers: batched acting, stable-baselines3-style predict/save/load."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np
import torch
from torch import Tensor

from mtrl.agents.policy import rsample
from mtrl.data.episodes import Episodes
from mtrl.serialization import atomic_save, load_file, restore_generator
from mtrl.errors import MtrlError
from mtrl.registry import Registry

AGENT_CLASSES: Registry[type["Agent"]] = Registry("agent")
"""Agent name -> class, in registration order: a subclass of :class:`Agent` that sets ``name``
registers itself (with its ``options`` dataclass, the config section ``agent.<name>``)."""


class Agent(abc.ABC):
    """A multi-task agent.

    Subclasses record their constructor keyword arguments in ``self.init_kwargs`` (plain
    values), so that :meth:`save` / :func:`load_agent` can rebuild them.

    A subclass that sets ``name`` registers itself in :data:`AGENT_CLASSES` (``agent.name``
    selects it). Its own ``options`` dataclass, if any, becomes the config section
    ``agent.<name>``, whose fields are passed to that agent only, as keyword arguments.
    """

    name: ClassVar[str]
    options: ClassVar[Optional[type]] = None  # the dataclass of the section agent.<name>
    trained_by_rl: ClassVar[bool] = True  # False: not built by `mtrl train` (the distilled student)
    init_kwargs: dict[str, Any]
    num_tasks: int
    obs_dim: int
    act_dim: int
    device: torch.device

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            AGENT_CLASSES.register(cls.name, options=cls.__dict__.get("options"))(cls)

    generator: torch.Generator
    num_updates: int

    def progress_state(self) -> dict[str, Any]:
        """The agent's random stream and update count (part of every agent's state dict)."""
        return {"generator": self.generator.get_state(), "num_updates": self.num_updates}

    def load_progress_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`progress_state` (a stream saved on another device type re-seeds)."""
        restore_generator(self.generator, state["generator"])
        self.num_updates = int(state["num_updates"])

    @abc.abstractmethod
    def action_distribution(self, obs: Tensor, task_id: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-tanh ``(mean, log_std)`` of the policy that is evaluated (deterministic acts)."""

    def behaviour_distribution(self, obs: Tensor, task_id: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-tanh ``(mean, log_std)`` of the policy that collects data (default: the same)."""
        return self.action_distribution(obs, task_id)

    def act_tensor(self, obs: Tensor, task_id: Tensor, deterministic: bool) -> Tensor:
        """Actions ``(N, act_dim)`` for a batch on the agent's device (no autograd):
        ``tanh(mean)`` when deterministic, else a tanh-Gaussian sample from the agent's
        generator."""
        if deterministic:
            return torch.tanh(self.action_distribution(obs, task_id)[0])
        noise = torch.randn(
            obs.shape[0], self.act_dim, device=self.device, generator=self.generator
        )
        return rsample(*self.behaviour_distribution(obs, task_id), noise)[0]

    @abc.abstractmethod
    def update(self, batch: Any) -> dict[str, Tensor]:
        """One learning step; metrics as device tensors (no host sync)."""

    def observe_episodes(self, episodes: Episodes) -> None:
        """Completed training episodes (:class:`~mtrl.data.Episodes`: task, return, length,
        success, per-step rewards).

        The training loop calls this whenever episodes end; agents that adapt to returns
        (SAC's per-task reward normalisation, DTP's success rates) override it. Default:
        nothing.
        """

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue learning: networks, optimizers, RNG, counters."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""

    def act(self, obs: np.ndarray, task_id: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """One batched policy forward for all envs: ``(N, obs_dim), (N,) -> (N, act_dim)``."""
        with torch.no_grad():
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            task_t = torch.tensor(task_id, dtype=torch.int64, device=self.device)
            return self.act_tensor(obs_t, task_t, deterministic).cpu().numpy()

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
        task_id: np.ndarray | int | None = None,
    ) -> tuple[np.ndarray, Any]:
        """stable-baselines3-style prediction: ``(action, state)``.

        Without ``task_id``, the observation must end with a one-hot task vector (the format of
        Meta-World's ``use_one_hot=True`` envs). A single observation gives a single action.
        """
        obs = np.asarray(observation, dtype=np.float32)
        single = obs.ndim == 1
        obs = obs.reshape(-1, obs.shape[-1])
        if task_id is None:
            if obs.shape[-1] != self.obs_dim + self.num_tasks:
                raise MtrlError(
                    f"observation has {obs.shape[-1]} values: expected {self.obs_dim} with a "
                    f"task_id, or {self.obs_dim + self.num_tasks} with a one-hot task suffix"
                )
            task = obs[:, self.obs_dim :].argmax(-1)
            obs = np.ascontiguousarray(obs[:, : self.obs_dim])
        else:
            task = np.broadcast_to(np.asarray(task_id, dtype=np.int64), (obs.shape[0],))
        action = self.act(obs, task, deterministic)
        return (action[0] if single else action), state

    def save(self, path: str | Path) -> None:
        """Write the agent (constructor arguments and state) to ``path`` atomically."""
        atomic_save(
            {"agent": self.name, "kwargs": self.init_kwargs, "state": self.state_dict()}, path
        )

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> "Agent":
        """Rebuild an agent written by :meth:`save` (or an mtrl checkpoint)."""
        return load_agent(path, device)


def upgrade_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments saved before a default changed, with the old behaviour made
    explicit: the tanh log-std bounds, a multi-head trunk without the task id, the exact
    tanh correction; BroNet's former ``width`` option becomes its ``hidden_sizes``."""
    if "log_std_min" in kwargs and "log_std_mode" not in kwargs:
        kwargs["log_std_mode"] = "tanh"
    if "init_temperature" in kwargs and "tanh_correction" not in kwargs:  # SAC and its kin
        kwargs["tanh_correction"] = "exact"
    for key in ("network", "shared_network", "critic_network"):
        spec = kwargs.get(key)
        if isinstance(spec, dict) and spec.get("type") == "multihead" and "multihead" not in spec:
            kwargs[key] = {**spec, "multihead": {"task_input": False}}
        bronet = spec.get("bronet") if isinstance(spec, dict) else None
        if isinstance(bronet, dict) and "width" in bronet:  # BroNet's width is hidden_sizes now
            spec = {**spec, "bronet": {k: v for k, v in bronet.items() if k != "width"}}
            if spec.get("type") == "bronet":  # other networks keep their own hidden_sizes
                spec["hidden_sizes"] = [bronet["width"]]
            kwargs[key] = spec
    return kwargs


def agent_from_payload(payload: dict[str, Any], device: str | torch.device | None = None) -> Agent:
    """Rebuild an agent from ``{"agent", "kwargs", "state"}``."""
    try:
        cls = AGENT_CLASSES[payload["agent"]]
        kwargs = dict(payload["kwargs"])
    except (KeyError, TypeError):
        raise MtrlError("file does not hold an mtrl agent") from None
    if device is not None:
        kwargs["device"] = str(device)
    agent = cls(**upgrade_kwargs(kwargs))
    agent.load_state_dict(payload["state"])
    return agent


def load_agent(path: str | Path, device: str | torch.device | None = None) -> Agent:
    """Load an agent saved with :meth:`Agent.save` or from an mtrl run checkpoint."""
    payload = load_file(path)
    if "learner" in payload:  # a training checkpoint
        payload = payload["learner"]
    return agent_from_payload(payload, device)
