"""Active task sampling (A5C, Sharma et al. 2017): the distribution by hand, the floor, the
smoothed success rates, the state round trip, the uniform default, the loss weights in every
combiner, the config checks, and a run through the loop that logs the probabilities."""

import math

import numpy as np
import pytest
import torch

from mtrl.agents import SAC
from mtrl.config import DistillConfig, load_config
from mtrl.data import Batch, MultiTaskReplay
from mtrl.data.task_sampling import ActiveTaskSampler, active_probabilities, build_task_sampler
from mtrl.errors import MtrlError
from mtrl.serialization import load_file
from mtrl.training.logging import read_metrics
from mtrl.training.loop import train

from conftest import fake_config

T, OBS, ACT = 3, 5, 2


def softmax(x):
    e = np.exp(np.asarray(x, float) - np.max(x))
    return e / e.sum()


# ------------------------------------------------------------------ the distribution by hand
def test_probabilities_by_hand_for_a_fixed_target():
    # target 0.8: gaps (0.8 - perf) / 0.8 = 1, 0.5, 0 (0.9 is above the target: clipped to 0)
    p = active_probabilities(np.array([0.0, 0.4, 0.9]), np.array(0.8), temperature=0.5)
    by_hand = np.array([math.e ** 2, math.e, 1.0]) / (math.e ** 2 + math.e + 1)
    np.testing.assert_allclose(p, by_hand)
    # with a floor: min_prob + (1 - T min_prob) softmax
    p = active_probabilities(np.array([0.0, 0.4, 0.9]), np.array(0.8), 0.5, min_prob=0.1)
    np.testing.assert_allclose(p, 0.1 + 0.7 * softmax([2.0, 1.0, 0.0]))
    assert p.sum() == pytest.approx(1.0) and p.min() >= 0.1


def test_probabilities_by_hand_for_the_best_target():
    s = ActiveTaskSampler(T, target="best", temperature=0.25)
    s.performance[:] = [0.3, 0.6, 0.0]
    s.best[:] = [0.6, 0.6, 0.0]  # task 0 fell back to half its best; task 2 never succeeded
    np.testing.assert_allclose(s.targets(), [0.6, 0.6, 0.0])
    # gaps: (0.6 - 0.3) / 0.6 = 0.5, 0 (at its best), 1 (no success yet counts as farthest)
    np.testing.assert_allclose(s.probabilities(), softmax(np.array([0.5, 0.0, 1.0]) / 0.25))


def test_a_task_at_its_target_gets_the_floor():
    floor = 0.02
    p = active_probabilities(np.array([1.0, 0.0, 0.0]), np.array(1.0), 0.1, min_prob=floor)
    # the softmax share of a zero gap beside gaps of 1 at temperature 0.1 is e^-10 / (1 + 2 e^0)
    assert p[0] == pytest.approx(floor, abs=1e-4)
    assert p[0] == pytest.approx(floor + (1 - T * floor) / (1 + 2 * math.exp(10)))
    np.testing.assert_allclose(p[1:], (1 - p[0]) / 2)
    # without a floor it gets (almost) nothing; with every task at its target: uniform
    assert active_probabilities(np.array([1.0, 0.0, 0.0]), np.array(1.0), 0.1)[0] < 1e-4
    np.testing.assert_allclose(active_probabilities(np.ones(T), np.array(1.0), 0.1, 0.02),
                               np.full(T, 1 / T))


def test_equal_gaps_give_the_uniform_distribution_from_the_start():
    s = ActiveTaskSampler(T, target=1.0)
    np.testing.assert_array_equal(s.performance, 0.0)  # no success seen yet
    np.testing.assert_allclose(s.probabilities(), np.full(T, 1 / T))
    torch.testing.assert_close(s.weights, torch.full((T,), 1 / T))


def test_success_rates_are_smoothed_per_finished_episode():
    s = ActiveTaskSampler(T, target=1.0, temperature=0.2, smoothing=0.5)
    s.observe_episodes(np.array([0, 0, 1]), np.array([True, True, False]))
    # task 0: two episodes at one step, 0.5^2 of the old value stays; task 1: one failure
    np.testing.assert_allclose(s.performance, [0.75, 0.0, 0.0])
    s.observe_episodes(np.array([0]), np.array([False]))
    np.testing.assert_allclose(s.performance, [0.375, 0.0, 0.0])
    np.testing.assert_allclose(s.best, [0.75, 0.0, 0.0])
    np.testing.assert_array_equal(s.episodes, [3, 1, 0])
    expected = softmax(np.array([0.625, 1.0, 1.0]) / 0.2)
    np.testing.assert_allclose(s.probabilities(), expected)
    torch.testing.assert_close(s.weights, torch.tensor(expected, dtype=torch.float32))
    s.observe_episodes(np.array([], np.int64), np.array([], bool))  # nothing finished
    np.testing.assert_allclose(s.probabilities(), expected)


def test_state_round_trip_continues_identically():
    rng = np.random.default_rng(0)
    a = ActiveTaskSampler(T, target="best", temperature=0.3, smoothing=0.8, min_prob=0.05)
    for _ in range(5):
        a.observe_episodes(rng.integers(0, T, 4), rng.random(4) < 0.5)
    b = ActiveTaskSampler(T, target="best", temperature=0.3, smoothing=0.8, min_prob=0.05)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(b.probabilities(), a.probabilities())
    assert torch.equal(b.weights, a.weights)
    for sampler in (a, b):
        sampler.observe_episodes(np.array([2, 1]), np.array([True, False]))
    np.testing.assert_array_equal(b.probabilities(), a.probabilities())
    np.testing.assert_array_equal(b.best, a.best)
    with pytest.raises(MtrlError, match="tasks"):
        ActiveTaskSampler(4).load_state_dict(a.state_dict())


# ------------------------------------------------------------------ the batch and the agent
def _replay() -> MultiTaskReplay:
    rng = np.random.default_rng(0)
    replay = MultiTaskReplay(T, 50, OBS, ACT, "cpu")
    n = 45
    replay.add(rng.normal(size=(n, OBS)), rng.uniform(-1, 1, (n, ACT)), rng.normal(size=n),
               rng.normal(size=(n, OBS)), np.zeros(n), np.arange(n) % T)
    return replay


def test_uniform_default_samples_the_same_rows_as_before():
    replay = _replay()
    batch = replay.sample(8, torch.Generator().manual_seed(3))
    assert batch.task_weights is None and batch.rows_per_task == 8
    # the balanced draw as it has always been: u ~ U(0,1)^(T, b), row = floor(u * size)
    u = torch.rand(T, 8, generator=torch.Generator().manual_seed(3))
    index = (u * torch.tensor([15.0, 15.0, 15.0])[:, None]).long()
    task = torch.arange(T)[:, None].expand_as(index)
    assert torch.equal(batch.obs, replay.storage["obs"][task, index].flatten(0, 1))
    assert build_task_sampler(load_config("mt10_mtmhsac").replay, T) is None
    # the active sampler weighs the very same rows
    sampler = ActiveTaskSampler(T)
    sampler.observe_episodes(np.array([0]), np.array([True]))
    weighted = sampler.weigh(replay.sample(8, torch.Generator().manual_seed(3)))
    assert torch.equal(weighted.obs, batch.obs) and torch.equal(weighted.task_id, batch.task_id)
    assert weighted.task_weights is sampler.weights


NET = {"type": "multihead", "hidden_sizes": [16, 16], "activation": "relu"}
COMBINERS = ["mean", "pcgrad", "cagrad", "gradnorm", "uncertainty", "famo", "fixed", "mgda",
             "dwa", "dtp"]


@pytest.mark.parametrize("combiner", COMBINERS)
def test_uniform_weights_leave_every_combiners_update_unchanged(combiner):
    """Weights 1/T (what the sampler gives while all gaps are equal) update exactly as no
    weights do; other weights change the update: the distribution reaches every combiner."""
    actor = "mean" if combiner in ("gradnorm", "uncertainty", "famo", "dwa") else combiner
    batch = _replay().sample(8, torch.Generator().manual_seed(0))
    runs = {}
    for name, weights in (("none", None), ("uniform", torch.full((T,), 1 / T)),
                          ("skewed", torch.tensor([0.8, 0.1, 0.1]))):
        agent = SAC(OBS, ACT, T, NET, seed=0, actor_combiner=actor, critic_combiner=combiner,
                    combiners={"fixed": {"weights": [1.0, 2.0, 3.0]}})
        for _ in range(2):
            agent.update(Batch(**{**batch.__dict__, "task_weights": weights}))
        runs[name] = torch.cat([p.detach().flatten() for p in agent.critic.parameters()])
    assert torch.equal(runs["none"], runs["uniform"])
    assert not torch.equal(runs["none"], runs["skewed"])


def test_the_batch_weights_become_the_task_losses_weights():
    batch = _replay().sample(4, torch.Generator().manual_seed(0))
    share = torch.tensor([0.5, 0.3, 0.2])
    batch = Batch(**{**batch.__dict__, "task_weights": share})
    agent = SAC(OBS, ACT, T, NET, seed=0)
    target = agent.critic_targets(batch)
    assert torch.equal(agent.critic_loss(batch, target).weights, share)
    assert torch.equal(agent.actor_loss(batch).weights, share)
    # with temperature weighting: the product, renormalised
    agent = SAC(OBS, ACT, T, NET, seed=0, temperature_weighting=True)
    with torch.no_grad():
        agent.log_alpha_param.copy_(torch.tensor([0.0, 0.5, 1.0]))
    expected = torch.softmax(-agent.log_alpha.detach(), 0) * share
    torch.testing.assert_close(agent.actor_loss(batch).weights, expected / expected.sum())


# ------------------------------------------------------------------ config
@pytest.mark.parametrize("override, message", [
    ("replay.task_sampling=balanced", "replay.task_sampling must be one of uniform, active"),
    ("replay.active.target=2", r"replay.active.target must be a success rate in \(0, 1\]"),
    ("replay.active.target=worst", "or 'best'"),
    ("replay.active.temperature=0", "replay.active.temperature must be positive"),
    ("replay.active.smoothing=1.0", r"replay.active.smoothing must be in \[0, 1\)"),
    ("replay.active.min_prob=-0.1", r"replay.active.min_prob must be in \[0, 1\)"),
    ("replay.active.min_prob=0.5", "at most 1 / \\(number of tasks\\) = 0.3333 with 3 tasks"),
])
def test_invalid_options_are_clear_errors(override, message):
    with pytest.raises(MtrlError, match=message):
        fake_config("replay.task_sampling=active", override)


def test_presets_and_other_schemas():
    config = load_config("mt10_active")
    assert config.replay.task_sampling == "active" and config.agent.network.type == "multihead"
    assert (config.replay.active.target, config.replay.active.temperature) == ("1.0", 0.1)
    best = load_config("mt10_active", ["replay.active.target=best"])
    assert build_task_sampler(best.replay, 10).target == "best"
    assert load_config("mt10_mtmhsac").replay.task_sampling == "uniform"
    with pytest.raises(MtrlError, match="RL training"):
        load_config("mt10_distill", ["replay.task_sampling=active"], schema=DistillConfig)


# ------------------------------------------------------------------ through the loop
def test_a_run_logs_the_task_probabilities_and_checkpoints_the_sampler(run_dir):
    config = fake_config("replay.task_sampling=active", "replay.active.min_prob=0.05",
                         "replay.active.temperature=0.2", "env.max_episode_steps=25")
    train(config, run_dir)
    names = [f"fake-task-{i}" for i in range(3)]
    records = [r for r in read_metrics(run_dir) if "train/critic_loss" in r]
    assert records
    for r in records:
        probs = [r[f"train/task_prob/{n}"] for n in names]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5) and min(probs) >= 0.05 - 1e-6
        assert all(0.0 <= r[f"train/task_perf/{n}"] <= 1.0 for n in names)
    state = load_file(run_dir / "checkpoint.pt")["trainer"]["task_sampler"]
    assert state["episodes"].sum() > 0  # 25-step episodes: many finished
    sampler = ActiveTaskSampler(3, 1.0, 0.2, 0.9, 0.05)
    sampler.load_state_dict(state)
    np.testing.assert_allclose([records[-1][f"train/task_perf/{n}"] for n in names],
                               sampler.performance)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    assert {f"train/task_prob/{n}" for n in names} <= set(events.Tags()["scalars"])


def test_a_uniform_run_has_no_sampler_state_or_probabilities(run_dir):
    train(fake_config("train.steps_per_task=200"), run_dir)
    assert "task_sampler" not in load_file(run_dir / "checkpoint.pt")["trainer"]
    assert not any(k.startswith("train/task_prob") for r in read_metrics(run_dir) for k in r)
