"""Cost of each multi-task architecture: parameters and time of one SAC update.

For each architecture the preset ``<benchmark>_<arch>`` (``mt10_mtmhsac`` for ``multihead``)
gives the networks; an SAC agent on Meta-World sizes (obs 39, action 4, ``T`` tasks, 128 rows
per task) runs full updates (critic, actor, temperature, target) on a fixed random batch.
Architectures are timed round-robin in the same process and reported relative to
``multihead``, so machine load affects all of them alike. Prints JSON::

    python benchmarks/architectures.py                # MT10 and MT50, CPU
    python benchmarks/architectures.py --benchmarks mt10 --repeats 20 --device cuda
    python benchmarks/architectures.py --threads 1     # on a busy machine
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch

from mtrl.agents.sac import SAC
from mtrl.config import load_config
from mtrl.data.replay import Batch

ARCHS = ("multihead", "softmod", "care", "film", "paco", "moore", "cross_stitch")
OBS_DIM, ACT_DIM = 39, 4


def preset(benchmark: str, arch: str) -> str:
    return f"{benchmark}_{'mtmhsac' if arch == 'multihead' else arch}"


def random_batch(num_tasks: int, rows: int, device: torch.device) -> Batch:
    g = torch.Generator().manual_seed(0)
    n = num_tasks * rows

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device)

    return Batch(rand(n, OBS_DIM), torch.tanh(rand(n, ACT_DIM)), rand(n), rand(n, OBS_DIM),
                 torch.zeros(n, device=device),
                 torch.arange(num_tasks, device=device).repeat_interleave(rows), rows)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def bench(benchmark: str, repeats: int, warmup: int, device: str,
          archs: tuple[str, ...] = ARCHS) -> dict:
    num_tasks = {"mt10": 10, "mt50": 50}[benchmark]
    archs = ("multihead",) + tuple(a for a in archs if a != "multihead")
    agents, info = {}, {}
    for arch in archs:
        config = load_config(preset(benchmark, arch))
        agent = SAC(OBS_DIM, ACT_DIM, num_tasks, dataclasses.asdict(config.agent.network),
                    device=device, seed=0,
                    temperature_weighting=config.agent.temperature_weighting)
        agents[arch] = agent
        info[arch] = {"preset": preset(benchmark, arch),
                      "actor_params": count(agent.actor),
                      "critic_params": count(agent.critic) // 2,  # one of the twin critics
                      "times_ms": []}
    batch = random_batch(num_tasks, 128, agents["multihead"].device)
    sync = torch.cuda.synchronize if agents["multihead"].device.type == "cuda" else (lambda: None)
    for arch in archs:
        for _ in range(warmup):
            agents[arch].update(batch)
    for _ in range(repeats):  # round-robin: load drifts affect every architecture alike
        for arch in archs:
            sync()
            start = time.perf_counter()
            agents[arch].update(batch)
            sync()
            info[arch]["times_ms"].append((time.perf_counter() - start) * 1e3)
    base = statistics.median(info["multihead"]["times_ms"])
    for arch in archs:
        times = info[arch].pop("times_ms")
        info[arch]["update_ms"] = round(statistics.median(times), 2)
        info[arch]["relative_to_multihead"] = round(statistics.median(times) / base, 2)
    return {"num_tasks": num_tasks, "rows_per_task": 128, "repeats": repeats,
            "architectures": info}


def main() -> None:
    parser = argparse.ArgumentParser(description="SAC update cost of each architecture")
    parser.add_argument("--benchmarks", nargs="+", default=["mt10", "mt50"],
                        choices=["mt10", "mt50"])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = {"device": args.device, "torch": torch.__version__,
           "threads": torch.get_num_threads()}
    for benchmark in args.benchmarks:
        out[benchmark] = bench(benchmark, args.repeats, args.warmup, args.device,
                               tuple(args.archs))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
