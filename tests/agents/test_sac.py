"""Multi-task SAC: targets, per-task temperatures, gradient isolation, determinism, save/load."""

import math

import numpy as np
import pytest
import torch

from mtrl.agents import SAC, load_agent
from mtrl.data import Batch, MultiTaskReplay

OBS, ACT, T = 5, 2, 3
NET = {"type": "multihead", "hidden_sizes": [32, 32], "activation": "relu"}


def make_agent(seed: int = 0, **kwargs) -> SAC:
    return SAC(OBS, ACT, T, NET, seed=seed, **kwargs)


def random_batch(rows_per_task: int = 4, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    n = T * rows_per_task
    return Batch(
        obs=torch.randn(n, OBS, generator=g), action=torch.rand(n, ACT, generator=g) * 2 - 1,
        reward=torch.randn(n, generator=g), next_obs=torch.randn(n, OBS, generator=g),
        terminated=torch.zeros(n), task_id=torch.arange(T).repeat_interleave(rows_per_task),
        rows_per_task=rows_per_task,
    )


def filled_replay(seed: int = 0) -> MultiTaskReplay:
    rng = np.random.default_rng(seed)
    replay = MultiTaskReplay(T, 100, OBS, ACT, "cpu")
    n = 60
    replay.add(rng.normal(size=(n, OBS)), rng.uniform(-1, 1, (n, ACT)), rng.normal(size=n),
               rng.normal(size=(n, OBS)), rng.random(n) < 0.1, np.arange(n) % T)
    return replay


def test_termination_stops_bootstrap_and_truncation_bootstraps():
    agent = make_agent(gamma=0.9)
    batch = random_batch()
    batch.terminated[:] = torch.tensor([1.0, 0.0] * (batch.obs.shape[0] // 2))
    state = agent.generator.get_state()
    target = agent.critic_targets(batch)
    # recompute by hand with the same noise
    agent.generator.set_state(state)
    noise = torch.randn(batch.obs.shape[0], ACT, generator=agent.generator)
    with torch.no_grad():
        a2, logp2 = agent.actor.sample(batch.next_obs, batch.task_id, noise)
        q = agent.critic_target(torch.cat([batch.next_obs, a2], -1), batch.task_id)
        soft = q.squeeze(-1).min(0).values - agent.log_alpha.exp()[batch.task_id] * logp2
    term = batch.terminated.bool()
    torch.testing.assert_close(target[term], batch.reward[term])
    torch.testing.assert_close(target[~term], batch.reward[~term] + 0.9 * soft[~term])
    assert (soft[~term].abs() > 0).all()


def test_per_task_temperatures_move_independently():
    agent = make_agent(alpha_lr=1e-2)
    head = agent.actor.network.head  # per-task output layer; outputs = (mean, log_std)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        # raw log-std outputs are clipped into [-20, 2]: 0 -> log_std 0, -10 -> log_std -10
        head.bias[0, ACT:] = 0.0  # task 0: wide policy, entropy above target -> alpha falls
        head.bias[1, ACT:] = -10.0  # task 1: narrow policy, entropy below target -> alpha rises
    before = agent.log_alpha.detach().clone()
    for k in range(5):
        agent.actor_optimizer.param_groups[0]["lr"] = 0.0  # keep the policy as set
        agent.update(random_batch(seed=k))
    delta = agent.log_alpha.detach() - before
    assert delta[0] < -0.04 and delta[1] > 0.04
    assert not math.isclose(delta[0].item(), delta[2].item())


def test_multihead_gradient_isolation_and_actor_leaves_critic_untouched():
    agent = make_agent()
    batch = random_batch()
    loss = agent.critic_loss(batch, agent.critic_targets(batch))
    loss.values()[1].backward()
    head_grad = dict(agent.critic.named_parameters())["head__weight"].grad  # (2, T, in, out)
    assert head_grad[:, 1].abs().sum() > 0
    assert head_grad[:, 0].abs().sum() == 0 and head_grad[:, 2].abs().sum() == 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in agent.critic.named_parameters() if "head" not in n)

    agent.critic.zero_grad(set_to_none=True)
    actor_loss = agent.actor_loss(batch)
    actor_loss.values()[2].backward()
    assert all(p.grad is None for p in agent.critic.parameters())
    actor_head = agent.actor.network.head.weight.grad
    assert actor_head[2].abs().sum() > 0 and actor_head[:2].abs().sum() == 0


def test_same_seed_gives_identical_parameters_after_updates():
    def run(seed):
        agent, replay = make_agent(seed), filled_replay()
        g = torch.Generator().manual_seed(5)
        for _ in range(10):
            agent.update(replay.sample(8, g))
        return torch.cat([p.detach().flatten() for p in agent.actor.parameters()]
                         + [p.detach().flatten() for p in agent.critic.parameters()])

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_save_load_round_trip_gives_identical_actions(tmp_path):
    agent, replay = make_agent(), filled_replay()
    for _ in range(3):
        agent.update(replay.sample(8))
    agent.save(tmp_path / "agent.pt")
    loaded = load_agent(tmp_path / "agent.pt")
    obs = np.random.default_rng(0).normal(size=(6, OBS)).astype(np.float32)
    task = np.arange(6) % T
    np.testing.assert_array_equal(agent.act(obs, task, True), loaded.act(obs, task, True))
    np.testing.assert_array_equal(agent.act(obs, task), loaded.act(obs, task))  # same RNG
    # stable-baselines3-style predict with a one-hot task suffix
    onehot = np.concatenate([obs, np.eye(T)[task]], 1)
    action, _ = loaded.predict(onehot, deterministic=True)
    np.testing.assert_array_equal(action, agent.act(obs, task, True))
    # continued learning is identical too (optimizer state, generator, counters)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    agent.update(replay.sample(8, g1)), loaded.update(replay.sample(8, g2))
    for p, q in zip(agent.critic.parameters(), loaded.critic.parameters()):
        assert torch.equal(p, q)


def test_temperature_weighting_weights_tasks_by_softmax_of_minus_log_alpha():
    agent = make_agent(temperature_weighting=True)
    with torch.no_grad():
        agent.log_alpha.copy_(torch.tensor([0.0, 1.0, 2.0]))
    weights = agent.critic_loss(random_batch(), torch.zeros(T * 4)).weights
    expected = torch.softmax(-torch.tensor([0.0, 1.0, 2.0]), 0)
    torch.testing.assert_close(weights, expected)


def test_unknown_network_or_combiner_is_a_clear_error():
    from mtrl.errors import MtrlError

    with pytest.raises(MtrlError, match="network type"):
        SAC(OBS, ACT, T, {**NET, "type": "nope"})
    with pytest.raises(MtrlError, match="combiner"):
        make_agent(critic_combiner="nope")


def test_a_checkpoint_from_another_device_type_loads_with_a_deterministic_stream(tmp_path):
    """A CUDA run's generator state (16 bytes of Philox state) cannot drive a CPU generator:
    loading re-seeds from it instead of failing, the same way every time."""
    agent = make_agent()
    state = agent.state_dict()
    state["generator"] = torch.arange(16, dtype=torch.uint8)  # what a CUDA generator saves
    loaded = [make_agent(seed=7) for _ in range(2)]
    for other in loaded:
        other.load_state_dict(state)
    obs = np.random.default_rng(0).normal(size=(6, OBS)).astype(np.float32)
    task = np.arange(6) % T
    np.testing.assert_array_equal(loaded[0].act(obs, task, True), agent.act(obs, task, True))
    np.testing.assert_array_equal(loaded[0].act(obs, task), loaded[1].act(obs, task))
