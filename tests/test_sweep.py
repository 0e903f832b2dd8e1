"""``mtrl sweep``: grid/seed expansion, summary statistics, and end-to-end sweeps of tiny fake-env
runs on a local 2-CPU Ray instance (skipped when Ray is not installed)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtrl.cli import main
from mtrl.errors import MtrlError
from mtrl.analysis.sweep import (INSTALL_HINT, MethodSummary, format_summary, parse_grid,
                        parse_resources, plan, split_values, sweep)

TINY = [
    "env.tasks=fake:2",
    "env.envs_per_task=2",
    "env.eval_envs_per_task=5",
    "agent.network.hidden_sizes=[16,16]",
    "replay.batch_per_task=16",
    "replay.capacity_per_task=1000",
    "train.steps_per_task=60",
    "train.warmup_steps_per_task=40",
    "train.eval_every=100000",
    "train.eval_episodes=5",
    "train.checkpoint_every=20",
    "log.every=20",
    "log.tensorboard=false",
]
PRESET = "mt10_mtmhsac"


def final_success(run_dir: Path) -> float:
    return json.loads((run_dir / "final_eval.json").read_text())["success_rate"]


# ------------------------------------------------------------- no Ray needed
def test_split_values_keeps_lists_together() -> None:
    assert split_values("1e-3,3e-4") == ["1e-3", "3e-4"]
    assert split_values("[64,64],[400,400,400]") == ["[64,64]", "[400,400,400]"]
    assert split_values("'a,b',c") == ["'a,b'", "c"]
    with pytest.raises(MtrlError):
        split_values("[64,64")
    with pytest.raises(MtrlError):
        split_values("1,,2")


def test_parse_grid_and_resources() -> None:
    grid = parse_grid(["agent.actor_lr=1e-3,3e-4", "agent.network.hidden_sizes=[8,8],[16]"])
    assert grid == {"agent.actor_lr": ["1e-3", "3e-4"],
                    "agent.network.hidden_sizes": ["[8,8]", "[16]"]}
    for bad in (["novalue"], ["a=1", "a=2"], ["train.seed=1,2"]):
        with pytest.raises(MtrlError):
            parse_grid(bad)
    assert parse_resources("cpu=2,gpu=0.5,big_mem=1") == {"cpu": 2.0, "gpu": 0.5, "big_mem": 1.0}
    assert parse_resources("") == {"cpu": 1.0, "gpu": 0.0}
    for bad in ("cpu=-1", "gpu", "cpu=x", "cpu=0"):
        with pytest.raises(MtrlError):
            parse_resources(bad)


def test_summary_by_hand() -> None:
    # 2 seeds x 2 tasks; mean and IQM over the 4 scores as rliable / mtrl report do
    summary = MethodSummary("m", [0, 3], [[1.0, 0.2], [0.6, 0.4]], 5)
    assert summary.success == pytest.approx([0.6, 0.5])
    assert summary.mean == pytest.approx(0.55)
    assert summary.iqm == pytest.approx(0.5)  # sorted 0.2 0.4 0.6 1.0, one cut each side
    assert MethodSummary("m", [0], [[0.0, 0.1, 0.5, 0.6, 0.9]], 1).iqm == pytest.approx(0.4)
    assert math.isnan(MethodSummary("m", [], [], 2).iqm)
    table = format_summary([summary, MethodSummary("unfinished", [], [], 2)])
    row = next(line for line in table.splitlines() if line.startswith("m "))
    assert row.split() == ["m", "2/5", "0.550", "0.500", "0.500", "0.600"]
    assert "unfinished   0/2" in table


def test_plan_names_runs_and_flags_bad_overrides(tmp_path: Path) -> None:
    runs = plan([PRESET], 2, {"agent.network.type": ["mlp", "multihead"],
                              "agent.actor_lr": ["1e-3", "abc"], "train.eval_episodes": ["3"]},
                TINY, tmp_path)
    assert len(runs) == 8
    names = {r.name for r in runs}
    # keys with one value are overrides, not part of the method name
    assert f"{PRESET},agent.network.type=mlp,agent.actor_lr=1e-3/seed1" in names
    ok = [r for r in runs if r.config is not None]
    assert len(ok) == 4 and all(r.status == "pending" for r in ok)
    assert {r.config.train.seed for r in ok} == {0, 1}
    assert all(r.config.train.eval_episodes == 3 and r.config.env.tasks == "fake:2" for r in ok)
    assert all(r.run_dir == tmp_path / r.method / f"seed{r.seed}" for r in runs)
    bad = [r for r in runs if r.config is None]
    assert len(bad) == 4 and all(r.status == "failed" and "agent.actor_lr" in r.error for r in bad)


def test_without_ray_prints_one_install_line(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["sweep", PRESET, "--seeds", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mtrl: error: {INSTALL_HINT}"]
    assert "pip install 'mtrl[ray]'" in err[0]


# ------------------------------------------------------ end to end, on Ray
# About 80 s for the three tests on 2 busy cores; skipped without Ray (`pip install mtrl[ray]`).
@pytest.fixture(scope="module")
def ray_address() -> str:
    """A local Ray instance with 2 CPUs and one custom ``slot`` resource, shared by the tests
    of this module (its address lets a sweep in a subprocess join it with --address)."""
    ray = pytest.importorskip("ray")
    context = ray.init(address="local", num_cpus=2, resources={"slot": 1},
                       include_dashboard=False, log_to_driver=False, logging_level="error")
    yield context.address_info["gcs_address"]
    ray.shutdown()


def test_sweep_two_methods_two_seeds(ray_address: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    """2 methods x 2 seeds on the fake env, through the CLI, on the 2-CPU instance."""
    assert main(["sweep", PRESET, "--seeds", "2", "--grid", "agent.network.type=mlp,multihead",
                 "--out", str(tmp_path), *TINY]) == 0
    out = capsys.readouterr().out.splitlines()
    methods = [f"{PRESET},agent.network.type={net}" for net in ("mlp", "multihead")]
    run_dirs = sorted(p.parent for p in tmp_path.glob("*/seed*/final_eval.json"))
    assert [str(p.relative_to(tmp_path)) for p in run_dirs] == [
        f"{m}/seed{k}" for m in methods for k in (0, 1)]
    for run_dir in run_dirs:  # normal run dirs: config + the run's overrides, checkpoint
        config = (run_dir / "config.yaml").read_text()
        assert f"seed: {run_dir.name[-1]}" in config and "tasks: fake:2" in config
        assert f"type: {run_dir.parent.name.split('=')[-1]}" in config
        assert (run_dir / "checkpoint.pt").exists()
    saved = json.loads((tmp_path / "sweep.json").read_text())
    for run in saved["runs"]:
        final = json.loads((Path(run["run_dir"]) / "final_eval.json").read_text())
        assert run["status"] == "done"
        assert (run["success_rate"], run["per_task"]) == (final["success_rate"],
                                                          final["per_task"])
    for method, summary in zip(methods, saved["methods"]):
        finals = [json.loads((tmp_path / method / f"seed{k}" / "final_eval.json").read_text())
                  for k in (0, 1)]
        scores = sorted(v for f in finals for v in f["per_task"].values())  # 2 seeds x 2 tasks
        assert summary["method"] == method and summary["seeds"] == [0, 1]
        assert summary["success"] == [f["success_rate"] for f in finals]
        assert summary["mean"] == pytest.approx(sum(scores) / 4)
        assert summary["iqm"] == pytest.approx((scores[1] + scores[2]) / 2)
        row = next(line for line in out if line.startswith(method + " "))
        assert row.split()[1:4] == ["2/2", f"{summary['mean']:.3f}", f"{summary['iqm']:.3f}"]
    # the same report as `mtrl report` over the sweep's runs, one method per grid point
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [m["name"] for m in report["methods"]] == methods
    for summary, method in zip(saved["methods"], report["methods"]):
        assert method["seeds"] == 2
        assert method["final_success"]["mean"]["value"] == pytest.approx(summary["mean"])
        assert method["final_success"]["iqm"]["value"] == pytest.approx(summary["iqm"])
    # live progress: every run started and finished, counts and the best so far
    assert sum(" started " in line for line in out) == 4
    assert sum(" done    " in line for line in out) == 4
    assert any("4/4 done, 0 running, 0 failed, 0 queued | best" in line for line in out)


def test_failed_runs_are_reported_and_others_finish(ray_address: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    code = main(["sweep", PRESET, "--seeds", "1", "--out", str(tmp_path),
                 "--grid", "agent.network.type=mlp,nonexistent",
                 "--grid", "agent.actor_lr=1e-3,abc", *TINY])
    out = capsys.readouterr().out
    assert code == 1
    good = tmp_path / f"{PRESET},agent.network.type=mlp,agent.actor_lr=1e-3" / "seed0"
    assert (good / "final_eval.json").exists()
    failed = dict(line.removeprefix("failed: ").split(": ", 1)
                  for line in out.splitlines() if line.startswith("failed: "))
    method = f"{PRESET},agent.network.type={{}},agent.actor_lr={{}}/seed0"
    assert sorted(failed) == sorted(method.format(*p) for p in
                                    [("mlp", "abc"), ("nonexistent", "abc"),
                                     ("nonexistent", "1e-3")])
    # bad configs fail before Ray; the unknown network fails inside its worker
    assert "agent.actor_lr" in failed[method.format("mlp", "abc")]
    assert "nonexistent" in failed[method.format("nonexistent", "1e-3")]
    assert f"FAILED  {method.format('nonexistent', '1e-3')}" in out  # live report
    runtime_log = tmp_path / f"{PRESET},agent.network.type=nonexistent,agent.actor_lr=1e-3" \
        / "seed0" / "train.log"
    assert "Traceback" in runtime_log.read_text()
    status = {r["method"]: r["status"]
              for r in json.loads((tmp_path / "sweep.json").read_text())["runs"]}
    assert sorted(status.values()) == ["done", "failed", "failed", "failed"]


def test_killed_sweep_restarts_without_rerunning_finished(ray_address: str,
                                                          tmp_path: Path) -> None:
    """One run at a time (each needs the single ``slot``): kill the sweep once the short run
    has finished and the long one has a checkpoint; the same sweep again skips the first and
    resumes the second."""
    grid = ["--grid", "train.steps_per_task=60,200", "--resources", "cpu=1,slot=1"]
    cmd = [sys.executable, "-m", "mtrl", "sweep", PRESET, "--seeds", "1", "--out",
           str(tmp_path), "--address", ray_address, *grid, *TINY]
    short = tmp_path / f"{PRESET},train.steps_per_task=60" / "seed0"
    long = tmp_path / f"{PRESET},train.steps_per_task=200" / "seed0"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 480  # generous: CI machines may be busy
        while not ((short / "final_eval.json").exists() and (long / "checkpoint.pt").exists()):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "sweep did not get going"
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    assert not (long / "final_eval.json").exists()
    finished = (short / "final_eval.json").stat().st_mtime_ns, final_success(short)

    lines: list[str] = []
    result = sweep([PRESET], 1, parse_grid(["train.steps_per_task=60,200"]), TINY, tmp_path,
                   resources={"cpu": 1, "slot": 1}, print_fn=lines.append)
    assert [r.status for r in result.runs] == ["done", "done"]
    assert result.runs[0].skipped and not result.runs[1].skipped and result.runs[1].resumed
    assert ((short / "final_eval.json").stat().st_mtime_ns, final_success(short)) == finished
    assert (short / "train.log").read_text().count("starting with overrides") == 1
    log = (long / "train.log").read_text()
    assert log.count("starting with overrides") == 1 and log.count("resuming with") == 1
    assert json.loads((long / "final_eval.json").read_text())["step"] == 200
    assert sum(f"started {result.runs[0].name}" in line for line in lines) == 0
    assert sum(f"resumed {result.runs[1].name}" in line for line in lines) == 1
    assert [m.success for m in result.methods] == [[finished[1]], [final_success(long)]]
    assert (tmp_path / "sweep.json").exists()
