"""``mtrl affinity pairs CONFIG``: train every single task and pair briefly (Standley et al. 2020)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtrl.cli.common import DEVICES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("affinity", help="measure which tasks help each other",
                       description="Task affinity. Online affinity during training: set "
                                   "train.affinity_every (writes RUN_DIR/affinity.json).")
    commands = p.add_subparsers(dest="affinity_command", metavar="SUBCOMMAND")
    commands.required = True
    pairs = commands.add_parser(
        "pairs", help="train every single task and pair briefly (Standley et al. 2020)",
        description="Train every single task and every pair of tasks with a short budget and "
                    "write each task's score in each network (scores.json, lower is better) "
                    "for `mtrl group`.")
    pairs.add_argument("config", help="YAML path or preset name")
    pairs.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    pairs.add_argument("--tasks", default=None,
                       help="task spec (MT10, comma list, fake:<T>; default: the config's)")
    pairs.add_argument("--steps-per-task", type=int, default=None,
                       help="budget of each network (default: a fifth of the config's "
                            "train.steps_per_task)")
    pairs.add_argument("--score", choices=("success", "return"), default="success",
                       help="1 - success rate (default) or negative normalized return")
    pairs.add_argument("--out", type=Path, default=None,
                       help="output directory (default: runs/<config name>-pairs)")
    pairs.add_argument("--device", choices=DEVICES, default=None)


def run(args: argparse.Namespace) -> int:
    from mtrl.analysis.affinity import format_pairs, run_pairs, write_scores
    from mtrl.config import load_config

    overrides = list(args.overrides) + ([f"env.tasks={args.tasks}"] if args.tasks else [])
    config = load_config(args.config, overrides)
    steps = args.steps_per_task or max(1, config.train.steps_per_task // 5)
    out = args.out or Path("runs") / f"{config.name}-pairs"
    table = run_pairs(config, out, steps, args.score, args.device)
    path = write_scores(table, out, f"{steps} steps per task per network, score: {args.score}")
    print(format_pairs(table))
    print(f"scores written to {path} (next: mtrl group {path} --budget K)")
    return 0
