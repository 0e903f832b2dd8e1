"""Command line: help, and one-line errors with exit code 2 for every kind of bad input."""

import subprocess
import sys

import pytest

from mtrl.cli import main

from conftest import FAKE_OVERRIDES


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_commands_and_options():
    out = subprocess.run([sys.executable, "-m", "mtrl", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "train" in out and "eval" in out
    out = subprocess.run([sys.executable, "-m", "mtrl", "train", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for option in ("--run-dir", "--resume", "--device", "key=value"):
        assert option in out


@pytest.mark.parametrize("argv, message", [
    (["train", "no_such_preset"], "unknown preset 'no_such_preset'"),
    (["train", "quick", "env.tasks=reach-v9"], "reach-v9"),
    (["train", "quick", "agent.nope=1"], "agent.nope"),
    (["train", "quick", "train.steps_per_task=lots"], "train.steps_per_task"),
    (["train", "quick", "train.steps_per_task=0"], "must be positive"),
    (["train", "quick", "agent.network.type=transformer"], "unknown network type"),
    (["train", "quick", "agent.critic_combiner=magic"], "combiner"),
    (["train", "quick", "notakeyvalue"], "key=value"),
    (["train", "quick", "train.overlap=sometimes"], "train.overlap must be true, false or auto"),
    (["eval", "/nonexistent/run"], "no checkpoint"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, message):
    if argv[0] == "train":
        argv = [*argv, "--run-dir", str(tmp_path / "r")]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("mtrl: error: ")
    assert message in err
    assert not (tmp_path / "r").exists()  # a bad config leaves nothing behind


def test_existing_run_dir_is_refused_and_corrupt_checkpoint_reported(capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: old\n")
    code, _, err = run_cli(capsys, "train", "quick", "--run-dir", str(run))
    assert code == 2 and "already holds a run" in err
    assert (run / "config.yaml").read_text() == "name: old\n"  # nothing overwritten
    (run / "checkpoint.pt").write_bytes(b"\x00not a checkpoint")
    code, _, err = run_cli(capsys, "eval", str(run))
    assert code == 2 and "corrupt checkpoint" in err


def test_train_then_eval_writes_the_json_contract(capsys, tmp_path):
    import json

    run = tmp_path / "run"
    code, out, _ = run_cli(capsys, "train", "mt10_mtmhsac", "--run-dir", str(run),
                           *FAKE_OVERRIDES, "train.steps_per_task=200")
    assert code == 0 and "mean" in out
    code, out, _ = run_cli(capsys, "eval", str(run), "--episodes", "4",
                           "--json", str(tmp_path / "eval.json"))
    assert code == 0 and "fake-task-2" in out
    data = json.loads((tmp_path / "eval.json").read_text())
    assert set(data) >= {"success_rate", "per_task", "episodes_per_task", "step"}
    assert data["episodes_per_task"] == 4 and data["step"] == 200
    assert len(data["per_task"]) == 3
    assert abs(data["success_rate"] - sum(data["per_task"].values()) / 3) < 1e-9


@pytest.mark.parametrize("argv", [
    ["train", "quick", "--steps-per-task", "1200"],
    ["distill", "mt10_distill", "--steps-per-task", "1200"],
    ["sweep", "quick", "--steps-per-task", "1200"],
    ["expert", "reach-v3", "--steps-per-task", "1200"],
    ["expert", "reach-v3", "--steps", "1200"],  # the older spelling of mtrl expert
])
def test_the_step_budget_is_spelled_the_same_in_every_command(argv):
    from mtrl.cli import build_parser
    from mtrl.cli.common import steps_override

    args = build_parser().parse_args(argv)
    assert steps_override(args) == ["train.steps_per_task=1200"]
