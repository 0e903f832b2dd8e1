"""``mtrl group TABLE --budget K``: choose task groups from a scores or affinity JSON."""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from mtrl.analysis.grouping import EXACT_MAX_TASKS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "group", help="choose task groups from a scores or affinity JSON",
        description="Network selection (Standley et al. 2020): at most K networks minimizing "
                    "the sum over tasks of the best score a chosen network gives the task. "
                    f"Exact branch-and-bound up to {EXACT_MAX_TASKS} tasks, local search "
                    "beyond.")
    p.add_argument("table", metavar="AFFINITY_OR_SCORES",
                   help="scores.json (mtrl affinity pairs) or affinity.json (online affinity)")
    p.add_argument("--budget", "-k", type=int, required=True, help="at most K networks")
    p.add_argument("--json", type=Path, default=None,
                   help="output file (default: groups_k<K>.json next to the input)")
    p.add_argument("--disjoint", action="store_true",
                   help="only partitions (each task in one network), as mtrl train needs")
    p.add_argument("--matrix", default="lookahead",
                   help="which affinity of an affinity.json: lookahead (critic+actor mean, "
                        "default), cosine, lookahead_critic, lookahead_actor, cosine_critic, "
                        "cosine_actor")
    p.add_argument("--exact-max-tasks", type=int, default=EXACT_MAX_TASKS,
                   help=f"largest task count solved exactly (default {EXACT_MAX_TASKS})")
    p.add_argument("--seed", type=int, default=0, help="seed of the approximate search")


def run(args: argparse.Namespace) -> int:
    from mtrl.analysis.grouping import load_table, select_networks

    table = load_table(args.table, args.matrix)
    result = select_networks(table, args.budget, args.disjoint, args.exact_max_tasks,
                             seed=args.seed)
    method = "exact (branch-and-bound)" if result.exact else \
        f"approximate (local search; more than {args.exact_max_tasks} tasks)"
    print(f"{len(result.groups)} network(s), total score {result.total_score:.6g}, {method}:")
    for k, group in enumerate(result.groups):
        scores = ", ".join(f"{t} {result.task_scores[t]:.4g}" for t in group)
        print(f"  group {k + 1}: {scores}")
    out = args.json or Path(args.table).with_name(f"groups_k{args.budget}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    print(f"written to {out}")
    disjoint = all(len(set(a) & set(b)) == 0
                   for a, b in itertools.combinations(result.groups, 2))
    if disjoint:
        print(f"train it: mtrl train CONFIG --groups {out}")
    else:
        print("groups overlap (a task helps in one network, another serves it); "
              "`--disjoint` gives groups that mtrl train can train")
    return 0
