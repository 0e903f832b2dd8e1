"""Across-seed statistics of ``mtrl report`` (Agarwal et al. 2021, the ``rliable`` methodology).

Scores form a ``(runs, tasks)`` matrix; the aggregates are the mean and the interquartile mean
(IQM); 95 % confidence intervals come from the stratified bootstrap (runs resampled with
replacement independently within every task, percentile interval), in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

Statistic = Callable[[np.ndarray], np.ndarray]
"""Maps bootstrap samples ``(B, runs, tasks)`` to ``(B, ...)``."""


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all entries: the 25 % trimmed mean, ``int(n / 4)`` values cut at
    each end (``scipy.stats.trim_mean(x, 0.25, axis=None)``, rliable's ``aggregate_iqm``)."""
    return float(batch_iqm(np.asarray(scores, dtype=np.float64)[None])[0])


def batch_mean(samples: np.ndarray) -> np.ndarray:
    """Mean over runs and tasks of every bootstrap sample ``(B, R, T) -> (B,)``."""
    return samples.reshape(len(samples), -1).mean(axis=1)


def batch_iqm(samples: np.ndarray) -> np.ndarray:
    """IQM over runs and tasks of every bootstrap sample ``(B, R, T) -> (B,)``."""
    flat = np.sort(samples.reshape(len(samples), -1), axis=1)
    cut = int(0.25 * flat.shape[1])
    return flat[:, cut:flat.shape[1] - cut].mean(axis=1)


def batch_task_mean(samples: np.ndarray) -> np.ndarray:
    """Mean over runs of every task ``(B, R, T) -> (B, T)``."""
    return samples.mean(axis=1)


def stratified_bootstrap_ci(
    scores: np.ndarray, statistic: Statistic, reps: int = 50_000, confidence: float = 0.95,
    seed: int = 0, chunk_elements: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile confidence interval of ``statistic`` under the stratified bootstrap.

    ``scores (R, T)``: every bootstrap sample redraws, for each task independently, ``R`` runs
    with replacement (rliable's ``StratifiedBootstrap``). Returns ``(lo, hi)`` with the shape of
    one statistic value. One run gives a zero-width interval.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(f"scores must be a non-empty (runs, tasks) matrix, got {scores.shape}")
    runs, tasks = scores.shape
    rng = np.random.default_rng(seed)
    per_chunk = max(1, chunk_elements // scores.size)
    values = []
    for start in range(0, reps, per_chunk):
        count = min(per_chunk, reps - start)
        rows = rng.integers(runs, size=(count, runs, tasks))
        values.append(statistic(scores[rows, np.arange(tasks)]))
    stats = np.concatenate(values)
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(stats, [tail, 100 - tail], axis=0)
    return lo, hi


@dataclass
class Estimate:
    """A point estimate with its 95 % stratified-bootstrap confidence interval."""

    value: float
    lo: float
    hi: float

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "ci95": [self.lo, self.hi]}

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def estimate(scores: np.ndarray, point: Callable[[np.ndarray], float], statistic: Statistic,
             reps: int) -> Estimate:
    """``point(scores)`` and the stratified-bootstrap CI of the matching batch ``statistic``."""
    lo, hi = stratified_bootstrap_ci(scores, statistic, reps)
    return Estimate(float(point(scores)), float(lo), float(hi))
