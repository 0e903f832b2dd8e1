"""The official Meta-World success-rate protocol.

Deterministic (mean) actions; ``episodes`` episodes per task, episode k of a task using goal
``k mod num_goals`` (goals enumerated, 50 per task); an episode is a success if the env's
``success`` flag was 1 at any step, and stops at the first success; the per-task success rate
and its mean over tasks are reported. Runs on its own envs, separate from the training envs
(which may share their worker processes), on the training goals.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mtrl.envs import MultiTaskVectorEnv

EVAL_SEED_OFFSET = 10_000
"""Evaluation envs are seeded ``train.seed + EVAL_SEED_OFFSET``; their goals are the training
goals (seeded ``train.seed``), as in Meta-World's own evaluation."""

Policy = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``policy(obs (N, obs_dim), task_id (N,)) -> actions (N, act_dim)``, deterministic."""


@dataclass
class EvalResult:
    """Success rates of one evaluation (``eval.json`` holds exactly these keys)."""

    success_rate: float
    per_task: dict[str, float]
    episodes_per_task: int
    step: int
    mean_return: float | None = None

    def to_json(self) -> dict:
        """The JSON object of ``mtrl eval --json`` (``mean_return`` only when known)."""
        data = asdict(self)
        if data["mean_return"] is None:
            del data["mean_return"]
        return data

    def write(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


def evaluate(
    policy: Policy, env: MultiTaskVectorEnv, episodes: int = 50, step: int = 0
) -> EvalResult:
    """Run the protocol on ``env`` (several envs per task run episodes in parallel)."""
    num_envs, num_tasks = env.num_envs, env.num_tasks
    per_task_envs = num_envs // num_tasks
    slot = np.arange(num_envs) % per_task_envs  # index of the env among its task's envs
    num_goals = getattr(env, "num_goals", 50)
    successes = np.zeros(num_tasks, dtype=np.int64)
    returns = np.zeros(num_tasks, dtype=np.float64)
    env.set_autoreset(False)
    env.set_terminate_on_success(True)
    try:
        for round_ in range(math.ceil(episodes / per_task_envs)):
            episode = round_ * per_task_envs + slot
            active = episode < episodes
            obs = env.reset(goal_index=episode % num_goals)
            succeeded = np.zeros(num_envs, dtype=bool)
            for _ in range(env.max_episode_steps):
                if not active.any():
                    break
                result = env.step(policy(obs, env.task_id), mask=active)
                returns += np.bincount(env.task_id, result.reward * active, num_tasks)
                succeeded |= result.success & active
                active &= ~result.done
                obs = result.obs
            successes += np.bincount(env.task_id, succeeded, num_tasks).astype(np.int64)
    finally:
        env.set_terminate_on_success(False)
        env.set_autoreset(True)
    rates = successes / episodes
    return EvalResult(
        success_rate=float(rates.mean()),
        per_task={name: float(r) for name, r in zip(env.task_names, rates)},
        episodes_per_task=episodes,
        step=step,
        mean_return=float(returns.mean() / episodes),
    )


def format_table(result: EvalResult) -> str:
    """A per-task success table with the mean, for the console."""
    width = max(len(n) for n in result.per_task) if result.per_task else 4
    lines = [f"{'task':<{width}}  success", f"{'-' * width}  -------"]
    lines += [f"{name:<{width}}  {rate:7.3f}" for name, rate in result.per_task.items()]
    lines += [f"{'-' * width}  -------",
              f"{'mean':<{width}}  {result.success_rate:7.3f}",
              f"({result.episodes_per_task} episodes per task, deterministic actions, "
              f"step {result.step})"]
    return "\n".join(lines)


class MetaWorldAgent:
    """Adapter that hands an mtrl agent to Meta-World's own evaluator.

    ``metaworld.evaluation.evaluation(agent, envs, num_episodes)`` expects ``eval_action(obs)``
    and ``reset(env_mask)`` and envs made with ``use_one_hot=True`` (observations end with the
    one-hot task vector, tasks in the benchmark's order, which mtrl's task order follows)::

        envs = gymnasium.make_vec("Meta-World/MT10", vector_strategy="sync", seed=0,
                                  use_one_hot=True)
        mean_success, _, per_task, _ = metaworld.evaluation.evaluation(
            MetaWorldAgent(mtrl.load("runs/a")), envs, num_episodes=50)

    Actions are deterministic (the policy mean), as in :func:`evaluate`.
    """

    def __init__(self, agent) -> None:
        self.agent = agent

    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic actions for one-hot-suffixed observations ``(N, obs_dim + T)``."""
        return self.agent.predict(observations, deterministic=True)[0]

    def reset(self, env_mask: np.ndarray) -> None:
        """mtrl policies are memoryless: nothing to reset."""
