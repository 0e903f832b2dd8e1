"""``mtrl report``: compare runs across seeds — learning curves, heatmap, robust table, HTML.

Runs are grouped into methods (by the config's ``name`` or any ``--group-by`` config key). The
headline number of a run is its **final** evaluation (``final_eval.json``). Across seeds the
report follows the methodology of Agarwal et al. 2021 (*Deep RL at the Edge of the Statistical
Precipice*, the ``rliable`` library): scores form a ``(runs, tasks)`` matrix; the aggregate is
the mean and the interquartile mean (IQM, the 25 % trimmed mean of all run x task scores, as
``rliable.metrics.aggregate_iqm``); 95 % confidence intervals come from the **stratified
bootstrap** (runs resampled with replacement independently within every task, percentile
interval, as ``rliable.library.get_interval_estimates``).

The statistics (:mod:`mtrl.analysis.statistics`) are implemented with numpy rather than by
calling ``rliable``: rliable pulls in ``arch``, whose releases that the resolver picks for our
numpy 2 stack (arch 7.2 with pandas 3) fail at import, and the method is a few vectorised lines.

The max-over-time figure (best mean success over all evaluations of a run) is also given, and
labelled as such: it is optimistic and not comparable to final figures.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mtrl.analysis.plots import Band
from mtrl.analysis.statistics import (Estimate, batch_iqm, batch_mean, batch_task_mean, estimate,
                                      iqm, stratified_bootstrap_ci)
from mtrl.errors import MtrlError
from mtrl.training.rundir import CONFIG_FILE, FINAL_EVAL_FILE, find_run_dirs, is_run_dir

EVAL_PREFIX = "eval/success/"
MEAN_KEY = "eval/success_rate"
MAX_OVER_TIME_LABEL = "max over evaluations (optimistic, not the final figure)"
CURVE_REPS = 2000

# --------------------------------------------------------------------- loading
@dataclass
class Run:
    """The evaluations of one training run."""

    path: Path
    method: str
    seed: int | None
    task_names: list[str]
    steps: np.ndarray  # (E,) env steps per task of every evaluation
    curve: np.ndarray  # (E, T) per-task success rate at every evaluation
    final: np.ndarray  # (T,) per-task success of the final evaluation
    final_step: int
    final_source: str  # "final_eval.json" or "last evaluation (run unfinished)"

    @property
    def max_over_time(self) -> float:
        """Best mean success rate over all evaluations of the run."""
        return float(self.curve.mean(axis=1).max())


def collect_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """The run directories named by ``paths``; a directory that is not a run itself stands for
    every run below it. Raises :class:`MtrlError` for a path that is neither."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise MtrlError(f"run directory {path} does not exist")
        if not path.is_dir():
            raise MtrlError(f"{path} is not a directory (give mtrl run directories)")
        if is_run_dir(path):
            found.append(path)
            continue
        below = find_run_dirs(path)
        if not below:
            raise MtrlError(
                f"{path} is not an mtrl run directory (no metrics.jsonl in it or below)")
        found.extend(below)
    return list(dict.fromkeys(p.resolve() for p in found))


def _config_value(config: dict[str, Any], key: str, path: Path) -> Any:
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise MtrlError(f"{path / CONFIG_FILE} has no key {key!r} to group by")
        value = value[part]
    return value


def load_run(path: str | Path, group_by: str = "name") -> Run:
    """Read one run directory (``config.yaml``, ``metrics.jsonl``, ``final_eval.json``)."""
    import yaml

    from mtrl.training.logging import METRICS_FILE, read_metrics

    path = Path(path)
    if not (path / METRICS_FILE).exists():
        raise MtrlError(f"{path} is not an mtrl run directory (no {METRICS_FILE})")
    if not (path / CONFIG_FILE).exists():
        raise MtrlError(f"{path} has no {CONFIG_FILE}")
    try:
        config = yaml.safe_load((path / CONFIG_FILE).read_text())
    except yaml.YAMLError as exc:
        raise MtrlError(f"{path / CONFIG_FILE} is not valid YAML ({type(exc).__name__})") from exc
    if not isinstance(config, dict):
        raise MtrlError(f"{path / CONFIG_FILE} is not an mtrl config")
    value = _config_value(config, group_by, path)
    method = str(value) if group_by == "name" else f"{group_by}={value}"
    seed = config.get("train", {}).get("seed") if isinstance(config.get("train"), dict) else None

    try:
        records = read_metrics(path)
    except json.JSONDecodeError as exc:
        raise MtrlError(f"{path / METRICS_FILE} holds a malformed line ({exc.msg})") from exc
    evals: dict[int, dict[str, Any]] = {}
    for record in records:
        if not isinstance(record, dict) or "step" not in record:
            raise MtrlError(f"{path / METRICS_FILE} holds a record without 'step'")
        if MEAN_KEY in record:
            evals[int(record["step"])] = record  # a resumed run's repeat wins
    if not evals:
        raise MtrlError(f"{path} has no evaluation in {METRICS_FILE} yet")
    steps = np.array(sorted(evals), dtype=np.int64)
    first = evals[int(steps[0])]
    tasks = [k.removeprefix(EVAL_PREFIX) for k in first if k.startswith(EVAL_PREFIX)]
    if not tasks:
        raise MtrlError(f"{path / METRICS_FILE} has no per-task '{EVAL_PREFIX}<task>' entries")
    try:
        curve = np.array([[float(evals[int(s)][EVAL_PREFIX + t]) for t in tasks] for s in steps])
    except (KeyError, TypeError, ValueError) as exc:
        raise MtrlError(f"{path / METRICS_FILE} has an evaluation without task {exc}") from exc

    final_path = path / FINAL_EVAL_FILE
    if final_path.exists():
        try:
            data = json.loads(final_path.read_text())
            final = np.array([float(data["per_task"][t]) for t in tasks])
            final_step = int(data["step"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise MtrlError(f"{final_path} is malformed ({type(exc).__name__}: {exc})") from exc
        source = FINAL_EVAL_FILE
    else:
        final, final_step = curve[-1].copy(), int(steps[-1])
        source = "last evaluation (run unfinished)"
    return Run(path, method, seed, tasks, steps, curve, final, final_step, source)


# ---------------------------------------------------------------- aggregation
@dataclass
class MethodSummary:
    """All runs (seeds) of one method and their aggregates."""

    name: str
    runs: list[Run]
    task_names: list[str]
    final_mean: Estimate
    final_iqm: Estimate
    max_over_time: Estimate
    per_task: list[Estimate]  # final success of every task: mean over seeds, CI
    curve: Band  # mean success rate over training
    task_curves: dict[str, Band]  # task -> its success rate over training

    @property
    def steps_text(self) -> str:
        """The final step(s) of the runs, e.g. ``2000000``."""
        return "/".join(str(s) for s in sorted({r.final_step for r in self.runs}))


def _curve_bands(runs: list[Run], tasks: list[str], reps: int) -> tuple[Band, dict[str, Band]]:
    """Mean success and per-task success over seeds at every evaluated step, with CI bands;
    at each step only the seeds that evaluated there count."""
    steps = np.unique(np.concatenate([r.steps for r in runs]))
    mean = np.empty((3, len(steps)))
    per_task = np.empty((3, len(steps), len(tasks)))
    rows = [dict(zip(r.steps.tolist(), r.curve)) for r in runs]
    for i, step in enumerate(steps.tolist()):
        scores = np.stack([row[step] for row in rows if step in row])
        mean[:, i] = scores.mean(), *stratified_bootstrap_ci(scores, batch_mean, reps)
        per_task[:, i] = (scores.mean(axis=0),
                          *stratified_bootstrap_ci(scores, batch_task_mean, reps))
    task_curves = {t: Band(steps, *per_task[:, :, k]) for k, t in enumerate(tasks)}
    return Band(steps, *mean), task_curves


def summarize(name: str, runs: list[Run], reps: int = 50_000,
              curve_reps: int = CURVE_REPS) -> MethodSummary:
    """Aggregate the seeds of one method; all must share the task list."""
    tasks = runs[0].task_names
    for run in runs[1:]:
        if run.task_names != tasks:
            raise MtrlError(f"runs of method {name!r} have different tasks: {runs[0].path} "
                            f"vs {run.path} (group them apart with --group-by)")
    scores = np.stack([r.final for r in runs])
    best = np.array([[r.max_over_time] for r in runs])
    task_lo, task_hi = stratified_bootstrap_ci(scores, batch_task_mean, reps)
    curve, task_curves = _curve_bands(runs, tasks, curve_reps)
    return MethodSummary(
        name=name, runs=runs, task_names=tasks,
        final_mean=estimate(scores, np.mean, batch_mean, reps),
        final_iqm=estimate(scores, iqm, batch_iqm, reps),
        max_over_time=estimate(best, np.mean, batch_mean, reps),
        per_task=[Estimate(float(m), float(lo), float(hi))
                  for m, lo, hi in zip(scores.mean(axis=0), task_lo, task_hi)],
        curve=curve, task_curves=task_curves,
    )


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs by method, in order of first appearance."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.method, []).append(run)
    return groups


# ---------------------------------------------------------------------- tables
METHODOLOGY = (
    "Final = the evaluation at the end of training (final_eval.json): deterministic actions, "
    "success if the task was solved at any step of an episode, per-task rate averaged over "
    "tasks. Across seeds: mean and interquartile mean (IQM, 25% trimmed mean over all "
    "seed x task scores) with 95% stratified-bootstrap confidence intervals (seeds resampled "
    "within each task, percentile intervals; Agarwal et al. 2021, rliable). "
    f"'Max over time' is the {MAX_OVER_TIME_LABEL}."
)
Table = tuple[list[str], list[list[str]]]
"""A header and rows of cells."""


def summary_table(summaries: Sequence[MethodSummary]) -> Table:
    """One row per method: seeds, steps, final mean / IQM and max over time with CIs."""
    header = ["method", "seeds", "steps/task", "final success: mean [95% CI]",
              "final success: IQM [95% CI]", "max over time: mean [95% CI]"]
    rows = [[s.name, str(len(s.runs)), s.steps_text, str(s.final_mean), str(s.final_iqm),
             str(s.max_over_time)] for s in summaries]
    return header, rows


def task_table(summaries: Sequence[MethodSummary]) -> Table:
    """One row per task, one column per method: final success, mean over seeds [95% CI]."""
    tasks = list(dict.fromkeys(t for s in summaries for t in s.task_names))
    by_method = [dict(zip(s.task_names, s.per_task)) for s in summaries]
    rows = [[t] + [str(m[t]) if t in m else "-" for m in by_method] for t in tasks]
    return ["task"] + [s.name for s in summaries], rows


def to_markdown(table: Table) -> str:
    header, rows = table
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def to_html(table: Table) -> str:
    header, rows = table
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                     for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


def report_json(summaries: Sequence[MethodSummary], images: dict[str, str],
                reps: int) -> dict[str, Any]:
    """Everything in the tables as a JSON-able dict."""
    return {
        "methodology": METHODOLOGY,
        "bootstrap_reps": reps,
        "confidence": 0.95,
        "images": images,
        "methods": [
            {
                "name": s.name,
                "seeds": len(s.runs),
                "runs": [{"path": str(r.path), "seed": r.seed, "final_step": r.final_step,
                          "final_source": r.final_source,
                          "final_success_rate": float(r.final.mean()),
                          "max_over_time": r.max_over_time} for r in s.runs],
                "final_success": {"mean": s.final_mean.to_json(), "iqm": s.final_iqm.to_json()},
                "max_over_time": {"label": MAX_OVER_TIME_LABEL,
                                  "mean": s.max_over_time.to_json()},
                "per_task_final": {t: e.to_json() for t, e in zip(s.task_names, s.per_task)},
            }
            for s in summaries
        ],
    }


FIGURES = {
    "curves": "Mean success rate over training (line: mean over seeds; band: 95% "
              "stratified-bootstrap CI over seeds)",
    "tasks": "Success rate per task over training",
    "heatmap": "Final success rate per task (mean over seeds)",
}


def html_page(summaries: Sequence[MethodSummary], images: dict[str, str], title: str) -> str:
    """A self-contained page (images linked relatively) that shows the whole report."""
    esc = html.escape
    figures = "\n".join(
        f'<figure><a href="{esc(images[k])}"><img src="{esc(images[k])}" alt="{esc(caption)}">'
        f"</a><figcaption>{esc(caption)}</figcaption></figure>"
        for k, caption in FIGURES.items() if k in images
    )
    runs = "\n".join(
        f"<li>{esc(s.name)} (seed {r.seed}): <code>{esc(str(r.path))}</code> — final "
        f"{r.final.mean():.3f} at step {r.final_step} ({esc(r.final_source)})</li>"
        for s in summaries for r in s.runs
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; }} th {{ background: #f0f0f0; }}
img {{ max-width: 100%; }} figure {{ margin: 1.5em 0; }} .note {{ color: #444; }}
</style></head><body>
<h1>{esc(title)}</h1>
<h2>Final success rate across seeds</h2>
{to_html(summary_table(summaries))}
<p class="note">{esc(METHODOLOGY)}</p>
<p>Data: <a href="report.md">report.md</a> · <a href="report.json">report.json</a></p>
{figures}
<h2>Final success rate per task</h2>
{to_html(task_table(summaries))}
<h2>Runs</h2>
<ul>
{runs}
</ul>
</body></html>
"""


# ---------------------------------------------------------------------- report
def write_report(run_dirs: Sequence[str | Path], out_dir: str | Path, group_by: str = "name",
                 reps: int = 50_000) -> dict[str, Any]:
    """Load, aggregate and write ``curves.png``, ``tasks.png``, ``heatmap.png``,
    ``report.md``, ``report.json`` and ``index.html`` into ``out_dir``; returns the JSON
    (plus ``"markdown"``: the summary table)."""
    from mtrl.analysis.plots import plot_curves, plot_heatmap, plot_task_grid

    if reps < 1:
        raise MtrlError(f"--reps must be positive, got {reps}")
    runs = [load_run(p, group_by) for p in collect_run_dirs(run_dirs)]
    summaries = [summarize(name, group, reps) for name, group in group_runs(runs).items()]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = list(dict.fromkeys(t for s in summaries for t in s.task_names))
    heat = np.full((len(summaries), len(tasks)), np.nan)
    for i, s in enumerate(summaries):
        for t, e in zip(s.task_names, s.per_task):
            heat[i, tasks.index(t)] = e.value
    sizes = {
        "curves": plot_curves({s.name: s.curve for s in summaries}, out / "curves.png",
                              "Mean success rate (evaluations during training)"),
        "tasks": plot_task_grid({s.name: s.task_curves for s in summaries}, tasks,
                                out / "tasks.png"),
        "heatmap": plot_heatmap(heat, [s.name for s in summaries], tasks,
                                out / "heatmap.png", "Final success rate per task"),
    }
    images = {k: f"{k}.png" for k in sizes}
    data = report_json(summaries, images, reps)
    data["image_sizes"] = {k: list(v) for k, v in sizes.items()}
    summary = to_markdown(summary_table(summaries))
    (out / "report.md").write_text(
        f"# mtrl report\n\n## Final success rate across seeds\n\n{summary}\n\n"
        f"{METHODOLOGY}\n\n## Final success rate per task (mean over seeds [95% CI])\n\n"
        f"{to_markdown(task_table(summaries))}\n\n"
        + "\n".join(f"![{FIGURES[k]}]({v})" for k, v in images.items()) + "\n")
    (out / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / "index.html").write_text(html_page(summaries, images, "mtrl report"))
    return {**data, "markdown": summary}
