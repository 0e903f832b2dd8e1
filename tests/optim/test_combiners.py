"""Combiner modules on a tiny multi-head regression: gradients, heads, state, checkpoints."""

import io

import pytest
import torch
from torch.func import functional_call

from mtrl.errors import MtrlError
from mtrl.nn import MultiHead, task_parameter_names
from mtrl.optim import COMBINERS, GradNorm, TaskLoss, build_combiner, pcgrad
from mtrl.optim.gradient_methods import famo_logit_grad

T, IN, B = 3, 4, 6
OPTIONS = {"fixed": {"weights": [1.0, 2.0, 1.0]}, "gradnorm": {"lr": 0.05}}


def make_net(seed: int = 0) -> MultiHead:
    torch.manual_seed(seed)
    return MultiHead(IN, 1, T, hidden_sizes=(8, 8))


def make_loss(net: MultiHead, seed: int = 0, target_scale=(1.0, 1.0, 1.0)) -> TaskLoss:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T * B, IN, generator=g)
    y = torch.randn(T * B, generator=g) * torch.tensor(target_scale).repeat_interleave(B)
    task = torch.arange(T).repeat_interleave(B)

    def rows(params, x, y, task):
        return (functional_call(net, params, (x, task)).squeeze(-1) - y).pow(2)

    return TaskLoss(rows, dict(net.named_parameters()), (x, y, task), T,
                    task_parameter_names(net))


def grads_of(net: MultiHead) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in net.named_parameters()}


def combine(name: str, net: MultiHead, seed: int = 0, **options) -> tuple[dict, torch.Tensor]:
    combiner = build_combiner(name, T, **{**OPTIONS.get(name, {}), **options})
    net.zero_grad(set_to_none=True)
    losses = combiner.backward(make_loss(net, seed))
    return grads_of(net), losses


@pytest.mark.parametrize("name", sorted(COMBINERS))
def test_every_combiner_writes_finite_gradients_and_returns_task_losses(name):
    net = make_net()
    grads, losses = combine(name, net)
    expected = make_loss(net).values().detach()
    torch.testing.assert_close(losses, expected)
    assert set(grads) == {n for n, _ in net.named_parameters()}
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads.values())


@pytest.mark.parametrize("name", ["pcgrad", "cagrad", "gradnorm", "fixed", "uncertainty"])
def test_heads_get_their_own_task_gradient(name):
    """Task t's head receives only task t's gradient, as in `mean` (scaled by its weight)."""
    net = make_net()
    mean, _ = combine("mean", net)
    grads, _ = combine(name, net)
    scale = torch.ones(T)
    if name == "fixed":
        scale = torch.tensor([0.75, 1.5, 0.75])  # weights (1, 2, 1) / 4 against 1/3 each
    for key in ("head.weight", "head.bias"):
        expect = mean[key] * scale.view(-1, *[1] * (mean[key].dim() - 1))
        torch.testing.assert_close(grads[key], expect)


@pytest.mark.parametrize("name", ["gradnorm", "fixed", "uncertainty"])
def test_equal_initial_weights_give_the_mean_gradient(name):
    net = make_net()
    mean, _ = combine("mean", net)
    options = {"weights": [1.0, 1.0, 1.0]} if name == "fixed" else {}
    grads, _ = combine(name, net, **options)
    for key in mean:
        torch.testing.assert_close(grads[key], mean[key])


def test_pcgrad_combiner_equals_pcgrad_of_the_flattened_task_gradients():
    net = make_net()
    grads, _ = combine("pcgrad", net, seed=1)
    loss = make_loss(net, seed=1)
    _, per_task = loss.task_gradients()
    shared = loss.shared_parameters
    flat = torch.cat([per_task[n].reshape(T, -1) for n in shared], 1)
    expected = pcgrad(flat, torch.Generator().manual_seed(0))
    got = torch.cat([grads[n].reshape(-1) for n in shared])
    torch.testing.assert_close(got, expected)


def test_gradnorm_weights_sum_to_T_use_initial_losses_and_balance_norms():
    # the paper's hard sharing: a trunk that sees only x, so tasks 0 and 2 are alike
    net = MultiHead(IN, 1, T, hidden_sizes=(8, 8), task_input=False)
    combiner = GradNorm(T, lr=0.05)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-2)
    scales = (1.0, 10.0, 1.0)  # task 1's loss and gradients are much larger

    def weighted_norms() -> torch.Tensor:
        loss = make_loss(net, target_scale=scales)
        _, per_task = loss.task_gradients(["trunk.2.weight"])
        norms = per_task["trunk.2.weight"].reshape(T, -1).norm(dim=1)
        return combiner.weights.detach() * norms

    start = weighted_norms()
    for step in range(60):
        optimizer.zero_grad()
        losses = combiner.backward(make_loss(net, target_scale=scales))
        if step == 0:
            first = losses.clone()
        optimizer.step()
        torch.testing.assert_close(combiner.weights.detach().sum(), torch.tensor(float(T)))
        torch.testing.assert_close(combiner.initial_losses, first)  # never re-recorded
    end = weighted_norms()
    spread = lambda g: (g.max() / g.min()).item()  # noqa: E731
    assert spread(end) < 0.5 * spread(start)
    w = combiner.weights.detach()
    assert w[1] < 1.0 and w[1] < w[0] and w[1] < w[2]  # the large-gradient task is damped


def test_uncertainty_log_variances_track_log_losses():
    net = make_net()
    combiner = build_combiner("uncertainty", T, lr=0.1)
    for _ in range(150):
        net.zero_grad()
        losses = combiner.backward(make_loss(net))
    torch.testing.assert_close(combiner.log_vars.detach(), losses.log(), atol=0.05, rtol=0)


def test_famo_after_step_moves_logits_by_the_log_loss_decrease():
    net = make_net()
    combiner = build_combiner("famo", T, lr=0.01, gamma=0.0)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    loss = make_loss(net)
    before = combiner.backward(loss)
    optimizer.step()
    after = loss.values().detach()
    expected_grad = famo_logit_grad(torch.zeros(T), before, after)
    combiner.after_step(loss)
    # Adam's first step moves each logit by lr against the sign of its gradient
    torch.testing.assert_close(combiner.logits.detach(), -0.01 * expected_grad.sign())


@pytest.mark.parametrize("name", ["pcgrad", "cagrad", "gradnorm", "uncertainty", "famo"])
def test_combiner_state_round_trips_through_a_checkpoint(name):
    net_a, net_b = make_net(), make_net()
    a = build_combiner(name, T, seed=5, **OPTIONS.get(name, {}))
    opt = torch.optim.Adam(net_a.parameters(), lr=1e-2)
    for k in range(3):
        opt.zero_grad()
        loss = make_loss(net_a, seed=k)
        a.backward(loss)
        opt.step()
        a.after_step(loss)
    net_b.load_state_dict(net_a.state_dict())
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = build_combiner(name, T, seed=5, **OPTIONS.get(name, {}))
    b.load_state_dict(torch.load(buffer, weights_only=True))
    for combiner, net in ((a, net_a), (b, net_b)):
        net.zero_grad()
        loss = make_loss(net, seed=9)
        combiner.backward(loss)
        combiner.after_step(loss)
    for (ka, ga), gb in zip(grads_of(net_a).items(), grads_of(net_b).values()):
        torch.testing.assert_close(ga, gb, msg=ka)
    for (ka, sa), sb in zip(a.state_dict().items(), b.state_dict().values()):
        if isinstance(sa, torch.Tensor):
            torch.testing.assert_close(sa, sb, msg=ka)
    if name == "pcgrad":
        assert torch.equal(a.generator.get_state(), b.generator.get_state())


def test_bad_names_and_options_are_one_line_errors():
    with pytest.raises(MtrlError, match="unknown gradient combiner 'pcgard'"):
        build_combiner("pcgard", T)
    with pytest.raises(MtrlError, match="3 non-negative numbers"):
        build_combiner("fixed", T, weights=[1.0, 2.0])
    with pytest.raises(MtrlError, match="c must be >= 0"):
        build_combiner("cagrad", T, c=-1.0)
    with pytest.raises(MtrlError, match="reduction"):
        build_combiner("pcgrad", T, reduction="max")
    with pytest.raises(MtrlError, match="not a shared parameter"):
        GradNorm(T, layer="head.weight").backward(make_loss(make_net()))
    assert {n for n, c in COMBINERS.items() if c.positive_losses} == {
        "gradnorm", "uncertainty", "famo", "dwa"}
