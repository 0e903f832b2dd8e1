"""Synthetic stable-baselines3 SAC experts for the fake env (shared by the expert and
distillation tests).

The fake env's observation is ``(x, y, offset_x, offset_y, time, 1)`` and task ``t``'s goal is
``centre_t + offset``, so moving toward the goal is linear in the observation. An SB3 SAC with
no hidden layers (``net_arch=[]``) has a linear mean head: setting it to
``gain * (centre_t + offset - position)`` gives a genuine SB3 ``.zip`` that solves task ``t``.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from mtrl.envs import FakeMultiTaskVectorEnv
from mtrl.training.experts import TaskGymEnv


def oracle_expert(path: Path, num_tasks: int, task: int, gain: float = 10.0,
                  log_std: float = -1.0) -> Path:
    """Write an SB3 SAC ``.zip`` that drives fake task ``task`` (of ``num_tasks``) to its goal."""
    from stable_baselines3 import SAC

    env = TaskGymEnv(FakeMultiTaskVectorEnv(num_tasks), task)
    model = SAC("MlpPolicy", env, policy_kwargs={"net_arch": []}, buffer_size=10,
                learning_starts=0, device="cpu", seed=0)
    actor = model.policy.actor
    weight = torch.zeros(2, 6)
    weight[:, 0:2] = -gain * torch.eye(2)
    weight[:, 2:4] = gain * torch.eye(2)
    with torch.no_grad():
        actor.mu.weight.copy_(weight)
        actor.mu.bias.copy_(torch.as_tensor(gain * env.env.task_centres[task], dtype=torch.float32))
        actor.log_std.weight.zero_()
        actor.log_std.bias.fill_(log_std)
    model.save(path)
    env.close()
    return path


class SpacesOnly(gym.Env):
    """A gymnasium env that only declares spaces (to build SB3 models of any size)."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action):
        return np.zeros(self.observation_space.shape, np.float32), 0.0, False, False, {}


def untrained_expert(path: Path, obs_dim: int, act_dim: int, seed: int = 0) -> Path:
    """An SB3 SAC ``.zip`` with random weights and the given sizes."""
    from stable_baselines3 import SAC

    model = SAC("MlpPolicy", SpacesOnly(obs_dim, act_dim), policy_kwargs={"net_arch": [32]},
                buffer_size=10, device="cpu", seed=seed)
    model.save(path)
    return path
