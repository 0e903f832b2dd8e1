"""``mtrl sweep CONFIG ...``: seeds x grid of configs as Ray tasks."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtrl.cli.common import add_steps_argument, steps_override
from mtrl.errors import MtrlError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="run seeds x grid of configs as Ray tasks (local or on a cluster)",
        description="Run every (config, grid point, seed) as an `mtrl train` run on Ray, "
                    "under OUT/<method>/seed<k>. Rerun the same command to resume a sweep: "
                    "finished runs are skipped, unfinished ones resume from their checkpoints.")
    p.add_argument("configs", nargs="+", metavar="CONFIG",
                   help="preset name(s) or YAML path(s); each is a method (x the grid); "
                        "key=value tokens are overrides for every run")
    p.add_argument("overrides", nargs="*", metavar="key=value", help=argparse.SUPPRESS)
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per method (default 5)")
    add_steps_argument(p)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="values to sweep for one key (repeat for more keys; commas inside "
                        "[...] are kept, e.g. agent.network.hidden_sizes=[64,64],[400,400])")
    p.add_argument("--out", type=Path, default=None,
                   help="sweep directory (default sweeps/<config name>); on a cluster, a "
                        "path every node sees")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join ('auto' = the one started on this machine with "
                        "`ray start`); default: an embedded local Ray instance")
    p.add_argument("--resources", default="cpu=1", metavar="cpu=N,gpu=G[,NAME=N]",
                   help="Ray resources per run (default cpu=1); gpu may be fractional")
    p.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs of the local Ray instance (default: all cores)")
    p.add_argument("--max-retries", type=int, default=2,
                   help="retries of a run whose worker or node died (default 2)")


def run(args: argparse.Namespace) -> int:
    from mtrl.analysis.sweep import (SWEEP_FILE, format_summary, parse_grid, parse_resources,
                                     sweep, write_sweep_report)

    configs = [c for c in args.configs if "=" not in c]
    overrides = [c for c in args.configs if "=" in c] + list(args.overrides) + steps_override(args)
    if args.seeds <= 0:
        raise MtrlError(f"--seeds must be positive, got {args.seeds}")
    result = sweep(configs, args.seeds, parse_grid(args.grid), overrides, args.out,
                   args.address, parse_resources(args.resources), args.num_cpus,
                   args.max_retries)
    print()
    print(format_summary(result.methods))
    for run in result.failed:
        print(f"failed: {run.name}: {run.error}")
    print(f"runs in {result.out} (summary in {result.out / SWEEP_FILE})")
    write_sweep_report(result)
    return 1 if result.failed else 0
