"""Metrics out: TensorBoard scalars, ``metrics.jsonl`` and a console progress bar.

Keys are namespaced like CleanRL's: ``train/critic_loss``, ``train/alpha/<task>``,
``eval/success_rate``, ``eval/success/<task>``, ``time/env_steps_per_s``. The x axis is env
steps **per task** (as papers report); ``total_env_steps`` is logged beside it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from tqdm import tqdm

from mtrl.training.rundir import METRICS_FILE


def flatten_metrics(
    metrics: Mapping[str, Any], task_names: list[str], prefix: str = ""
) -> dict[str, float]:
    """Scalars as they are; per-task vectors of length T as ``<key>/<task>`` entries."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        array = np.asarray(value, dtype=np.float64)
        name = f"{prefix}{key}"
        if array.ndim == 0:
            flat[name] = float(array)
        elif array.shape == (len(task_names),):
            base = name.removesuffix("_per_task")
            flat.update({f"{base}/{task}": float(v) for task, v in zip(task_names, array)})
        else:
            raise ValueError(f"metric {name} has shape {array.shape}")
    return flat


def network_scalars(learner: Any, task_names: list[str],
                    prefix: str = "train/") -> dict[str, float]:
    """What the learner's networks report about themselves (:func:`mtrl.nn.network_metrics`,
    e.g. the routing network's module usage and router entropy), flattened like the update
    metrics as ``<prefix><attribute>/<key>`` (``train/actor/routing/entropy``).

    The networks are the learner's public ``nn.Module`` attributes that have a trainable
    parameter (``actor``, ``critic``; a frozen target copy is skipped), each module once.
    Read at log intervals only (a host sync).
    """
    from torch import nn

    from mtrl.nn import network_metrics

    metrics: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, module in vars(learner).items():
        if name.startswith("_") or not isinstance(module, nn.Module) or id(module) in seen:
            continue
        seen.add(id(module))
        if not any(p.requires_grad for p in module.parameters()):
            continue
        metrics.update({f"{name}/{k}": v for k, v in network_metrics(module).items()})
    return flatten_metrics(metrics, task_names, prefix)


class MetricsLogger:
    """Writes scalars to TensorBoard (optional) and appends them to ``metrics.jsonl``."""

    def __init__(self, run_dir: str | Path, task_names: list[str], tensorboard: bool = True,
                 resume_step: int | None = None) -> None:
        """``resume_step``: the step of the checkpoint a resumed run continues from; records
        written after it (by the killed process) are dropped so that nothing is logged twice."""
        self.run_dir = Path(run_dir)
        self.task_names = task_names
        self.writer = None
        if resume_step is not None:
            self._truncate(resume_step)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self.writer = SummaryWriter(str(self.run_dir), purge_step=purge)
            self.writer.add_custom_scalars(
                {"eval": {"success per task": ["Multiline", [r"eval/success/.*"]]},
                 "train": {"temperature per task": ["Multiline", [r"train/alpha/.*"]],
                           "episode success per task": ["Multiline", [r"train/success/.*"]]}}
            )
        self._file = open(self.run_dir / METRICS_FILE, "a", encoding="utf-8")
        self._start = time.time()

    def _truncate(self, resume_step: int) -> None:
        path = self.run_dir / METRICS_FILE
        if path.exists():
            kept = [r for r in read_metrics(self.run_dir) if r["step"] <= resume_step]
            path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")

    def log(self, step: int, scalars: Mapping[str, float], total_env_steps: int) -> None:
        """Record ``scalars`` at ``step`` (env steps per task)."""
        record = {"step": step, "total_env_steps": total_env_steps,
                  "time": round(time.time() - self._start, 3), **scalars}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(key, value, step)
            self.writer.add_scalar("train/total_env_steps", total_env_steps, step)
            self.writer.flush()

    def close(self) -> None:
        self._file.close()
        if self.writer is not None:
            self.writer.close()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of a run's ``metrics.jsonl``."""
    path = Path(run_dir) / METRICS_FILE
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class Progress:
    """Console progress over env steps per task.

    On a terminal: a tqdm bar (rate, ETA) with the log lines printed above it. Anywhere else
    (a redirected log, a cluster job): no bar and no carriage-return updates, only the lines.
    ``enabled=False`` keeps the lines and drops the bar.
    """

    def __init__(self, total: int, initial: int, enabled: bool, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total = total
        self.bar = tqdm(total=total, initial=initial, disable=not (enabled and tty), unit="step",
                        unit_scale=True, dynamic_ncols=True, desc="steps/task",
                        file=self.stream)

    def update(self, steps: int) -> None:
        self.bar.update(steps)

    def write(self, line: str) -> None:
        """Print a line (above the bar when there is one)."""
        if self.bar.disable:
            print(line, file=self.stream, flush=True)
        else:
            self.bar.write(line, file=self.stream)

    def close(self) -> None:
        self.bar.close()


def progress_bar(total: int, initial: int, enabled: bool) -> Progress:
    """The console :class:`Progress` of a run (a bar on terminals, plain lines elsewhere)."""
    return Progress(total, initial, enabled)


def interval_line(step: int, total: int, scalars: Mapping[str, float],
                  task_names: list[str]) -> str:
    """One console line per log interval: steps, env steps/s, per-task return and success.

    ``step 3000/15000 | 412 env steps/s | reach R 1520 S 0.60 | drawer-close R 2210 S 0.80``
    (R, S: mean return and success rate of the training episodes finished in the interval).
    """
    parts = [f"step {step}/{total}"]
    rate = scalars.get("time/env_steps_per_s")
    if rate is not None:
        parts.append(f"{rate:.0f} env steps/s")
    for task in task_names:
        ret = scalars.get(f"train/episode_return/{task}")
        success = scalars.get(f"train/success/{task}")
        if ret is not None and success is not None:
            parts.append(f"{task.removesuffix('-v3')} R {ret:.0f} S {success:.2f}")
    return " | ".join(parts)


def success_line(per_task: Mapping[str, float], width: int = 6) -> str:
    """A compact per-task success line for the console: ``reach 1.00 | push 0.20 | ...``."""
    return " | ".join(f"{name.removesuffix('-v3')[:width * 2]} {rate:.2f}"
                      for name, rate in per_task.items())
