"""``mtrl bench``: throughput and cost against peers (table + JSON)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtrl.cli.common import DEVICES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure throughput against peers (table + JSON)",
                       description="Env steps/s vs gymnasium and raw physics, update time vs "
                                   "stable-baselines3, compiled vs eager and the matmul "
                                   "rate, end-to-end training rate and peak memory. "
                                   "Ratios > 1: mtrl (or the compiled update) faster.")
    p.add_argument("--quick", action="store_true", help="short measurements (~2 minutes)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--device", choices=DEVICES, default="auto")


def run(args: argparse.Namespace) -> int:
    import json

    from mtrl.agents import resolve_device
    from mtrl.training.bench import format_suite, run_suite

    result = run_suite(args.quick, str(resolve_device(args.device)))
    print(format_suite(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0
