"""Update time of multi-task SAC with each gradient combiner (and PopArt), relative to `mean`.

Meta-World sizes: observation 39, action 4, 3 x 400 multi-head networks, 128 transitions per
task (MT10: batch 1280, MT50: batch 6400). Updates of the variants are interleaved round by
round, so that a slow spell of a shared machine hits every variant alike; the figure per
variant is the median (and the minimum) update time and its ratio to `mean` in the same run.
Combiners for positive losses (gradnorm, uncertainty, famo, dwa) run on the critic, the actor
keeps `mean`; the others run on both. `mgda` is MGDA-UB (representation gradients, one extra
backward above the last shared layer), `mgda_parameters` full MGDA on the shared parameters'
task gradients; `dtp` has no finished episodes here, so its KPIs stay at their start (the
update's cost does not depend on them).

    python benchmarks/combiners.py --tasks 10 --rounds 20
    python benchmarks/combiners.py --tasks 10 50 --variants mean pcgrad --device cuda
    python benchmarks/combiners.py --threads 1 --clock cpu   # on a busy shared CPU machine
    OMP_NUM_THREADS=1 python benchmarks/combiners.py --tasks 10 50 --threads 1 --clock cpu \
        --json benchmarks/results_combiners_cpu_2core.json   # the saved results

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from mtrl.agents import SAC
from mtrl.data import Batch
from mtrl.optim import COMBINERS

OBS, ACT = 39, 4
VARIANTS = ["mean", "pcgrad", "cagrad", "gradnorm", "uncertainty", "famo", "fixed", "mgda",
            "mgda_parameters", "dwa", "dtp", "popart"]
OPTIONS = {"mgda_parameters": ("mgda", {"gradients": "parameters"})}
"""Variants that are a combiner with options: variant -> (combiner, its options)."""


def make_agent(variant: str, num_tasks: int, hidden: list[int], device: str) -> SAC:
    """SAC with ``variant`` on actor and critic (critic only for positive-loss combiners)."""
    network = {"type": "multihead", "hidden_sizes": hidden, "activation": "relu"}
    if variant == "popart":
        return SAC(OBS, ACT, num_tasks, network, popart=True, device=device)
    combiner, extra = OPTIONS.get(variant, (variant, {}))
    actor = "mean" if COMBINERS[combiner].positive_losses else combiner
    options = {"fixed": {"weights": [1.0] * num_tasks}}
    if extra:
        options[combiner] = extra
    return SAC(OBS, ACT, num_tasks, network, actor_combiner=actor, critic_combiner=combiner,
               combiners=options, device=device)


def random_batch(num_tasks: int, per_task: int, device: str, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    n = num_tasks * per_task
    batch = Batch(
        obs=torch.randn(n, OBS, generator=g), action=torch.rand(n, ACT, generator=g) * 2 - 1,
        reward=torch.rand(n, generator=g), next_obs=torch.randn(n, OBS, generator=g),
        terminated=torch.zeros(n), task_id=torch.arange(num_tasks).repeat_interleave(per_task),
        rows_per_task=per_task,
    )
    return Batch(*(getattr(batch, f).to(device) for f in
                   ("obs", "action", "reward", "next_obs", "terminated", "task_id")),
                 rows_per_task=per_task)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(num_tasks: int, variants: list[str], rounds: int, warmup: int, per_task: int,
            hidden: list[int], device: str, clock: str = "wall") -> dict:
    agents = {v: make_agent(v, num_tasks, hidden, device) for v in variants}
    batches = [random_batch(num_tasks, per_task, device, seed) for seed in range(4)]
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(warmup + rounds):
        for v, agent in agents.items():
            batch = batches[r % len(batches)]
            timer = time.perf_counter if clock == "wall" else time.process_time
            sync(device)
            start = timer()
            agent.update(batch)
            sync(device)
            if r >= warmup:
                times[v].append(timer() - start)
    median = {v: statistics.median(t) for v, t in times.items()}
    best = {v: min(t) for v, t in times.items()}
    return {
        "num_tasks": num_tasks,
        "batch": num_tasks * per_task,
        "median_update_ms": {v: round(1e3 * m, 2) for v, m in median.items()},
        "min_update_ms": {v: round(1e3 * m, 2) for v, m in best.items()},
        "ratio_to_mean": {v: round(m / median["mean"], 3) for v, m in median.items()},
        "min_ratio_to_mean": {v: round(m / best["mean"], 3) for v, m in best.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[10])
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--rounds", type=int, nargs="+", default=[20],
                        help="timed rounds: one value, or one per --tasks entry")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--per-task", type=int, default=128)
    parser.add_argument("--hidden", type=int, nargs="+", default=[400, 400, 400])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: process CPU time, robust to other load on a shared CPU "
                             "machine (use with --threads 1)")
    parser.add_argument("--json", default=None, help="also write the JSON to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = args.variants if "mean" in args.variants else ["mean", *args.variants]
    if len(args.rounds) not in (1, len(args.tasks)):
        parser.error("--rounds: one value, or one per --tasks entry")
    rounds = args.rounds * len(args.tasks) if len(args.rounds) == 1 else args.rounds
    results = [{**measure(t, variants, r, args.warmup, args.per_task, args.hidden, args.device,
                          args.clock), "rounds": r} for t, r in zip(args.tasks, rounds)]
    text = json.dumps({
        "benchmark": "sac_update_per_combiner",
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "clock": args.clock,
        "machine": platform.processor() or platform.machine(),
        "hidden": args.hidden,
        "rounds": args.rounds[0] if len(args.rounds) == 1 else args.rounds,
        "warmup": args.warmup,
        "results": results,
    }, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
