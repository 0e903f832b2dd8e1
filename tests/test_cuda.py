"""CUDA paths: run on a machine with a GPU, skipped cleanly (with a reason) without one."""

import json

import numpy as np
import pytest
import torch

from mtrl.agents import SAC
from mtrl.cli import main
from mtrl.data import MultiTaskReplay
from tests.conftest import FAKE_OVERRIDES

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
NET = {"type": "multihead", "hidden_sizes": [64, 64], "activation": "relu"}


def test_asking_for_cuda_without_one_is_a_clear_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    code = main(["train", "quick", *FAKE_OVERRIDES, "--device", "cuda",
                 "--run-dir", str(tmp_path / "run")])
    assert code == 2 and "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@needs_cuda
def test_cuda_update_keeps_replay_and_metrics_on_the_device_and_matches_cpu_actions():
    agent = SAC(6, 2, 3, NET, device="cuda", seed=0)
    replay = MultiTaskReplay(3, 100, 6, 2, agent.device)
    rng = np.random.default_rng(0)
    n = 90
    replay.add(rng.normal(size=(n, 6)), rng.uniform(-1, 1, (n, 2)), rng.normal(size=n),
               rng.normal(size=(n, 6)), np.zeros(n), np.arange(n) % 3)
    g = torch.Generator(agent.device).manual_seed(0)
    for _ in range(5):
        metrics = agent.update(replay.sample(16, g))
    assert all(v.device.type == "cuda" and torch.isfinite(v).all() for v in metrics.values())
    # the same weights on the CPU act the same (checkpoints move between devices)
    cpu = SAC(6, 2, 3, NET, device="cpu", seed=0)
    cpu.load_state_dict({k: v.cpu() if torch.is_tensor(v) else v
                         for k, v in agent.state_dict().items()})
    obs = rng.normal(size=(3, 6)).astype(np.float32)
    np.testing.assert_allclose(agent.act(obs, np.arange(3), deterministic=True),
                               cpu.act(obs, np.arange(3), deterministic=True), atol=1e-5)


@needs_cuda
def test_training_on_cuda_runs_overlapped_and_evaluates(tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", "quick", *FAKE_OVERRIDES, "train.steps_per_task=200",
                 "--device", "cuda", "--run-dir", str(run_dir)]) == 0
    final = json.loads((run_dir / "final_eval.json").read_text())
    assert final["step"] == 200 and 0.0 <= final["success_rate"] <= 1.0
