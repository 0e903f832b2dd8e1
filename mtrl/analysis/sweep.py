"""``mtrl sweep``: seeds x grid of a config (or several) as Ray tasks, locally or on a cluster.

Every run is a normal run directory ``<out>/<method>/seed<k>`` made by the trainer
(:func:`mtrl.training.loop.train`), so every other command works on it. A *method* is a config plus
one combination of grid values, named like ``mt10_mtmhsac,agent.network.type=mlp``.

Runs are Ray tasks (Ray core only, no Tune), one fresh worker process per run
(``max_calls=1``) reserving ``--resources`` (``cpu=1`` by default). The trainer runs inside
the worker, not as a subprocess: a Ray cancel (Ctrl-C on the sweep) then raises
``KeyboardInterrupt`` inside the trainer, which saves a checkpoint, and errors come back as
exceptions. Without ``--address`` an embedded local Ray instance is started; with it the sweep
joins an existing cluster (run directories must then be on a file system every node sees).

Restarting the same command completes a sweep: runs with ``final_eval.json`` are skipped,
the others resume from their checkpoints (``train(..., resume=True)``). A failed run is
reported with its error (full traceback in ``<run>/train.log``) and the others go on.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import re
import signal
import statistics
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from mtrl.errors import MtrlError
from mtrl.training.rundir import FINAL_EVAL_FILE, has_checkpoint

INSTALL_HINT = "mtrl sweep needs Ray: pip install 'mtrl[ray]' (or pip install ray)"
SWEEP_FILE = "sweep.json"
LOG_FILE = "train.log"
LOCK_FILE = ".sweep.lock"


# ------------------------------------------------------------------ the plan
@dataclass
class Run:
    """One training run of a sweep and, once known, its outcome."""

    method: str
    seed: int
    run_dir: Path
    overrides: tuple[str, ...]
    config: Any = None  # mtrl.config.Config; None when the config could not be built
    status: str = "pending"  # pending | queued | running | done | failed
    success_rate: float | None = None  # final evaluation: mean over tasks
    per_task: dict[str, float] | None = None  # final evaluation: per task
    error: str | None = None
    resumed: bool = False
    skipped: bool = False  # finished by an earlier invocation of the sweep

    @property
    def name(self) -> str:
        return f"{self.method}/seed{self.seed}"

    def finish(self, final_eval: dict[str, Any]) -> None:
        """Record the run's final evaluation (``final_eval.json`` contents)."""
        self.status = "done"
        self.success_rate = float(final_eval["success_rate"])
        self.per_task = {k: float(v) for k, v in final_eval["per_task"].items()}


@dataclass
class MethodSummary:
    """Final success rates of one method across its finished seeds.

    As in ``mtrl report`` (rliable): ``mean`` and ``iqm`` are over all seed x task scores.
    """

    method: str
    seeds: list[int]
    scores: list[list[float]]  # final per-task success of each finished seed, in seed order
    total: int  # runs of the method (finished or not)

    @property
    def success(self) -> list[float]:
        """Final success rate (mean over tasks) of each finished seed."""
        return [statistics.fmean(row) for row in self.scores]

    @property
    def mean(self) -> float:
        flat = [v for row in self.scores for v in row]
        return statistics.fmean(flat) if flat else math.nan

    @property
    def iqm(self) -> float:
        from mtrl.analysis.report import iqm

        return iqm(self.scores) if self.scores else math.nan


@dataclass
class SweepResult:
    """Every run of a sweep and the per-method summary."""

    out: Path
    runs: list[Run]
    methods: list[MethodSummary] = field(default_factory=list)

    @property
    def failed(self) -> list[Run]:
        return [r for r in self.runs if r.status == "failed"]


def split_values(text: str) -> list[str]:
    """Split ``v1,v2,...`` on commas outside brackets/quotes: ``[64,64],[256,256]`` -> 2."""
    values, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            values.append(text[start:i])
            start = i + 1
    values.append(text[start:])
    if depth != 0 or quote or any(not v.strip() for v in values):
        raise MtrlError(f"cannot split '{text}' into comma-separated values")
    return [v.strip() for v in values]


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """``["agent.actor_lr=1e-3,3e-4", ...]`` -> ``{"agent.actor_lr": ["1e-3", "3e-4"]}``."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise MtrlError(f"--grid '{item}' is not of the form key=v1,v2,...")
        if key in grid:
            raise MtrlError(f"--grid key '{key}' given twice")
        if key == "train.seed":
            raise MtrlError("seeds come from --seeds, not --grid train.seed=...")
        grid[key] = split_values(values)
    return grid


def parse_resources(text: str) -> dict[str, float]:
    """``"cpu=2,gpu=0.5,big_mem=1"`` -> per-run Ray resource requests (``cpu`` defaults to 1)."""
    resources: dict[str, float] = {"cpu": 1.0, "gpu": 0.0}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        try:
            amount = float(value)
        except ValueError:
            amount = -1.0
        if not sep or not key or amount < 0:
            raise MtrlError(f"--resources '{item}' is not of the form name=amount (amount >= 0)")
        resources[key.strip().lower() if key.strip().lower() in ("cpu", "gpu") else key] = amount
    if resources["cpu"] <= 0 and resources["gpu"] <= 0:
        raise MtrlError("--resources: a run needs some cpu or gpu")
    return resources


def _dir_value(value: str) -> str:
    return re.sub(r"[/\\\s]+", "_", value)


def plan(configs: Sequence[str], seeds: int | Sequence[int], grid: dict[str, list[str]],
         overrides: Sequence[str], out: str | Path, cpus_per_run: float = 1.0) -> list[Run]:
    """Expand configs x grid x seeds into runs under ``out`` (configs loaded and validated here;
    a run whose config is invalid gets status ``failed`` and its error)."""
    from mtrl.config import load_config

    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seed_list or min(seed_list) < 0:
        raise MtrlError("--seeds must be a positive number of seeds")
    if not configs:
        raise MtrlError("give at least one config")
    out = Path(out).absolute()
    varied = [k for k, v in grid.items() if len(v) > 1]
    runs: list[Run] = []
    for config_name in configs:
        base = load_config(config_name, list(overrides))  # a bad base config stops the sweep
        for combo in itertools.product(*grid.values()):
            point = dict(zip(grid, combo))
            method = ",".join([base.name] + [f"{k}={_dir_value(point[k])}" for k in varied])
            for seed in seed_list:
                run_overrides = (*overrides, *(f"{k}={v}" for k, v in point.items()),
                                 f"train.seed={seed}", "log.progress=false")
                run = Run(method, seed, out / method / f"seed{seed}", run_overrides)
                try:
                    run.config = load_config(config_name, list(run_overrides))
                    run.config.name = method  # `mtrl report` groups runs by config name
                    if run.config.env.num_workers is None:  # env workers = reserved CPUs
                        run.config.env.num_workers = max(1, int(cpus_per_run))
                except MtrlError as exc:
                    run.status, run.error = "failed", f"MtrlError: {exc}"
                runs.append(run)
    seen: set[Path] = set()
    for run in runs:
        if run.run_dir in seen:
            raise MtrlError(f"two runs of the sweep would share {run.run_dir} (same config name?)")
        seen.add(run.run_dir)
    return runs


# ----------------------------------------------------------- inside a worker
@contextlib.contextmanager
def _exclusive(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run dir (a leftover worker of a killed sweep finishes
    or dies before a restarted sweep touches the run)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout/stderr (file descriptors too: env workers, C code) to
    ``path``. Safe in a worker that runs only this task (``max_calls=1``)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def train_run(config: Any, run_dir: str | Path, overrides: Sequence[str],
              threads: int) -> Iterator[Any]:
    """The body of a run's Ray task (a generator): yields ``"started"``, then trains (or
    resumes) the run and yields its final evaluation as a dict. Output goes to ``train.log``."""
    yield "started"
    import torch

    from mtrl.training.evaluation import EvalResult
    from mtrl.training.loop import train

    run_dir = Path(run_dir)
    with _exclusive(run_dir), _output_to(run_dir / LOG_FILE):
        final = run_dir / FINAL_EVAL_FILE
        if final.exists():  # finished by a worker of an earlier sweep meanwhile
            yield json.loads(final.read_text())
            return
        torch.set_num_threads(max(1, threads))
        print(f"[mtrl sweep] {time.strftime('%Y-%m-%d %H:%M:%S')} "
              f"{'resuming' if has_checkpoint(run_dir) else 'starting'} "
              f"with overrides: {' '.join(overrides)}", flush=True)
        try:
            result: EvalResult = train(config, run_dir, resume=True, overrides=tuple(overrides))
        except BaseException:
            traceback.print_exc()
            raise
    yield result.to_json()


# -------------------------------------------------------------------- driver
def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MtrlError(INSTALL_HINT) from None
    return ray


def _error_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _latest(run_dir: Path) -> tuple[int | None, float | None]:
    """(latest step, latest eval success) from a run's ``metrics.jsonl`` (None if unknown)."""
    from mtrl.training.logging import read_metrics

    try:
        records = read_metrics(run_dir)
    except (OSError, ValueError):
        return None, None
    step = records[-1].get("step") if records else None
    evals = [r["eval/success_rate"] for r in records if "eval/success_rate" in r]
    return step, (evals[-1] if evals else None)


class _Console:
    """Live progress lines: events, counts, best final success so far."""

    def __init__(self, runs: list[Run], print_fn: Callable[[str], None]) -> None:
        self.runs = runs
        self.print = print_fn
        self.start = time.monotonic()

    def status(self) -> str:
        count = {s: sum(r.status == s for r in self.runs)
                 for s in ("done", "running", "failed", "queued")}
        line = (f"{count['done']}/{len(self.runs)} done, {count['running']} running, "
                f"{count['failed']} failed, {count['queued']} queued")
        done = [r for r in self.runs if r.success_rate is not None]
        if done:
            best = max(done, key=lambda r: r.success_rate)  # type: ignore[arg-type,return-value]
            line += f" | best {best.success_rate:.3f} ({best.name})"
        return line

    def event(self, text: str) -> None:
        self.print(f"[{time.monotonic() - self.start:7.1f}s] {text} | {self.status()}")

    def heartbeat(self) -> None:
        self.print(f"[{time.monotonic() - self.start:7.1f}s] {self.status()}")
        for run in self.runs:
            if run.status == "running":
                step, success = _latest(run.run_dir)
                total = run.config.train.steps_per_task
                where = f"step {step}/{total}" if step is not None else "starting"
                seen = f", last eval {success:.3f}" if success is not None else ""
                self.print(f"           running {run.name}: {where}{seen}")


def _init_ray(ray: Any, address: str | None, num_cpus: int | None) -> bool:
    """Start a new local Ray instance (``address=None``: even if ``ray start`` runs here) or
    join ``address``, unless already connected; True if this call did (and must shut down)."""
    if ray.is_initialized():
        return False
    if address is not None and num_cpus is not None:
        raise MtrlError("--num-cpus sizes the local Ray instance; it cannot be used with --address")
    try:
        ray.init(address=address or "local", num_cpus=num_cpus, include_dashboard=False,
                 log_to_driver=False, logging_level=logging.ERROR)
    except ConnectionError as exc:
        raise MtrlError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
    return True


def _check_feasible(ray: Any, resources: dict[str, float], local: bool,
                    print_fn: Callable[[str], None]) -> None:
    """A request no node can satisfy would wait forever: refuse it (local) or warn (cluster,
    which may autoscale)."""
    names = {"cpu": "CPU", "gpu": "GPU"}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for key, amount in resources.items():
        largest = max((n.get(names.get(key, key), 0.0) for n in nodes), default=0.0)
        if amount > largest:
            message = (f"--resources {key}={amount:g} per run, but the largest Ray node has "
                       f"{largest:g} {names.get(key, key)}")
            if local:
                raise MtrlError(message)
            print_fn(f"warning: {message} (runs wait until such a node joins)")


def summarize(runs: Sequence[Run]) -> list[MethodSummary]:
    """Per method (in plan order): the final success of every finished seed."""
    methods: dict[str, MethodSummary] = {}
    for run in runs:
        summary = methods.setdefault(run.method, MethodSummary(run.method, [], [], 0))
        summary.total += 1
        if run.per_task is not None:
            summary.seeds.append(run.seed)
            summary.scores.append(list(run.per_task.values()))
    return list(methods.values())


def format_summary(methods: Sequence[MethodSummary]) -> str:
    """The console table: per method, seeds finished, final success mean / IQM / min / max."""
    width = max([len("method")] + [len(m.method) for m in methods])
    lines = [f"{'method':<{width}}  seeds   mean    IQM    min    max",
             f"{'-' * width}  -----  -----  -----  -----  -----"]
    for m in methods:
        cells = [f"{v:5.3f}" if m.success else "    -" for v in
                 (m.mean, m.iqm, min(m.success, default=0), max(m.success, default=0))]
        lines.append(f"{m.method:<{width}}  {len(m.success):>2}/{m.total:<2}  {'  '.join(cells)}")
    lines.append("(final evaluation success rate, official protocol; mean and IQM "
                 "(interquartile mean) over all seed x task scores, min/max over seeds)")
    return "\n".join(lines)


def write_sweep_file(result: SweepResult) -> Path:
    """``<out>/sweep.json``: every run (status, success, error) and the per-method summary."""
    data = {
        "runs": [{"method": r.method, "seed": r.seed, "run_dir": str(r.run_dir),
                  "status": r.status, "success_rate": r.success_rate, "per_task": r.per_task,
                  "error": r.error}
                 for r in result.runs],
        "methods": [{"method": m.method, "seeds": m.seeds, "success": m.success,
                     "per_task": m.scores,
                     "mean": None if not m.success else m.mean,
                     "iqm": None if not m.success else m.iqm, "runs": m.total}
                    for m in result.methods],
    }
    path = result.out / SWEEP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (schedulers, ``kill``) stops the sweep like Ctrl-C: runs checkpoint first."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def sweep(configs: Sequence[str], seeds: int | Sequence[int] = 5,
          grid: dict[str, list[str]] | None = None, overrides: Sequence[str] = (),
          out: str | Path | None = None, address: str | None = None,
          resources: dict[str, float] | None = None, num_cpus: int | None = None,
          max_retries: int = 2, progress_every: float = 60.0,
          print_fn: Callable[[str], None] = print) -> SweepResult:
    """Run (or complete) a sweep on Ray and return every run's outcome and the summary.

    Args:
        configs: preset names or YAML paths; each (x grid point) is a method.
        seeds: number of seeds (0..N-1) or the seeds themselves.
        grid: ``{key: [values]}``; every combination is a method.
        overrides: ``key=value`` overrides for every run.
        out: sweep directory (default ``sweeps/<first config name>``).
        address: Ray cluster to join (``"auto"``, ``"host:6379"``); None starts a local one,
            unless Ray is already initialized in this process (then that instance is used).
        resources: per-run requests, e.g. ``{"cpu": 2, "gpu": 0.5}``.
        num_cpus: CPUs of the local instance (default: all cores).
        max_retries: Ray retries of a run whose worker or node died (it resumes).
        progress_every: seconds between progress reports while nothing finishes.
    """
    ray = _import_ray()
    resources = dict(resources or {"cpu": 1.0, "gpu": 0.0})
    resources.setdefault("cpu", 1.0)
    resources.setdefault("gpu", 0.0)
    grid = dict(grid or {})
    if out is None:
        from mtrl.config import load_config

        out = Path("sweeps") / load_config(configs[0]).name if configs else Path("sweeps")
    runs = plan(configs, seeds, grid, overrides, out, resources["cpu"])
    result = SweepResult(Path(out).absolute(), runs)
    console = _Console(runs, print_fn)
    for run in runs:
        if run.status == "failed":
            continue
        final = run.run_dir / FINAL_EVAL_FILE
        if final.exists():
            run.finish(json.loads(final.read_text()))
            run.skipped = True
        else:
            run.resumed = has_checkpoint(run.run_dir)
    todo = [r for r in runs if r.status == "pending"]
    print_fn(f"sweep: {len(runs)} runs ({sum(r.skipped for r in runs)} finished earlier, "
             f"{sum(r.resumed for r in todo)} to resume, "
             f"{sum(r.status == 'failed' for r in runs)} invalid) in {result.out}")
    for run in runs:
        if run.status == "failed":
            console.event(f"FAILED  {run.name}: {run.error}")

    owns_ray = _init_ray(ray, address, num_cpus) if todo else False
    try:
        if todo:
            cluster = ray.cluster_resources()
            print_fn(f"ray: {cluster.get('CPU', 0):g} CPUs, {cluster.get('GPU', 0):g} GPUs on "
                     f"{len([n for n in ray.nodes() if n.get('Alive')])} node(s); per run "
                     + ", ".join(f"{k}={v:g}" for k, v in resources.items()))
            _check_feasible(ray, {k: v for k, v in resources.items() if v > 0},
                            address is None and owns_ray, print_fn)
            with _sigterm_as_interrupt():
                _schedule(ray, todo, resources, max_retries, progress_every, console)
    finally:
        if owns_ray:
            ray.shutdown()
    result.methods = summarize(runs)
    write_sweep_file(result)
    return result


def _schedule(ray: Any, todo: list[Run], resources: dict[str, float], max_retries: int,
              progress_every: float, console: _Console) -> None:
    """Submit every run, then follow them until all finished or failed."""
    custom = {k: v for k, v in resources.items() if k not in ("cpu", "gpu")}
    task = ray.remote(max_calls=1)(train_run).options(
        num_cpus=resources["cpu"], num_gpus=resources["gpu"], resources=custom or None,
        max_retries=max_retries)
    threads = max(1, int(resources["cpu"]))
    pending: dict[Any, Run] = {}
    for run in todo:
        run.status = "queued"
        pending[task.remote(run.config, str(run.run_dir), run.overrides, threads)] = run
    last = time.monotonic()
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=5.0)
            for gen in ready:
                run = pending[gen]
                try:
                    value = ray.get(next(gen))
                except StopIteration:
                    del pending[gen]
                    continue
                except Exception as exc:  # the run failed: report it, go on with the others
                    del pending[gen]
                    run.status, run.error = "failed", _error_line(exc)
                    log = run.run_dir / LOG_FILE
                    where = f" (log: {log})" if log.exists() else ""
                    console.event(f"FAILED  {run.name}: {run.error}{where}")
                    continue
                if value == "started":
                    run.status = "running"
                    console.event(f"{'resumed' if run.resumed else 'started'} {run.name}")
                else:
                    run.finish(value)
                    console.event(f"done    {run.name}: success {run.success_rate:.3f}")
                last = time.monotonic()
            if time.monotonic() - last >= progress_every:
                console.heartbeat()
                last = time.monotonic()
    except KeyboardInterrupt:
        console.print(f"interrupted: stopping {len(pending)} run(s) (they save a checkpoint); "
                      "run the same command again to resume the sweep")
        for gen in pending:
            ray.cancel(gen)  # raises KeyboardInterrupt in the trainer: it saves a checkpoint
        _wait_stopped(ray, list(pending), timeout=120.0)
        raise


def _wait_stopped(ray: Any, gens: list[Any], timeout: float) -> None:
    """Wait (at most ``timeout`` s; Ctrl-C again to stop waiting) until cancelled run tasks
    have ended: a cancelled generator only ends once its task has."""
    def drain(gen: Any) -> None:
        try:
            for ref in gen:
                ray.get(ref)
        except Exception:  # TaskCancelledError, the run's own error
            pass

    threads = [threading.Thread(target=drain, args=(gen,), daemon=True) for gen in gens]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def write_sweep_report(result: SweepResult, print_fn: Callable[[str], None] = print) -> None:
    """Write the ``mtrl report`` of the sweep's finished runs to ``<out>/report``."""
    from mtrl.analysis.report import write_report

    done = [r.run_dir for r in result.runs if r.status == "done"]
    if not done:
        return
    try:
        write_report(done, result.out / "report")
    except MtrlError as exc:
        print_fn(f"report: not written ({exc})")
        return
    print_fn(f"report (as `mtrl report`) written to {result.out / 'report' / 'index.html'}")
