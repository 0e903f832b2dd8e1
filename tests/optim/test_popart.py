"""PopArt: outputs preserved precisely, scale-free normalised targets and gradients."""

import math

import pytest
import torch
from torch import nn

from mtrl.agents import SAC
from mtrl.data import Batch
from mtrl.errors import MtrlError
from mtrl.nn import MultiHead, OneHotMLP, TaskLinear
from mtrl.optim import PopArt, TaskAffineOutput, output_layer_name, with_task_output

OBS, ACT, T = 5, 2, 3
# the trunk sees only the observation (task_input=False) so that twin tasks share its features
NET = {"type": "multihead", "hidden_sizes": [16, 16], "activation": "relu",
       "multihead": {"task_input": False}}


def unnormalized(agent: SAC, critic: nn.Module, x: torch.Tensor, task: torch.Tensor):
    with torch.no_grad():
        return agent.popart.denormalize(critic(x, task).squeeze(-1), task)


@pytest.mark.parametrize("kind", ["multihead", "mlp"])
def test_statistics_update_preserves_unnormalized_outputs(kind):
    agent = SAC(OBS, ACT, T, {**NET, "type": kind}, popart=True, popart_beta=0.3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, OBS + ACT, generator=g)
    task = torch.arange(T).repeat_interleave(40 // T + 1)[:40]
    scales = torch.tensor([1.0, 100.0, 1000.0])
    for step in range(3):  # the first update replaces the prior; later ones blend
        before = [unnormalized(agent, c, x, task) for c in (agent.critic, agent.critic_target)]
        targets = torch.randn(T, 16, generator=g) * scales[:, None] + 5 * scales[:, None]
        agent.popart_step(targets.reshape(-1))
        after = [unnormalized(agent, c, x, task) for c in (agent.critic, agent.critic_target)]
        for b, a in zip(before, after):
            # float32: error relative to the size of the statistics (mu up to ~5000)
            torch.testing.assert_close(a, b, rtol=1e-6, atol=2e-6 * 5000)
    assert agent.popart.count == 3


def test_preserve_is_exact_in_float64_with_ensemble_dimensions():
    popart = PopArt(4, beta=0.5).double()
    layer = TaskLinear(6, 1, 4).double()
    weight = layer.weight.detach().unsqueeze(0).repeat(2, 1, 1, 1)  # (members, T, in, out)
    bias = layer.bias.detach().unsqueeze(0).repeat(2, 1, 1)
    x = torch.randn(2, 30, 6, dtype=torch.float64)
    task = torch.randint(0, 4, (30,))

    def values():
        n = torch.einsum("mbi,mbio->mbo", x, weight[:, task]) + bias[:, task]
        return popart.denormalize(n.squeeze(-1), task)

    before = values()
    old = popart.update(torch.randn(4, 10, dtype=torch.float64) * 300 + 70)
    popart.preserve_outputs_(weight, bias, *old)
    torch.testing.assert_close(values(), before, rtol=1e-12, atol=1e-10)


def test_rewards_scaled_by_1000_give_the_same_normalized_targets():
    popart = PopArt(2, beta=0.01)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        y = torch.randn(64, generator=g) * 3 + 1
        targets = torch.stack([y, 1000 * y])
        popart.update(targets)
        task = torch.tensor([0] * 64 + [1] * 64)
        normalized = popart.normalize(targets.reshape(-1), task).view(2, -1)
        torch.testing.assert_close(normalized[1], normalized[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(popart.sigma[1] / popart.sigma[0], torch.tensor(1000.0))


def twin_batch(reward_scale: float) -> Batch:
    """Tasks 0 and 1 see the same transitions; task 1's rewards are ``reward_scale`` times
    larger (task 2 is filler)."""
    g = torch.Generator().manual_seed(2)
    b = 8
    obs = torch.randn(b, OBS, generator=g).repeat(T, 1)
    action = (torch.rand(b, ACT, generator=g) * 2 - 1).repeat(T, 1)
    reward = torch.randn(b, generator=g).repeat(T) + 0.5
    reward[b: 2 * b] *= reward_scale
    return Batch(obs=obs, action=action, reward=reward, next_obs=obs.clone(),
                 terminated=torch.zeros(T * b), task_id=torch.arange(T).repeat_interleave(b),
                 rows_per_task=b)


def copy_task_slice(module: nn.Module, names=("head__weight", "head__bias")) -> None:
    """Make task 1's head equal to task 0's (ensemble parameters: (members, T, ...))."""
    with torch.no_grad():
        for name in names:
            p = dict(module.named_parameters())[name]
            p[:, 1] = p[:, 0]


def per_task_trunk_grad_norms(loss) -> torch.Tensor:
    _, grads = loss.task_gradients()
    flat = torch.cat([grads[n].reshape(T, -1) for n in loss.shared_parameters], 1)
    return flat.norm(dim=1)


def test_critic_and_actor_gradient_scale_is_independent_of_reward_scale():
    batch = twin_batch(1000.0)
    # gamma = 0: targets are the rewards, so task 1's targets are 1000x task 0's
    agent = SAC(OBS, ACT, T, NET, popart=True, gamma=0.0)
    target = agent.critic_targets(batch)
    agent.popart_step(target)
    copy_task_slice(agent.critic)  # the same normalised critic for tasks 0 and 1
    critic_norms = per_task_trunk_grad_norms(agent.critic_loss(batch, target))
    torch.testing.assert_close(critic_norms[1], critic_norms[0], rtol=1e-4, atol=0)

    # actor: task 1's temperature is 1000x (where SAC's tuning puts it for 1000x rewards)
    with torch.no_grad():
        agent.log_alpha[1] = agent.log_alpha[0] + math.log(1000.0)
        head = agent.actor.network.head
        head.weight[1], head.bias[1] = head.weight[0], head.bias[0]
    loss = agent.actor_loss(batch)
    noise = loss.rows[2].view(T, -1, ACT)
    noise[1] = noise[0]  # same sampling noise for the twin tasks
    actor_norms = per_task_trunk_grad_norms(loss)
    torch.testing.assert_close(actor_norms[1], actor_norms[0], rtol=1e-4, atol=0)
    torch.testing.assert_close(loss.values()[1], loss.values()[0], rtol=1e-4, atol=1e-6)

    # without PopArt the same construction gives task 1 ~1000x the critic gradient
    plain = SAC(OBS, ACT, T, NET, gamma=0.0)
    copy_task_slice(plain.critic)
    norms = per_task_trunk_grad_norms(plain.critic_loss(batch, plain.critic_targets(batch)))
    assert norms[1] > 100 * norms[0]


def test_output_layer_protocol():
    assert output_layer_name(MultiHead(3, 1, T, hidden_sizes=(4,)), T) == "head"
    mlp = OneHotMLP(3, 1, T, hidden_sizes=(4,))
    assert output_layer_name(mlp, T) is None
    wrapped = with_task_output(mlp, 1, T)
    assert isinstance(wrapped, TaskAffineOutput) and output_layer_name(wrapped, T) == "affine"
    x, task = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    torch.testing.assert_close(wrapped(x, task), mlp(x, task))  # identity at start

    class Bad(OneHotMLP):
        output_layer = "head"  # a shared nn.Linear: not per-task

    with pytest.raises(MtrlError, match="per-task"):
        output_layer_name(Bad(3, 1, T, hidden_sizes=(4,)), T)
    with pytest.raises(MtrlError, match="beta"):
        PopArt(T, beta=0.0)
