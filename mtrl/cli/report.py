"""``mtrl report RUN_DIR ...``: compare runs across seeds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtrl.training.rundir import FINAL_EVAL_FILE


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="compare runs across seeds: curves, heatmap, table, HTML page",
        description="Group runs by method, aggregate seeds (mean, IQM, stratified bootstrap "
                    "95% CIs) and write plots, report.md, report.json and index.html.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="run directories (a directory holding runs stands for all of them)")
    p.add_argument("--out", type=Path, default=Path("report"),
                   help="output directory (default: ./report)")
    p.add_argument("--group-by", default="name", metavar="KEY",
                   help="config key that names the method (default: name), e.g. agent.network.type")
    p.add_argument("--reps", type=int, default=50_000, help="bootstrap resamples (default 50000)")


def run(args: argparse.Namespace) -> int:
    from mtrl.analysis.report import write_report

    data = write_report(args.runs, args.out, args.group_by, args.reps)
    for method in data["methods"]:
        for run in method["runs"]:
            if run["final_source"] != FINAL_EVAL_FILE:
                print(f"note: {run['path']} has no {FINAL_EVAL_FILE}; using its last evaluation "
                      f"(step {run['final_step']})", file=sys.stderr)
    print(data["markdown"])
    print(f"report written to {Path(args.out) / 'index.html'}")
    return 0
