"""Cross-stitch networks (Misra et al. 2016): initialisation, mixing by hand, column isolation
with identity units, batched layout, SAC actor and critic, PopArt, config."""

import pytest
import torch
from torch.func import functional_call

from mtrl.agents import SAC
from mtrl.config import load_config
from mtrl.data import Batch
from mtrl.errors import MtrlError
from mtrl.nn import (CrossStitch, Ensemble, build_network, last_shared_weight_name,
                     task_parameter_names)
from mtrl.nn.cross_stitch import stitch_init
from mtrl.optim import TaskLoss


def spec(num_tasks=3, hidden=(8, 8), **options) -> dict:
    return {"type": "cross_stitch", "hidden_sizes": list(hidden), "activation": "relu",
            "cross_stitch": options}


def test_units_start_near_identity_with_rows_summing_to_one():
    net = CrossStitch(5, 2, 4, hidden_sizes=(8, 8, 8))
    alpha = net.alphas()
    assert alpha.shape == (3, 4, 4)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3, 4))
    torch.testing.assert_close(alpha.diagonal(dim1=1, dim2=2), torch.full((3, 4), 0.9))
    torch.testing.assert_close(alpha[0, 0, 1], torch.tensor(0.1 / 3))
    torch.testing.assert_close(stitch_init(1), torch.ones(1, 1))
    # every layer's columns are one batched (T, in, out) tensor, not a module per task
    assert net.columns[0].weight.shape == (4, 5, 8) and len(net.columns) == 3
    assert task_parameter_names(net) == {"head.weight", "head.bias"}
    assert last_shared_weight_name(net) == "columns.2.weight"


def test_mixing_by_hand_on_a_tiny_case():
    # T = 2 columns, 1 input, hidden [1, 1], 1 output; ReLU after every hidden layer
    net = CrossStitch(1, 1, 2, hidden_sizes=(1, 1))
    a1 = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    a2 = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    with torch.no_grad():
        net.columns[0].weight.copy_(torch.tensor([2.0, 3.0]).view(2, 1, 1))
        net.columns[0].bias.zero_()
        net.columns[1].weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1))
        net.columns[1].bias.copy_(torch.tensor([[0.5], [4.0]]))
        net.stitch.copy_(torch.stack([a1, a2]))
        net.head.weight.copy_(torch.tensor([1.0, 10.0]).view(2, 1, 1))
        net.head.bias.zero_()
    # x = 1: layer 1 -> (2, 3); unit 1 -> (0.9*2 + 0.1*3, 0.2*2 + 0.8*3) = (2.1, 2.8)
    # layer 2 -> relu(2.1*1 + 0.5, 2.8*(-1) + 4) = (2.6, 1.2); unit 2 -> (1.9, 1.2)
    # task 0 reads column 0: 1 * 1.9; task 1 reads column 1: 10 * 1.2
    out = net(torch.ones(2, 1), torch.tensor([0, 1]))
    torch.testing.assert_close(out, torch.tensor([[1.9], [12.0]]))
    out = net(torch.ones(2, 1), torch.tensor([1, 1]))
    torch.testing.assert_close(out, torch.tensor([[12.0], [12.0]]))


def reference_forward(net: CrossStitch, x: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
    """A per-column loop (for testing only): column t's MLP, mixed after every layer."""
    alpha = net.alphas()
    h = [x for _ in range(net.num_tasks)]
    for i, layer in enumerate(net.columns):
        h = [torch.relu(h[t] @ layer.weight[t] + layer.bias[t]) for t in range(net.num_tasks)]
        h = [sum(alpha[i, s, t] * h[t] for t in range(net.num_tasks)) for s in range(net.num_tasks)]
    own = torch.stack([h[int(t)][b] for b, t in enumerate(task_id)])
    return torch.stack([own[b] @ net.head.weight[t] + net.head.bias[t]
                        for b, t in enumerate(task_id)])


def test_batched_forward_equals_the_per_column_definition():
    torch.manual_seed(0)
    net = CrossStitch(5, 3, 4, hidden_sizes=(8, 6, 7))
    with torch.no_grad():
        net.stitch.add_(0.2 * torch.randn_like(net.stitch))
    x, task = torch.randn(9, 5), torch.tensor([3, 0, 1, 1, 2, 0, 3, 2, 2])
    torch.testing.assert_close(net(x, task), reference_forward(net, x, task))


def column_grads(alpha_same: float, task: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = CrossStitch(5, 2, 3, hidden_sizes=(8, 8), alpha_same=alpha_same)
    x = torch.randn(6, 5)
    net(x, torch.full((6,), task)).pow(2).sum().backward()
    return {n: p.grad for n, p in net.named_parameters()}


def test_identity_units_make_independent_columns():
    """Task k's loss leaves column j's weights untouched when alpha = I (and only then)."""
    grads = column_grads(1.0, task=1)
    for name in ("columns.0.weight", "columns.0.bias", "columns.1.weight", "columns.1.bias"):
        g = grads[name]
        assert g[1].abs().sum() > 0
        assert g[0].abs().sum() == 0 and g[2].abs().sum() == 0, name
    assert grads["head.weight"][[0, 2]].abs().sum() == 0
    assert grads["stitch"].abs().sum() > 0  # the units still learn to mix
    mixed = column_grads(0.9, task=1)
    assert mixed["columns.0.weight"][0].abs().sum() > 0  # shared through the units


def test_per_task_gradients_by_vmap_and_twin_critic_ensemble():
    torch.manual_seed(0)
    members = [build_network(spec(), 7, 1, 3) for _ in range(2)]
    critic = Ensemble(members)
    x, task = torch.randn(12, 7), torch.arange(3).repeat_interleave(4)
    out = critic(x, task)
    for i, member in enumerate(members):
        torch.testing.assert_close(out[i], member(x, task))

    def rows(params, x, task):
        return functional_call(critic, params, (x, task)).squeeze(-1).pow(2).sum(0)

    loss = TaskLoss(rows, dict(critic.named_parameters()), (x, task), 3,
                    task_parameter_names(critic))
    _, grads = loss.task_gradients()
    critic.zero_grad()
    loss.values().sum().backward()
    for name, p in critic.named_parameters():
        torch.testing.assert_close(grads[name].sum(0), p.grad, atol=1e-5, rtol=1e-4)


def fake_batch(num_tasks: int, rows: int = 8) -> Batch:
    g = torch.Generator().manual_seed(0)
    n = num_tasks * rows
    return Batch(obs=torch.randn(n, 6, generator=g), action=torch.rand(n, 2, generator=g) * 2 - 1,
                 reward=torch.rand(n, generator=g), next_obs=torch.randn(n, 6, generator=g),
                 terminated=torch.zeros(n), task_id=torch.arange(num_tasks).repeat_interleave(rows),
                 rows_per_task=rows)


@pytest.mark.parametrize("popart,combiner", [(False, "mean"), (True, "pcgrad"), (False, "mgda")])
def test_sac_update_trains_cross_stitch_actor_and_critic(popart, combiner):
    agent = SAC(6, 2, 3, spec(hidden=(16, 16)), actor_combiner=combiner,
                critic_combiner=combiner, popart=popart, seed=0)
    actor = {k: v.clone() for k, v in agent.actor.named_parameters()}
    critic = {k: v.clone() for k, v in agent.critic.named_parameters()}
    for _ in range(3):
        metrics = agent.update(fake_batch(3))
    assert all(torch.isfinite(v).all() for v in metrics.values())
    for before, module in ((actor, agent.actor), (critic, agent.critic)):
        changed = {k for k, v in module.named_parameters() if not torch.equal(before[k], v)}
        assert any("stitch" in k for k in changed) and any("columns" in k for k in changed)
        assert any("head" in k for k in changed)


def test_config_options_and_one_line_errors():
    config = load_config("mt10_cross_stitch", ["agent.network.cross_stitch.alpha_same=0.8"])
    assert config.agent.network.type == "cross_stitch"
    net = build_network(config.agent.network, 39, 8, 10)
    torch.testing.assert_close(net.alphas()[0, 0, 0], torch.tensor(0.8))
    with pytest.raises(MtrlError, match="agent.network.cross_stitch") as info:
        load_config("mt10_cross_stitch", ["agent.network.cross_stitch.alpha_diff=0.1"])
    assert "\n" not in str(info.value)
    with pytest.raises(MtrlError, match="alpha_same"):
        build_network(spec(alpha_same=1.5), 7, 3, 3)
    with pytest.raises(MtrlError, match="alpha_lr_scale"):
        build_network(spec(alpha_lr_scale=0.0), 7, 3, 3)


def test_alpha_lr_scale_multiplies_the_adam_step_of_the_units():
    steps = []
    for scale in (1.0, 10.0):
        torch.manual_seed(0)
        net = CrossStitch(5, 2, 3, hidden_sizes=(8,), alpha_lr_scale=scale)
        start = net.alphas().detach().clone()
        torch.testing.assert_close(start, stitch_init(3).unsqueeze(0))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        net(torch.randn(6, 5), torch.arange(3).repeat(2)).pow(2).sum().backward()
        opt.step()
        steps.append((net.alphas().detach() - start).abs())
    torch.testing.assert_close(steps[1], 10 * steps[0], rtol=1e-3, atol=1e-7)
