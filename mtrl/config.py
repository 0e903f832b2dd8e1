"""The typed config schema of mtrl, YAML loading and dotted ``key=value`` overrides.

A config has the sections ``env``, ``agent``, ``replay``, ``train`` and ``log``. Presets are
YAML files in ``mtrl/configs`` (also reachable by name, e.g. ``mt10_mtmhsac``); any field can be
overridden from the command line with ``section.field=value``, checked against this schema.
Step counts are **per task**, as papers report them.

A YAML file may start from others: ``inherits: mt10`` (or a list, merged in order; preset
names or paths relative to the file) takes their values and the file holds only what differs.
The shipped presets are composed this way from one base per benchmark (``mt10``, ``mt50``);
the resolved config (written to a run's ``config.yaml``) is always complete.

The option sections of the methods are not written here: every network type, gradient combiner
and agent registers its options dataclass in its own module (:mod:`mtrl.registry`), and
:func:`assemble_schema` adds one section per registered method to the dataclasses below when
a config is loaded (``agent.network.paco``, ``agent.combiners.cagrad``, ``agent.distral``, ...).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mtrl.errors import MtrlError
from mtrl.nn.registry import NetworkConfig
from mtrl.registry import Registry

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
    backend: str = "metaworld"  # metaworld | envpool (training envs; evaluation stays metaworld)


@dataclass
class CombinerOptions:
    """Options of each gradient combiner, used by whichever of actor / critic picks it.

    In a loaded config it has one section per registered combiner with options (``pcgrad``,
    ``cagrad``, ``gradnorm``, ``uncertainty``, ``famo``, ``fixed``, ``mgda``, ``dwa``, ...):
    :func:`assemble_schema` adds them from :data:`mtrl.optim.COMBINERS`.
    """


@dataclass
class AgentConfig:
    """Multi-task SAC hyperparameters (defaults as in the Meta-World / CARE papers).

    A sub-section named after each agent that registers options (``distral``:
    :class:`mtrl.agents.distral.DistralOptions`, added by :func:`assemble_schema`) holds that
    agent's own options; it is given to that agent only.
    """

    name: str = "sac"
    network: NetworkConfig = field(default_factory=NetworkConfig)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    alpha_beta1: float = 0.9  # the temperature's Adam beta1 (BRC's code: 0.5)
    gamma: float = 0.99
    tau: float = 0.005
    init_temperature: float = 1.0
    target_entropy: Optional[float] = None  # None = -|A|
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    log_std_mode: str = "clip"  # clip (SB3 / JAX baselines: initial std ~1) | tanh (CARE code)
    # log pi's tanh term: bounded log(1 - tanh^2 + 1e-6) (SAC code, garage, SB3, CARE) | exact
    tanh_correction: str = "bounded"
    shared_temperature: bool = False  # one SAC temperature for all tasks (one-hot MT-SAC papers)
    actor_update_every: int = 1
    target_update_every: int = 1
    temperature_weighting: bool = False  # re-weight task losses by softmax(-log alpha)
    actor_combiner: str = "mean"  # mean | pcgrad | cagrad | fixed | mgda (mtrl.optim.COMBINERS)
    critic_combiner: str = "mean"  # ... | gradnorm | uncertainty | famo | dwa (positive losses)
    combiners: CombinerOptions = field(default_factory=CombinerOptions)
    popart: bool = False  # PopArt-normalised critic (per-task target statistics)
    popart_beta: float = 3e-4  # step size of PopArt's statistics
    # BRC (Nauman et al. 2025) options; each also works alone (see mtrl/agents/sac.py)
    critic_network: Optional[NetworkConfig] = None  # the critics' architecture; None = network
    critic_loss: str = "mse"  # mse | categorical (cross-entropy over num_bins atoms)
    critic_ensemble: str = "min"  # min | mean (BRC: mean of the twin critics' probabilities)
    num_bins: int = 101  # atoms of the categorical critic
    v_min: float = -10.0  # support of the categorical critic
    v_max: float = 10.0  # (also the target of reward_normalization)
    task_encoding: str = "one_hot"  # one_hot | embedding (learned, unit norm, critic-trained)
    task_embedding_dim: int = 32
    reward_normalization: bool = False  # per-task reward scale v_max / (G_i + lambda_i)
    weight_decay: float = 0.0  # > 0: AdamW on actor and critic (0: Adam)
    # torch.compile the update's pieces (sac; combiners mean | pcgrad | cagrad; see
    # mtrl/agents/compiled.py); other combinations are refused at construction
    compile: bool = False


@dataclass
class ActiveSamplingConfig:
    """``replay.task_sampling=active``: A5C's task distribution (Sharma et al. 2017),
    ``p = min_prob + (1 - T min_prob) softmax(m / temperature)`` over the normalised gaps
    ``m_i = max(target_i - perf_i, 0) / target_i`` of the smoothed training success rates; each
    task's loss weighs ``p_i`` in the (still balanced) update (see mtrl/data/task_sampling.py)."""

    target: str = "1.0"  # a success rate in (0, 1] for every task | best (best smoothed seen)
    temperature: float = 0.1  # softmax temperature over the gaps (A5C's tau)
    smoothing: float = 0.9  # EMA weight of the previous success rate, per finished episode
    min_prob: float = 0.0  # floor of every task's probability (<= 1/T; the paper has none)


@dataclass
class ReplayConfig:
    """Per-task ring buffers on the training device."""

    capacity_per_task: int = 100_000
    batch_per_task: int = 128
    task_sampling: str = "uniform"  # uniform | active (A5C: loss weight p_i per task, mtrl train)
    active: ActiveSamplingConfig = field(default_factory=ActiveSamplingConfig)


@dataclass
class TrainConfig:
    """The training loop. Step counts are per task."""

    steps_per_task: int = 2_000_000
    warmup_steps_per_task: int = 1_500
    updates_per_step: int = 1
    # step the envs in the workers while the learner updates; the updates of a step then
    # sample a buffer without that step's transitions (one step staler data, same policy).
    # auto: on when training on CUDA; off on CPU, where the learner's threads and the env
    # workers share the cores and overlapping measured slower (see README, Benchmarks)
    overlap: Union[bool, str] = "auto"
    eval_every: int = 50_000
    eval_episodes: int = 50
    checkpoint_every: int = 50_000
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    affinity_every: int = 0  # steps per task between online task-affinity measurements; 0 = off


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


@dataclass
class StudentConfig:
    """The multi-task student of a distillation run (a tanh-Gaussian policy)."""

    network: NetworkConfig = field(default_factory=NetworkConfig)
    lr: float = 3e-4
    combiner: str = "mean"  # gradient combiner of the per-task distillation losses
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    log_std_mode: str = "clip"  # clip | tanh, as agent.log_std_mode


@dataclass
class DistillOptions:
    """Which expert teaches which task, the loss, and the expert-rollout schedule."""

    experts: dict[str, str] = field(default_factory=dict)  # task -> SB3 .zip | mtrl checkpoint | run dir
    expert_pattern: Optional[str] = None  # path of the tasks not in `experts`, e.g. runs/experts/{task}
    loss: str = "kl"  # kl: KL(expert || student) of the tanh-Gaussians | mse: on the mean actions
    expert_rollouts_start: float = 1.0  # fraction of episodes the expert drives at step 0 ...
    expert_rollouts_end: float = 0.0  # ... and after the linear decay
    expert_rollouts_steps: int = 20_000  # steps per task of the decay
    stochastic_rollouts: bool = False  # sample actions in rollouts (False: mean actions)
    evaluate_experts: bool = True  # evaluate the experts on the same eval envs for the report
    feature_regression_weight: float = 0.0  # Actor-Mimic's beta: |f_i(h) - h_expert_i|^2 (0: off)
    feature_predictor_hidden: int = 0  # hidden width of each task's f_i (0: linear)


@dataclass
class DistillConfig:
    """A policy distillation run (``mtrl distill``): student rollouts labelled by experts."""

    name: str = "distill"
    env: EnvConfig = field(default_factory=EnvConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillOptions = field(default_factory=DistillOptions)
    replay: ReplayConfig = field(default_factory=ReplayConfig)  # the DAgger dataset
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(steps_per_task=100_000, warmup_steps_per_task=1_000,
                                            eval_every=10_000, checkpoint_every=10_000))
    log: LogConfig = field(default_factory=lambda: LogConfig(every=1_000))


@dataclass
class ExpertSACConfig:
    """stable-baselines3 SAC options of an expert (batch, buffer, steps: replay / train)."""

    learning_rate: float = 3e-4
    net_arch: list[int] = field(default_factory=lambda: [256, 256])
    gamma: float = 0.99
    tau: float = 0.005
    ent_coef: str = "auto"  # auto | auto_<init> | a fixed float, as SB3 takes it


@dataclass
class ExpertConfig:
    """A single-task SB3 SAC expert (``mtrl expert TASK``).

    ``env.tasks`` is the task list the expert's task is taken from (empty: the task alone);
    one training env. ``replay`` gives SB3's buffer and batch sizes, ``train`` its budget,
    warm-up (``learning_starts``) and gradient steps per env step.
    """

    name: str = "expert"
    task: str = ""
    env: EnvConfig = field(default_factory=lambda: EnvConfig(tasks=""))
    sac: ExpertSACConfig = field(default_factory=ExpertSACConfig)
    replay: ReplayConfig = field(
        default_factory=lambda: ReplayConfig(capacity_per_task=1_000_000, batch_per_task=256))
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(steps_per_task=1_000_000, warmup_steps_per_task=5_000))
    log: LogConfig = field(default_factory=LogConfig)


# ---------------------------------------------------------------------- the assembled schema


def _registries() -> dict[type, Registry[Any]]:
    """The dataclass that each registry adds its option sections to."""
    from mtrl.agents import AGENT_CLASSES  # imported here: the agents import much more
    from mtrl.nn import NETWORKS
    from mtrl.optim import COMBINERS

    return {NetworkConfig: NETWORKS, CombinerOptions: COMBINERS, AgentConfig: AGENT_CLASSES}


_ASSEMBLED: dict[type, type] = {}  # dataclass -> its assembled form, for the state below
_ASSEMBLED_FOR: tuple[int, ...] = ()  # the registries' versions _ASSEMBLED was built for


def assemble_schema(base: type = Config) -> type:
    """The config dataclass ``base`` (:class:`Config`, :class:`DistillConfig`,
    :class:`ExpertConfig`, ...) with one options section per registered method.

    The result is a subclass of ``base`` (same name, same fields) in which every
    :class:`~mtrl.nn.NetworkConfig` has a field per registered network type with options
    (``paco: PaCoOptions``), :class:`CombinerOptions` one per combiner (``cagrad:
    CAGradOptions``) and :class:`AgentConfig` one per agent (``distral: DistralOptions``), in
    registration order. A dataclass that holds none of these is returned unchanged. Built
    again whenever a registry has changed since the last call.
    """
    global _ASSEMBLED_FOR
    registries = _registries()
    state = tuple(registry.version for registry in registries.values())
    if state != _ASSEMBLED_FOR:
        _ASSEMBLED.clear()
        _ASSEMBLED_FOR = state
    try:
        return _assemble(base, registries)
    except BaseException:
        _ASSEMBLED.clear()  # no half-built entry stays cached
        _ASSEMBLED_FOR = ()
        raise


def _assemble(cls: type, registries: dict[type, Registry[Any]]) -> type:
    cls = cls.__dict__.get("_schema_base", cls)  # an assembled class: start from its base
    if cls in _ASSEMBLED:
        return _ASSEMBLED[cls]
    _ASSEMBLED[cls] = cls  # (a dataclass that contains itself)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    new_fields: list[tuple[str, Any, Any]] = []
    for f in dataclasses.fields(cls):
        target = _assembled_type(hints[f.name], registries)
        if target is not hints[f.name]:
            new_fields.append((f.name, target, _assembled_default(f, target)))
    registry = registries.get(cls)
    for name, options in (registry.option_sections() if registry is not None else {}).items():
        if name in names:
            raise MtrlError(f"{registry.kind} '{name}': its options would replace the field "
                            f"{cls.__name__}.{name}; register it under another name")
        section = _assemble(options, registries)
        new_fields.append((name, section, field(default_factory=section)))
    if new_fields:
        namespace = {"__doc__": cls.__doc__, "__qualname__": cls.__qualname__,
                     "_schema_base": cls, "__reduce__": _reduce_assembled}
        assembled = dataclasses.make_dataclass(cls.__name__, new_fields, bases=(cls,),
                                               namespace=namespace)
        assembled.__module__ = cls.__module__
        _ASSEMBLED[cls] = assembled
    return _ASSEMBLED[cls]


def _assembled_type(tp: Any, registries: dict[type, Registry[Any]]) -> Any:
    """``tp`` with its dataclasses assembled (a dataclass, or ``Optional`` of one)."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _assemble(tp, registries)
    if typing.get_origin(tp) is Union:
        args = typing.get_args(tp)
        new = tuple(_assembled_type(arg, registries) for arg in args)
        if any(a is not b for a, b in zip(new, args)):
            return Union[new]
    return tp


def _assembled_default(f: dataclasses.Field, target: Any) -> Any:
    """The default of field ``f`` as a value of its assembled type ``target``."""
    factory = f.default_factory
    if factory is not dataclasses.MISSING:
        return field(default_factory=lambda: _as_assembled(factory(), target))
    if f.default is not dataclasses.MISSING:
        return field(default=f.default)
    return field()


def _dataclass_in(tp: Any) -> Optional[type]:
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp
    found = [arg for arg in typing.get_args(tp) if dataclasses.is_dataclass(arg)]
    return found[0] if typing.get_origin(tp) is Union and len(found) == 1 else None


def _as_assembled(value: Any, target: Any) -> Any:
    """A dataclass instance (e.g. ``NetworkConfig(type="mlp")``) as an instance of the
    assembled dataclass in ``target``, with the same values and default option sections."""
    cls = _dataclass_in(target)
    if cls is None or value is None or type(value) is cls:
        return value
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _as_assembled(getattr(value, f.name), hints[f.name])
                  for f in dataclasses.fields(value) if f.init})


def _reduce_assembled(self: Any) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """Pickle an assembled config as its base class and values (rebuilt against the
    registries of the process that loads it)."""
    values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    return _rebuild_assembled, (type(self).__dict__["_schema_base"], values)


def _rebuild_assembled(base: type, values: dict[str, Any]) -> Any:
    return assemble_schema(base)(**values)


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


INHERITS_KEY = "inherits"


def load_yaml(path: Path, _chain: tuple[Path, ...] = ()) -> DictConfig:
    """A config file with its ``inherits`` resolved (parents merged first, then the file);
    its ``name`` is its own or its file name, never a parent's."""
    path = path.resolve()
    if path in _chain:
        cycle = " -> ".join(p.stem for p in (*_chain, path))
        raise MtrlError(f"config: {path.name} inherits itself ({cycle})")
    loaded = OmegaConf.load(path)
    if not isinstance(loaded, DictConfig):
        raise MtrlError(f"{path}: a config must be a YAML mapping")
    parents = loaded.pop(INHERITS_KEY, None) or []
    if isinstance(parents, str):
        parents = [parents]
    layers = []
    for parent in parents:
        local = path.parent / str(parent)
        parent_path = local if local.suffix in (".yaml", ".yml") and local.is_file() \
            else resolve_config_path(str(parent))
        layer = load_yaml(parent_path, (*_chain, path))
        layer.pop("name", None)
        layers.append(layer)
    merged = OmegaConf.merge(*layers, loaded) if layers else loaded
    assert isinstance(merged, DictConfig)
    if "name" not in merged:
        merged.name = path.stem
    return merged


def _one_line(exc: OmegaConfBaseException) -> str:
    msg = str(exc).strip().splitlines()[0]
    key = getattr(exc, "full_key", None)
    if key and key not in msg:
        msg = f"{key}: {msg}"
    return msg


def load_config(
    name_or_path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    schema: type[Any] = Config,
) -> Any:
    """Load a preset or YAML file (or the defaults) and apply ``key=value`` overrides.

    ``schema`` is the config dataclass (:class:`Config` for training runs,
    :class:`DistillConfig`, :class:`ExpertConfig`), checked with the option sections of every
    registered method (:func:`assemble_schema`).

    Raises:
        MtrlError: unknown preset, unknown key, value of the wrong type, invalid value.
    """
    layers: list[Any] = [OmegaConf.structured(assemble_schema(schema))]
    try:
        if name_or_path is not None:
            layers.append(load_yaml(resolve_config_path(str(name_or_path))))
        for item in overrides:
            if "=" not in item:
                raise MtrlError(f"override '{item}' is not of the form key=value")
        if overrides:
            layers.append(OmegaConf.from_dotlist(list(overrides)))
        merged = OmegaConf.merge(*layers)
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise MtrlError(f"config: {_one_line(exc)}") from None
    validate(config)
    return config


def validate(config: Any) -> None:
    """Check values the type system cannot (positivity, known choices), for any schema."""
    _validate_task_sampling(config)
    if isinstance(config, DistillConfig):
        return _validate_distill(config)
    if isinstance(config, ExpertConfig):
        return _validate_expert(config)
    _validate_common(config, {
        "env.envs_per_task": config.env.envs_per_task,
        "agent.actor_update_every": config.agent.actor_update_every,
        "agent.target_update_every": config.agent.target_update_every,
    })
    if not config.agent.network.hidden_sizes or min(config.agent.network.hidden_sizes) <= 0:
        raise MtrlError("config: agent.network.hidden_sizes must be non-empty and positive")
    _validate_log_std(config.agent.log_std_mode, "agent")
    from mtrl.agents.policy import TANH_CORRECTIONS

    if config.agent.tanh_correction not in TANH_CORRECTIONS:
        raise MtrlError(f"config: agent.tanh_correction must be one of "
                        f"{', '.join(TANH_CORRECTIONS)}, got '{config.agent.tanh_correction}'")
    if not 0.0 <= config.agent.alpha_beta1 < 1.0:
        raise MtrlError(f"config: agent.alpha_beta1 must be in [0, 1), "
                        f"got {config.agent.alpha_beta1}")
    if not 0.0 < config.agent.tau <= 1.0:
        raise MtrlError("config: agent.tau must be in (0, 1]")
    if not 0.0 <= config.agent.gamma <= 1.0:
        raise MtrlError("config: agent.gamma must be in [0, 1]")
    _validate_combiners(config.agent)
    _validate_critic(config.agent)
    _validate_sections(config.agent)
    if config.train.affinity_every < 0:
        raise MtrlError("config: train.affinity_every must be >= 0 (0 = off)")
    if config.agent.network.groups:  # names -> indices: the networks know task ids only
        from mtrl.envs.tasks import resolve_tasks
        from mtrl.envs.tasks import resolve_groups

        config.agent.network.groups = resolve_groups(config.agent.network.groups,
                                                     resolve_tasks(config.env.tasks))


def _validate_task_sampling(config: Any) -> None:
    """``replay.task_sampling`` and its ``replay.active`` options (RL training runs only)."""
    from mtrl.data.task_sampling import TASK_SAMPLING, check_active_options

    replay = config.replay
    if replay.task_sampling not in TASK_SAMPLING:
        raise MtrlError(f"config: replay.task_sampling must be one of "
                        f"{', '.join(TASK_SAMPLING)}, got '{replay.task_sampling}'")
    if replay.task_sampling == "uniform":
        return
    if isinstance(config, (DistillConfig, ExpertConfig)):
        raise MtrlError("config: replay.task_sampling=active weights the tasks of RL training "
                        "(mtrl train); leave it uniform here")
    num_tasks = None
    try:
        from mtrl.envs.tasks import resolve_tasks

        num_tasks = len(resolve_tasks(config.env.tasks))
    except (MtrlError, ValueError):  # an invalid task list is reported where envs are built
        pass
    a = replay.active
    try:
        check_active_options(num_tasks, a.target, a.temperature, a.smoothing, a.min_prob)
    except MtrlError as exc:
        raise MtrlError(f"config: {exc}") from None


def _validate_log_std(mode: str, section: str) -> None:
    from mtrl.agents.policy import LOG_STD_MODES

    if mode not in LOG_STD_MODES:
        raise MtrlError(f"config: {section}.log_std_mode must be one of "
                        f"{', '.join(LOG_STD_MODES)}, got '{mode}'")


def _validate_combiners(agent: AgentConfig) -> None:
    """Known gradient-combiner names and PopArt's step (options are checked when built)."""
    from mtrl.optim import COMBINERS  # imported here, as every registry (no import cycle)

    for key in ("actor_combiner", "critic_combiner"):
        name = getattr(agent, key)
        if name not in COMBINERS:
            raise MtrlError(f"config: agent.{key}: unknown gradient combiner '{name}' "
                            f"(choose from {', '.join(COMBINERS)})")
    if not 0.0 < agent.popart_beta <= 1.0:
        raise MtrlError(f"config: agent.popart_beta must be in (0, 1], got {agent.popart_beta}")


def _validate_critic(agent: AgentConfig) -> None:
    """The critic / BRC options (one-line errors naming the key)."""
    from mtrl.agents.sac import check_critic_options

    try:
        check_critic_options(agent.critic_loss, agent.critic_ensemble, agent.num_bins,
                             agent.v_min, agent.v_max, agent.task_encoding,
                             agent.task_embedding_dim, agent.weight_decay, agent.popart)
    except MtrlError as exc:
        raise MtrlError(f"config: {exc}") from None
    if agent.reward_normalization and not agent.gamma < 1.0:
        raise MtrlError("config: agent.reward_normalization needs agent.gamma < 1")
    if agent.critic_network is not None:
        sizes = agent.critic_network.hidden_sizes
        if not sizes or min(sizes) <= 0:
            raise MtrlError("config: agent.critic_network.hidden_sizes must be non-empty and "
                            "positive")


def _validate_sections(agent: AgentConfig) -> None:
    """The option sections that check themselves (``validate(key)``, see :mod:`mtrl.registry`):
    every network type's of ``agent.network`` and ``agent.critic_network``, the chosen
    combiners' and the chosen agent's."""
    from mtrl.agents import AGENT_CLASSES
    from mtrl.nn import NETWORKS
    from mtrl.optim import COMBINERS

    sections: list[tuple[Any, str]] = []
    for key in ("network", "critic_network"):
        spec = getattr(agent, key)
        if spec is not None:
            sections += [(getattr(spec, name, None), f"agent.{key}.{name}")
                         for name in NETWORKS.option_sections()]
    for name in dict.fromkeys((agent.actor_combiner, agent.critic_combiner)):
        if name in COMBINERS.option_sections():
            sections.append((getattr(agent.combiners, name, None), f"agent.combiners.{name}"))
    if agent.name in AGENT_CLASSES.option_sections():
        sections.append((getattr(agent, agent.name, None), f"agent.{agent.name}"))
    for section, key in sections:
        check = getattr(section, "validate", None)
        if check is not None:
            try:
                check(key)
            except MtrlError as exc:
                raise MtrlError(f"config: {exc}") from None


def _validate_common(config: Any, positive: dict[str, float]) -> None:
    """Checks of the env / replay / train / log sections that every schema shares."""
    positive = {
        "env.eval_envs_per_task": config.env.eval_envs_per_task,
        "replay.capacity_per_task": config.replay.capacity_per_task,
        "replay.batch_per_task": config.replay.batch_per_task,
        "train.steps_per_task": config.train.steps_per_task,
        "train.updates_per_step": config.train.updates_per_step,
        "train.eval_every": config.train.eval_every,
        "train.eval_episodes": config.train.eval_episodes,
        "train.checkpoint_every": config.train.checkpoint_every,
        "log.every": config.log.every,
        **positive,
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
    if config.train.overlap not in (True, False, "auto"):
        raise MtrlError(f"config: train.overlap must be true, false or auto, got "
                        f"'{config.train.overlap}'")
    for key, value, allowed in (("env.mode", config.env.mode, ("async", "sync")),
                                ("env.backend", config.env.backend, ("metaworld", "envpool")),
                                ("train.device", config.train.device, ("auto", "cpu", "cuda"))):
        if value not in allowed:
            raise MtrlError(f"config: {key} must be one of {', '.join(allowed)}, got '{value}'")


def _validate_distill(config: DistillConfig) -> None:
    d = config.distill
    _validate_common(config, {"env.envs_per_task": config.env.envs_per_task,
                              "student.lr": config.student.lr})
    if d.loss not in ("kl", "mse"):
        raise MtrlError(f"config: distill.loss must be one of kl, mse, got '{d.loss}'")
    if config.train.affinity_every:
        raise MtrlError("config: train.affinity_every measures RL training (mtrl train), "
                        "not distillation; leave it 0")
    for key in ("expert_rollouts_start", "expert_rollouts_end"):
        if not 0.0 <= getattr(d, key) <= 1.0:
            raise MtrlError(f"config: distill.{key} must be in [0, 1], got {getattr(d, key)}")
    if d.expert_rollouts_steps < 0:
        raise MtrlError("config: distill.expert_rollouts_steps must be >= 0")
    _validate_log_std(config.student.log_std_mode, "student")
    sizes = config.student.network.hidden_sizes
    if not sizes or min(sizes) <= 0:
        raise MtrlError("config: student.network.hidden_sizes must be non-empty and positive")


def _validate_expert(config: ExpertConfig) -> None:
    _validate_common(config, {"sac.learning_rate": config.sac.learning_rate})
    if config.env.envs_per_task != 1:
        raise MtrlError("config: an expert trains on one env (SB3 SAC): env.envs_per_task must be 1")
    if not config.sac.net_arch or min(config.sac.net_arch) <= 0:
        raise MtrlError("config: sac.net_arch must be non-empty and positive")


def to_yaml(config: Config) -> str:
    """The resolved config as YAML (what ``RUN_DIR/config.yaml`` holds)."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def to_dict(config: Config) -> dict[str, Any]:
    """The resolved config as a plain dict."""
    return dataclasses.asdict(config)


def from_dict(data: dict[str, Any], schema: type[Any] = Config) -> Any:
    """Rebuild a config from :func:`to_dict` output (checked against ``schema``)."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(assemble_schema(schema)),
                                 OmegaConf.create(data))
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise MtrlError(f"config: {_one_line(exc)}") from None
    validate(config)
    return config
