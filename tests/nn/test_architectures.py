"""The multi-task architectures (softmod, care, film, paco, moore): shapes, the twin-critic
ensemble, per-task parameter isolation, each method's defining computation, presets, and
learning on the fake env."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mtrl.agents.sac import SAC
from mtrl.config import load_config
from mtrl.data.replay import Batch
from mtrl.envs.tasks import MT10_TASKS, MT50_TASKS
from mtrl.errors import MtrlError
from torch.func import functional_call

from mtrl.nn import (CARE, MOORE, Ensemble, FiLM, PaCo, SoftModularization, build_network,
                     observe_task_losses, task_loss_mask, task_parameter_names)
from mtrl.optim import TaskLoss, build_combiner
from mtrl.nn.care import EMBEDDINGS_FILE, load_task_embeddings
from mtrl.nn.moore import orthonormalize
from mtrl.nn.paco import reset_weights

from conftest import fake_config

ARCHS = ("softmod", "care", "film", "paco", "moore")
TINY = {  # small but structurally complete versions
    "softmod": {"num_layers": 3, "num_modules": 3, "module_hidden": 8, "routing_hidden": 8},
    "care": {"num_experts": 3, "encoder_hidden": [8], "encoder_dim": 8, "context_dim": 8,
             "context_hidden": [8], "attention_hidden": [8]},
    "film": {"embedding_dim": 8, "generator_hidden": [8]},
    "paco": {"num_param_sets": 3},
    "moore": {"num_experts": 3},
}
TASK_SPECS = {3: "reach-v3,push-v3,pick-place-v3", 10: "MT10", 50: "MT50"}


@pytest.fixture(autouse=True)
def one_thread():
    """These small networks run as fast on one thread, and do not stall on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spec(kind: str, num_tasks: int = 10, hidden=(16, 16), **options) -> dict:
    opts = dict(TINY[kind], **options)
    if kind == "care" and opts.get("context", "language") == "language":
        opts.setdefault("tasks", TASK_SPECS[num_tasks])
    return {"type": kind, "hidden_sizes": list(hidden), "activation": "relu", kind: opts}


def inputs(num_tasks: int, rows: int = 12, dim: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, dim, generator=g), torch.randint(0, num_tasks, (rows,), generator=g)


@pytest.mark.parametrize("num_tasks", [3, 10, 50])
@pytest.mark.parametrize("kind", ARCHS)
def test_actor_and_twin_critic_shapes(kind, num_tasks):
    torch.manual_seed(0)
    actor = build_network(spec(kind, num_tasks), 7, 4, num_tasks)
    x, t = inputs(num_tasks)
    assert actor(x, t).shape == (12, 4)
    critic = Ensemble([build_network(spec(kind, num_tasks), 9, 1, num_tasks) for _ in range(2)])
    assert critic(torch.randn(12, 9), t).shape == (2, 12, 1)


@pytest.mark.parametrize("kind", ARCHS)
def test_ensemble_vmap_matches_each_member(kind):
    """The twin critics run as one vmapped functional_call; each slice is its own network."""
    torch.manual_seed(1)
    members = [build_network(spec(kind), 9, 1, 10) for _ in range(2)]
    x, t = inputs(10, dim=9)
    expected = torch.stack([m(x, t) for m in members])
    torch.testing.assert_close(Ensemble(members)(x, t), expected, rtol=1e-5, atol=1e-5)
    assert task_parameter_names(Ensemble(members)) == {
        n.replace(".", "__") for n in task_parameter_names(members[0])}


def _batch(num_tasks: int, rows: int, obs_dim: int = 7, act_dim: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n = num_tasks * rows
    return Batch(torch.randn(n, obs_dim, generator=g), torch.rand(n, act_dim, generator=g) * 2 - 1,
                 torch.randn(n, generator=g), torch.randn(n, obs_dim, generator=g), torch.zeros(n),
                 torch.arange(num_tasks).repeat_interleave(rows), rows)


@pytest.mark.parametrize("kind", ARCHS)
def test_per_task_gradients_by_vmap_sum_to_the_batch_gradient(kind):
    """Gradient combiners' per-task gradients (vmap over task blocks) work on every arch."""
    agent = SAC(7, 2, 3, spec(kind, num_tasks=3), seed=0)
    batch = _batch(3, 4)
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


@pytest.mark.parametrize("kind", ARCHS)
def test_state_dict_round_trip_gives_identical_actions(kind):
    agent = SAC(7, 2, 3, spec(kind, num_tasks=3), seed=0)
    agent.update(_batch(3, 4))
    clone = SAC(7, 2, 3, spec(kind, num_tasks=3), seed=1)
    clone.load_state_dict(agent.state_dict())
    x, t = inputs(3)
    torch.testing.assert_close(clone.act_tensor(x, t, True), agent.act_tensor(x, t, True))


EXPECTED_TASK_PARAMS = {
    "softmod": {"task_embed.weight"},
    "care": {"context.embedding.weight"},  # with the learned context (language: none)
    "film": {"embedding.weight"},
    "paco": {"composition.weight"},
    "moore": {"task_weights.weight", "head.weight", "head.bias"},
}


@pytest.mark.parametrize("kind", ARCHS)
def test_task_k_loss_leaves_other_tasks_parameters_untouched(kind):
    torch.manual_seed(2)
    net = build_network(spec(kind, context="learned") if kind == "care" else spec(kind), 7, 3, 10)
    names = task_parameter_names(net)
    assert names == EXPECTED_TASK_PARAMS[kind]
    if kind == "film":  # its generator starts at zero (identity FiLM): make it pass gradient
        torch.nn.init.normal_(net.generator[-1].weight)
    x, _ = inputs(10)
    net(x, torch.full((12,), 4)).square().sum().backward()
    params = dict(net.named_parameters())
    for name in names:
        grad = params[name].grad
        assert grad[4].abs().sum() > 0, name  # task 4's own slice learns
        others = torch.cat([grad[:4], grad[5:]])
        assert torch.count_nonzero(others) == 0, name


def test_care_language_context_has_no_per_task_parameters():
    net = build_network(spec("care"), 7, 3, 10)
    assert task_parameter_names(net) == set()
    assert not any(p.requires_grad for n, p in net.named_buffers())


# ---------------------------------------------------------------- soft modularization
def test_softmod_routing_weights_are_softmax_over_source_modules():
    torch.manual_seed(3)
    net = SoftModularization(7, 3, 10, hidden_sizes=(16, 16), num_layers=4, num_modules=3,
                             module_hidden=8, routing_hidden=8)
    x, t = inputs(10)
    weights, last, _ = net.routing(x, t)
    assert len(weights) == 3 and all(w.shape == (12, 3, 3) for w in weights)
    for w in weights:
        assert (w >= 0).all()
        torch.testing.assert_close(w.sum(1), torch.ones(12, 3))  # sum over sources i
        assert not torch.allclose(w.sum(2), torch.ones(12, 3))  # not over targets j
    assert (last >= 0).all() and torch.allclose(last.sum(-1), torch.ones(12))
    # different tasks route the same observation differently
    w_a = net.routing(x[:1], torch.tensor([0]))[0][0]
    w_b = net.routing(x[:1], torch.tensor([7]))[0][0]
    assert not torch.allclose(w_a, w_b)


def test_softmod_forward_follows_the_documented_i_j_convention():
    """Module j of layer l reads relu(sum_i P[i, j] * out_i of layer l-1), by hand."""
    torch.manual_seed(4)
    net = SoftModularization(5, 2, 4, hidden_sizes=(6,), num_layers=3, num_modules=2,
                             module_hidden=4, routing_hidden=5)
    x, t = inputs(4, rows=3, dim=5)
    weights, last, obs = net.routing(x, t)
    relu = torch.relu
    for r in range(3):
        layer = net.module_layers[0]
        outs = [relu(obs[r]) @ layer.weight[j] + layer.bias[j] for j in range(2)]
        for layer, p in zip(net.module_layers[1:], weights):
            outs = [relu(sum(p[r, i, j] * outs[i] for i in range(2))) @ layer.weight[j]
                    + layer.bias[j] for j in range(2)]
        mixed = relu(sum(last[r, j] * outs[j] for j in range(2)))
        torch.testing.assert_close(net(x, t)[r], net.head(mixed), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------- MOORE
def _gram_schmidt(u: torch.Tensor) -> torch.Tensor:
    basis = []
    for vec in u.double():
        for b in basis:
            vec = vec - (vec @ b) * b
        basis.append(vec / vec.norm())
    return torch.stack(basis)


def test_moore_representations_are_orthonormal_gram_schmidt_of_the_experts():
    torch.manual_seed(5)
    net = MOORE(7, 3, 10, hidden_sizes=(16, 12), num_experts=4)
    x, t = inputs(10)
    v = net.representations(x)
    assert v.shape == (12, 4, 12)
    torch.testing.assert_close(v @ v.transpose(1, 2), torch.eye(4).expand(12, 4, 4),
                               rtol=0, atol=1e-4)
    h = net.experts[0](x)
    h = net.experts[1](torch.relu(h))  # the raw expert outputs U
    for r in range(12):
        torch.testing.assert_close(v[r].double(), _gram_schmidt(h[r]), rtol=0, atol=1e-4)
    out = net(x, t)
    z = torch.tanh(torch.einsum("bk,bkd->bd", net.task_weights.weight[t], v))
    torch.testing.assert_close(out, net.head(z, t))


def test_orthonormalize_keeps_span_and_order():
    u = torch.tensor([[[3.0, 0.0, 0.0], [1.0, 2.0, 0.0]]])
    v = orthonormalize(u)
    torch.testing.assert_close(v, torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]),
                               rtol=0, atol=1e-5)


def test_moore_needs_width_for_its_experts():
    with pytest.raises(MtrlError, match="num_experts"):
        MOORE(7, 3, 10, hidden_sizes=(16, 2), num_experts=4)


# -------------------------------------------------------------------------------- PaCo
def test_paco_composes_parameter_sets_per_task_by_hand():
    net = PaCo(2, 1, 2, hidden_sizes=(2,), num_param_sets=2)
    with torch.no_grad():
        hidden, out = net.layers
        hidden.weight.copy_(torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]]))
        hidden.bias.copy_(torch.tensor([[0.0, 0.0], [1.0, -1.0]]))
        out.weight.copy_(torch.tensor([[[1.0], [1.0]], [[1.0], [-1.0]]]))
        out.bias.copy_(torch.tensor([[0.0], [1.0]]))
        net.composition.weight.copy_(torch.tensor([[0.5, 2.0], [1.0, 0.0]]))
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0]])
    # task 0: theta = 0.5 phi_1 + 2 phi_2 -> W = [[.5, 2], [2, .5]], b = [2, -2]:
    #   h = relu([1*.5 + 2*2 + 2, 1*2 + 2*.5 - 2]) = [6.5, 1]; W_out = [2.5, -1.5], b_out = 2
    #   y = 6.5*2.5 - 1.5 + 2 = 16.75
    # task 1: theta = phi_1: h = relu([1, 2]); y = 1 + 2 = 3
    torch.testing.assert_close(net(x, torch.tensor([0, 1])), torch.tensor([[16.75], [3.0]]))


def test_paco_reset_interpolates_normal_tasks_and_masks_exploded_ones():
    torch.manual_seed(6)
    net = PaCo(7, 3, 4, hidden_sizes=(8,), num_param_sets=3)
    before = net.composition.weight.detach().clone()
    observe_task_losses(net, torch.tensor([1.0, 5e3, -2.0, float("nan")]))
    after = net.composition.weight.detach()
    assert net.masked.tolist() == [False, True, False, True]
    torch.testing.assert_close(after[[0, 2]], before[[0, 2]])
    for row in (1, 3):  # a convex combination of rows 0 and 2
        basis = torch.stack([before[0], before[2]], 1)
        coef = torch.linalg.lstsq(basis, after[row].unsqueeze(1)).solution.squeeze(1)
        torch.testing.assert_close(basis @ coef, after[row], rtol=0, atol=1e-5)
        assert (coef >= -1e-5).all() and abs(coef.sum() - 1) < 1e-5
    observe_task_losses(net, torch.tensor([1.0, 1.0, 1.0, 1.0]))  # back under the threshold
    assert not net.masked.any()


@pytest.mark.parametrize("combiner", ["mean", "pcgrad"])
def test_paco_masks_an_exploding_task_in_the_very_update_of_its_loss(combiner):
    """The mask reaches every combiner through TaskLoss: the update whose task-1 loss
    exceeds the threshold already gets no gradient from task 1 (the reference's order)."""
    torch.manual_seed(9)
    T, b = 3, 4
    net = PaCo(5, 1, T, hidden_sizes=(8,), num_param_sets=2, reset_threshold=100.0)
    x, task = torch.randn(T * b, 5), torch.arange(T).repeat_interleave(b)
    y = torch.zeros(T * b)
    y[b:2 * b] = 1e3  # task 1's squared error ~1e6

    def rows(params, x, y, task):
        return (functional_call(net, params, (x, task)).squeeze(-1) - y).pow(2)

    params = dict(net.named_parameters())
    loss = TaskLoss(rows, params, (x, y, task), T, task_parameter_names(net),
                    task_mask=task_loss_mask(net))
    losses = build_combiner(combiner, T).backward(loss)
    assert losses[1] > 100 and losses[[0, 2]].max() < 100  # the masked loss is still reported
    got = {n: p.grad.clone() for n, p in params.items()}
    net.zero_grad()
    kept = rows(params, x, y, task).view(T, b).mean(1)[[0, 2]]
    if combiner == "mean":  # tasks 0 and 2 only, still weighted 1/T
        (kept.sum() / T).backward()
        for n, p in params.items():
            torch.testing.assert_close(got[n], p.grad, rtol=1e-5, atol=1e-6)
    _, per_task = loss.task_gradients()
    assert all(not g[1].any() for g in per_task.values())  # task 1 contributes nothing
    assert any(g[0].any() for g in per_task.values())


def test_paco_copy_reset_and_all_exploded_keeps_weights():
    torch.manual_seed(7)
    w = torch.randn(2, 5, 3)  # a stacked (ensemble) table
    exploded = torch.tensor([False, True, False, False, True])
    new = reset_weights(w, exploded, "copy")
    for e in range(2):
        for row in (1, 4):
            assert any(torch.equal(new[e, row], w[e, src]) for src in (0, 2, 3))
    torch.testing.assert_close(reset_weights(w, torch.ones(5, dtype=torch.bool)), w)


def test_sac_resets_paco_critic_when_a_task_loss_explodes():
    torch.manual_seed(8)
    network = spec("paco", num_tasks=3)
    agent = SAC(7, 2, 3, network, seed=0)
    b = 8
    reward = torch.zeros(3 * b)
    reward[b:2 * b] = 1e3  # task 1's targets are huge: its critic loss explodes
    batch = Batch(torch.randn(3 * b, 7), torch.rand(3 * b, 2) * 2 - 1, reward,
                  torch.randn(3 * b, 7), torch.zeros(3 * b), torch.arange(3).repeat_interleave(b),
                  b)
    agent.update(batch)
    state = agent.critic.member_state()
    assert state["masked"].tolist() == [[False, True, False]] * 2
    w = state["composition.weight"].detach()
    for member in range(2):  # task 1's row now interpolates tasks 0 and 2
        basis = torch.stack([w[member, 0], w[member, 2]], 1)
        coef = torch.linalg.lstsq(basis, w[member, 1].unsqueeze(1)).solution.squeeze(1)
        torch.testing.assert_close(basis @ coef, w[member, 1], rtol=0, atol=1e-5)
        assert (coef >= -1e-5).all()


# -------------------------------------------------------------------------------- CARE
def test_care_loads_the_shipped_description_embeddings():
    data = json.loads(EMBEDDINGS_FILE.read_text())
    assert sorted(data["embeddings"]) == sorted(MT50_TASKS) == sorted(data["descriptions"])
    table = load_task_embeddings(MT50_TASKS)
    assert table.shape == (50, data["dim"])
    torch.testing.assert_close(table.norm(dim=1), torch.ones(50), rtol=0, atol=1e-4)
    net = CARE(7, 3, 10, hidden_sizes=(16,), tasks="MT10", **TINY["care"])
    torch.testing.assert_close(net.context.language, load_task_embeddings(MT10_TASKS))
    assert torch.equal(net.context.language[3], torch.tensor(data["embeddings"]["door-open-v3"]))
    # related tasks have closer descriptions than unrelated ones
    sim = table @ table.T
    idx = {name: i for i, name in enumerate(MT50_TASKS)}
    assert sim[idx["door-open-v3"], idx["door-close-v3"]] > sim[idx["door-open-v3"],
                                                                 idx["basketball-v3"]]


def test_care_attention_is_a_distribution_and_does_not_train_the_context():
    torch.manual_seed(9)
    net = CARE(7, 3, 10, hidden_sizes=(16,), tasks="MT10", **TINY["care"])
    x, t = inputs(10)
    alpha, _ = net.attention_weights(t)
    assert (alpha >= 0).all() and torch.allclose(alpha.sum(-1), torch.ones(12))
    alpha.square().sum().backward()
    assert all(p.grad is None for p in net.context.parameters())
    assert all(p.grad is not None for p in net.attention.parameters())


def test_care_context_errors_are_clear():
    with pytest.raises(MtrlError, match="context=learned"):
        CARE(7, 3, 2, tasks="fake:2")
    with pytest.raises(MtrlError, match="names 10 tasks"):
        CARE(7, 3, 3, tasks="MT10")
    with pytest.raises(MtrlError, match="context"):
        CARE(7, 3, 3, tasks="MT10", context="roberta")


def test_care_tasks_follow_env_tasks_in_the_config():
    assert load_config("mt10_care").agent.network.care.tasks == "MT10"
    config = load_config("mt50_care", ["env.tasks=reach-v3,push-v3"])
    assert config.agent.network.care.tasks == "reach-v3,push-v3"


# -------------------------------------------------------------------------------- FiLM
def test_film_starts_unconditioned_and_modulates_features_per_task():
    torch.manual_seed(10)
    net = FiLM(7, 3, 10, hidden_sizes=(16, 16), embedding_dim=8, generator_hidden=[8])
    x, _ = inputs(10, rows=1)
    gamma, beta = net.film_parameters(torch.tensor([2]))[0]
    torch.testing.assert_close(gamma, torch.ones(1, 16))
    torch.testing.assert_close(beta, torch.zeros(1, 16))
    torch.testing.assert_close(net(x, torch.tensor([0])), net(x, torch.tensor([5])))
    with torch.no_grad():
        net.generator[-1].weight.normal_()
    (g0, b0), (g1, b1) = (net.film_parameters(torch.tensor([k]))[1] for k in (0, 5))
    assert not torch.allclose(g0, g1) and not torch.allclose(b0, b1)
    h = torch.relu(net.layers[0](x) * net.film_parameters(torch.tensor([5]))[0][0]
                   + net.film_parameters(torch.tensor([5]))[0][1])
    h = torch.relu(net.layers[1](h) * g1 + b1)
    torch.testing.assert_close(net(x, torch.tensor([5])), net.head(h))


# ------------------------------------------------------------------------------ presets
@pytest.mark.parametrize("suite,num_tasks", [("mt10", 10), ("mt50", 50)])
@pytest.mark.parametrize("kind", ARCHS)
def test_presets_build_agents_that_update(kind, suite, num_tasks):
    config = load_config(f"{suite}_{kind}", ["agent.network.hidden_sizes=[32,32]"])
    assert config.agent.network.type == kind
    agent = SAC(39, 4, num_tasks, _network_dict(config), seed=0)
    b = 2
    n = num_tasks * b
    batch = Batch(torch.randn(n, 39), torch.rand(n, 4) * 2 - 1, torch.randn(n),
                  torch.randn(n, 39), torch.zeros(n), torch.arange(num_tasks).repeat_interleave(b),
                  b)
    metrics = agent.update(batch)
    assert math.isfinite(float(metrics["critic_loss"])) and metrics["alpha"].shape == (num_tasks,)


def _network_dict(config) -> dict:
    import dataclasses

    return dataclasses.asdict(config.agent.network)


def test_bad_architecture_options_are_clear_errors():
    with pytest.raises(MtrlError, match="reset_method"):
        build_network(spec("paco", reset_method="sometimes"), 7, 3, 10)
    with pytest.raises(MtrlError, match="num_layers"):
        build_network(spec("softmod", num_layers=1), 7, 3, 10)
    with pytest.raises(MtrlError, match="softmod.num_modules"):
        load_config("mt10_softmod", ["agent.network.softmod.num_modules=four"])


# ----------------------------------------------------------------------------- learning
LEARN = {  # tiny versions, and steps per task that each needs on the 2-task fake env
    "softmod": ["agent.network.hidden_sizes=[64,64]", "agent.network.softmod.module_hidden=32",
                "agent.network.softmod.routing_hidden=32", "train.steps_per_task=2500"],
    "care": ["agent.network.care.context=learned", "agent.network.care.num_experts=2",
             "agent.network.care.encoder_hidden=[32]", "agent.network.care.encoder_dim=32",
             "agent.network.care.context_dim=16", "agent.network.care.context_hidden=[16]",
             "agent.network.care.attention_hidden=[16]", "train.steps_per_task=2000"],
    "film": ["agent.network.film.embedding_dim=16", "agent.network.film.generator_hidden=[16]",
             "train.steps_per_task=1500"],
    "paco": ["agent.network.paco.num_param_sets=2", "train.steps_per_task=1500"],
    "moore": ["agent.network.moore.num_experts=2", "train.steps_per_task=1500"],
}


@pytest.mark.parametrize("kind", ARCHS)
def test_each_architecture_learns_the_fake_env(kind, run_dir):
    from mtrl.agents import build_agent
    from mtrl.training.loop import evaluate_agent, make_eval_env, train

    config = fake_config("env.tasks=fake:2", "train.eval_every=5000", "train.eval_episodes=10",
                         "log.tensorboard=false", *LEARN[kind], preset=f"mt10_{kind}")
    untrained = build_agent(config.agent, 6, 2, 2, "cpu", config.train.seed)
    env = make_eval_env(config)
    try:
        before = evaluate_agent(untrained, env, 10, 0)
    finally:
        env.close()
    after = train(config, run_dir)
    assert after.mean_return > max(before.mean_return + 10.0, -20.0), (before, after)
    assert after.success_rate > before.success_rate, (before, after)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ARCHS)
def test_short_mt10_run_of_each_preset(kind, run_dir):
    """The paper-sized preset end to end on the real MT10 (a few steps, one eval episode)."""
    from mtrl.training.loop import train

    config = load_config(f"mt10_{kind}", [
        "env.mode=sync", "env.max_episode_steps=10", "env.eval_envs_per_task=1",
        "train.steps_per_task=6", "train.warmup_steps_per_task=3", "train.eval_every=1000",
        "train.eval_episodes=1", "train.checkpoint_every=1000", "replay.capacity_per_task=100",
        "replay.batch_per_task=4", "log.every=3", "log.tensorboard=false", "log.progress=false",
    ])
    result = train(config, run_dir)
    assert set(result.per_task) == set(MT10_TASKS)
    assert (run_dir / "checkpoint.pt").exists()
