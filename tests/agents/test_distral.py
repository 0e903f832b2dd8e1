"""Distral: the regularised targets and losses, pi_0's distillation gradient, the two-column
policy, which policy acts, config routing, save/load, and learning the fake env."""

import json
import math

import numpy as np
import pytest
import torch

from mtrl.agents import SAC, Distral, build_agent, load_agent
from mtrl.agents.kl import gaussian_kl
from mtrl.agents.policy import rsample
from mtrl.cli import main
from mtrl.config import load_config
from mtrl.data import Batch
from mtrl.errors import MtrlError
from mtrl.training.loop import train

OBS, ACT, T = 5, 2, 3
NET = {"type": "multihead", "hidden_sizes": [32, 32], "activation": "relu"}
SHARED = {"type": "mlp", "hidden_sizes": [32], "activation": "relu"}


def make_agent(**kwargs) -> Distral:
    options = {"alpha": 0.3, "beta": 5.0, "shared_network": SHARED, "log_std_min": -5.0}
    return Distral(OBS, ACT, T, NET, **{**options, **kwargs})


def random_batch(rows_per_task: int = 4, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    n = T * rows_per_task
    return Batch(
        obs=torch.randn(n, OBS, generator=g), action=torch.rand(n, ACT, generator=g) * 2 - 1,
        reward=torch.randn(n, generator=g), next_obs=torch.randn(n, OBS, generator=g),
        terminated=(torch.arange(n) % 2).float(),
        task_id=torch.arange(T).repeat_interleave(rows_per_task), rows_per_task=rows_per_task,
    )


def test_critic_target_subtracts_temperature_times_entropy_and_kl_terms():
    agent = make_agent(gamma=0.9)
    batch = random_batch()
    state = agent.generator.get_state()
    target = agent.critic_targets(batch)
    agent.generator.set_state(state)
    noise = torch.randn(batch.obs.shape[0], ACT, generator=agent.generator)
    with torch.no_grad():
        mean, log_std = agent.actor.task_policy(batch.next_obs, batch.task_id)
        mean_0, log_std_0 = agent.actor.shared_policy(batch.next_obs, batch.task_id)
        action, log_prob = rsample(mean, log_std, noise)
        kl = gaussian_kl(mean, log_std, mean_0, log_std_0)
        q = agent.critic_target(torch.cat([batch.next_obs, action], -1), batch.task_id)
        tau = 1.0 / 5.0
        soft = q.squeeze(-1).min(0).values - tau * (0.7 * log_prob + 0.3 * kl)
    expected = batch.reward + 0.9 * (1 - batch.terminated) * soft
    torch.testing.assert_close(target, expected)
    assert (kl > 0).all()


def test_shared_policy_receives_exactly_the_distillation_gradient():
    """Separate columns: pi_0 enters the actor loss only via alpha/beta * KL(pi_i || pi_0)."""
    agent = make_agent()
    batch = random_batch()
    loss = agent.actor_loss(batch)
    loss.values().mean().backward()  # task-balanced: the mean combiner's loss
    got = [p.grad.clone() for p in agent.actor.shared.parameters()]
    assert all(p.grad is None for p in agent.critic.parameters())  # critic: constants
    agent.actor.zero_grad(set_to_none=True)
    with torch.no_grad():
        mean, log_std = agent.actor.task_policy(batch.obs, batch.task_id)
    mean_0, log_std_0 = agent.actor.shared_policy(batch.obs, batch.task_id)
    (0.3 / 5.0 * gaussian_kl(mean, log_std, mean_0, log_std_0).mean()).backward()
    for g, p in zip(got, agent.actor.shared.parameters()):
        torch.testing.assert_close(g, p.grad)
        assert g.abs().sum() > 0


def test_kl_pulls_task_policies_and_shared_policy_together():
    agent = make_agent(alpha=1.0, beta=0.05, actor_lr=3e-3)  # a strong KL term
    batch = random_batch(rows_per_task=16)

    def kl() -> float:
        with torch.no_grad():
            out = agent.actor(batch.obs, batch.task_id)
            return gaussian_kl(*out).mean().item()

    before = kl()
    for _ in range(30):
        agent.actor_step(batch)
    assert kl() < 0.5 * before


def test_two_column_policy_is_the_normalised_product_of_the_columns():
    agent = make_agent(two_column=True, alpha=0.5, beta=2.0)
    mean, log_std = agent.actor.combine(
        (torch.tensor([1.0]), torch.tensor([0.0])), (torch.tensor([-1.0]), torch.tensor([0.0]))
    )
    # precisions 0.5 * 1 and 2 * 1: mean (0.5 * 1 + 2 * -1) / 2.5, variance 1 / 2.5
    torch.testing.assert_close(mean, torch.tensor([-0.6]))
    torch.testing.assert_close(log_std, torch.tensor([-0.5 * math.log(2.5)]))
    # the shared column is part of every task policy: RL gradients reach it through pi_i
    obs, task = torch.randn(6, OBS), torch.arange(6) % T
    agent.actor.task_policy(obs, task)[0].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in agent.actor.shared.parameters())
    separate = make_agent()
    separate.actor.task_policy(obs, task)[0].sum().backward()
    assert all(p.grad is None for p in separate.actor.shared.parameters())


def test_deterministic_actions_come_from_the_task_policies_unless_asked():
    agent = make_agent()  # the paper's default: the task policies pi_i act
    obs, task = np.random.default_rng(0).normal(size=(6, OBS)).astype(np.float32), np.arange(6) % T
    obs_t, task_t = torch.as_tensor(obs), torch.as_tensor(task)
    with torch.no_grad():
        shared = torch.tanh(agent.actor.shared_policy(obs_t, task_t)[0]).numpy()
        own = torch.tanh(agent.actor.task_policy(obs_t, task_t)[0]).numpy()
    np.testing.assert_allclose(agent.act(obs, task, deterministic=True), own, atol=1e-6)
    agent.set_eval_policy("shared")
    np.testing.assert_allclose(agent.act(obs, task, deterministic=True), shared, atol=1e-6)
    assert not np.allclose(shared, own)


def test_shared_policy_has_no_task_input_by_default():
    """Teh et al. 2017: pi_0(a|s). The same observation gives the same pi_0 for every task."""
    agent = make_agent()
    obs = torch.randn(1, OBS).expand(T, OBS)
    with torch.no_grad():
        mean, log_std = agent.actor.shared_policy(obs, torch.arange(T))
    torch.testing.assert_close(mean, mean[:1].expand_as(mean))
    variant = make_agent(shared_task_input=True)
    with torch.no_grad():
        mean_v, _ = variant.actor.shared_policy(obs, torch.arange(T))
    assert not torch.allclose(mean_v, mean_v[:1].expand_as(mean_v))


    with pytest.raises(MtrlError, match="eval policy"):
        agent.set_eval_policy("both")


def test_task_agnostic_shared_policy_ignores_the_task_id():
    agent = make_agent(shared_task_input=False)
    obs = torch.randn(1, OBS).expand(T, OBS)
    with torch.no_grad():
        mean_0, _ = agent.actor.shared_policy(obs, torch.arange(T))
        mean_i, _ = agent.actor.task_policy(obs, torch.arange(T))
    torch.testing.assert_close(mean_0, mean_0[:1].expand_as(mean_0))
    assert not torch.allclose(mean_i, mean_i[:1].expand_as(mean_i))


def test_beta_is_fixed_unless_learned():
    fixed, learned = make_agent(), make_agent(learn_beta=True, alpha_lr=1e-2)
    for agent in (fixed, learned):
        for k in range(3):
            metrics = agent.update(random_batch(seed=k))
    torch.testing.assert_close(fixed.log_alpha.detach(), torch.full((T,), math.log(0.2)))
    assert not torch.allclose(learned.log_alpha.detach(), torch.full((T,), math.log(0.2)))
    assert metrics["kl_per_task"].shape == (T,) and (metrics["kl_per_task"] > 0).all()


def test_save_load_round_trip(tmp_path):
    agent = make_agent(two_column=True, eval_policy="task")
    for k in range(2):
        agent.update(random_batch(seed=k))
    agent.save(tmp_path / "agent.pt")
    loaded = load_agent(tmp_path / "agent.pt")
    assert isinstance(loaded, Distral)
    assert (loaded.alpha, loaded.beta, loaded.two_column, loaded.eval_policy) == \
        (0.3, 5.0, True, "task")
    obs = np.random.default_rng(1).normal(size=(6, OBS)).astype(np.float32)
    task = np.arange(6) % T
    np.testing.assert_array_equal(agent.act(obs, task, True), loaded.act(obs, task, True))
    agent.update(random_batch(seed=5)), loaded.update(random_batch(seed=5))
    for p, q in zip(agent.actor.parameters(), loaded.actor.parameters()):
        assert torch.equal(p, q)


def test_config_routes_the_distral_section_to_distral_only():
    base = ["agent.network.hidden_sizes=[16]", "agent.distral.shared_network.hidden_sizes=[16]"]
    sac = build_agent(load_config("mt10_mtmhsac", base).agent, OBS, ACT, T, "cpu", 0)
    assert type(sac) is SAC and "alpha" not in sac.init_kwargs
    config = load_config("mt10_distral", base + ["agent.distral.alpha=0.25"])
    distral = build_agent(config.agent, OBS, ACT, T, "cpu", 0)
    assert isinstance(distral, Distral) and distral.alpha == 0.25 and distral.learn_beta
    with pytest.raises(MtrlError, match="init_temperature"):
        build_agent(load_config("mt10_distral", base + ["agent.init_temperature=0.5"]).agent,
                    OBS, ACT, T, "cpu", 0)
    for bad, message in (("agent.distral.alpha=0", "alpha"), ("agent.distral.beta=-1", "beta"),
                         ("agent.distral.eval_policy=both", "eval_policy")):
        with pytest.raises(MtrlError, match=message):
            load_config("mt10_distral", [bad])
    with pytest.raises(MtrlError, match="mtrl distill"):
        build_agent(load_config("mt10_mtmhsac", base + ["agent.name=student"]).agent,
                    OBS, ACT, T, "cpu", 0)


def test_distral_learns_the_fake_env_with_its_shared_policy(tmp_path):
    config = load_config("mt10_distral", [
        "env.tasks=fake:2", "env.envs_per_task=2", "env.eval_envs_per_task=5",
        "agent.network.hidden_sizes=[64,64]", "agent.distral.shared_network.hidden_sizes=[64,64]",
        "agent.distral.beta=10", "agent.distral.learn_beta=false",
        "agent.actor_lr=1e-3", "agent.critic_lr=1e-3",
        "replay.batch_per_task=64", "replay.capacity_per_task=5000",
        "train.steps_per_task=1600", "train.warmup_steps_per_task=200",
        "train.eval_every=100000", "train.eval_episodes=10", "train.checkpoint_every=100000",
        "log.every=400", "log.progress=false", "log.tensorboard=false",
    ])
    result = train(config, tmp_path / "run")  # evaluated with pi_0 (eval_policy=shared)
    assert result.success_rate >= 0.9, result.per_task
    # `mtrl eval` uses pi_0 by default (the same numbers), the task policies on request
    for extra, name in (([], "shared.json"), (["--policy", "task"], "task.json")):
        assert main(["eval", str(tmp_path / "run"), "--episodes", "10", "--device", "cpu",
                     "--json", str(tmp_path / name), *extra]) == 0
    shared = json.loads((tmp_path / "shared.json").read_text())
    assert shared["per_task"] == result.per_task
    assert json.loads((tmp_path / "task.json").read_text())["success_rate"] >= 0.9
