"""Single-task experts: train one with stable-baselines3 SAC, load any one behind one interface.

* :func:`train_expert` (``mtrl expert TASK``) trains SB3's SAC on one task of mtrl's envs
  (goals resampled at every reset, as in the multi-task benchmark) wrapped as a gymnasium env
  (:class:`TaskGymEnv`), evaluates it with the official protocol and writes ``expert.zip`` (a
  standard SB3 file) and ``expert.json`` (its success rate) to the run directory.
* :func:`load_expert` opens an SB3 SAC ``.zip`` or an mtrl checkpoint / saved agent (a
  ``MT1:<task>`` run, or any multi-task run that has the task) as an :class:`Expert`: the
  pre-tanh Gaussian ``(mean, log_std)`` of its action distribution for a batch of observations.
* :class:`TaskExperts` holds one expert per task of a benchmark (:func:`load_experts`).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from mtrl.agents import Agent, agent_from_payload, resolve_device
from mtrl.config import DistillOptions, ExpertConfig, to_yaml
from mtrl.envs import MultiTaskVectorEnv, make_vector_env, resolve_tasks
from mtrl.errors import MtrlError, require
from mtrl.serialization import load_file
from mtrl.training.evaluation import EVAL_SEED_OFFSET, EvalResult, evaluate
from mtrl.training.logging import MetricsLogger, progress_bar
from mtrl.training.rundir import (CHECKPOINT_FILE, CONFIG_FILE, EXPERT_FILE, EXPERT_INFO_FILE,
                                 FINAL_EVAL_FILE)


# ----------------------------------------------------------------- the interface
class Expert(Protocol):
    """A single-task policy whose action is ``tanh(u)``, ``u ~ N(mean, exp(log_std)^2)``."""

    obs_dim: int
    act_dim: int
    source: str  # where it was loaded from (for messages and reports)

    def distribution(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-tanh ``(mean, log_std)``, each ``(n, act_dim)``, for ``obs (n, obs_dim)``
        (no autograd graph: an expert is a fixed teacher)."""


class SB3Expert:
    """A stable-baselines3 SAC model (its actor's squashed diagonal Gaussian)."""

    def __init__(self, model: Any, source: str) -> None:
        self.model = model
        self.source = source
        self.obs_dim = int(model.observation_space.shape[0])
        self.act_dim = int(model.action_space.shape[0])

    @torch.no_grad()
    def distribution(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std, _ = self.model.policy.actor.get_action_dist_params(obs)
        return mean, log_std


class AgentExpert:
    """One task of an mtrl agent (its ``action_distribution`` for a fixed task id)."""

    def __init__(self, agent: Agent, task_index: int, source: str) -> None:
        self.agent = agent
        self.task_index = task_index
        self.source = source
        self.obs_dim, self.act_dim = agent.obs_dim, agent.act_dim

    @torch.no_grad()
    def distribution(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        task = torch.full((obs.shape[0],), self.task_index, dtype=torch.int64, device=obs.device)
        return self.agent.action_distribution(obs, task)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------ loading
def resolve_expert_path(path: str | Path) -> Path:
    """A file, or the ``expert.zip`` / ``checkpoint.pt`` of a run directory."""
    path = Path(path)
    if path.is_dir():
        for name in (EXPERT_FILE, CHECKPOINT_FILE):
            if (path / name).is_file():
                return path / name
        raise MtrlError(f"{path} holds no {EXPERT_FILE} or {CHECKPOINT_FILE}")
    if not path.is_file():
        raise MtrlError(f"expert not found: {path}")
    return path


def _load_sb3(path: Path, device: torch.device) -> SB3Expert:
    SAC = require("stable_baselines3", "sb3", f"expert {path} (a stable-baselines3 model)").SAC

    if not zipfile.is_zipfile(path):
        raise MtrlError(f"corrupt expert {path}: not a zip file (a stable-baselines3 model)")
    try:
        model = SAC.load(path, device=device)
    except Exception as exc:  # SB3 raises many types on foreign or damaged files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MtrlError(f"corrupt expert {path}: not a stable-baselines3 SAC model ({reason})") \
            from None
    if model.use_sde:
        raise MtrlError(f"expert {path}: gSDE policies are not supported (use_sde=True)")
    space = model.action_space
    if not isinstance(space, gym.spaces.Box) or not (
        np.all(space.low == -1.0) and np.all(space.high == 1.0)
    ):
        raise MtrlError(f"expert {path}: its action space must be Box(-1, 1), got {space}")
    if not isinstance(model.observation_space, gym.spaces.Box) or \
            len(model.observation_space.shape) != 1:
        raise MtrlError(f"expert {path}: observations must be flat vectors, got "
                        f"{model.observation_space}")
    model.policy.set_training_mode(False)
    return SB3Expert(model, str(path))


def _load_agent(path: Path, task: str, device: torch.device) -> AgentExpert:
    payload = load_file(path)
    task_names = payload.get("task_names")
    agent = agent_from_payload(payload.get("learner", payload), device)
    if not hasattr(agent, "action_distribution"):
        raise MtrlError(f"expert {path}: a '{agent.name}' agent has no action distribution")
    if task_names is not None:
        if task not in task_names:
            raise MtrlError(f"expert {path} was trained on {', '.join(task_names)}, not {task}")
        index = list(task_names).index(task)
    elif agent.num_tasks == 1:
        index = 0
    else:
        raise MtrlError(f"expert {path}: a saved {agent.num_tasks}-task agent does not say "
                        f"which of its tasks is {task} (use its run's {CHECKPOINT_FILE})")
    return AgentExpert(agent, index, str(path))


def load_expert(path: str | Path, task: str, obs_dim: int, act_dim: int,
                device: str | torch.device = "cpu") -> Expert:
    """The expert for ``task`` at ``path`` (SB3 ``.zip``, mtrl checkpoint, or run directory).

    Raises:
        MtrlError: missing or corrupt file, an mtrl run without ``task``, or observation /
            action sizes other than the task's ``obs_dim`` / ``act_dim``.
    """
    file = resolve_expert_path(path)
    device = resolve_device(device)
    expert: Expert = _load_sb3(file, device) if file.suffix == ".zip" else \
        _load_agent(file, task, device)
    if (expert.obs_dim, expert.act_dim) != (obs_dim, act_dim):
        raise MtrlError(
            f"expert {file} for {task}: observation/action sizes {expert.obs_dim}/"
            f"{expert.act_dim} do not match the task's {obs_dim}/{act_dim}"
        )
    return expert


class TaskExperts:
    """One expert per task; inputs are task-major with the same number of rows per task (the
    layout of mtrl's vector envs and task-balanced batches), so no row is gathered."""

    def __init__(self, experts: Sequence[Expert], device: str | torch.device = "cpu") -> None:
        self.experts = list(experts)
        self.num_tasks = len(self.experts)
        self.device = resolve_device(device)

    def distribution(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Every row's own task expert's pre-tanh ``(mean, log_std)``."""
        blocks = obs.view(self.num_tasks, -1, obs.shape[-1])
        outputs = [e.distribution(block) for e, block in zip(self.experts, blocks)]
        mean = torch.cat([m for m, _ in outputs]).float()
        log_std = torch.cat([s for _, s in outputs]).float()
        return mean, log_std

    def act_tensor(self, obs: Tensor, deterministic: bool,
                   generator: torch.Generator | None = None) -> Tensor:
        """Expert actions (``tanh`` of the mean, or of a sample)."""
        mean, log_std = self.distribution(obs)
        if deterministic:
            return torch.tanh(mean)
        noise = torch.randn(mean.shape, device=mean.device, generator=generator)
        return torch.tanh(mean + log_std.exp() * noise)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """numpy in, numpy out (for :func:`mtrl.training.evaluation.evaluate`)."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        return self.act_tensor(obs_t, deterministic).cpu().numpy()


def load_experts(options: DistillOptions, task_names: Sequence[str], obs_dim: int, act_dim: int,
                 device: str | torch.device = "cpu") -> TaskExperts:
    """The experts a distillation config names, one per task, in ``task_names`` order.

    A task's expert is ``options.experts[task]``, else ``options.expert_pattern`` with
    ``{task}`` replaced.

    Raises:
        MtrlError: a task without an expert, an expert for a task not in the run, or any
            :func:`load_expert` error.
    """
    unknown = sorted(set(options.experts) - set(task_names))
    if unknown:
        raise MtrlError(f"distill.experts names tasks that are not in env.tasks: "
                        f"{', '.join(unknown)}")
    experts = []
    for task in task_names:
        path = options.experts.get(task)
        if path is None and options.expert_pattern:
            path = options.expert_pattern.replace("{task}", task)
        if path is None:
            raise MtrlError(f"no expert for task {task} (set distill.experts.{task}=PATH or "
                            "distill.expert_pattern)")
        experts.append(load_expert(path, task, obs_dim, act_dim, device))
    return TaskExperts(experts, device)


# ---------------------------------------------------------------- gymnasium view
class TaskGymEnv(gym.Env):
    """One env of an mtrl vector env as a gymnasium env (for stable-baselines3).

    Steps only that env (the others are masked out), with autoreset off: gymnasium's
    ``reset`` resets the vector env, whose seeded RNGs draw a new goal for every episode.
    ``info["success"]`` is the step's success flag and, at the end of an episode,
    ``info["is_success"]`` whether it ever succeeded (SB3 logs ``rollout/success_rate``).
    """

    metadata = {"render_modes": []}

    def __init__(self, env: MultiTaskVectorEnv, task_index: int) -> None:
        super().__init__()
        self.env = env
        self.index = int(np.flatnonzero(env.task_id == task_index)[0])
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (env.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (env.act_dim,), np.float32)
        self._mask = np.zeros(env.num_envs, dtype=bool)
        self._mask[self.index] = True
        self._actions = np.zeros((env.num_envs, env.act_dim), dtype=np.float32)
        self._succeeded = False
        env.set_autoreset(False)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """New episode; goals come from the vector env's own seeded RNG (``seed`` unused)."""
        super().reset(seed=seed)
        self._succeeded = False
        return self.env.reset()[self.index], {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._actions[self.index] = action
        result = self.env.step(self._actions, mask=self._mask)
        i = self.index
        success = bool(result.success[i])
        self._succeeded |= success
        terminated, truncated = bool(result.terminated[i]), bool(result.truncated[i])
        info: dict[str, Any] = {"success": success}
        if terminated or truncated:
            info["is_success"] = self._succeeded
        return result.final_obs[i], float(result.reward[i]), terminated, truncated, info

    def close(self) -> None:
        self.env.close()


# ----------------------------------------------------------------------- training
def expert_tasks(config: ExpertConfig) -> tuple[str, int]:
    """The env task spec of an expert config and the index of its task in it."""
    if not config.task:
        raise MtrlError("expert: no task given")
    spec = config.env.tasks or f"MT1:{config.task}"
    names = resolve_tasks(spec)
    if config.task not in names:
        raise MtrlError(f"expert: task {config.task} is not in env.tasks={spec}")
    return spec, names.index(config.task)


def evaluate_policy_on_task(policy: Callable[[np.ndarray], np.ndarray], env: MultiTaskVectorEnv,
                            task_index: int, episodes: int, step: int) -> EvalResult:
    """The official protocol for one task of ``env`` with a single-task ``policy``."""
    result = evaluate(lambda obs, task_id: policy(obs), env, episodes, step)
    task = env.task_names[task_index]
    rate = result.per_task[task]
    return EvalResult(success_rate=rate, per_task={task: rate}, episodes_per_task=episodes,
                      step=step, mean_return=result.mean_return if env.num_tasks == 1 else None)


def _atomic_model_save(model: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".zip", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def train_expert(config: ExpertConfig, run_dir: str | Path) -> EvalResult:
    """Train, evaluate and save a stable-baselines3 SAC expert (see the module docstring).

    Evaluates every ``train.eval_every`` steps and at the end (``train.eval_episodes``
    episodes, deterministic actions), saves ``expert.zip`` every ``train.checkpoint_every``
    steps and at the end; writes ``expert.json``, ``final_eval.json``, ``metrics.jsonl`` and
    TensorBoard events (SB3's own under ``sb3/``).

    The steps: :func:`_start_expert_run` (run dir), :func:`_expert_envs`, :func:`_make_sac`,
    :func:`_learn_expert` (SB3's ``learn`` with :func:`_expert_callback`), the final
    :class:`_ExpertEvaluation` and :func:`_write_expert_result`.
    """
    require("stable_baselines3", "sb3", "mtrl expert")  # before anything is written
    run_dir = Path(run_dir)
    spec, task_index, device = _start_expert_run(config, run_dir)
    gym_env, eval_env = _expert_envs(config, spec, task_index)
    logger = MetricsLogger(run_dir, [config.task], config.log.tensorboard)
    try:
        model = _make_sac(config, gym_env, device, run_dir)
        evaluation = _ExpertEvaluation(SB3Expert(model, str(run_dir / EXPERT_FILE)), eval_env,
                                       task_index, config.train.eval_episodes, logger, device)
        _learn_expert(model, config, run_dir, evaluation, logger)
        _atomic_model_save(model, run_dir / EXPERT_FILE)
        final = evaluation(config.train.steps_per_task)
        _write_expert_result(config, spec, run_dir, final)
        return final
    finally:
        gym_env.close()
        eval_env.close()
        logger.close()


def _start_expert_run(config: ExpertConfig, run_dir: Path
                      ) -> tuple[str, int, torch.device]:
    """Check the config and that ``run_dir`` holds no expert yet, then write its config;
    returns the env task spec, the task's index in it (:func:`expert_tasks`) and the device."""
    if (run_dir / EXPERT_FILE).exists():
        raise MtrlError(f"{run_dir} already holds an expert (choose another --run-dir)")
    spec, task_index = expert_tasks(config)
    device = resolve_device(config.train.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(to_yaml(config))
    return spec, task_index, device


def _expert_envs(config: ExpertConfig, spec: str, task_index: int
                 ) -> tuple[TaskGymEnv, MultiTaskVectorEnv]:
    """The training env (one env per task, the expert's task seen through
    :class:`TaskGymEnv`) and the evaluation envs, stepped in the training env's workers."""
    env_cfg, train_cfg = config.env, config.train
    train_env = make_vector_env(spec, 1, train_cfg.seed, env_cfg.num_workers, env_cfg.mode,
                                env_cfg.max_episode_steps, backend=env_cfg.backend)
    gym_env = TaskGymEnv(train_env, task_index)
    eval_env = make_vector_env(spec, env_cfg.eval_envs_per_task,
                               train_cfg.seed + EVAL_SEED_OFFSET, env_cfg.num_workers,
                               env_cfg.mode, env_cfg.max_episode_steps,
                               goal_seed=train_cfg.seed, share_workers_with=train_env)
    return gym_env, eval_env


def _make_sac(config: ExpertConfig, gym_env: TaskGymEnv, device: torch.device,
              run_dir: Path) -> Any:
    """SB3's SAC with the expert config's options, logging to ``run_dir/sb3``."""
    SAC = require("stable_baselines3", "sb3", "mtrl expert").SAC
    from stable_baselines3.common.logger import configure

    train_cfg = config.train
    model = SAC(
        "MlpPolicy", gym_env, learning_rate=config.sac.learning_rate,
        buffer_size=config.replay.capacity_per_task,
        learning_starts=train_cfg.warmup_steps_per_task,
        batch_size=config.replay.batch_per_task, tau=config.sac.tau,
        gamma=config.sac.gamma, train_freq=1, gradient_steps=train_cfg.updates_per_step,
        ent_coef=config.sac.ent_coef, policy_kwargs={"net_arch": list(config.sac.net_arch)},
        seed=train_cfg.seed, device=device, verbose=0,
    )
    model.set_logger(configure(str(run_dir / "sb3"),
                               ["tensorboard"] if config.log.tensorboard else []))
    return model


class _ExpertEvaluation:
    """The official protocol for the expert's task; logs ``eval/success_rate``."""

    def __init__(self, expert: Expert, eval_env: MultiTaskVectorEnv, task_index: int,
                 episodes: int, logger: MetricsLogger, device: torch.device) -> None:
        self.expert, self.env, self.task_index = expert, eval_env, task_index
        self.episodes, self.logger, self.device = episodes, logger, device

    def __call__(self, step: int) -> EvalResult:
        experts = TaskExperts([self.expert] * self.env.num_tasks, self.device)
        result = evaluate_policy_on_task(experts.act, self.env, self.task_index,
                                         self.episodes, step)
        self.logger.log(step, {"eval/success_rate": result.success_rate}, step)
        return result


def _learn_expert(model: Any, config: ExpertConfig, run_dir: Path,
                  evaluation: _ExpertEvaluation, logger: MetricsLogger) -> None:
    """SB3's ``learn`` for ``train.steps_per_task`` steps with :func:`_expert_callback`."""
    progress = _expert_callback(config, run_dir, evaluation, logger)
    try:
        model.learn(config.train.steps_per_task, callback=progress)
    finally:
        progress.bar.close()


def _expert_callback(config: ExpertConfig, run_dir: Path, evaluation: _ExpertEvaluation,
                     logger: MetricsLogger) -> Any:
    """An SB3 callback: progress bar, episode success, periodic evaluation and saving."""
    from stable_baselines3.common.callbacks import BaseCallback

    train_cfg = config.train

    class Progress(BaseCallback):
        """Progress bar, episode success, periodic evaluation and saving."""

        def __init__(self) -> None:
            super().__init__()
            self.bar = progress_bar(train_cfg.steps_per_task, 0, config.log.progress)
            self.successes: list[float] = []

        def _on_step(self) -> bool:
            step = self.num_timesteps
            self.bar.update(1)
            info = self.locals["infos"][0]
            if "is_success" in info:
                self.successes.append(float(info["is_success"]))
            if step % config.log.every == 0 and self.successes:
                logger.log(step, {"train/success": float(np.mean(self.successes))}, step)
                self.successes = []
            if step % train_cfg.eval_every == 0 and step < train_cfg.steps_per_task:
                result = evaluation(step)
                self.bar.write(f"eval @ {step} steps: success {result.success_rate:.3f}")
            if step % train_cfg.checkpoint_every == 0:
                _atomic_model_save(self.model, run_dir / EXPERT_FILE)
            return True

    return Progress()


def _write_expert_result(config: ExpertConfig, spec: str, run_dir: Path,
                         final: EvalResult) -> None:
    """``final_eval.json`` and ``expert.json`` (task, success rate, episodes, steps)."""
    final.write(run_dir / FINAL_EVAL_FILE)
    info = {"task": config.task, "env_tasks": spec, "success_rate": final.success_rate,
            "episodes": final.episodes_per_task, "steps": config.train.steps_per_task,
            "expert": EXPERT_FILE}
    (run_dir / EXPERT_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
