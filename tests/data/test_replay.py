"""Per-task ring buffers: balanced sampling, wrap-around, state round trip."""

import numpy as np
import torch

from mtrl.data import MultiTaskReplay


def _fill(replay: MultiTaskReplay, task_id: np.ndarray, start: float) -> None:
    n = task_id.size
    obs = np.full((n, 3), start, np.float32) + np.arange(n)[:, None]
    replay.add(obs, np.zeros((n, 2)), np.arange(n) + start, obs + 1, np.zeros(n), task_id)


def test_balanced_sampling_returns_batch_per_task_rows_of_each_task():
    replay = MultiTaskReplay(3, 10, obs_dim=3, act_dim=2, device="cpu")
    _fill(replay, np.array([0, 0, 0, 0, 1, 2, 2]), 0.0)
    batch = replay.sample(8, torch.Generator().manual_seed(0))
    assert batch.obs.shape == (24, 3) and batch.rows_per_task == 8
    np.testing.assert_array_equal(batch.task_id.numpy(), np.repeat([0, 1, 2], 8))
    # task 1 holds a single transition (row 4): every one of its samples is that row
    assert torch.all(batch.reward[8:16] == 4.0)
    assert set(batch.reward[:8].tolist()) <= {0.0, 1.0, 2.0, 3.0}
    assert set(batch.reward[16:].tolist()) <= {5.0, 6.0}


def test_ring_buffer_overwrites_oldest_per_task_and_round_trips():
    replay = MultiTaskReplay(2, 4, obs_dim=3, act_dim=2, device="cpu")
    for k in range(3):  # 3 x 2 transitions of task 0, 3 x 1 of task 1
        _fill(replay, np.array([0, 0, 1]), 10.0 * k)
    np.testing.assert_array_equal(replay.size, [4, 3])
    assert len(replay) == 7
    stored = sorted(replay.storage["reward"][0].tolist())
    assert stored == [10.0, 11.0, 20.0, 21.0]  # the two oldest (0, 1) were overwritten
    copy = MultiTaskReplay(2, 4, obs_dim=3, act_dim=2, device="cpu")
    copy.load_state_dict(replay.state_dict())
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a, b = replay.sample(5, g1), copy.sample(5, g2)
    torch.testing.assert_close(a.obs, b.obs)
    torch.testing.assert_close(a.reward, b.reward)
    _fill(replay, np.array([1]), 99.0), _fill(copy, np.array([1]), 99.0)
    torch.testing.assert_close(replay.storage["reward"], copy.storage["reward"])
