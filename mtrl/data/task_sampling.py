"""Active task sampling (Sharma, Jha, Hegde & Ravindran 2017, "Learning to Multi-Task by Active
Sampling", their A5C): updates are spent on tasks in proportion to how far each one is from a
target performance (``replay.task_sampling=active``; the default ``uniform`` does none of this).

**The distribution.** With ``perf_i`` task ``i``'s smoothed training success rate and
``target_i`` its target (a fixed success rate for every task, or ``best``: the best ``perf_i``
seen so far), the normalised gap of the paper is ``m_i = (target_i - perf_i) / target_i``,
clipped at 0 (a task above its target is at it). A task whose ``best`` target is still 0 (it
never succeeded) counts as maximally far, ``m_i = 1``. As in A5C,

    q = softmax(m / temperature),        p_i = min_prob + (1 - T * min_prob) * q_i,

``min_prob`` being mtrl's floor (0 in the paper): every task keeps at least that share. With every
gap equal (e.g. before any success) ``p`` is uniform. A task at its target gets the floor plus
the softmax share of a zero gap, ``(1 - T min_prob) / sum_j exp(m_j / temperature)``, which
vanishes once another task is far from its target (``exp(-10)`` at temperature 0.1, gap 1).

**What is sampled (mtrl's choice).** A5C samples the task each actor-learner plays next, so that
task ``i`` receives a fraction ``p_i`` of the updates. mtrl's off-policy update is one batch of
``T`` equal blocks of ``replay.batch_per_task`` rows (every agent, PopArt, the per-task
temperatures and every gradient combiner rely on it), reduced to one loss per task. Drawing the
rows per task unequally would not change how much each task weighs in that update (each task's
loss is a mean over its own rows) and would break the blocks. So the batch stays balanced and
task ``i``'s loss enters the update with weight ``p_i`` instead of ``1/T``
(:attr:`~mtrl.data.Batch.task_weights`; the agent hands it to its losses' ``weights``, which
every combiner scales by: ``T p_i`` relative to ``mean``). That is the expected update of
A5C's scheme (task ``i`` chosen with probability ``p_i``, or an unbalanced batch of about
``p_i T b`` rows of task ``i`` averaged over all rows), without its sampling noise, and the same
rows are drawn as with uniform sampling.

**Performance.** ``perf_i`` is an exponential moving average of task ``i``'s finished training
episodes' success flags, ``smoothing`` per episode (``k`` episodes of a task finished at one
step: ``perf <- s^k perf + (1 - s^k) rate``); it starts at 0 (no success seen). The state
(performances, best values, episode counts) is checkpointed by the training loop.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtrl.data.replay import Batch
from mtrl.errors import MtrlError

TASK_SAMPLING = ("uniform", "active")
"""The choices of ``replay.task_sampling``."""


def parse_target(target: str | float) -> float | str:
    """``replay.active.target`` as a success rate in ``(0, 1]`` or the string ``best``.

    Raises:
        MtrlError: neither.
    """
    if isinstance(target, str) and target.strip().lower() == "best":
        return "best"
    try:
        value = float(target)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise MtrlError(f"replay.active.target must be a success rate in (0, 1] or 'best', "
                        f"got '{target}'")
    return value


def check_active_options(num_tasks: int | None, target: str | float, temperature: float,
                         smoothing: float, min_prob: float) -> None:
    """Raise :class:`MtrlError` (naming the ``replay.active`` key) for an invalid option;
    ``num_tasks=None`` skips the check that ``num_tasks * min_prob <= 1``."""
    parse_target(target)
    if not temperature > 0.0:
        raise MtrlError(f"replay.active.temperature must be positive, got {temperature}")
    if not 0.0 <= smoothing < 1.0:
        raise MtrlError(f"replay.active.smoothing must be in [0, 1), got {smoothing}")
    if not 0.0 <= min_prob < 1.0:
        raise MtrlError(f"replay.active.min_prob must be in [0, 1), got {min_prob}")
    if num_tasks is not None and num_tasks * min_prob > 1.0 + 1e-12:
        raise MtrlError(f"replay.active.min_prob is at most 1 / (number of tasks) = "
                        f"{1.0 / num_tasks:.4g} with {num_tasks} tasks, got {min_prob}")


def active_probabilities(performance: np.ndarray, target: np.ndarray, temperature: float,
                         min_prob: float = 0.0) -> np.ndarray:
    """A5C's task distribution ``(T,)`` from performances and targets ``(T,)`` (see the module
    docstring): ``min_prob + (1 - T min_prob) softmax(m / temperature)`` with the normalised,
    clipped gaps ``m_i = max(target_i - perf_i, 0) / target_i`` (1 where ``target_i <= 0``)."""
    perf = np.asarray(performance, dtype=np.float64)
    target = np.broadcast_to(np.asarray(target, dtype=np.float64), perf.shape)
    positive = target > 0.0
    gap = np.ones_like(perf)
    gap[positive] = np.maximum(target[positive] - perf[positive], 0.0) / target[positive]
    logits = gap / temperature
    q = np.exp(logits - logits.max())
    q /= q.sum()
    return min_prob + (1.0 - perf.size * min_prob) * q


class ActiveTaskSampler:
    """The per-task share of the updates of ``replay.task_sampling=active`` (A5C).

    Args:
        num_tasks: ``T``.
        target: a success rate in ``(0, 1]`` for every task, or ``"best"`` (each task's best
            smoothed success so far).
        temperature: the softmax temperature over the normalised gaps.
        smoothing: EMA weight of the previous performance, per finished episode.
        min_prob: the floor of every task's probability (``T * min_prob <= 1``).
        device: where :attr:`weights` live (the replay's device).
    """

    def __init__(self, num_tasks: int, target: str | float = 1.0, temperature: float = 0.1,
                 smoothing: float = 0.9, min_prob: float = 0.0,
                 device: torch.device | str = "cpu") -> None:
        check_active_options(num_tasks, target, temperature, smoothing, min_prob)
        self.num_tasks = num_tasks
        self.target = parse_target(target)
        self.temperature, self.smoothing = float(temperature), float(smoothing)
        self.min_prob = float(min_prob)
        self.performance = np.zeros(num_tasks)  # smoothed training success rate per task
        self.best = np.zeros(num_tasks)  # best performance seen per task
        self.episodes = np.zeros(num_tasks, np.int64)  # finished episodes seen per task
        self.weights = torch.full((num_tasks,), 1.0 / num_tasks, device=torch.device(device))
        self._refresh()

    def targets(self) -> np.ndarray:
        """Each task's target ``(T,)``: the fixed success rate, or the best seen."""
        if self.target == "best":
            return self.best.copy()
        return np.full(self.num_tasks, float(self.target))

    def probabilities(self) -> np.ndarray:
        """The current task distribution ``(T,)`` (float64, sums to one)."""
        return active_probabilities(self.performance, self.targets(), self.temperature,
                                    self.min_prob)

    def _refresh(self) -> None:
        # one host-to-device copy when episodes finish, none per update
        self.weights.copy_(torch.as_tensor(self.probabilities(), dtype=self.weights.dtype))

    def observe_episodes(self, task_id: np.ndarray, success: np.ndarray) -> None:
        """Finished training episodes (their tasks and success flags): update the smoothed
        performances, the best values and the distribution."""
        task_id = np.asarray(task_id, np.int64)
        if task_id.size == 0:
            return
        count = np.bincount(task_id, minlength=self.num_tasks)
        successes = np.bincount(task_id, np.asarray(success, np.float64), self.num_tasks)
        seen = count > 0
        keep = self.smoothing ** count[seen]
        rate = successes[seen] / count[seen]
        self.performance[seen] = keep * self.performance[seen] + (1.0 - keep) * rate
        self.best = np.maximum(self.best, self.performance)
        self.episodes += count
        self._refresh()

    def weigh(self, batch: Batch) -> Batch:
        """``batch`` with the per-task loss weights ``p`` (same rows)."""
        return dataclasses.replace(batch, task_weights=self.weights)

    def metrics(self) -> dict[str, Tensor]:
        """The probabilities of an update (``task_prob_per_task``, for the update metrics)."""
        return {"task_prob_per_task": self.weights}

    def state_metrics(self) -> dict[str, np.ndarray]:
        """What drives the distribution, logged at each log interval: the smoothed success
        rates (``task_perf_per_task``) and, with ``target=best``, the targets."""
        out = {"task_perf_per_task": self.performance.copy()}
        if self.target == "best":
            out["task_target_per_task"] = self.best.copy()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"performance": self.performance.copy(), "best": self.best.copy(),
                "episodes": self.episodes.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.performance = np.asarray(state["performance"], np.float64).copy()
        self.best = np.asarray(state["best"], np.float64).copy()
        self.episodes = np.asarray(state["episodes"], np.int64).copy()
        if self.performance.shape != (self.num_tasks,):
            raise MtrlError(f"task sampler state holds {self.performance.size} tasks, "
                            f"the run has {self.num_tasks}")
        self._refresh()


def build_task_sampler(replay: Any, num_tasks: int,
                       device: torch.device | str = "cpu") -> ActiveTaskSampler | None:
    """The sampler of a ``replay`` config section (``None`` for ``uniform``)."""
    if replay.task_sampling == "uniform":
        return None
    if replay.task_sampling != "active":
        raise MtrlError(f"replay.task_sampling must be one of {', '.join(TASK_SAMPLING)}, "
                        f"got '{replay.task_sampling}'")
    a = replay.active
    return ActiveTaskSampler(num_tasks, a.target, a.temperature, a.smoothing, a.min_prob,
                             device)


__all__ = ["ActiveTaskSampler", "TASK_SAMPLING", "active_probabilities", "build_task_sampler",
           "check_active_options", "parse_target"]
