"""``mtrl distill CONFIG``: distil per-task experts into one multi-task student."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtrl.cli.common import add_run_arguments, steps_override


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill", help="distil per-task experts into one multi-task student",
        description="Policy distillation with DAgger-style student rollouts labelled by each "
                    "task's expert (SB3 .zip or mtrl checkpoint). Overrides: section.field=value.")
    add_run_arguments(p, "mt10_distill", "distill.experts.reach-v3=experts/reach.zip")


def run(args: argparse.Namespace) -> int:
    from mtrl.config import DistillConfig, load_config
    from mtrl.training.distill import distill, format_comparison
    from mtrl.training.rundir import EXPERT_EVAL_FILE, FINAL_EVAL_FILE

    args.overrides = [*args.overrides, *steps_override(args)]
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
