"""Cost of each multi-task architecture: parameters and time of one SAC update.

For each architecture the preset ``<benchmark>_<arch>`` (``mt10_mtmhsac`` for ``multihead``)
gives the networks; an SAC agent on Meta-World sizes (obs 39, action 4, ``T`` tasks, 128 rows
per task) runs full updates (critic, actor, temperature, target) on a fixed random batch.
Architectures are timed round-robin in the same process and reported relative to
``multihead``, so machine load affects all of them alike. Prints JSON::

    python benchmarks/architectures.py                # MT10 and MT50, CPU
    python benchmarks/architectures.py --benchmarks mt10 --repeats 20 --device cuda
    python benchmarks/architectures.py --threads 1     # on a busy machine
    OMP_NUM_THREADS=1 python benchmarks/architectures.py --threads 1 \
        --json benchmarks/results_architectures_cpu_2core.json   # the saved results

Where a benchmark has no preset of its own for an architecture (``mt50_routing``), the MT10
preset's network is used (no network option depends on the number of tasks); the ``preset``
field says which. ``bronet`` is the network of the BRC preset (``<benchmark>_brc``: BroNet of
width 256 with 1 residual block, the BRC actor) for actor and critic, with the one-hot task
input of the other rows (``bronet.task_input=true``) and the mse critic, so that the row
compares architectures only; its ``paper_critic_params`` is one BRC critic of the preset
(width 4096, 2 blocks, 101 atoms, 32-d task embedding in the input), counted, not timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time

import torch

from mtrl.agents.sac import SAC
from mtrl.config import load_config
from mtrl.data.replay import Batch
from mtrl.errors import MtrlError
from mtrl.nn import build_network
from mtrl.nn.registry import NETWORKS

ARCHS = tuple(a for a in ("multihead", "softmod", "care", "film", "paco", "moore",
                          "cross_stitch", "bronet", "routing") if a in NETWORKS)
OBS_DIM, ACT_DIM = 39, 4
PRESET_NAMES = {"multihead": "mtmhsac", "bronet": "brc"}
OVERRIDES = {"bronet": ["agent.network.bronet.task_input=true"]}


def preset(benchmark: str, arch: str) -> str:
    return f"{benchmark}_{PRESET_NAMES.get(arch, arch)}"


def arch_config(benchmark: str, arch: str):
    """The config of ``arch``'s preset for ``benchmark`` (else the MT10 one) and its name."""
    name = preset(benchmark, arch)
    try:
        return load_config(name, OVERRIDES.get(arch, [])), name
    except MtrlError:
        if benchmark == "mt10":
            raise
        name = preset("mt10", arch)
        return load_config(name, OVERRIDES.get(arch, [])), name


def paper_critic_params(config, num_tasks: int) -> int:
    """Parameters of one critic of a BRC preset (built on the meta device: nothing allocated)."""
    agent = config.agent
    embed = agent.task_embedding_dim if agent.task_encoding == "embedding" else 0
    outputs = agent.num_bins if agent.critic_loss == "categorical" else 1
    with torch.device("meta"):
        net = build_network(agent.critic_network, OBS_DIM + ACT_DIM + embed, outputs, num_tasks)
    return count(net)


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
        config, name = arch_config(benchmark, arch)
        agent = SAC(OBS_DIM, ACT_DIM, num_tasks, dataclasses.asdict(config.agent.network),
                    device=device, seed=0,
                    temperature_weighting=config.agent.temperature_weighting)
        agents[arch] = agent
        info[arch] = {"preset": name,
                      "actor_params": count(agent.actor),
                      "critic_params": count(agent.critic) // 2,  # one of the twin critics
                      "times_ms": []}
        if arch == "bronet" and config.agent.critic_network is not None:
            info[arch]["paper_critic_params"] = paper_critic_params(config, num_tasks)
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
    parser.add_argument("--json", default=None, help="also write the JSON to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = {"device": args.device, "torch": torch.__version__,
           "threads": torch.get_num_threads(),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    for benchmark in args.benchmarks:
        out[benchmark] = bench(benchmark, args.repeats, args.warmup, args.device,
                               tuple(args.archs))
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
