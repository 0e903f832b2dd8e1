"""The typed config schema of mtrl, YAML loading and dotted ``key=value`` overrides.

A config has the sections ``env``, ``agent``, ``replay``, ``train`` and ``log``. Presets are
YAML files in ``mtrl/configs`` (also reachable by name, e.g. ``mt10_mtmhsac``); any field can be
overridden from the command line with ``section.field=value``, checked against this schema.
Step counts are **per task**, as papers report them.

A YAML file may start from others: ``inherits: mt10`` (or a list, merged in order; preset
names or paths relative to the file) takes their values and the file holds only what differs.
The shipped presets are composed this way from one base per benchmark (``mt10``, ``mt50``);
the resolved config (written to a run's ``config.yaml``) is always complete.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

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
    backend: str = "metaworld"  # metaworld | envpool (training envs; evaluation stays metaworld)


@dataclass
class SoftModOptions:
    """Soft modularization (Yang et al. 2020); ``hidden_sizes`` is the observation embedding."""

    num_layers: int = 2  # module layers L (paper: 2 MT10, 4 MT50)
    num_modules: int = 2  # modules per layer m (paper: 2 MT10, 4 MT50)
    module_hidden: int = 256  # module width d (paper: 256 MT10, 128 MT50)
    routing_hidden: int = 256  # routing network width
    routing_layers: int = 2  # routing layers on the obs * task embedding product


@dataclass
class CareOptions:
    """CARE (Sodhani et al. 2021): experts mixed by attention on a task context."""

    num_experts: int = 4  # k encoders (4 MT10, 6 MT50)
    encoder_hidden: list[int] = field(default_factory=lambda: [50])
    encoder_dim: int = 50
    context: str = "language"  # language (shipped description embeddings) | learned
    tasks: str = "${env.tasks}"  # the tasks whose descriptions give the context (in order)
    context_dim: int = 50
    context_hidden: list[int] = field(default_factory=lambda: [50, 50])
    attention_hidden: list[int] = field(default_factory=lambda: [50, 50])
    temperature: float = 1.0


@dataclass
class FiLMOptions:
    """FiLM (Perez et al. 2018) of every hidden layer by a task-conditioned generator."""

    embedding_dim: int = 50
    generator_hidden: list[int] = field(default_factory=lambda: [50])


@dataclass
class PaCoOptions:
    """PaCo (Sun et al. 2022): K parameter sets composed per task."""

    num_param_sets: int = 5  # K
    reset_threshold: float = 3000.0  # task loss that masks the task and resets its w (<=0: off)
    reset_method: str = "interpolate"  # interpolate | copy


@dataclass
class MooreOptions:
    """MOORE (Hendawy et al. 2024): Gram-Schmidt-orthogonalised experts, multi-head."""

    num_experts: int = 4  # k (paper: 4 MT10, 6 MT50)


@dataclass
class MultiHeadOptions:
    """Multi-head network (MT-MH-SAC, Meta-World / Meta-World+ baselines)."""

    task_input: bool = True  # trunk sees obs + one-hot task id (the references); False: obs only


@dataclass
class BroNetOptions:
    """BroNet (Nauman et al. 2024/2025): residual blocks with LayerNorm; ``hidden_sizes`` unused."""

    width: int = 256  # hidden width (BRC: critic 4096, actor 256)
    num_blocks: int = 1  # residual blocks (BRC: critic 2, actor 1)
    task_input: bool = True  # one-hot task id in the input; False with agent.task_encoding=embedding


@dataclass
class CrossStitchOptions:
    """Cross-stitch networks (Misra et al. 2016): one column per task, T x T mixing units."""

    alpha_same: float = 0.9  # initial diagonal of each unit (rows sum to 1; paper: 0.9)
    alpha_lr_scale: float = 1.0  # step-size multiplier of the units (the paper raised it)


@dataclass
class NetworkConfig:
    """Architecture of the actor and critic networks (``agent.network.type`` selects it).

    The section named after the type (``softmod``, ``care``, ``film``, ``paco``, ``moore``)
    holds that architecture's options.
    """

    type: str = "multihead"  # mlp | multihead | softmod | care | film | paco | moore | bronet
    #                          | cross_stitch
    hidden_sizes: list[int] = field(default_factory=lambda: [400, 400, 400])
    activation: str = "relu"
    multihead: MultiHeadOptions = field(default_factory=MultiHeadOptions)
    softmod: SoftModOptions = field(default_factory=SoftModOptions)
    care: CareOptions = field(default_factory=CareOptions)
    film: FiLMOptions = field(default_factory=FiLMOptions)
    paco: PaCoOptions = field(default_factory=PaCoOptions)
    moore: MooreOptions = field(default_factory=MooreOptions)
    bronet: BroNetOptions = field(default_factory=BroNetOptions)
    cross_stitch: CrossStitchOptions = field(default_factory=CrossStitchOptions)
    # One network of this type per task group, trained side by side: lists of task names or
    # 0-based indices, each task in exactly one group (as `mtrl group --disjoint` writes;
    # `mtrl train --groups FILE` reads that JSON). [] = one network for all tasks.
    groups: list[list[Any]] = field(default_factory=list)


@dataclass
class DistralConfig:
    """Distral (Teh et al. 2017), used when ``agent.name=distral``.

    Task policy ``pi_i`` maximises ``E sum_t gamma^t [r + (alpha/beta) log pi_0 - (1/beta) log pi_i]``
    (KL coefficient ``alpha/beta``, entropy coefficient ``(1-alpha)/beta``); the shared policy
    ``pi_0`` is distilled from the task policies by the same objective.
    """

    alpha: float = 0.5  # in (0, 1]: weight of KL(pi_i || pi_0) against the entropy of pi_i
    beta: float = 10.0  # inverse temperature (> 0); Distral's temperature is 1/beta
    learn_beta: bool = False  # tune 1/beta per task toward agent.target_entropy (SAC-style)
    two_column: bool = False  # pi_i = pi_0^alpha * exp(beta f_i): a shared and a task column
    shared_network: NetworkConfig = field(default_factory=lambda: NetworkConfig(type="mlp"))
    # the paper (Teh et al. 2017): pi_0(a|s) has no task input and the task policies act
    shared_task_input: bool = False  # True: pi_0(a|s, task) (a variant, not the paper's)
    eval_policy: str = "task"  # task (pi_i, the paper) | shared (pi_0): what deterministic acts use


@dataclass
class PCGradOptions:
    """PCGrad (Yu et al. 2020)."""

    reduction: str = "mean"  # mean | sum (the paper's scale) of the projected gradients


@dataclass
class CAGradOptions:
    """CAGrad (Liu et al. 2021)."""

    c: float = 0.5  # conflict-aversion radius (0 = mean)
    rescale: bool = True  # divide the update by 1 + c^2, as the authors' code does
    iterations: int = 20  # inner simplex solver iterations per update (warm-started)


@dataclass
class GradNormOptions:
    """GradNorm (Chen et al. 2018) on the last shared layer."""

    alpha: float = 1.5  # asymmetry: strength of the pull toward equal training rates
    lr: float = 1e-3  # Adam learning rate of the task weights
    layer: str = ""  # parameter name of the shared layer; empty = the last shared weight


@dataclass
class UncertaintyOptions:
    """Uncertainty weighting (Kendall et al. 2018)."""

    lr: float = 0.025  # Adam learning rate of the log-variances


@dataclass
class FAMOOptions:
    """FAMO (Liu et al. 2023)."""

    lr: float = 0.025  # Adam learning rate of the task logits
    gamma: float = 0.01  # weight decay of the logits
    min_loss: float = 0.0  # lower bound of every task loss


@dataclass
class FixedWeightsOptions:
    """Fixed task weights (normalised to sum to one)."""

    weights: list[float] = field(default_factory=list)  # one per task


@dataclass
class MGDAOptions:
    """MGDA-UB (Sener & Koltun 2018): min-norm point of the task gradients (Frank-Wolfe)."""

    gradients: str = "representation"  # representation (MGDA-UB) | parameters (full MGDA)
    normalization: str = "none"  # none | l2 | loss | loss+ (loss*: positive losses)
    iterations: int = 50  # Frank-Wolfe iterations per update (>= T - 2: exact when diagonal)
    layer: str = ""  # the last shared layer's weight name; empty = the architecture's


@dataclass
class DWAOptions:
    """DWA, dynamic weight averaging (Liu et al. 2019); positive losses."""

    window: int = 5000  # updates per loss-averaging window (the paper's epoch)
    temperature: float = 2.0  # softmax temperature of the loss ratios (paper: 2)


@dataclass
class CombinerOptions:
    """Options of each gradient combiner, used by whichever of actor / critic picks it."""

    pcgrad: PCGradOptions = field(default_factory=PCGradOptions)
    cagrad: CAGradOptions = field(default_factory=CAGradOptions)
    gradnorm: GradNormOptions = field(default_factory=GradNormOptions)
    uncertainty: UncertaintyOptions = field(default_factory=UncertaintyOptions)
    famo: FAMOOptions = field(default_factory=FAMOOptions)
    fixed: FixedWeightsOptions = field(default_factory=FixedWeightsOptions)
    mgda: MGDAOptions = field(default_factory=MGDAOptions)
    dwa: DWAOptions = field(default_factory=DWAOptions)


@dataclass
class AgentConfig:
    """Multi-task SAC hyperparameters (defaults as in the Meta-World / CARE papers).

    A sub-section named after an agent (``distral``) holds that agent's own options; it is
    given to that agent only.
    """

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
    log_std_mode: str = "clip"  # clip (SB3 / JAX baselines: initial std ~1) | tanh (CARE code)
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
    distral: DistralConfig = field(default_factory=DistralConfig)


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
    :class:`DistillConfig`, :class:`ExpertConfig`).

    Raises:
        MtrlError: unknown preset, unknown key, value of the wrong type, invalid value.
    """
    layers: list[Any] = [OmegaConf.structured(schema)]
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
    if not 0.0 < config.agent.tau <= 1.0:
        raise MtrlError("config: agent.tau must be in (0, 1]")
    if not 0.0 <= config.agent.gamma <= 1.0:
        raise MtrlError("config: agent.gamma must be in [0, 1]")
    _validate_combiners(config.agent)
    _validate_critic(config.agent)
    if config.agent.name == "distral":
        _validate_distral(config.agent.distral)
    if config.train.affinity_every < 0:
        raise MtrlError("config: train.affinity_every must be >= 0 (0 = off)")
    if config.agent.network.groups:  # names -> indices: the networks know task ids only
        from mtrl.envs.tasks import resolve_tasks
        from mtrl.envs.tasks import resolve_groups

        config.agent.network.groups = resolve_groups(config.agent.network.groups,
                                                     resolve_tasks(config.env.tasks))


def _validate_log_std(mode: str, section: str) -> None:
    from mtrl.agents.policy import LOG_STD_MODES

    if mode not in LOG_STD_MODES:
        raise MtrlError(f"config: {section}.log_std_mode must be one of "
                        f"{', '.join(LOG_STD_MODES)}, got '{mode}'")


def _validate_combiners(agent: AgentConfig) -> None:
    """Known gradient-combiner names and PopArt's step (options are checked when built)."""
    from mtrl.optim import COMBINERS  # imported here: keeps `import mtrl.config` light

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
    for spec, key in ((agent.network, "network"), (agent.critic_network, "critic_network")):
        if spec is not None and (spec.bronet.width <= 0 or spec.bronet.num_blocks < 0):
            raise MtrlError(f"config: agent.{key}.bronet: width must be positive and "
                            "num_blocks >= 0")


def _validate_distral(distral: DistralConfig) -> None:
    if not 0.0 < distral.alpha <= 1.0:
        raise MtrlError(f"config: agent.distral.alpha must be in (0, 1], got {distral.alpha}")
    if distral.beta <= 0:
        raise MtrlError(f"config: agent.distral.beta must be positive, got {distral.beta}")
    if distral.eval_policy not in ("shared", "task"):
        raise MtrlError("config: agent.distral.eval_policy must be one of shared, task, "
                        f"got '{distral.eval_policy}'")
    sizes = distral.shared_network.hidden_sizes
    if not sizes or min(sizes) <= 0:
        raise MtrlError("config: agent.distral.shared_network.hidden_sizes must be non-empty "
                        "and positive")


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
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(data))
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise MtrlError(f"config: {_one_line(exc)}") from None
    validate(config)
    return config
