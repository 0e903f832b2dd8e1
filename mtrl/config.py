"""The typed config schema of mtrl, YAML loading and dotted ``key=value`` overrides.

A config has the sections ``env``, ``agent``, ``replay``, ``train`` and ``log``. Presets are
YAML files in ``mtrl/configs`` (also reachable by name, e.g. ``mt10_mtmhsac``); any field can be
overridden from the command line with ``section.field=value``, checked against this schema.
Step counts are **per task**, as papers report them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mtrl.errors import MtrlError

PRESET_DIR = Path(__file__).parent / "configs"


@dataclass
class EnvConfig:
    """Which tasks and how many environments."""

    tasks: str = "MT10"  # MT10 | MT50 | MT1:<task> | comma-separated v3 task names | fake:<T>
    envs_per_task: int = 1
    eval_envs_per_task: int = 5  # parallel evaluation episodes per task
    num_workers: Optional[int] = None  # worker processes; None = one per core (at most)
    mode: str = "async"  # async (worker processes) | sync (in-process, for debugging)
    max_episode_steps: Optional[int] = None  # None = the benchmark's horizon (500)


@dataclass
class NetworkConfig:
    """Architecture of the actor and critic networks (``agent.network.type`` selects it)."""

    type: str = "multihead"  # mlp | multihead (more in mtrl.nn.NETWORKS)
    hidden_sizes: list[int] = field(default_factory=lambda: [400, 400, 400])
    activation: str = "relu"


@dataclass
class AgentConfig:
    """Multi-task SAC hyperparameters (defaults as in the Meta-World / CARE papers)."""

    name: str = "sac"
    network: NetworkConfig = field(default_factory=NetworkConfig)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    init_temperature: float = 1.0
    target_entropy: Optional[float] = None  # None = -|A|
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    actor_update_every: int = 1
    target_update_every: int = 1
    temperature_weighting: bool = False  # re-weight task losses by softmax(-log alpha)
    actor_combiner: str = "mean"
    critic_combiner: str = "mean"


@dataclass
class ReplayConfig:
    """Per-task ring buffers on the training device."""

    capacity_per_task: int = 100_000
    batch_per_task: int = 128


@dataclass
class TrainConfig:
    """The training loop. Step counts are per task."""

    steps_per_task: int = 2_000_000
    warmup_steps_per_task: int = 1_500
    updates_per_step: int = 1
    eval_every: int = 50_000
    eval_episodes: int = 50
    checkpoint_every: int = 50_000
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class LogConfig:
    """Where and how often metrics go."""

    every: int = 5_000  # steps per task between train-metric logs
    tensorboard: bool = True
    progress: bool = True


@dataclass
class Config:
    """A whole run."""

    name: str = "run"
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str) -> Path:
    """A YAML path, or the path of the shipped preset of that name."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if path.is_file():
            return path
        preset = PRESET_DIR / path.name
        if not path.exists() and path.parent.name == "configs" and preset.is_file():
            return preset
        raise MtrlError(f"config file not found: {name_or_path}")
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    raise MtrlError(
        f"unknown preset '{name_or_path}' (presets: {', '.join(preset_names())})"
    )


def _one_line(exc: OmegaConfBaseException) -> str:
    msg = str(exc).strip().splitlines()[0]
    key = getattr(exc, "full_key", None)
    if key and key not in msg:
        msg = f"{key}: {msg}"
    return msg


def load_config(
    name_or_path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> Config:
    """Load a preset or YAML file (or the defaults) and apply ``key=value`` overrides.

    Raises:
        MtrlError: unknown preset, unknown key, value of the wrong type, invalid value.
    """
    schema = OmegaConf.structured(Config)
    layers: list[Any] = [schema]
    try:
        if name_or_path is not None:
            path = resolve_config_path(str(name_or_path))
            loaded = OmegaConf.load(path)
            if not isinstance(loaded, DictConfig):
                raise MtrlError(f"{path}: a config must be a YAML mapping")
            if "name" not in loaded:
                loaded.name = path.stem
            layers.append(loaded)
        for item in overrides:
            if "=" not in item:
                raise MtrlError(f"override '{item}' is not of the form key=value")
        if overrides:
            layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(*layers)
        config: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        raise MtrlError(f"config: {_one_line(exc)}") from None
    validate(config)
    return config


def validate(config: Config) -> None:
    """Check values the type system cannot (positivity, known choices)."""
    positive = {
        "env.envs_per_task": config.env.envs_per_task,
        "env.eval_envs_per_task": config.env.eval_envs_per_task,
        "replay.capacity_per_task": config.replay.capacity_per_task,
        "replay.batch_per_task": config.replay.batch_per_task,
        "train.steps_per_task": config.train.steps_per_task,
        "train.updates_per_step": config.train.updates_per_step,
        "train.eval_every": config.train.eval_every,
        "train.eval_episodes": config.train.eval_episodes,
        "train.checkpoint_every": config.train.checkpoint_every,
        "log.every": config.log.every,
        "agent.actor_update_every": config.agent.actor_update_every,
        "agent.target_update_every": config.agent.target_update_every,
    }
    for key, value in positive.items():
        if value <= 0:
            raise MtrlError(f"config: {key} must be positive, got {value}")
    if config.train.warmup_steps_per_task < 0:
        raise MtrlError("config: train.warmup_steps_per_task must be >= 0")
    if config.env.num_workers is not None and config.env.num_workers <= 0:
        raise MtrlError("config: env.num_workers must be positive")
    if config.env.max_episode_steps is not None and config.env.max_episode_steps <= 0:
        raise MtrlError("config: env.max_episode_steps must be positive")
    choices = {
        "env.mode": (config.env.mode, ("async", "sync")),
        "train.device": (config.train.device, ("auto", "cpu", "cuda")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise MtrlError(f"config: {key} must be one of {', '.join(allowed)}, got '{value}'")
    if not config.agent.network.hidden_sizes or min(config.agent.network.hidden_sizes) <= 0:
        raise MtrlError("config: agent.network.hidden_sizes must be non-empty and positive")
    if not 0.0 < config.agent.tau <= 1.0:
        raise MtrlError("config: agent.tau must be in (0, 1]")
    if not 0.0 <= config.agent.gamma <= 1.0:
        raise MtrlError("config: agent.gamma must be in [0, 1]")


def to_yaml(config: Config) -> str:
    """The resolved config as YAML (what ``RUN_DIR/config.yaml`` holds)."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def to_dict(config: Config) -> dict[str, Any]:
    """The resolved config as a plain dict."""
    return dataclasses.asdict(config)


def from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config from :func:`to_dict` output (checked against the schema)."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(data))
        config: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        raise MtrlError(f"config: {_one_line(exc)}") from None
    validate(config)
    return config
