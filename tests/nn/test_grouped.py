"""GroupedNetwork: one network per task group, isolated from the other groups."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from mtrl.agents import SAC, load_agent
from mtrl.config import load_config
from mtrl.data import Batch
from mtrl.errors import MtrlError
from mtrl.nn import GroupedNetwork, build_network, task_parameter_names

SPEC = {"type": "multihead", "hidden_sizes": [16, 16], "activation": "relu"}
GROUPS = [[0, 2], [1], [3]]


def make(spec: dict = SPEC, groups=GROUPS, num_tasks: int = 4) -> GroupedNetwork:
    torch.manual_seed(0)
    net = build_network({**spec, "groups": groups}, 5, 3, num_tasks)
    assert isinstance(net, GroupedNetwork)
    return net


def member(net: GroupedNetwork, g: int) -> dict[str, torch.Tensor]:
    return {name: t[g] for name, t in net.networks.member_state().items()}


@pytest.mark.parametrize("kind", ["mlp", "multihead"])
def test_each_task_uses_its_groups_network(kind: str) -> None:
    net = make({**SPEC, "type": kind})
    x = torch.randn(8, 5)
    task = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    out = net(x, task)
    assert out.shape == (8, 3)
    for row, t in enumerate(task.tolist()):
        g = next(k for k, grp in enumerate(GROUPS) if t in grp)
        alone = functional_call(net.networks.template, member(net, g), (x[row:row + 1],
                                                                        task[row:row + 1]))
        assert torch.allclose(out[row], alone[0], atol=1e-6)


def test_a_tasks_loss_gives_zero_gradient_to_other_groups() -> None:
    net = make()
    x = torch.randn(12, 5)
    task = torch.arange(4).repeat(3)
    out = net(x, task)
    out[task == 2].pow(2).sum().backward()  # task 2 lives in group 0
    for name, p in net.named_parameters():
        assert p.grad is not None
        assert p.grad[0].abs().sum() > 0 or "head" in name, name
        assert torch.all(p.grad[1:] == 0), name  # groups 1 and 2 untouched
    # per-task heads stay listed as task parameters (for the gradient combiners)
    assert task_parameter_names(net) == {"networks.head__weight", "networks.head__bias"}


def test_groups_must_partition_the_tasks() -> None:
    with pytest.raises(MtrlError, match="partition"):
        make(groups=[[0, 1], [1, 2, 3]])
    with pytest.raises(MtrlError, match="partition"):
        make(groups=[[0, 1], [2]])


def test_sac_with_groups_isolates_actor_and_critic(tmp_path) -> None:
    config = load_config("mt10_mtmhsac", ["env.tasks=fake:3", "agent.network.hidden_sizes=[16]",
                                          "agent.network.groups=[[fake-task-0, 2], [1]]"])
    assert config.agent.network.groups == [[0, 2], [1]]
    network = {"type": "multihead", "hidden_sizes": [16], "activation": "relu",
               "groups": config.agent.network.groups}
    agent = SAC(6, 2, 3, network=network, seed=0)
    rows = 4
    obs = torch.randn(3 * rows, 6)
    batch = Batch(obs=obs, action=torch.rand(3 * rows, 2) * 2 - 1, reward=torch.randn(3 * rows),
                  next_obs=torch.randn(3 * rows, 6), terminated=torch.zeros(3 * rows),
                  task_id=torch.arange(3).repeat_interleave(rows), rows_per_task=rows)
    critic = agent.critic_loss(batch, agent.critic_targets(batch))
    _, grads = critic.task_gradients()
    actor = agent.actor_loss(batch)
    _, actor_grads = actor.task_gradients()
    # task 1's gradient is zero on group 0; tasks 0 and 2 leave group 1 alone
    for name, g in grads.items():  # critic params: (T, twin, group, ...)
        assert torch.all(g[1][:, 0] == 0) and torch.all(g[0][:, 1] == 0), name
        assert torch.all(g[2][:, 1] == 0), name
    for name, g in actor_grads.items():  # actor params: (T, group, ...)
        assert torch.all(g[1][0] == 0) and torch.all(g[0][1] == 0), name
    agent.update(batch)  # a full update runs through the grouped networks
    action = agent.act(obs.numpy(), batch.task_id.numpy(), deterministic=True)
    assert action.shape == (3 * rows, 2)
    agent.save(tmp_path / "agent.pt")
    loaded = load_agent(tmp_path / "agent.pt")
    assert (loaded.act(obs.numpy(), batch.task_id.numpy(), deterministic=True) == action).all()
