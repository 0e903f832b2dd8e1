"""Routing networks (Rosenbaum et al. 2017/2019): hard routes by hand, greedy eval, REINFORCE
by hand, gradient and router isolation, collapse metrics, SAC credit assignment, config."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from mtrl.agents import SAC
from mtrl.config import load_config
from mtrl.data import Batch
from mtrl.errors import MtrlError
from mtrl.nn import (Ensemble, RoutingNetwork, build_network, last_shared_weight_name,
                     network_metrics, observe_task_losses, task_parameter_names)
from mtrl.training.logging import network_scalars

from conftest import fake_config


def spec(hidden=(8, 8), **options) -> dict:
    return {"type": "routing", "hidden_sizes": list(hidden), "activation": "relu",
            "routing": options}


def state(net: RoutingNetwork) -> dict:
    tensors = dict(net.named_parameters())
    tensors.update(dict(net.named_buffers()))
    return tensors


def set_route(net: RoutingNetwork, route) -> None:
    with torch.no_grad():
        net.route.copy_(torch.as_tensor(route))


def reference_forward(net: RoutingNetwork, x: torch.Tensor, task_id: torch.Tensor,
                      routes: torch.Tensor) -> torch.Tensor:
    """Row by row (for testing only): the trunk, then at each depth the one chosen module
    (or the identity for ``pass``), then the task's head."""
    out = []
    for b in range(x.shape[0]):
        h = net.trunk(x[b : b + 1])[0]
        t = int(task_id[b])
        for d, layer in enumerate(net.routed):
            c = int(routes[t, d])
            if c == net.num_modules:
                continue  # pass
            h = torch.relu(h @ layer.weight[c] + layer.bias[c])
        out.append(h @ net.head.weight[t] + net.head.bias[t])
    return torch.stack(out)


# ---------------------------------------------------------------------------- the routes
def test_hard_routing_uses_exactly_one_module_per_depth_by_hand():
    # 1 input, hidden [1, 1], 2 modules per depth (+ pass: widths agree), 1 output, 2 tasks
    net = RoutingNetwork(1, 1, 2, hidden_sizes=(1, 1), num_modules=2)
    assert net.pass_at == (True, True) and net.num_choices == 3
    with torch.no_grad():
        net.routed[0].weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1))
        net.routed[0].bias.zero_()
        net.routed[1].weight.copy_(torch.tensor([3.0, 5.0]).view(2, 1, 1))
        net.routed[1].bias.copy_(torch.tensor([[1.0], [0.0]]))
        net.head.weight.copy_(torch.tensor([1.0, 7.0]).view(2, 1, 1))
        net.head.bias.zero_()
    x, task = torch.ones(2, 1), torch.tensor([0, 1])
    # task 0: modules (0, 1): relu(2 * 1) = 2, relu(5 * 2) = 10, head 1 -> 10
    # task 1: modules (1, 0): relu(-1) = 0, relu(3 * 0 + 1) = 1, head 7 -> 7
    set_route(net, [[0, 1], [1, 0]])
    torch.testing.assert_close(net(x, task), torch.tensor([[10.0], [7.0]]))
    # pass: task 0 (0, pass): 2 -> 2; task 1 (pass, 0): 1 -> relu(3 + 1) = 4, head 7 -> 28
    set_route(net, [[0, 2], [2, 0]])
    torch.testing.assert_close(net(x, task), torch.tensor([[2.0], [28.0]]))


def test_batched_forward_equals_the_row_by_row_definition():
    torch.manual_seed(0)
    net = RoutingNetwork(5, 3, 4, hidden_sizes=(6, 8, 8), num_modules=3, routed_layers=2)
    assert len(net.trunk) == 2 and net.depth == 2 and net.pass_at == (False, True)
    x, task = torch.randn(9, 5), torch.tensor([3, 0, 1, 1, 2, 0, 3, 2, 2])
    for _ in range(3):
        set_route(net, torch.stack([torch.randint(0, 3, (4,)), torch.randint(0, 4, (4,))], -1))
        torch.testing.assert_close(net(x, task), reference_forward(net, x, task, net.route))
    assert task_parameter_names(net) == {"head.weight", "head.bias"}
    assert last_shared_weight_name(net) == "routed.1.weight"
    assert net.routed[1].weight.shape == (3, 8, 8)  # a depth's modules: one batched tensor


def test_eval_mode_and_forwards_without_autograd_take_the_greedy_route():
    torch.manual_seed(1)
    net = RoutingNetwork(5, 2, 3, hidden_sizes=(8, 8), num_modules=3)
    with torch.no_grad():
        net.router_logits.copy_(torch.randn_like(net.router_logits) * 3)
    greedy = net.router_logits.detach().masked_fill(~net.choice_mask, -math.inf).argmax(-1)
    assert (greedy[:, 0] < 3).all()  # no pass where widths differ (5 -> 8)
    torch.testing.assert_close(net.greedy_routes(), greedy)
    sampled = (greedy + 1) % 3  # another valid route for every task
    set_route(net, sampled)
    x, task = torch.randn(10, 5), torch.arange(3).repeat(4)[:10]
    train_out = net(x, task)  # training forward: the sampled decisions
    torch.testing.assert_close(train_out, reference_forward(net, x, task, sampled))
    with torch.no_grad():  # acting / Bellman targets: greedy
        torch.testing.assert_close(net(x, task), reference_forward(net, x, task, greedy))
    net.eval()
    outs = [net(x, task) for _ in range(3)]
    torch.testing.assert_close(outs[0], reference_forward(net, x, task, greedy))
    assert all(torch.equal(outs[0], o) for o in outs[1:])  # deterministic
    # the twin-critic ensemble passes eval mode on to its member architecture
    critic = Ensemble([RoutingNetwork(5, 1, 3, hidden_sizes=(8, 8)) for _ in range(2)])
    critic.eval()
    assert not critic.template.training
    critic.train()
    assert critic.template.training


def test_pass_is_offered_only_where_widths_agree_and_never_sampled_elsewhere():
    torch.manual_seed(0)
    net = RoutingNetwork(5, 2, 50, hidden_sizes=(8, 8, 6), num_modules=2)
    assert net.pass_at == (False, True, False)
    for _ in range(5):
        observe_task_losses(net, torch.rand(50))
        assert (net.route[:, 0] < 2).all() and (net.route[:, 2] < 2).all()
    assert (net.route[:, 1] == 2).any()  # pass is sampled where it is allowed
    no_pass = RoutingNetwork(5, 2, 3, hidden_sizes=(8, 8), allow_pass=False)
    assert no_pass.num_choices == 4 and no_pass.pass_at == (False, False)


def test_decisions_follow_the_router_probabilities_from_a_reproducible_stream():
    from mtrl.nn.routing import sample_routes

    logits = torch.log(torch.tensor([0.7, 0.2, 0.1, 1.0])).view(1, 1, 4)
    mask = torch.tensor([[True, True, True, False]])  # the last choice is not allowed here
    draws = torch.stack([sample_routes(logits, mask, torch.tensor(7), torch.tensor(k))
                         for k in range(4000)]).flatten()
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    torch.testing.assert_close(freq, torch.tensor([0.7, 0.2, 0.1, 0.0]), atol=0.03, rtol=0)
    same = sample_routes(logits, mask, torch.tensor(7), torch.tensor(3))
    assert torch.equal(same, sample_routes(logits, mask, torch.tensor(7), torch.tensor(3)))
    # two agents with one seed draw the same decisions; the global stream plays no part
    agents = []
    for _ in range(2):
        agent = SAC(6, 2, 3, spec(hidden=(16, 16), router_lr=0.5), seed=3)
        for step in range(3):
            torch.manual_seed(100 + len(agents))  # a different global state each time
            agent.update(fake_batch(3, seed=step))
        agents.append(agent)
    a, b = (x.critic.member_state() for x in agents)
    assert torch.equal(a["route"], b["route"]) and torch.equal(a["router_logits"],
                                                                 b["router_logits"])
    assert not torch.equal(a["route"][0], a["route"][1]) or \
        not torch.equal(a["noise_seed"][0], a["noise_seed"][1])  # the twins' own streams
    assert int(a["draws"][0]) == 4  # one draw at construction, one per update


def test_gradient_reaches_only_the_chosen_modules():
    torch.manual_seed(0)
    net = RoutingNetwork(4, 2, 2, hidden_sizes=(6, 6, 6), num_modules=3)
    set_route(net, [[0, 3, 1], [2, 1, 1]])  # task 0: module 0, pass, module 1
    x = torch.randn(8, 4)
    net(x, torch.zeros(8, dtype=torch.long)).square().sum().backward()
    used = {0: {0}, 1: set(), 2: {1}}
    for d, layer in enumerate(net.routed):
        for k in range(3):
            touched = layer.weight.grad[k].abs().sum() + layer.bias.grad[k].abs().sum()
            assert (touched > 0) == (k in used[d]), (d, k)
    assert net.head.weight.grad[1].abs().sum() == 0  # task 1's head
    assert net.router_logits.grad is None  # the router learns by REINFORCE only
    net.zero_grad()
    net(x, torch.tensor([0, 1] * 4)).square().sum().backward()  # both tasks: the union
    assert net.routed[0].weight.grad[1].abs().sum() == 0  # nobody chose module 1 at depth 0
    assert net.routed[1].weight.grad[1].abs().sum() > 0
    assert net.routed[1].weight.grad[[0, 2]].abs().sum() == 0


# ------------------------------------------------------------------------------ REINFORCE
def test_a_reinforce_step_by_hand_raises_the_better_choice():
    # one task, one depth (3 -> 4: no pass), two modules; raw advantages
    net = RoutingNetwork(3, 1, 1, hidden_sizes=(4,), num_modules=2, router_lr=0.5,
                         baseline_decay=0.5, normalize_advantage=False)
    logits = net.router_logits
    set_route(net, [[0]])
    observe_task_losses(net, torch.tensor([2.0]))  # no baseline yet: no step
    torch.testing.assert_close(logits.detach(), torch.zeros(1, 1, 2))
    # baseline: EMA sum 0.5 * (-2) = -1, bias-corrected by 1 - 0.5 -> b = -2
    set_route(net, [[0]])
    observe_task_losses(net, torch.tensor([1.0]))  # r = -1, A = -1 - (-2) = 1
    # logits += 0.5 * 1 * (one_hot(0) - (0.5, 0.5)) = (0.25, -0.25)
    torch.testing.assert_close(logits.detach(), torch.tensor([[[0.25, -0.25]]]))
    p = torch.softmax(torch.tensor([0.25, -0.25]), 0)
    assert p[0] > 0.5
    # baseline: EMA sum 0.5 * (-1) + 0.5 * (-1) = -1, corrected by 1 - 0.25 -> b = -4/3
    set_route(net, [[1]])
    observe_task_losses(net, torch.tensor([3.0]))  # module 1: r = -3, A = -3 + 4/3 = -5/3
    expected = torch.tensor([0.25, -0.25]) + 0.5 * (-5 / 3) * (torch.tensor([0.0, 1.0]) - p)
    torch.testing.assert_close(logits.detach()[0, 0], expected)
    assert torch.softmax(logits.detach()[0, 0], 0)[0] > p[0]  # the worse module lost ground


def test_the_router_learns_the_module_with_the_lower_loss():
    """A bandit: the loss of each update is 1 with module 0 at depth 0, 2 otherwise (+ noise);
    the network samples its own decisions between updates (normalised advantages)."""
    torch.manual_seed(0)
    net = RoutingNetwork(3, 1, 2, hidden_sizes=(4,), num_modules=3, router_lr=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        loss = torch.where(net.route[:, 0] == 0, 1.0, 2.0) + 0.3 * torch.randn(2, generator=g)
        observe_task_losses(net, loss)
    probs = torch.softmax(net.router_logits.detach(), -1)[:, 0]
    assert (probs[:, 0] > 0.9).all(), probs


def test_a_tasks_router_moves_only_with_its_own_loss():
    torch.manual_seed(0)
    nets = [RoutingNetwork(3, 1, 3, hidden_sizes=(4, 4), num_modules=2) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    for step in range(4):
        losses = torch.tensor([1.0, 2.0, 3.0]) + 0.1 * step * torch.tensor([1.0, -1.0, 2.0])
        route = nets[0].route.clone()  # the same decisions in both
        for i, net in enumerate(nets):
            set_route(net, route)
            observe_task_losses(net, losses if i == 0 or step < 3
                                else losses + torch.tensor([0.0, 5.0, 0.0]))
    a, b = (n.router_logits.detach() for n in nets)
    assert not torch.equal(a[1], b[1])  # task 1's router saw another loss ...
    torch.testing.assert_close(a[[0, 2]], b[[0, 2]], rtol=0, atol=0)  # ... the others did not
    torch.testing.assert_close(nets[0].reward_mean[[0, 2]], nets[1].reward_mean[[0, 2]])


def test_collaboration_reward_by_hand():
    # two tasks, one depth, two modules; no baseline yet, so only the collaboration term acts
    net = RoutingNetwork(3, 1, 2, hidden_sizes=(4,), num_modules=2, router_lr=1.0,
                         normalize_advantage=False, collaboration_reward=0.5)
    with torch.no_grad():
        net.router_logits[1, 0].copy_(torch.log(torch.tensor([0.9, 0.1])))
    set_route(net, [[0], [0]])
    observe_task_losses(net, torch.tensor([1.0, 1.0]))
    # task 0 (uniform) chose 0: bonus rho * p_1 = (0.45, 0.05); gain 0.45 - 0.25 = 0.2;
    # logits += 1.0 * 0.2 * ((1, 0) - (0.5, 0.5)) = (0.1, -0.1)
    torch.testing.assert_close(net.router_logits.detach()[0, 0], torch.tensor([0.1, -0.1]))
    # task 1 chose 0 with p = 0.9: bonus (0.25, 0.25) from uniform task 0: gain 0
    torch.testing.assert_close(net.router_logits.detach()[1, 0],
                               torch.log(torch.tensor([0.9, 0.1])))


def test_non_finite_losses_leave_the_router_and_baseline_alone():
    net = RoutingNetwork(3, 1, 2, hidden_sizes=(4,), num_modules=2, router_lr=1.0)
    for loss in (1.0, 2.0, 1.5):
        observe_task_losses(net, torch.tensor([loss, loss]))
    before = {k: v.clone() for k, v in state(net).items()}
    observe_task_losses(net, torch.tensor([math.nan, 1.0]))
    assert torch.isfinite(net.router_logits).all()
    torch.testing.assert_close(net.router_logits[0], before["router_logits"][0])
    torch.testing.assert_close(net.reward_mean[0], before["reward_mean"][0])
    assert net.reward_count.tolist() == [3.0, 4.0]


# ------------------------------------------------------------------------------- metrics
def test_collapse_metrics_by_hand():
    net = RoutingNetwork(3, 1, 2, hidden_sizes=(4, 4), num_modules=2)  # pass at depth 1
    big = 20.0
    with torch.no_grad():
        net.router_logits.zero_()
        net.router_logits[0, 0, 0] = big  # depth 0: task 0 -> module 0, task 1 -> module 1
        net.router_logits[1, 0, 1] = big
        net.router_logits[:, 1, 0] = big  # depth 1: both -> module 0 (collapsed)
    m = network_metrics(net)
    assert m["routing/modules_used_d0"] == 2 and m["routing/modules_used_d1"] == 1
    torch.testing.assert_close(m["routing/modules_expected_d0"], torch.tensor(2.0))
    torch.testing.assert_close(m["routing/modules_expected_d1"], torch.tensor(1.0))
    assert m["routing/pass_d1"] == 0 and "routing/pass_d0" not in m
    assert float(m["routing/entropy"]) < 1e-6
    uniform = network_metrics(RoutingNetwork(3, 1, 2, hidden_sizes=(4, 4), num_modules=2))
    # depth 0: 2 choices, depth 1: 3 (with pass): entropy (log 2 + log 3) / 2 per task
    torch.testing.assert_close(uniform["routing/entropy_per_task"],
                               torch.full((2,), (math.log(2) + math.log(3)) / 2))
    # expected distinct modules at depth 0 with uniform tasks: 2 * (1 - (1/2)^2) = 1.5
    torch.testing.assert_close(uniform["routing/modules_expected_d0"], torch.tensor(1.5))


def test_metrics_reach_the_training_log_for_actor_and_critic(run_dir):
    from mtrl.training.loop import train

    config = fake_config("env.tasks=fake:2", "env.envs_per_task=1",
                         "agent.network.hidden_sizes=[16,16]", "replay.batch_per_task=16",
                         "train.steps_per_task=140", "train.warmup_steps_per_task=100",
                         "train.eval_episodes=2", "log.every=20", "log.tensorboard=false",
                         preset="mt10_routing")
    train(config, run_dir)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "train/actor/routing/entropy" in r]
    assert logged, records[-1].keys()
    last = logged[-1]
    for key in ("train/critic/routing/entropy", "train/critic/routing/modules_used_d0",
                "train/actor/routing/modules_expected_d1", "train/actor/routing/pass_d1",
                "train/actor/routing/entropy/fake-task-0"):
        assert key in last and math.isfinite(last[key]), key
    assert not any("critic_target" in k for k in last)  # the frozen copy reports nothing


# ------------------------------------------------------------------------- SAC, ensemble
def fake_batch(num_tasks: int, rows: int = 8, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    n = num_tasks * rows
    return Batch(obs=torch.randn(n, 6, generator=g), action=torch.rand(n, 2, generator=g) * 2 - 1,
                 reward=torch.rand(n, generator=g), next_obs=torch.randn(n, 6, generator=g),
                 terminated=torch.zeros(n), task_id=torch.arange(num_tasks).repeat_interleave(rows),
                 rows_per_task=rows)


def test_ensemble_members_route_independently_and_match_each_member():
    torch.manual_seed(0)
    members = [build_network(spec(num_modules=3), 7, 1, 4) for _ in range(2)]
    critic = Ensemble(members)
    assert not torch.equal(members[0].route, members[1].route)
    x, task = torch.randn(12, 7), torch.arange(4).repeat(3)
    torch.testing.assert_close(critic(x, task), torch.stack([m(x, task) for m in members]))
    with torch.no_grad():
        torch.testing.assert_close(critic(x, task), torch.stack([m(x, task) for m in members]))


def test_sac_credits_the_decisions_of_the_loss_forwards():
    """The critic's routers get ``-critic_loss_per_task`` for the routes of the critic-loss
    forward (both twins), the actor's router ``-actor loss`` for the routes of the actor-loss
    forward; then new routes are drawn and the target critic's logits follow by Polyak."""
    lr = 0.1
    agent = SAC(6, 2, 3, spec(hidden=(16, 16), router_lr=lr, normalize_advantage=False,
                              baseline_decay=0.5), seed=0)
    actor = agent.actor.network
    critic = agent.critic.member_state()
    for s in (state(actor), critic):  # a baseline of 0 for every task: A_t = -L_t
        s["reward_count"].fill_(1.0)
    with torch.no_grad():
        actor.router_logits.copy_(torch.randn_like(actor.router_logits))
        critic["router_logits"].copy_(torch.randn_like(critic["router_logits"]))
    mask = actor.choice_mask
    before = {"actor": (actor.router_logits.detach().clone(), actor.route.clone()),
              "critic": (critic["router_logits"].detach().clone(), critic["route"].clone())}
    target_before = agent.critic_target.member_state()["router_logits"].clone()
    metrics = agent.update(fake_batch(3))

    def score(logits, route):
        probs = logits.masked_fill(~mask, -math.inf).softmax(-1)
        return F.one_hot(route, logits.shape[-1]).float() - probs

    logits0, route0 = before["critic"]
    delta = critic["router_logits"].detach() - logits0  # (2, T, D, C)
    expected = lr * (-metrics["critic_loss_per_task"]).view(1, 3, 1, 1) * score(logits0, route0)
    torch.testing.assert_close(delta, expected)
    logits0, route0 = before["actor"]
    delta = actor.router_logits.detach() - logits0  # (T, D, C) = k_t * score(route0)
    s = score(logits0, route0)
    k = (delta * s).sum((-1, -2)) / s.square().sum((-1, -2))
    torch.testing.assert_close(delta, k.view(3, 1, 1) * s)  # exactly the routes used
    torch.testing.assert_close(k.mean(), -lr * metrics["actor_loss"])
    target = agent.critic_target.member_state()["router_logits"]
    torch.testing.assert_close(target, target_before + agent.tau * (
        critic["router_logits"].detach() - target_before))


@pytest.mark.parametrize("popart,combiner", [(False, "mean"), (True, "pcgrad"), (False, "mgda")])
def test_sac_updates_train_modules_heads_and_routers(popart, combiner):
    agent = SAC(6, 2, 3, spec(hidden=(16, 16), router_lr=0.1), actor_combiner=combiner,
                critic_combiner=combiner, popart=popart, seed=0)
    actor = {k: v.clone() for k, v in agent.actor.named_parameters()}
    critic = {k: v.clone() for k, v in agent.critic.named_parameters()}
    for step in range(4):
        metrics = agent.update(fake_batch(3, seed=step))
    assert all(torch.isfinite(v).all() for v in metrics.values())
    for before, module in ((actor, agent.actor), (critic, agent.critic)):
        changed = {k for k, v in module.named_parameters() if not torch.equal(before[k], v)}
        assert any("routed" in k for k in changed) and any("head" in k for k in changed)
        assert any("router_logits" in k for k in changed)
    scalars = network_scalars(agent, ["a", "b", "c"])
    assert "train/actor/routing/entropy" in scalars and "train/critic/routing/entropy/b" in scalars


def test_per_task_gradients_by_vmap_sum_to_the_batch_gradient():
    agent = SAC(6, 2, 3, spec(hidden=(16, 16)), seed=0)
    batch = fake_batch(3, rows=4)
    for loss in (agent.critic_loss(batch, agent.critic_targets(batch)), agent.actor_loss(batch)):
        losses, grads = loss.task_gradients()
        values = loss.values()
        torch.testing.assert_close(losses, values.detach(), rtol=1e-4, atol=1e-4)
        names = list(grads)
        full = torch.autograd.grad(values.sum(), [loss.params[n] for n in names],
                                   allow_unused=True)
        for name, g in zip(names, full):
            expected = torch.zeros_like(grads[name][0]) if g is None else g
            torch.testing.assert_close(grads[name].sum(0), expected, rtol=1e-3, atol=1e-4)


def test_state_dict_round_trip_keeps_router_routes_and_actions():
    agent = SAC(6, 2, 3, spec(hidden=(16, 16), router_lr=0.5), seed=0)
    for step in range(3):
        agent.update(fake_batch(3, seed=step))
    clone = SAC(6, 2, 3, spec(hidden=(16, 16), router_lr=0.5), seed=1)
    clone.load_state_dict(agent.state_dict())
    for name in ("router_logits", "route", "reward_mean", "reward_count", "noise_seed",
                 "draws"):
        torch.testing.assert_close(clone.critic.member_state()[name],
                                   agent.critic.member_state()[name])
    x, t = torch.randn(9, 6), torch.arange(3).repeat(3)
    torch.testing.assert_close(clone.act_tensor(x, t, True), agent.act_tensor(x, t, True))


def test_grouped_routing_networks_observe_and_report():
    torch.manual_seed(0)
    net = build_network({**spec(num_modules=2, router_lr=0.5), "groups": [[0, 2], [1]]}, 5, 2, 3)
    for _ in range(3):
        observe_task_losses(net, torch.tensor([1.0, 2.0, 3.0]))
    assert net.networks.member_state()["router_logits"].abs().sum() > 0
    assert "routing/entropy" in network_metrics(net)


# ------------------------------------------------------------------------------- config
def test_preset_builds_an_agent_that_updates():
    config = load_config("mt10_routing", ["agent.network.hidden_sizes=[32,32]"])
    assert config.agent.network.type == "routing"
    import dataclasses

    agent = SAC(39, 4, 10, dataclasses.asdict(config.agent.network), seed=0)
    assert agent.actor.network.num_modules == 4 and agent.actor.network.pass_at == (False, True)
    b = 2
    batch = Batch(torch.randn(20, 39), torch.rand(20, 4) * 2 - 1, torch.randn(20),
                  torch.randn(20, 39), torch.zeros(20), torch.arange(10).repeat_interleave(b), b)
    metrics = agent.update(batch)
    assert math.isfinite(float(metrics["critic_loss"]))


@pytest.mark.parametrize("override,match", [
    ("num_modules=0", "agent.network.routing.num_modules"),
    ("routed_layers=-1", "agent.network.routing.routed_layers"),
    ("router_lr=-0.1", "agent.network.routing.router_lr"),
    ("baseline_decay=1.0", "agent.network.routing.baseline_decay"),
    ("collaboration_reward=-1", "agent.network.routing.collaboration_reward"),
    ("num_modules=four", "agent.network.routing.num_modules"),
    ("modules=4", "agent.network.routing"),
])
def test_bad_options_are_one_line_errors(override, match):
    with pytest.raises(MtrlError, match=match) as info:
        load_config("mt10_routing", [f"agent.network.routing.{override}"])
    assert "\n" not in str(info.value)


def test_constructor_errors_are_clear():
    with pytest.raises(MtrlError, match="routed_layers"):
        build_network(spec(hidden=(8, 8), routed_layers=3), 5, 2, 3)
    with pytest.raises(MtrlError, match="hidden layer"):
        build_network(spec(hidden=()), 5, 2, 3)
    with pytest.raises(MtrlError, match="num_modules"):
        build_network(spec(num_modules=0), 5, 2, 3)
