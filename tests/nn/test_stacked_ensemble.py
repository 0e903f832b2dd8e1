"""The one-hot MLP's stacked evaluation of an ensemble (what SAC's twin critics run) runs the
ops ``vmap`` runs: the same forward and gradients bit for bit (for an input without grad, the
first layer's weight gradient is the same sum that vmap batches in another matmul: within
rounding); calls inside a ``torch.func`` transform take vmap itself; and the agent-level
shortcuts that keep an update's numbers."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, vmap

from mtrl.nn import Ensemble, build_network
from mtrl.nn.base import stacked_linear
from mtrl.optim import call_with


def _ensemble(hidden: list[int], num_tasks: int, in_dim: int = 9) -> Ensemble:
    torch.manual_seed(0)
    spec = {"type": "mlp", "hidden_sizes": hidden, "activation": "relu"}
    return Ensemble([build_network(spec, in_dim, 1, num_tasks) for _ in range(2)])


def _vmapped(ensemble: Ensemble, state: dict, *inputs: torch.Tensor) -> torch.Tensor:
    """The generic path: vmap of functional_call over the members."""
    return torch.vmap(lambda s: functional_call(ensemble.template, s, inputs))(state)


def _gradients(ensemble: Ensemble, forward, x: torch.Tensor, t: torch.Tensor):
    x = x.clone().requires_grad_(True)
    out = forward(ensemble.member_state(), x, t)
    params = list(ensemble.parameters())
    grads = torch.autograd.grad((out.square() * torch.arange(1., out.numel() + 1).view_as(out)
                                 ).sum(), [x, *params])
    return out.detach(), grads


@pytest.mark.parametrize("hidden,rows,num_tasks", [([16, 16], 12, 1), ([32, 24, 16], 30, 3)])
def test_stacked_forward_is_vmap_bit_for_bit(hidden, rows, num_tasks):
    ensemble = _ensemble(hidden, num_tasks)
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(rows, 9, generator=g), torch.arange(rows) % num_tasks
    fast, fast_grads = _gradients(ensemble, ensemble.call, x, t)
    slow, slow_grads = _gradients(ensemble, lambda s, *i: _vmapped(ensemble, s, *i), x, t)
    assert torch.equal(fast, slow) and fast.shape == (2, rows, 1)
    for a, b in zip(fast_grads, slow_grads):
        assert torch.equal(a, b)
    with torch.no_grad():
        assert torch.equal(ensemble(x, t), _vmapped(ensemble, ensemble.member_state(), x, t))
    # an input without grad (the critic step): vmap computes the first layer's weight
    # gradient with another matmul (the same sums, possibly in another order)
    params = list(ensemble.parameters())
    fast = torch.autograd.grad(ensemble(x, t).square().sum(), params)
    slow = torch.autograd.grad(
        _vmapped(ensemble, ensemble.member_state(), x, t).square().sum(), params)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_stacked_forward_is_vmap_inside_per_task_vmap():
    """Per-task gradients (TaskLoss.task_gradients) vmap over task blocks around the critic."""
    ensemble = _ensemble([16, 16], 3)
    state = {k: v.detach() for k, v in ensemble.member_state().items()}
    g = torch.Generator().manual_seed(2)
    x, t = torch.randn(3, 4, 9, generator=g), torch.arange(3).repeat_interleave(4).view(3, 4)

    def per_task(forward):
        def loss(s, xb, tb):
            return forward(s, xb, tb).square().sum()
        return vmap(grad(loss), in_dims=(None, 0, 0))(state, x, t)

    fast = per_task(ensemble.call)
    slow = per_task(lambda s, *i: _vmapped(ensemble, s, *i))
    assert fast.keys() == slow.keys()
    for name in fast:
        assert torch.equal(fast[name], slow[name])


def test_stacked_linear_by_hand():
    """Shared input: each member's own x W_i^T + b_i; own inputs: per member."""
    w = torch.tensor([[[1., 2.]], [[-1., 0.5]]])  # (2 members, out 1, in 2)
    b = torch.tensor([[0.5], [-2.]])
    x = torch.tensor([[1., 1.], [2., 0.]])
    assert torch.equal(stacked_linear(x, w, b), torch.tensor([[[3.5], [2.5]], [[-2.5], [-4.]]]))
    own = torch.stack([x, 2 * x])
    assert torch.equal(stacked_linear(own, w, b),
                       torch.tensor([[[3.5], [2.5]], [[-3.], [-6.]]]))


def test_call_with_own_parameters_is_a_plain_call():
    net = torch.nn.Linear(3, 2)
    own = dict(net.named_parameters())
    x = torch.randn(4, 3)
    assert torch.equal(call_with(net, own, own, x), net(x))
    zeros = {k: torch.zeros_like(v) for k, v in own.items()}
    assert torch.equal(call_with(net, zeros, own, x), torch.zeros(4, 2))  # functional_call


@pytest.mark.parametrize("options", [{}, {"critic_combiner": "pcgrad"}])
def test_sac_updates_match_with_and_without_the_stacked_path(options):
    """Whole SAC updates (targets, critic and actor steps, Polyak averaging) with the stacked
    critics give the parameters of the same updates run under vmap (bit for bit at the
    learning benchmark's sizes; at these tiny ones the critic step's first-layer weight
    gradient may round differently, see the module docstring)."""
    from mtrl.agents import SAC
    from mtrl.data import MultiTaskReplay

    spec = {"type": "mlp", "hidden_sizes": [16, 16], "activation": "relu"}
    fast, slow = (SAC(5, 2, 2, spec, seed=3, **options) for _ in range(2))
    for critic in (slow.critic, slow.critic_target):
        critic.template.stacked_forward = None  # this agent's critics take the vmap path
    stacked_calls = []
    for critic in (fast.critic, fast.critic_target):  # count the fast agent's stacked calls
        forward = critic.template.stacked_forward
        critic.template.stacked_forward = (
            lambda *a, f=forward: stacked_calls.append(1) or f(*a))
    initial = {k: v.clone() for k, v in fast.critic.state_dict().items()}
    replay = MultiTaskReplay(2, 40, 5, 2, fast.device)
    g = torch.Generator().manual_seed(4)
    replay.add(torch.randn(40, 5, generator=g).numpy(), torch.rand(40, 2, generator=g).numpy(),
               torch.randn(40, generator=g).numpy(), torch.randn(40, 5, generator=g).numpy(),
               torch.zeros(40).numpy(), (torch.arange(40) % 2).numpy())
    for step in range(4):
        batch = replay.sample(6, torch.Generator().manual_seed(step))
        fast.update(batch)
        slow.update(batch)
    # per update: target, critic loss and actor loss; the critic's PCGrad per-task gradients
    # run under vmap, so there only the targets and the (mean) actor loss are stacked
    assert len(stacked_calls) == (2 * 4 if options else 3 * 4)
    assert any(not torch.equal(v, initial[k]) for k, v in fast.critic.state_dict().items())
    for key, value in fast.state_dict().items():
        if isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values()):
            for name, tensor in value.items():
                torch.testing.assert_close(tensor, slow.state_dict()[key][name], rtol=1e-5,
                                           atol=1e-6, msg=f"{key}.{name}")
