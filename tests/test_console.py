"""Console output: one line per log interval; no carriage-return bar when not a terminal."""

import io

from mtrl.training.logging import Progress, interval_line
from mtrl.training.loop import train

from conftest import fake_config


def test_interval_line_shows_steps_rate_and_per_task_return_and_success():
    scalars = {"time/env_steps_per_s": 412.4, "train/episode_return/reach-v3": 1520.3,
               "train/success/reach-v3": 0.6, "train/episode_return/push-v3": 12.0,
               "train/success/push-v3": 0.0, "train/critic_loss": 1.0}
    line = interval_line(3000, 15000, scalars, ["reach-v3", "push-v3"])
    assert line == "step 3000/15000 | 412 env steps/s | reach R 1520 S 0.60 | push R 12 S 0.00"
    # before any episode has finished: no per-task part
    assert interval_line(10, 20, {"time/env_steps_per_s": 5.0}, ["a"]) == \
        "step 10/20 | 5 env steps/s"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_a_bar_only_on_a_terminal():
    plain = io.StringIO()
    progress = Progress(100, 0, True, plain)
    for _ in range(10):
        progress.update(10)
    progress.write("line")
    progress.close()
    assert plain.getvalue() == "line\n"
    terminal = FakeTerminal()
    progress = Progress(100, 0, True, terminal)
    progress.update(50)
    progress.close()
    assert "\r" in terminal.getvalue()


def test_training_prints_one_plain_line_per_log_interval(run_dir, capsys):
    train(fake_config("log.progress=true"), run_dir)  # stdout captured: not a terminal
    out = capsys.readouterr().out
    assert "\r" not in out
    lines = [line for line in out.splitlines() if line.startswith("step ")]
    assert [line.split(" | ")[0] for line in lines] == [f"step {s}/400" for s in
                                                         (100, 200, 300, 400)]
    assert all("env steps/s" in line for line in lines)
    assert any("fake-task-0 R " in line and " S " in line for line in lines)
