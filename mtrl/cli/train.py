"""``mtrl train CONFIG``: train (or resume) a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtrl.cli.common import add_run_arguments, steps_override
from mtrl.training.rundir import FINAL_EVAL_FILE


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an agent (a preset name or a YAML config)",
                       description="Train a multi-task agent. Overrides: section.field=value.")
    add_run_arguments(p, "mt10_mtmhsac, quick", "train.steps_per_task=20000")
    p.add_argument("--groups", type=Path, default=None, metavar="FILE",
                   help="train one network per task group of this `mtrl group` JSON")


def run(args: argparse.Namespace) -> int:
    import mtrl.analysis  # noqa: F401  (registers the analysis layer's training hooks)
    from mtrl.config import load_config
    from mtrl.training.evaluation import format_table
    from mtrl.training.loop import train

    if args.groups is not None:
        from mtrl.analysis.grouping import groups_override

        args.overrides = [*args.overrides, groups_override(args.groups)]
    args.overrides = [*args.overrides, *steps_override(args)]
    config = load_config(args.config, args.overrides)
    run_dir = args.run_dir or Path("runs") / config.name
    result = train(config, run_dir, resume=args.resume, device=args.device,
                   overrides=tuple(args.overrides))
    print(format_table(result))
    print(f"final evaluation written to {Path(run_dir) / FINAL_EVAL_FILE}")
    return 0
