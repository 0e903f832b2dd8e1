"""mtrl: multi-task reinforcement learning on Meta-World, in PyTorch."""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"  # the one place of the version (pyproject.toml reads it)


def load(run_dir_or_checkpoint: str | Path, device: str | None = None):
    """The trained agent of a run directory, a training checkpoint or a saved agent file."""
    from mtrl.agents import load_agent
    from mtrl.training.rundir import find_checkpoint

    return load_agent(find_checkpoint(run_dir_or_checkpoint), device)


__all__ = ["__version__", "load"]
