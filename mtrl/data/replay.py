"""Per-task ring buffers stored as tensors on the training device, sampled task-balanced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor


@dataclass
class Batch:
    """A task-balanced batch: ``T`` blocks of ``b`` rows, task-major (``task_id`` sorted)."""

    obs: Tensor  # (T*b, obs_dim)
    action: Tensor  # (T*b, act_dim)
    reward: Tensor  # (T*b,)
    next_obs: Tensor  # (T*b, obs_dim)
    terminated: Tensor  # (T*b,) float 0/1: 1 = no bootstrap
    task_id: Tensor  # (T*b,) int64
    rows_per_task: int  # b
    # (T,) per-task loss weights summing to one (active task sampling, mtrl.data.task_sampling);
    # None: every task weighs 1/T (or as the agent weights tasks itself)
    task_weights: Optional[Tensor] = None


class MultiTaskReplay:
    """One ring buffer of ``capacity_per_task`` transitions per task, on ``device``.

    Transitions are stored as given; time-limit truncations are not terminations, so the
    caller stores ``terminated`` only (and the true final observation as ``next_obs``).
    """

    _FIELDS = ("obs", "action", "reward", "next_obs", "terminated")

    def __init__(
        self,
        num_tasks: int,
        capacity_per_task: int,
        obs_dim: int,
        act_dim: int,
        device: torch.device | str = "cpu",
    ) -> None:
        self.num_tasks = num_tasks
        self.capacity = capacity_per_task
        self.device = torch.device(device)
        shape = {"obs": (obs_dim,), "action": (act_dim,), "reward": (), "next_obs": (obs_dim,),
                 "terminated": ()}
        self.storage = {
            name: torch.zeros(num_tasks, capacity_per_task, *shape[name], device=self.device)
            for name in self._FIELDS
        }
        self.pos = np.zeros(num_tasks, dtype=np.int64)  # next write slot per task
        self.size = np.zeros(num_tasks, dtype=np.int64)
        self._size_device = torch.zeros(num_tasks, device=self.device)
        self._task_index = torch.arange(num_tasks, device=self.device)

    def __len__(self) -> int:
        return int(self.size.sum())

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        task_id: np.ndarray,
    ) -> None:
        """Store ``N`` transitions; row i goes to task ``task_id[i]``'s ring buffer."""
        task_id = np.asarray(task_id, dtype=np.int64)
        counts = np.bincount(task_id, minlength=self.num_tasks)
        order = np.argsort(task_id, kind="stable")
        starts = np.cumsum(counts) - counts
        rank = np.empty_like(task_id)
        rank[order] = np.arange(task_id.size) - starts[task_id[order]]
        slot = (self.pos[task_id] + rank) % self.capacity
        self.pos = (self.pos + counts) % self.capacity
        self.size = np.minimum(self.size + counts, self.capacity)
        t = torch.tensor(task_id, device=self.device)
        s = torch.as_tensor(slot, device=self.device)
        values = (obs, action, reward, next_obs, terminated)
        for name, value in zip(self._FIELDS, values):
            self.storage[name][t, s] = torch.as_tensor(
                np.asarray(value, dtype=np.float32), device=self.device
            )
        self._size_device.copy_(torch.as_tensor(self.size, dtype=torch.float32))

    def sample(self, batch_per_task: int, generator: torch.Generator | None = None) -> Batch:
        """``batch_per_task`` uniformly drawn rows of every task (every task must hold one)."""
        u = torch.rand(self.num_tasks, batch_per_task, device=self.device, generator=generator)
        index = (u * self._size_device[:, None]).long()
        task = self._task_index[:, None].expand_as(index)
        rows = {name: value[task, index].flatten(0, 1) for name, value in self.storage.items()}
        return Batch(**rows, task_id=task.flatten(), rows_per_task=batch_per_task)

    def state_dict(self) -> dict[str, Any]:
        """The filled part of every buffer and the write positions."""
        filled = int(self.size.max())
        return {
            "storage": {k: v[:, :filled].cpu() for k, v in self.storage.items()},
            "pos": self.pos.copy(),
            "size": self.size.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        filled = state["storage"]["obs"].shape[1]
        for name, value in state["storage"].items():
            self.storage[name][:, :filled] = value.to(self.device)
        self.pos = np.asarray(state["pos"], dtype=np.int64).copy()
        self.size = np.asarray(state["size"], dtype=np.int64).copy()
        self._size_device.copy_(torch.as_tensor(self.size, dtype=torch.float32))


__all__ = ["Batch", "MultiTaskReplay"]
