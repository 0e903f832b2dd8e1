"""Resuming a run continues the very same run: after a checkpoint + resume (in-process, after
SIGTERM, or after a SIGKILL of a real ``mtrl train`` process) the final state and the logs are
bit-identical to an uninterrupted run with the same seed (fake env on the CPU; Meta-World in
sync and async mode in the slow tests)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import mtrl.training.loop
from mtrl.envs import make_vector_env
from mtrl.serialization import load_file
from mtrl.training.logging import read_metrics
from mtrl.training.loop import train
from mtrl.training.rundir import CHECKPOINT_FILE

from conftest import FAKE_OVERRIDES, fake_config

# 3 tasks x 2 envs, 32x32 nets, 30-step episodes (in flight at every checkpoint);
# checkpoints at 100 and 200 steps/task, evaluation at 150
SHORT = ("train.steps_per_task=250", "train.warmup_steps_per_task=50", "train.eval_every=150",
         "train.checkpoint_every=100", "log.every=50", "replay.batch_per_task=32",
         "agent.network.hidden_sizes=[32,32]", "env.mode=sync", "env.max_episode_steps=30")


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Recursive exact equality of checkpoint contents (tensors with ``torch.equal``)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, where


def assert_same_run(a: Path, b: Path) -> None:
    """Same final checkpoint (learner, replay, every stream, envs) and the same metrics, but
    for wall-clock rates."""
    ca, cb = load_file(a / CHECKPOINT_FILE), load_file(b / CHECKPOINT_FILE)
    for key in ("learner", "replay", "trainer", "task_names"):
        assert_same(ca[key], cb[key], key)

    def records(run: Path) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "time" and not k.startswith("time/")}
                for r in read_metrics(run)]

    assert records(a) == records(b)
    assert tensorboard_scalars(a) == tensorboard_scalars(b)
    assert (a / "final_eval.json").read_text() == (b / "final_eval.json").read_text()


def tensorboard_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """The TensorBoard scalars of a run as TensorBoard shows them (a resumed run's file purges
    the killed process's steps after the checkpoint), but for wall-clock rates."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"] if not tag.startswith("time/")}


def _snapshot_at_first_checkpoint(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """Copy the run directory as it stands when the first checkpoint has been written (what a
    SIGKILL right after it leaves behind)."""
    original = mtrl.training.loop.atomic_save

    def save(obj: Any, path: Any) -> None:
        original(obj, path)
        if not target.exists():
            shutil.copytree(Path(path).parent, target)

    monkeypatch.setattr(mtrl.training.loop, "atomic_save", save)


@pytest.mark.parametrize("extra", [
    (),
    ("agent.network.type=film", "agent.actor_combiner=pcgrad", "agent.critic_combiner=pcgrad"),
    ("agent.critic_combiner=famo", "agent.popart=true"),
    ("replay.task_sampling=active", "replay.active.target=best", "replay.active.min_prob=0.05"),
], ids=["mean", "pcgrad", "famo-popart", "active-sampling"])
def test_resume_from_a_checkpoint_reproduces_the_uninterrupted_run(tmp_path, monkeypatch,
                                                                   extra):
    config = fake_config(*SHORT, *extra)
    with monkeypatch.context() as m:
        _snapshot_at_first_checkpoint(m, tmp_path / "resumed")
        train(config, tmp_path / "full")
    first = load_file(tmp_path / "resumed" / CHECKPOINT_FILE)["trainer"]
    assert first["steps_per_task"] == 100
    assert first["env"]["episode"]["steps"].any()  # episodes in flight at the checkpoint
    train(config, tmp_path / "resumed", resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "resumed")


def test_resume_after_sigterm_mid_interval_reproduces_the_uninterrupted_run(tmp_path,
                                                                            monkeypatch):
    """SIGTERM between checkpoints (and log intervals): the checkpoint written on interrupt
    holds the partial interval's episode statistics and metric sums."""
    from mtrl.envs.fake import FakeMultiTaskVectorEnv

    config = fake_config(*SHORT)
    train(config, tmp_path / "full")
    original, count = FakeMultiTaskVectorEnv.step, {"n": 0}

    def step(self: FakeMultiTaskVectorEnv, actions: np.ndarray, mask: Any = None) -> Any:
        if mask is None:  # training steps (evaluation passes a mask)
            count["n"] += 1
            if count["n"] == 67:  # stops after 134 steps/task: no checkpoint or log step
                os.kill(os.getpid(), signal.SIGTERM)
        return original(self, actions, mask)

    with monkeypatch.context() as m:
        m.setattr(FakeMultiTaskVectorEnv, "step", step)
        with pytest.raises(KeyboardInterrupt):
            train(config, tmp_path / "resumed")
    trainer = load_file(tmp_path / "resumed" / CHECKPOINT_FILE)["trainer"]
    assert trainer["steps_per_task"] == 134
    assert trainer["metric_sums"]["count"] > 0
    train(config, tmp_path / "resumed", resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "resumed")


def test_fake_env_state_continues_episodes_in_flight():
    a = make_vector_env("fake:3", envs_per_task=2, seed=4, max_episode_steps=7)
    b = make_vector_env("fake:3", envs_per_task=2, seed=4, max_episode_steps=7)
    rng = np.random.default_rng(0)
    a.reset()
    for _ in range(5):
        a.step(rng.uniform(-1, 1, (6, 2)))
    b.set_state(a.get_state())  # no reset: the episodes go on
    for _ in range(12):  # across episode ends (autoreset draws from the restored RNG)
        actions = rng.uniform(-1, 1, (6, 2))
        ra, rb = a.step(actions), b.step(actions)
        for field in ("obs", "final_obs", "reward", "truncated", "success"):
            np.testing.assert_array_equal(getattr(ra, field), getattr(rb, field))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_metaworld_state_continues_episodes_bit_exactly(mode):
    """MuJoCo integration state + env attributes: a restored env steps like the original,
    also across an autoreset (pick-place keeps views into MjData that must stay views)."""
    kwargs = dict(envs_per_task=1, seed=3, num_workers=2, mode=mode, max_episode_steps=12)
    a = make_vector_env("pick-place-v3,reach-v3", **kwargs)
    b = make_vector_env("pick-place-v3,reach-v3", **kwargs)
    try:
        rng = np.random.default_rng(0)
        a.reset()
        b.reset()
        for _ in range(7):
            a.step(rng.uniform(-1, 1, (2, 4)))
        b.set_state(a.get_state())
        for _ in range(10):
            actions = rng.uniform(-1, 1, (2, 4))
            ra, rb = a.step(actions), b.step(actions)
            for field in ("obs", "final_obs", "reward", "truncated", "success"):
                np.testing.assert_array_equal(getattr(ra, field), getattr(rb, field), field)
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------------ real processes
def _command(run_dir: Path, *extra: str) -> list[str]:
    overrides = [*FAKE_OVERRIDES, *SHORT, "train.steps_per_task=250", "train.eval_every=100000",
                 "log.tensorboard=false"]
    return [sys.executable, "-m", "mtrl", "train", "mt10_mtmhsac", *overrides,
            "--run-dir", str(run_dir), *extra]


def _environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                           os.environ.get("PYTHONPATH", "")])}


def _start(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(_command(run_dir, *extra), env=_environment(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()


def _stop_now(run_dir: Path, sig: int) -> bool:
    """Once the first checkpoint exists; for SIGKILL only once a later step has been logged
    too (records the resumed run must drop and log again)."""
    if not (run_dir / CHECKPOINT_FILE).exists():
        return False
    try:
        return sig != signal.SIGKILL or any(r["step"] > 100 for r in read_metrics(run_dir))
    except ValueError:  # a line being written
        return False


def test_killed_train_processes_resume_into_the_uninterrupted_run(tmp_path):
    """``mtrl train`` processes stopped by SIGKILL (after the first checkpoint and a later log
    record) and by SIGTERM (as soon as the first checkpoint exists), then resumed with
    ``--resume``, end exactly like an uninterrupted one (all run side by side, to save time)."""
    cuts = {signal.SIGKILL: tmp_path / "kill", signal.SIGTERM: tmp_path / "term"}
    full = _start(tmp_path / "full")
    running = {sig: _start(run_dir) for sig, run_dir in cuts.items()}
    try:
        deadline, sent = time.monotonic() + 120, set()
        while len(sent) < len(running):
            for sig, process in running.items():
                if sig not in sent and process.poll() is None and _stop_now(cuts[sig], sig):
                    process.send_signal(sig)
                    sent.add(sig)
                assert sig in sent or process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.01)
        for process in running.values():
            process.wait(60)
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    assert running[signal.SIGKILL].returncode == -signal.SIGKILL
    assert running[signal.SIGTERM].returncode == 130, running[signal.SIGTERM].stderr.read()
    for run_dir in cuts.values():  # stopped mid-run (SIGTERM: wherever the signal landed)
        assert 100 <= load_file(run_dir / CHECKPOINT_FILE)["trainer"]["steps_per_task"] < 250
    resumed = [_start(run_dir, "--resume") for run_dir in cuts.values()]
    for process in [full, *resumed]:
        _finish(process)
    for run_dir in cuts.values():
        assert_same_run(tmp_path / "full", run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_metaworld_resume_reproduces_the_uninterrupted_run(tmp_path, monkeypatch, mode):
    """Meta-World, in-process and in worker processes: bit-identical after a resume too."""
    config = fake_config(*SHORT, "env.tasks=pick-place-v3,reach-v3", "env.envs_per_task=1",
                         "env.eval_envs_per_task=1", "env.num_workers=2", f"env.mode={mode}",
                         "train.steps_per_task=150", "train.eval_every=100000",
                         "train.checkpoint_every=70", "train.eval_episodes=1")
    with monkeypatch.context() as m:
        _snapshot_at_first_checkpoint(m, tmp_path / "resumed")
        train(config, tmp_path / "full")
    train(config, tmp_path / "resumed", resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "resumed")


def test_distillation_resume_reproduces_the_uninterrupted_run(tmp_path, monkeypatch):
    """The DAgger schedule's state (which episodes in flight the experts drive) is part of the
    checkpoint: a resumed distillation continues the same run."""
    from mtrl.config import DistillConfig, load_config
    from mtrl.training.distill import distill

    from sb3_experts import oracle_expert

    for k in range(3):
        (tmp_path / "experts" / f"fake-task-{k}").mkdir(parents=True)
        oracle_expert(tmp_path / "experts" / f"fake-task-{k}" / "expert.zip", 3, k)
    config = load_config("mt10_distill", [
        "env.tasks=fake:3", "env.envs_per_task=2", "env.eval_envs_per_task=2", "env.mode=sync",
        "env.max_episode_steps=30", f"distill.expert_pattern={tmp_path}/experts/{{task}}",
        "student.network.hidden_sizes=[16]", "replay.batch_per_task=16",
        "train.steps_per_task=150", "train.warmup_steps_per_task=20", "train.eval_every=1000",
        "train.eval_episodes=2", "train.checkpoint_every=50", "distill.expert_rollouts_start=0.5",
        "distill.evaluate_experts=false", "log.every=50", "log.progress=false",
        "log.tensorboard=false", "train.device=cpu",
    ], schema=DistillConfig)
    with monkeypatch.context() as m:
        _snapshot_at_first_checkpoint(m, tmp_path / "resumed")
        distill(config, tmp_path / "full")
    by_expert = load_file(tmp_path / "resumed" / CHECKPOINT_FILE)["trainer"]["loop"]["by_expert"]
    assert by_expert.any() and not by_expert.all()  # a mixed schedule in flight
    distill(config, tmp_path / "resumed", resume=True)
    ca, cb = (load_file(tmp_path / r / CHECKPOINT_FILE) for r in ("full", "resumed"))
    for key in ("learner", "replay", "trainer"):
        assert_same(ca[key], cb[key], key)
