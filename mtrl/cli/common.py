"""Arguments that several ``mtrl`` commands share."""

from __future__ import annotations

import argparse
from pathlib import Path

DEVICES = ("auto", "cpu", "cuda")


def add_run_arguments(p: argparse.ArgumentParser, config_example: str,
                      override_example: str) -> None:
    """``CONFIG [key=value ...] [--run-dir DIR] [--resume] [--device D]`` of a training run."""
    p.add_argument("config", help=f"YAML path or preset name (e.g. {config_example})")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help=f"config overrides, e.g. {override_example}")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="output directory (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir from its last checkpoint")
    p.add_argument("--device", choices=DEVICES, default=None, help="training device")
    add_steps_argument(p)


def add_steps_argument(p: argparse.ArgumentParser, *aliases: str) -> None:
    """``--steps-per-task N``: the step budget, spelled as in ``train.steps_per_task``."""
    p.add_argument("--steps-per-task", *aliases, dest="steps_per_task", type=int, default=None,
                   metavar="N", help="env steps per task (shorthand for train.steps_per_task=N)")


def steps_override(args: argparse.Namespace) -> list[str]:
    """The ``train.steps_per_task`` override of ``--steps-per-task`` (none when not given)."""
    steps = getattr(args, "steps_per_task", None)
    return [] if steps is None else [f"train.steps_per_task={steps}"]
