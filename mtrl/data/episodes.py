"""Finished training episodes, as the training loop hands them to agents and combiners."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Episodes:
    """Training episodes that ended in one vector step, one entry per episode.

    ``rewards`` holds each episode's per-step rewards (what a discounted statistic needs,
    BRC's reward normalisation); ``truncated`` says whether it ended at the time limit rather
    than in a terminal state.
    """

    task_id: np.ndarray  # (n,) int
    returns: np.ndarray  # (n,) undiscounted
    lengths: np.ndarray  # (n,)
    success: np.ndarray  # (n,) bool: succeeded at any step
    truncated: np.ndarray  # (n,) bool
    rewards: tuple[np.ndarray, ...]  # n arrays

    def __post_init__(self) -> None:
        sizes = {len(self.task_id), len(self.returns), len(self.lengths), len(self.success),
                 len(self.truncated), len(self.rewards)}
        if len(sizes) != 1:
            raise ValueError(f"Episodes: fields of different lengths {sorted(sizes)}")

    def __len__(self) -> int:
        return len(self.task_id)

    @classmethod
    def from_rewards(cls, task_id: list[int] | np.ndarray, rewards: list[list[float]],
                     success: list[bool] | np.ndarray | None = None,
                     truncated: list[bool] | np.ndarray | None = None) -> "Episodes":
        """Episodes from their per-step rewards (returns and lengths follow); success
        defaults to False, truncated to True (time-limited, as Meta-World's)."""
        arrays = tuple(np.asarray(r, np.float64) for r in rewards)
        n = len(arrays)
        return cls(np.asarray(task_id, np.int64), np.array([a.sum() for a in arrays]),
                   np.array([a.size for a in arrays], np.float64),
                   np.zeros(n, bool) if success is None else np.asarray(success, bool),
                   np.ones(n, bool) if truncated is None else np.asarray(truncated, bool),
                   arrays)
