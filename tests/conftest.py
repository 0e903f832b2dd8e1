"""Shared fixtures: tiny configs on the fake env that learn in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtrl.config import Config, load_config

FAKE_OVERRIDES = [
    "env.tasks=fake:3",
    "env.envs_per_task=2",
    "env.eval_envs_per_task=5",
    "agent.network.hidden_sizes=[64,64]",
    "agent.init_temperature=0.1",
    "agent.actor_lr=1e-3",
    "agent.critic_lr=1e-3",
    "agent.alpha_lr=1e-3",
    "replay.batch_per_task=64",
    "replay.capacity_per_task=5000",
    "train.steps_per_task=400",
    "train.warmup_steps_per_task=100",
    "train.eval_every=200",
    "train.eval_episodes=5",
    "train.checkpoint_every=200",
    "log.every=100",
    "log.progress=false",
]


def fake_config(*overrides: str, preset: str = "mt10_mtmhsac") -> Config:
    """A tiny fake-env config (3 tasks, 64x64 networks); ``overrides`` go on top."""
    return load_config(preset, FAKE_OVERRIDES + list(overrides))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny test networks gain nothing from intra-op threads, and on a busy 2-core machine
    OpenMP spinning between threads and env workers makes runs many times slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def _goal_cache_in_a_temporary_dir(tmp_path_factory):
    """Meta-World goals are cached on disk: keep the tests' cache out of the user's home
    (subprocesses started by tests inherit the variable)."""
    import os

    previous = os.environ.get("MTRL_CACHE_DIR")
    os.environ["MTRL_CACHE_DIR"] = str(tmp_path_factory.mktemp("mtrl-cache"))
    yield
    if previous is None:
        del os.environ["MTRL_CACHE_DIR"]
    else:
        os.environ["MTRL_CACHE_DIR"] = previous
