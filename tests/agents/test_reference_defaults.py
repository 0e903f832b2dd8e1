"""Defaults that follow the reference implementations (issue: learning you can trust)."""

import math

import torch

from mtrl.agents import SAC, load_agent
from mtrl.agents.base import upgrade_kwargs
from mtrl.agents.policy import TanhGaussianPolicy
from mtrl.nn import MultiHead, build_network

OBS, ACT, T = 39, 4, 3


def test_fresh_policy_std_is_order_one_with_the_default_clipped_log_std():
    torch.manual_seed(0)
    policy = TanhGaussianPolicy(build_network(
        {"type": "multihead", "hidden_sizes": [400, 400, 400], "activation": "relu"},
        OBS, 2 * ACT, T), ACT)
    obs, task = torch.randn(256, OBS), torch.arange(256) % T
    with torch.no_grad():
        _, log_std = policy(obs, task)
    std = log_std.exp()
    assert 0.5 < std.median() < 2.0  # SB3 / JAX baselines: clip(raw) with raw ~ 0 -> std ~ 1
    tanh_policy = TanhGaussianPolicy(policy.network, ACT, log_std_mode="tanh")
    with torch.no_grad():
        _, tanh_log_std = tanh_policy(obs, task)
    # the CARE-code form: -20 + 11 (tanh(raw) + 1) ~ -9 at raw ~ 0, std ~ 1e-4
    assert abs(tanh_log_std.median().item() - (-9.0)) < 0.5


def test_clipped_log_std_is_the_raw_output_inside_the_bounds():
    policy = TanhGaussianPolicy(torch.nn.Identity(), 1, log_std_min=-5.0, log_std_max=2.0)
    raw = torch.tensor([[0.3, -0.7], [0.0, -9.0], [0.0, 3.5]])
    _, log_std = policy.distribution(raw)
    torch.testing.assert_close(log_std.squeeze(-1), torch.tensor([-0.7, -5.0, 2.0]))


def test_default_multihead_trunk_sees_the_task_id():
    torch.manual_seed(0)
    net = MultiHead(OBS, 2, T, hidden_sizes=(32, 32))
    obs = torch.randn(1, OBS).expand(T, OBS)
    feats = net.features(obs, torch.arange(T))
    assert not torch.allclose(feats[0], feats[1])  # only the task id differs
    assert net.trunk[0].in_features == OBS + T
    obs_only = MultiHead(OBS, 2, T, hidden_sizes=(32, 32), task_input=False)
    feats = obs_only.features(obs, torch.arange(T))
    torch.testing.assert_close(feats[0], feats[1])


def test_shared_temperature_is_one_value_moved_by_the_mean_entropy_gap():
    net = {"type": "mlp", "hidden_sizes": [16], "activation": "relu"}
    agent = SAC(5, 2, T, net, alpha_lr=0.1, shared_temperature=True)
    assert agent.log_alpha_param.shape == (1,)
    # log pi + target entropy (-|A| = -2): gaps 3, 0, -3 -> mean 0
    log_prob = torch.tensor([5.0, 2.0, -1.0])
    agent.temperature_step(log_prob)
    torch.testing.assert_close(agent.log_alpha, torch.zeros(T))  # zero gradient: no move
    # gap +3 (entropy below target): alpha must rise; Adam's first non-zero step is
    # lr * sign(-grad) = +0.1 whatever the gradient's size (grad = -mean gap = -3)
    agent.temperature_step(torch.tensor([5.0, 5.0, 5.0]))
    assert agent.log_alpha_param.item() > 0
    assert torch.all(agent.log_alpha == agent.log_alpha[0])
    per_task = SAC(5, 2, T, net, alpha_lr=0.1)
    per_task.temperature_step(log_prob)
    moved = per_task.log_alpha.detach()
    assert moved[2] < 0 < moved[0] and math.isclose(moved[1].item(), 0.0, abs_tol=1e-7)


def test_agents_saved_before_the_defaults_changed_load_with_their_old_behaviour(tmp_path):
    old = {"network": {"type": "multihead", "hidden_sizes": [8], "activation": "relu"},
           "log_std_min": -20.0, "log_std_max": 2.0}
    upgraded = upgrade_kwargs(dict(old))
    assert upgraded["log_std_mode"] == "tanh"
    assert upgraded["network"]["multihead"] == {"task_input": False}
    agent = SAC(5, 2, T, {"type": "multihead", "hidden_sizes": [8], "activation": "relu"})
    agent.save(tmp_path / "a.pt")
    loaded = load_agent(tmp_path / "a.pt")  # saved now: explicit options, nothing upgraded
    assert loaded.actor.network.task_input and loaded.actor.log_std_mode == "clip"
    assert loaded.tanh_correction == "bounded"
    assert upgrade_kwargs({"init_temperature": 1.0, "log_std_mode": "clip"})[
        "tanh_correction"] == "exact"  # saved before the bounded correction became the default


def test_tanh_correction_by_hand():
    from mtrl.agents.policy import squash_correction

    u = torch.tensor([[0.0, 0.5], [20.0, -20.0]])
    exact = squash_correction(u, "exact")
    bounded = squash_correction(u, "bounded")
    by_hand = [math.log(1 - math.tanh(0.5) ** 2), 0.0]
    assert math.isclose(exact[0].item(), by_hand[0], rel_tol=1e-5)
    assert math.isclose(bounded[0].item(), math.log(1 + 1e-6) + math.log(
        1 - math.tanh(0.5) ** 2 + 1e-6), rel_tol=1e-5)
    # saturated: exact is 2 (log 2 - |u|) per dim, bounded stops at log(1e-6) per dim
    assert math.isclose(exact[1].item(), 4 * (math.log(2) - 20), rel_tol=1e-5)
    assert math.isclose(bounded[1].item(), 2 * math.log(1e-6), rel_tol=1e-4)


def test_sac_uses_the_configured_tanh_correction():
    net = {"type": "mlp", "hidden_sizes": [8], "activation": "relu"}
    mean, log_std = torch.full((1, 2), 12.0), torch.zeros(1, 2)
    noise = torch.zeros(1, 2)
    costs = {c: SAC(5, 2, T, net, tanh_correction=c).policy_sample(
        (mean, log_std), noise, torch.ones(1))[2].item() for c in ("bounded", "exact")}
    gauss = -2 * 0.5 * math.log(2 * math.pi)
    assert math.isclose(costs["bounded"], gauss - 2 * math.log(1e-6), rel_tol=1e-3)
    assert math.isclose(costs["exact"], gauss - 4 * (math.log(2) - 12), rel_tol=1e-4)


def test_bronet_saved_with_a_width_option_loads_with_that_width():
    spec = {"type": "bronet", "hidden_sizes": [400], "activation": "relu",
            "bronet": {"width": 24, "num_blocks": 1, "task_input": True}}
    upgraded = upgrade_kwargs({"network": dict(spec), "critic_network": dict(spec)})
    for key in ("network", "critic_network"):
        assert upgraded[key]["hidden_sizes"] == [24]
        assert upgraded[key]["bronet"] == {"num_blocks": 1, "task_input": True}


def test_other_networks_saved_with_the_old_bronet_width_keep_their_hidden_sizes():
    # every config before the change carried bronet.width (256 by default), whatever the type
    spec = {"type": "multihead", "hidden_sizes": [256, 256], "activation": "relu",
            "multihead": {"task_input": True},
            "bronet": {"width": 256, "num_blocks": 1, "task_input": True}}
    upgraded = upgrade_kwargs({"network": dict(spec)})
    assert upgraded["network"]["hidden_sizes"] == [256, 256]
    assert upgraded["network"]["bronet"] == {"num_blocks": 1, "task_input": True}
