"""MT10 throughput of mtrl against its peers, measured in one run on the same machine.

    python benchmarks/throughput.py [--quick] [--json FILE]

* env steps/s: mtrl's vector env (worker processes, shared memory) vs
  ``gymnasium.make_vec("Meta-World/MT10", vector_strategy="async" | "sync")``;
* SAC update (3 x 400, batch 128 x 10): mtrl vs stable-baselines3 SAC with the same network
  and batch; and mtrl's achieved FLOP rate vs a plain matmul of the same width;
* SAC update at the learning benchmark's single-task sizes (one task, 2 x 256, batch 128, one
  torch thread): mtrl's one-hot MLP SAC vs stable-baselines3 SAC, median CPU time of short
  alternating rounds (``single_task_update_vs_sb3``).

Ratios > 1 mean mtrl is faster. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from mtrl.training import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (noisier figures)")
    parser.add_argument("--json", default=None, help="also write the JSON here")
    args = parser.parse_args()
    steps = 100 if args.quick else 400
    repeats = 5 if args.quick else 20

    result: dict[str, float | str] = {"cores": os.cpu_count() or 1,
                                      "torch_threads": torch.get_num_threads()}
    result["mtrl_env_steps_per_s"] = bench.mtrl_env_steps_per_s("MT10", steps)
    result["gym_async_env_steps_per_s"] = bench.gym_env_steps_per_s("MT10", steps, "async")
    result["gym_sync_env_steps_per_s"] = bench.gym_env_steps_per_s("MT10", steps, "sync")
    result["collector_vs_gym_async"] = (result["mtrl_env_steps_per_s"]
                                        / result["gym_async_env_steps_per_s"])
    result["collector_vs_gym_sync"] = (result["mtrl_env_steps_per_s"]
                                       / result["gym_sync_env_steps_per_s"])

    update = bench.mtrl_update_seconds(10, repeats=repeats)
    result["mtrl_update_ms"] = 1e3 * update["seconds"]
    result["sb3_update_ms"] = 1e3 * bench.sb3_update_seconds(10, repeats=repeats)
    result["update_vs_sb3"] = result["sb3_update_ms"] / result["mtrl_update_ms"]
    single = bench.single_task_update_seconds(rounds=10 if args.quick else 40)
    result["single_task_update_ms"] = 1e3 * single["mtrl_seconds"]
    result["single_task_sb3_update_ms"] = 1e3 * single["sb3_seconds"]
    result["single_task_update_vs_sb3"] = single["sb3_seconds"] / single["mtrl_seconds"]
    result["update_gflop"] = update["flops"] / 1e9
    result["matmul_gflops"] = bench.matmul_flops_per_s(1280, 400) / 1e9
    result["update_vs_matmul_rate"] = (update["flops"] / update["seconds"]
                                       / (result["matmul_gflops"] * 1e9))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
