"""DTP (Guo et al. 2018): focal weights by hand, the success-rate KPI, the gradient,
checkpoints, config, and the training loop feeding it finished episodes' successes."""

import io
import math

import numpy as np
import pytest
import torch

from mtrl.agents import SAC
from mtrl.config import load_config
from mtrl.data import Episodes
from mtrl.errors import MtrlError
from mtrl.optim import TaskLoss, build_combiner
from mtrl.optim.dtp import DTP, dtp_weights

T = 2


def test_weights_by_hand_for_known_kappas():
    kappa = [0.2, 0.5, 0.9]
    focal = [-((1 - k) ** 2) * math.log(k) for k in kappa]
    mean = sum(focal) / 3
    np.testing.assert_allclose(dtp_weights(kappa), [f / mean for f in focal])
    np.testing.assert_allclose(dtp_weights(kappa).mean(), 1.0)
    # gamma = 0: -log kappa; clipping keeps kappa = 0 and 1 finite
    g0 = [-math.log(k) for k in kappa]
    np.testing.assert_allclose(dtp_weights(kappa, gamma=0.0), [g / (sum(g0) / 3) for g in g0])
    clipped = dtp_weights([0.0, 1.0], eps=0.01)
    f0, f1 = -(0.99 ** 2) * math.log(0.01), -(0.01 ** 2) * math.log(0.99)
    np.testing.assert_allclose(clipped, [2 * f0 / (f0 + f1), 2 * f1 / (f0 + f1)])
    assert np.isfinite(clipped).all()


def test_equal_kappas_give_exactly_the_mean():
    for k in (0.0, 0.3, 0.5, 1.0):
        assert dtp_weights(np.full(4, k)).tolist() == [1.0] * 4
    combiner = DTP(T)
    combiner.observe_episodes(episodes([0, 1], [True, True]))
    assert combiner.weights.tolist() == [1.0, 1.0]
    param = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    scale = torch.tensor([1.0, -3.0])  # any sign
    combiner.backward(param_loss(param, scale))
    got, param.grad = param.grad.clone(), None
    build_combiner("mean", T).backward(param_loss(param, scale))
    assert torch.equal(got, param.grad)


def episodes(task_id, success) -> Episodes:
    """Finished episodes of the given tasks and successes (returns and lengths unused)."""
    n = len(task_id)
    return Episodes(np.asarray(task_id, np.int64), np.zeros(n), np.ones(n), np.asarray(success),
                    np.ones(n, bool), tuple(np.zeros(1) for _ in range(n)))


def param_loss(param: torch.Tensor, scale: torch.Tensor) -> TaskLoss:
    """Task t's loss is scale[t] * (1 + param[t]^2) on one row each."""

    def rows(params, s, task):
        return s * (1.0 + params["p"][task] ** 2)

    return TaskLoss(rows, {"p": param}, (scale, torch.arange(T)), T)


def test_success_rate_ema_and_the_weaker_task_gets_more_weight():
    combiner = DTP(3, smoothing=0.9)
    assert combiner.kappa.tolist() == [0.5] * 3 and combiner.weights.tolist() == [1.0] * 3
    # task 0: 2 of 2 succeed, task 1: 0 of 1, task 2: no episode finished (kappa stays 0.5)
    combiner.observe_episodes(episodes([0, 1, 0], [True, False, True]))
    np.testing.assert_allclose(combiner.kappa, [0.9 * 0.5 + 0.1, 0.9 * 0.5, 0.5])
    assert combiner.episodes.tolist() == [2, 1, 0]
    w = combiner.weights
    assert w[1] > w[2] > w[0]  # lower success rate, more weight
    torch.testing.assert_close(w, torch.tensor(dtp_weights(combiner.kappa), dtype=torch.float32))
    combiner.observe_episodes(episodes([2], [0.5]))
    assert combiner.kappa[2] == pytest.approx(0.9 * 0.5 + 0.1 * 0.5)
    # no finished episode: nothing changes
    before = combiner.kappa.copy()
    combiner.observe_episodes(episodes([], []))
    assert combiner.kappa.tolist() == before.tolist()


def test_gradient_is_the_weighted_mean_of_the_task_gradients():
    combiner = DTP(T)
    combiner.weights.copy_(torch.tensor([1.5, 0.5]))
    param = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    combiner.backward(param_loss(param, torch.tensor([1.0, 3.0])))
    # d/dp_t (w_t / T) s_t (1 + p_t^2) = (w_t / 2) s_t 2 p_t
    torch.testing.assert_close(param.grad, torch.tensor([1.5 * 1.0 * 1.0, 0.5 * 3.0 * 2.0]))


def test_state_dict_round_trip_continues_identically():
    a = DTP(3, smoothing=0.8)
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 3, 4), rng.random(4) < 0.4) for _ in range(10)]
    for task, success in batches[:5]:
        a.observe_episodes(episodes(task, success))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = DTP(3, smoothing=0.8)
    b.load_state_dict(torch.load(buffer))
    assert b.kappa.tolist() == a.kappa.tolist() and b.episodes.tolist() == a.episodes.tolist()
    assert torch.equal(a.weights, b.weights)
    for task, success in batches[5:]:
        a.observe_episodes(episodes(task, success))
        b.observe_episodes(episodes(task, success))
        assert b.kappa.tolist() == a.kappa.tolist() and torch.equal(a.weights, b.weights)
    assert not torch.equal(a.weights, torch.ones(3))


def test_sac_forwards_successes_to_both_combiners_and_logs_the_weights():
    spec = {"type": "multihead", "hidden_sizes": [8], "activation": "relu"}
    agent = SAC(6, 2, T, spec, actor_combiner="dtp", critic_combiner="dtp")
    assert not DTP.positive_losses
    agent.observe_episodes(episodes([0, 1], [True, False]))
    for combiner in (agent.actor_combiner, agent.critic_combiner):
        assert combiner.weights[1] > 1.0 > combiner.weights[0]
    state = agent.state_dict()
    fresh = SAC(6, 2, T, spec, actor_combiner="dtp", critic_combiner="dtp")
    fresh.load_state_dict(state)
    assert fresh.critic_combiner.kappa.tolist() == agent.critic_combiner.kappa.tolist()


def test_options_are_checked_and_the_preset_resolves():
    for bad, match in (({"gamma": -1.0}, "gamma"), ({"smoothing": 1.0}, "smoothing"),
                       ({"eps": 0.0}, "eps")):
        with pytest.raises(MtrlError, match=f"dtp: {match}"):
            DTP(T, **bad)
    config = load_config("mt10_dtp", ["agent.combiners.dtp.smoothing=0.5"])
    assert (config.agent.actor_combiner, config.agent.critic_combiner) == ("dtp", "dtp")
    assert config.agent.combiners.dtp.gamma == 2.0 and config.agent.combiners.dtp.smoothing == 0.5
    with pytest.raises(MtrlError, match="agent.combiners.dtp: smoothing") as info:
        load_config("mt10_dtp", ["agent.combiners.dtp.smoothing=1.5"])
    assert "\n" not in str(info.value)


def test_training_run_feeds_successes_and_logs_dtp_weights(run_dir, monkeypatch):
    from conftest import fake_config

    from mtrl.training.logging import read_metrics
    from mtrl.training.loop import train

    calls = []
    original = DTP.observe_episodes

    def spy(self, finished):
        calls.append((finished.task_id.copy(), np.asarray(finished.success).copy()))
        original(self, finished)

    monkeypatch.setattr(DTP, "observe_episodes", spy)
    train(fake_config("agent.actor_combiner=dtp", "agent.critic_combiner=dtp"), run_dir)
    assert calls and all(s is not None and s.dtype == bool and len(s) == len(t)
                         for t, s in calls)
    records = [r for r in read_metrics(run_dir) if "train/critic_loss" in r]
    for key in ("critic_dtp_weights", "actor_dtp_weights"):
        weights = [records[-1][f"train/{key}/fake-task-{t}"] for t in range(3)]
        assert np.mean(weights) == pytest.approx(1.0, abs=1e-5)


def test_resume_with_dtp_reproduces_the_uninterrupted_run(tmp_path, monkeypatch):
    from test_resume import SHORT, _snapshot_at_first_checkpoint, assert_same_run

    from conftest import fake_config
    from mtrl.serialization import load_file
    from mtrl.training.loop import train

    config = fake_config(*SHORT, "agent.actor_combiner=dtp", "agent.critic_combiner=dtp")
    with monkeypatch.context() as m:
        _snapshot_at_first_checkpoint(m, tmp_path / "resumed")
        train(config, tmp_path / "full")
    learner = load_file(tmp_path / "resumed" / "checkpoint.pt")["learner"]["state"]
    assert sum(learner["critic_combiner"]["_extra_state"]["episodes"]) > 0  # KPIs saved
    train(config, tmp_path / "resumed", resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "resumed")
