"""``mtrl expert TASK``: a single-task stable-baselines3 SAC expert."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtrl.cli.common import DEVICES, add_steps_argument, steps_override


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "expert", help="train a single-task stable-baselines3 SAC expert",
        description="Train SB3 SAC on one Meta-World v3 task (goals resampled every episode), "
                    "save expert.zip and its success rate (official protocol). Overrides: "
                    "sac.learning_rate=..., sac.net_arch=[400,400], replay.batch_per_task=..., "
                    "train.eval_every=...; env.tasks=SPEC takes TASK from another task list "
                    "(default: TASK alone, as MT1).")
    p.add_argument("task", metavar="TASK", help="a v3 task name, e.g. reach-v3")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="output directory (default: runs/experts/<TASK>)")
    add_steps_argument(p, "--steps")  # --steps: the older spelling, kept working
    p.add_argument("--device", choices=DEVICES, default=None, help="training device")


def run(args: argparse.Namespace) -> int:
    from mtrl.config import ExpertConfig, load_config
    from mtrl.training.experts import train_expert
    from mtrl.training.rundir import EXPERT_FILE, EXPERT_INFO_FILE

    overrides = [f"task={args.task}", *args.overrides]
    overrides += steps_override(args)
    if args.device is not None:
        overrides.append(f"train.device={args.device}")
    config = load_config(None, overrides, schema=ExpertConfig)
    run_dir = args.run_dir or Path("runs") / "experts" / args.task
    result = train_expert(config, run_dir)
    print(f"{args.task}: success {result.success_rate:.3f} "
          f"({result.episodes_per_task} episodes, deterministic actions, final evaluation)")
    print(f"expert written to {Path(run_dir) / EXPERT_FILE} ({Path(run_dir) / EXPERT_INFO_FILE})")
    return 0
