"""The training loop end to end on the fake env: learning, checkpoints, resume, logs."""

import json

import numpy as np
import pytest
import torch

import mtrl
from mtrl.serialization import load_file
from mtrl.training.logging import read_metrics
from mtrl.training.loop import Trainer, train

from conftest import fake_config


def test_agent_learns_the_fake_env(run_dir):
    config = fake_config("train.steps_per_task=1500", "train.eval_every=500",
                         "train.eval_episodes=10", "env.tasks=fake:4")
    result = train(config, run_dir)
    assert result.success_rate >= 0.9, result.per_task
    # untrained policy (random init) is far from it: the same eval before learning
    evals = [r["eval/success_rate"] for r in read_metrics(run_dir) if "eval/success_rate" in r]
    assert evals[-1] >= 0.9 and min(evals) < 0.9
    saved = json.loads((run_dir / "final_eval.json").read_text())
    assert saved["success_rate"] == result.success_rate
    assert set(saved) >= {"success_rate", "per_task", "episodes_per_task", "step"}


def test_run_dir_holds_config_checkpoint_metrics_and_tensorboard(run_dir):
    train(fake_config(), run_dir)
    assert "tasks: fake:3" in (run_dir / "config.yaml").read_text()
    assert list(run_dir.glob("events.out.tfevents.*"))
    records = read_metrics(run_dir)
    train_rec = [r for r in records if "train/critic_loss" in r]
    assert [r["step"] for r in train_rec] == [200, 300, 400]  # first log after warm-up
    assert train_rec[0]["total_env_steps"] == 3 * 200
    assert "train/alpha/fake-task-2" in train_rec[0] and "time/env_steps_per_s" in train_rec[0]
    assert any("eval/success/fake-task-0" in r for r in records)
    agent = mtrl.load(run_dir)
    assert agent.act(np.zeros((2, 6)), np.array([0, 2]), True).shape == (2, 2)


def _interrupt_after(monkeypatch, calls: int):
    """Send Ctrl-C (SIGINT) to this process during the training env's ``calls``-th step."""
    import os
    import signal

    from mtrl.envs.fake import FakeMultiTaskVectorEnv

    original = FakeMultiTaskVectorEnv.step
    count = {"n": 0}

    def step(self, actions, mask=None):
        if mask is None:  # training steps (evaluation passes a mask)
            count["n"] += 1
            if count["n"] == calls:
                os.kill(os.getpid(), signal.SIGINT)
        return original(self, actions, mask)

    monkeypatch.setattr(FakeMultiTaskVectorEnv, "step", step)


def test_resume_after_a_kill_continues_steps_and_buffer(run_dir, monkeypatch):
    config = fake_config()
    with monkeypatch.context() as m:
        _interrupt_after(m, 150)  # Ctrl-C in vector step 150: stops after it (300/task)
        with pytest.raises(KeyboardInterrupt):
            train(config, run_dir)
    ckpt = load_file(run_dir / "checkpoint.pt")
    assert ckpt["trainer"]["steps_per_task"] == 300
    assert ckpt["replay"]["size"].tolist() == [300, 300, 300]
    updates = ckpt["learner"]["state"]["num_updates"]
    assert updates == 150 - 50  # warm-up: 100 steps/task = 50 vector steps

    from mtrl.errors import MtrlError

    with pytest.raises(MtrlError, match="already holds a run"):
        train(config, run_dir)
    trainer = Trainer(config, run_dir, resume=True)
    result = trainer.run()
    final = load_file(run_dir / "checkpoint.pt")
    assert final["trainer"]["steps_per_task"] == 400
    assert final["replay"]["size"].tolist() == [400, 400, 400]
    assert final["learner"]["state"]["num_updates"] == 150
    assert result.step == 400
    steps = [r["step"] for r in read_metrics(run_dir) if "train/critic_loss" in r]
    assert steps == [200, 300, 400]  # nothing logged twice


def test_same_seed_same_parameters(tmp_path):
    config = fake_config("train.steps_per_task=250", "train.eval_every=10000")
    train(config, tmp_path / "a")
    train(config, tmp_path / "b")
    a = load_file(tmp_path / "a" / "checkpoint.pt")["learner"]["state"]["critic"]
    b = load_file(tmp_path / "b" / "checkpoint.pt")["learner"]["state"]["critic"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_overlap_auto_is_on_for_cuda_learners_only():
    from mtrl.training.loop import overlap_enabled

    assert overlap_enabled("auto", torch.device("cuda")) is True
    assert overlap_enabled("auto", torch.device("cpu")) is False
    assert overlap_enabled(True, torch.device("cpu")) is True
    assert overlap_enabled(False, torch.device("cuda")) is False


def test_overlap_runs_the_updates_between_step_async_and_step_wait():
    from mtrl.training.loop import step_and_learn

    calls: list[str] = []

    class Recorder:
        def step_async(self, actions):
            calls.append("async")

        def step_wait(self):
            calls.append("wait")

        def step(self, actions):
            calls.append("step")

    step_and_learn(Recorder(), None, lambda: calls.append("learn"), overlap=True)
    step_and_learn(Recorder(), None, lambda: calls.append("learn"), overlap=False)
    step_and_learn(Recorder(), None, None, overlap=True)  # warm-up: nothing to overlap
    assert calls == ["async", "learn", "wait", "step", "learn", "step"]
