"""``mtrl report``: robust aggregates checked by hand, figures, tables, HTML, errors; and the
live view's TensorBoard layout (per-task success as one multi-line chart)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import fake_config
from PIL import Image

from mtrl.analysis.plots import curves_size, grid_size, heatmap_size
from mtrl.analysis.report import MAX_OVER_TIME_LABEL, load_run, write_report
from mtrl.analysis.statistics import batch_iqm, batch_mean, iqm, stratified_bootstrap_ci
from mtrl.cli import main
from mtrl.errors import MtrlError

TASKS = ["reach-v3", "push-v3"]


def write_run(path: Path, name: str, seed: int, evals: list[tuple[int, list[float]]],
              final: list[float] | None = None, tasks: list[str] = TASKS,
              network: str = "multihead") -> Path:
    """A run directory as the trainer writes it: config.yaml, metrics.jsonl (train and eval
    records interleaved), final_eval.json unless ``final`` is None."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(
        f"name: {name}\nagent:\n  network:\n    type: {network}\ntrain:\n  seed: {seed}\n")
    lines = []
    for step, rates in evals:
        lines.append({"step": step, "total_env_steps": step * len(tasks), "time": 1.0,
                      "train/critic_loss": 0.5})
        record = {"step": step, "total_env_steps": step * len(tasks), "time": 2.0,
                  "eval/success_rate": float(np.mean(rates)), "eval/mean_return": -1.0}
        record.update({f"eval/success/{t}": r for t, r in zip(tasks, rates)})
        lines.append(record)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if final is not None:
        (path / "final_eval.json").write_text(json.dumps(
            {"success_rate": float(np.mean(final)), "per_task": dict(zip(tasks, final)),
             "episodes_per_task": 50, "step": evals[-1][0]}))
    return path


# ------------------------------------------------------------------ statistics
def test_iqm_by_hand() -> None:
    scores = np.array([[0.0, 0.2], [0.4, 0.6], [0.8, 1.0], [1.0, 1.0]])
    # 8 values, 2 cut at each end: mean of 0.4, 0.6, 0.8, 1.0
    assert iqm(scores) == pytest.approx(0.7)
    assert iqm(np.array([[0.3, 0.9, 0.5]])) == pytest.approx((0.3 + 0.9 + 0.5) / 3)  # cuts none
    stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(0).random((7, 5))
    assert iqm(x) == pytest.approx(stats.trim_mean(x, 0.25, axis=None))  # rliable's definition


def test_bootstrap_ci_by_hand() -> None:
    # One task, 5 seeds at 0 and 5 at 1: the resampled mean is Binomial(10, 1/2) / 10, whose
    # 2.5 % and 97.5 % quantiles are 0.2 and 0.8 (P(<=0.1) = 1.1 %, P(<=0.2) = 5.5 %).
    one_task = np.array([[0.0]] * 5 + [[1.0]] * 5)
    lo, hi = stratified_bootstrap_ci(one_task, batch_mean, reps=20_000)
    assert (lo, hi) == (0.2, 0.8)
    # Two tasks with that column each: seeds are redrawn independently per task (stratified),
    # so the mean is Binomial(20, 1/2) / 20 -> [0.3, 0.7]. Resampling whole seeds (rows) would
    # give [0.2, 0.8] again.
    two_tasks = np.repeat(one_task, 2, axis=1)
    assert stratified_bootstrap_ci(two_tasks, batch_mean, reps=20_000) == (0.3, 0.7)
    # Every task constant across seeds: nothing varies under the stratified bootstrap.
    constant = np.array([[0.0, 1.0]] * 3)
    assert stratified_bootstrap_ci(constant, batch_mean, reps=2000) == (0.5, 0.5)
    # One seed: a zero-width interval.
    lo, hi = stratified_bootstrap_ci(np.array([[0.2, 0.6]]), batch_iqm, reps=100)
    assert lo == hi == pytest.approx(0.4)


def test_bootstrap_ci_brackets_point_estimates() -> None:
    x = np.random.default_rng(3).beta(2, 2, size=(5, 10))
    for point, stat in ((x.mean(), batch_mean), (iqm(x), batch_iqm)):
        lo, hi = stratified_bootstrap_ci(x, stat, reps=5000)
        assert x.min() <= lo < point < hi <= x.max()


# ----------------------------------------------------------------------- report
class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attrs_ = dict(attrs)
        if tag == "img":
            self.images.append(attrs_["src"] or "")
        if tag == "a":
            self.links.append(attrs_["href"] or "")


@pytest.fixture
def synthetic_runs(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    curves = {"a": [0.0, 0.5], "b": [0.5, 1.0]}
    finals = {"a": [[0.2, 0.4], [0.6, 0.8], [1.0, 1.0]],
              "b": [[0.0, 0.0], [0.5, 1.0]]}
    for method, per_seed in finals.items():
        for seed, final in enumerate(per_seed):
            evals = [(100, [curves[method][0]] * 2), (200, [curves[method][1], 0.9]),
                     (300, final)]
            write_run(runs / f"{method}_{seed}", method, seed, evals, final)
    return runs


def test_report_on_synthetic_runs(synthetic_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["report", str(synthetic_runs), "--out", str(out), "--reps", "4000"]) == 0
    data = json.loads((out / "report.json").read_text())
    methods = {m["name"]: m for m in data["methods"]}
    assert list(methods) == ["a", "b"]
    a, b = methods["a"], methods["b"]
    assert a["seeds"] == 3 and b["seeds"] == 2
    # Final scores of a: [[.2, .4], [.6, .8], [1, 1]] -> mean 0.6667; IQM cuts 1 of 6 at each
    # end: mean(.4, .6, .8, 1) = 0.7.
    assert a["final_success"]["mean"]["value"] == pytest.approx(4.0 / 6)
    assert a["final_success"]["iqm"]["value"] == pytest.approx(0.7)
    for m in (a, b):
        for key in ("mean", "iqm"):
            est = m["final_success"][key]
            assert est["ci95"][0] <= est["value"] <= est["ci95"][1]
        assert m["max_over_time"]["label"] == MAX_OVER_TIME_LABEL
    assert a["final_success"]["mean"]["ci95"][0] < a["final_success"]["mean"]["ci95"][1]
    # b: finals [0, 0] and [.5, 1] -> mean .375, IQM of 4 values cuts 1 each end: (0 + .5) / 2
    assert b["final_success"]["mean"]["value"] == pytest.approx(0.375)
    assert b["final_success"]["iqm"]["value"] == pytest.approx(0.25)
    # Max over time of b: seed 0 peaks at step 200 (mean(1.0, 0.9) = .95), seed 1 too (.95 vs
    # final .75) -> .95; of a: seed 0 .7 (step 200) / seed 1 .7 / seed 2 1.0 -> mean .8.
    assert b["max_over_time"]["mean"]["value"] == pytest.approx(0.95)
    assert a["max_over_time"]["mean"]["value"] == pytest.approx(0.8)
    assert a["per_task_final"]["reach-v3"]["value"] == pytest.approx(0.6)
    assert a["per_task_final"]["push-v3"]["value"] == pytest.approx(2.2 / 3)

    # Figures: non-empty PNGs of the announced sizes (2 tasks in one row, 2 methods).
    expected = {"curves": (800, 500), "tasks": (600, 340), "heatmap": (600, 260)}
    assert expected == {"curves": curves_size(), "tasks": grid_size(2),
                        "heatmap": heatmap_size(2, 2)}
    for name, size in expected.items():
        image = Image.open(out / f"{name}.png")
        assert image.size == size
        pixels = np.asarray(image.convert("L"))
        assert pixels.std() > 5  # something is drawn
        assert data["image_sizes"][name] == list(size)

    # Tables: markdown has a row per method with the numbers of the JSON.
    table = (out / "report.md").read_text()
    assert "| a | 3 | 300 | 0.667 [" in table and "| b | 2 | 300 | 0.375 [" in table
    assert "IQM" in table and "max over time" in table

    # HTML: shows every image and links the tables; all targets exist.
    parser = _Links()
    parser.feed((out / "index.html").read_text())
    assert sorted(parser.images) == ["curves.png", "heatmap.png", "tasks.png"]
    assert {"report.md", "report.json"} <= set(parser.links)
    assert all((out / target).exists() for target in parser.images + parser.links)


def test_group_by_config_key_and_unfinished_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_run(runs / "x", "same", 0, [(100, [0.0, 1.0])], [0.0, 1.0], network="mlp")
    write_run(runs / "y", "same", 1, [(100, [1.0, 1.0])], [1.0, 1.0], network="multihead")
    write_run(runs / "z", "same", 2, [(100, [0.2, 0.4]), (200, [0.6, 0.8])], None,
              network="multihead")
    data = write_report([runs], tmp_path / "out", group_by="agent.network.type", reps=200)
    methods = {m["name"]: m for m in data["methods"]}
    assert set(methods) == {"agent.network.type=mlp", "agent.network.type=multihead"}
    multihead = methods["agent.network.type=multihead"]
    unfinished = [r for r in multihead["runs"] if r["seed"] == 2][0]
    assert unfinished["final_source"].startswith("last evaluation")
    assert unfinished["final_step"] == 200
    assert multihead["final_success"]["mean"]["value"] == pytest.approx((1 + 1 + 0.6 + 0.8) / 4)


def _write_bad(kind: str, path: Path) -> Path:
    if kind == "missing":
        return path / "nope"
    if kind == "empty dir":
        path.mkdir()
        return path
    if kind == "no config":
        write_run(path, "m", 0, [(100, [1.0, 1.0])], [1.0, 1.0])
        (path / "config.yaml").unlink()
        return path
    if kind == "malformed metrics":
        write_run(path, "m", 0, [(100, [1.0, 1.0])], [1.0, 1.0])
        with open(path / "metrics.jsonl", "a") as f:
            f.write('{"step": 200, "eval/succ\n')
        return path
    if kind == "no evaluation":
        write_run(path, "m", 0, [], None)
        (path / "metrics.jsonl").write_text(json.dumps({"step": 1, "train/x": 1.0}) + "\n")
        return path
    if kind == "malformed final":
        write_run(path, "m", 0, [(100, [1.0, 1.0])], [1.0, 1.0])
        (path / "final_eval.json").write_text('{"per_task": {}}')
        return path
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "empty dir", "no config", "malformed metrics",
                                  "no evaluation", "malformed final"])
def test_bad_run_dir_is_a_one_line_error(kind: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    target = _write_bad(kind, tmp_path / "run")
    assert main(["report", str(target), "--out", str(tmp_path / "out"), "--reps", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtrl: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_mixed_tasks_in_one_method_and_bad_group_key(tmp_path: Path) -> None:
    write_run(tmp_path / "r1", "m", 0, [(100, [1.0, 1.0])], [1.0, 1.0])
    write_run(tmp_path / "r2", "m", 1, [(100, [1.0])], [1.0], tasks=["reach-v3"])
    with pytest.raises(MtrlError, match="different tasks"):
        write_report([tmp_path / "r1", tmp_path / "r2"], tmp_path / "out", reps=10)
    with pytest.raises(MtrlError, match="no key 'agent.nope'"):
        load_run(tmp_path / "r1", group_by="agent.nope")


# ---------------------------------------------------------- a real (tiny) run
TINY = ["env.tasks=fake:2", "env.envs_per_task=1", "env.eval_envs_per_task=2",
        "agent.network.hidden_sizes=[16]", "replay.batch_per_task=16",
        "train.steps_per_task=60", "train.warmup_steps_per_task=40", "train.eval_every=20",
        "train.eval_episodes=2", "train.checkpoint_every=1000", "log.every=20",
        "log.tensorboard=true"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mtrl.training.loop import train

    run = tmp_path_factory.mktemp("trained") / "run"
    train(fake_config(*TINY), run)
    return run


def test_report_on_a_trained_run(trained_run: Path, tmp_path: Path) -> None:
    data = write_report([trained_run], tmp_path / "out", reps=500)
    (method,) = data["methods"]
    final = json.loads((trained_run / "final_eval.json").read_text())
    assert method["name"] == "mt10_mtmhsac" and method["seeds"] == 1
    assert method["final_success"]["mean"]["value"] == pytest.approx(final["success_rate"])
    assert method["runs"][0]["final_source"] == "final_eval.json"
    assert set(method["per_task_final"]) == {"fake-task-0", "fake-task-1"}
    assert Image.open(tmp_path / "out" / "tasks.png").size == grid_size(2)


def test_tensorboard_shows_per_task_success_as_one_chart(trained_run: Path) -> None:
    """Read the trainer's events back through TensorBoard's own custom-scalars plugin."""
    from tensorboard import context
    from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.custom_scalar.custom_scalars_plugin import CustomScalarsPlugin
    from tensorboard.plugins.scalar.scalars_plugin import ScalarsPlugin

    logdir = str(trained_run)
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    plugins: dict = {}
    tb = base_plugin.TBContext(logdir=logdir, multiplexer=multiplexer,
                               data_provider=MultiplexerDataProvider(multiplexer, logdir),
                               plugin_name_to_instance=plugins)
    plugins["scalars"] = ScalarsPlugin(tb)
    custom = CustomScalarsPlugin(tb)
    ctx = context.RequestContext()
    layout = json.loads(custom.layout_impl(ctx, ""))
    charts = {c["title"]: c for cat in layout["category"] for c in cat["chart"]}
    (regex,) = charts["success per task"]["multiline"]["tag"]
    lines = custom.scalars_impl(ctx, ".", regex, "")["tag_to_events"]
    assert sorted(lines) == ["eval/success/fake-task-0", "eval/success/fake-task-1"]
    final = json.loads((trained_run / "final_eval.json").read_text())
    for task, events in ((t, lines[f"eval/success/{t}"]) for t in final["per_task"]):
        assert [e[1] for e in events] == [20, 40, 60]  # every evaluation, final included
        assert events[-1][2] == pytest.approx(final["per_task"][task])
