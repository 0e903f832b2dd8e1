"""The files of a run directory, named in one place.

A training, distillation or expert run writes into its ``RUN_DIR``::

    config.yaml        the resolved config (complete, whatever the preset inherits)
    checkpoint.pt      everything a resume needs (:class:`mtrl.training.loop.Trainer`)
    metrics.jsonl      one JSON record per log interval / evaluation (:mod:`mtrl.training.logging`)
    final_eval.json    the final evaluation (:class:`mtrl.training.evaluation.EvalResult`)
    expert_eval.json   distillation: the experts on the same evaluation envs
    expert.zip         ``mtrl expert``: the stable-baselines3 model; ``expert.json`` its info
    affinity.json      ``train.affinity_every``: the task-affinity table (and its history,
                       ``affinity_history.jsonl``)
    events.out.tfevents.*  TensorBoard

Every module takes these names from here.
"""

from __future__ import annotations

from pathlib import Path

from mtrl.errors import MtrlError

CONFIG_FILE = "config.yaml"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
FINAL_EVAL_FILE = "final_eval.json"
EXPERT_EVAL_FILE = "expert_eval.json"
EXPERT_FILE = "expert.zip"
EXPERT_INFO_FILE = "expert.json"
AFFINITY_FILE = "affinity.json"
AFFINITY_HISTORY_FILE = "affinity_history.jsonl"


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a run (its config or its metrics)."""
    path = Path(path)
    return (path / METRICS_FILE).exists() or (path / CONFIG_FILE).exists()


def has_checkpoint(path: str | Path) -> bool:
    """Whether the run in ``path`` can be resumed."""
    return (Path(path) / CHECKPOINT_FILE).exists()


def find_run_dirs(root: str | Path) -> list[Path]:
    """The run directories at or below ``root`` (each holds a ``metrics.jsonl``)."""
    return sorted(p.parent for p in Path(root).rglob(METRICS_FILE))


def find_checkpoint(run_dir_or_file: str | Path) -> Path:
    """The checkpoint file of a run directory, or the file itself."""
    path = Path(run_dir_or_file)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise MtrlError(f"no checkpoint at {path}")
    return path
