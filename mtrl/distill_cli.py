"""``mtrl expert TASK`` and ``mtrl distill CONFIG`` (argument parsing only; the work is in
:mod:`mtrl.experts` and :mod:`mtrl.distill`, imported when a command runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtrl.cli_common import DEVICES, add_run_arguments


def add_expert(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--steps", type=int, default=None,
                   help="env steps of training (default 1000000; train.steps_per_task)")
    p.add_argument("--device", choices=DEVICES, default=None, help="training device")


def run_expert(args: argparse.Namespace) -> int:
    from mtrl.config import ExpertConfig, load_config
    from mtrl.experts import EXPERT_FILE, EXPERT_INFO, train_expert

    overrides = [f"task={args.task}", *args.overrides]
    if args.steps is not None:
        overrides.append(f"train.steps_per_task={args.steps}")
    if args.device is not None:
        overrides.append(f"train.device={args.device}")
    config = load_config(None, overrides, schema=ExpertConfig)
    run_dir = args.run_dir or Path("runs") / "experts" / args.task
    result = train_expert(config, run_dir)
    print(f"{args.task}: success {result.success_rate:.3f} "
          f"({result.episodes_per_task} episodes, deterministic actions, final evaluation)")
    print(f"expert written to {Path(run_dir) / EXPERT_FILE} ({Path(run_dir) / EXPERT_INFO})")
    return 0


def add_distill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill", help="distil per-task experts into one multi-task student",
        description="Policy distillation with DAgger-style student rollouts labelled by each "
                    "task's expert (SB3 .zip or mtrl checkpoint). Overrides: section.field=value.")
    add_run_arguments(p, "mt10_distill", "distill.experts.reach-v3=experts/reach.zip")


def run_distill(args: argparse.Namespace) -> int:
    from mtrl.config import DistillConfig, load_config
    from mtrl.distill import EXPERT_EVAL_FILE, distill, format_comparison
    from mtrl.train import FINAL_EVAL_FILE

    config = load_config(args.config, args.overrides, schema=DistillConfig)
    run_dir = Path(args.run_dir or Path("runs") / config.name)
    result = distill(config, run_dir, resume=args.resume, device=args.device,
                     overrides=tuple(args.overrides))
    print(format_comparison(result.student, result.experts))
    written = [run_dir / FINAL_EVAL_FILE]
    if result.experts is not None:
        written.append(run_dir / EXPERT_EVAL_FILE)
    print(f"final evaluation written to {', '.join(str(p) for p in written)}")
    return 0
