"""BRC's pieces (categorical critic, task embeddings, reward normalisation, BroNet, AdamW) with
hand-built numbers, composed with SAC and the gradient combiners, and learning."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mtrl.agents import SAC, build_agent, load_agent
from mtrl.agents.brc import (RewardNormalizer, categorical_projection, discounted_values,
                             expected_value)
from mtrl.config import load_config
from mtrl.data import Episodes
from mtrl.data.replay import Batch
from mtrl.errors import MtrlError
from mtrl.nn import build_network
from mtrl.nn.bronet import BroBlock, BroNet

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import fake_config  # noqa: E402

T = 3
SUPPORT = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])
BRONET = {"type": "bronet", "hidden_sizes": [32], "activation": "relu",
          "bronet": {"num_blocks": 1, "task_input": False}}


def train_fn():
    from mtrl.training.loop import train

    return train


def batch(rows_per_task: int = 4, seed: int = 0, obs_dim: int = 6, act_dim: int = 2) -> Batch:
    g = torch.Generator().manual_seed(seed)
    n = T * rows_per_task
    return Batch(torch.randn(n, obs_dim, generator=g), torch.rand(n, act_dim, generator=g) * 2 - 1,
                 torch.rand(n, generator=g), torch.randn(n, obs_dim, generator=g), torch.zeros(n),
                 torch.arange(T).repeat_interleave(rows_per_task), rows_per_task)


def brc_agent(**kwargs) -> SAC:
    options = dict(critic_loss="categorical", critic_ensemble="mean", task_encoding="embedding",
                   reward_normalization=True, weight_decay=1e-4, num_bins=11, seed=0)
    options.update(kwargs)
    return SAC(6, 2, T, BRONET, **options)


# ------------------------------------------------------------------ categorical critic
def test_projection_of_a_known_target():
    # atoms -3 (below the support), 0.5 (between 0 and 1), 1 (on an atom), 7 (above)
    atoms = torch.tensor([[-3.0, 0.5, 1.0, 7.0]])
    probs = torch.tensor([[0.2, 0.3, 0.4, 0.1]])
    out = categorical_projection(atoms, probs, SUPPORT)
    expected = torch.tensor([[0.2, 0.0, 0.15, 0.15 + 0.4, 0.1]])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out.sum(-1), torch.ones(1))


def test_a_target_on_an_atom_puts_all_its_mass_there():
    for j, z in enumerate(SUPPORT.tolist()):
        out = categorical_projection(torch.tensor([[z]]), torch.ones(1, 1), SUPPORT)
        torch.testing.assert_close(out, torch.nn.functional.one_hot(torch.tensor([j]), 5).float())


def test_projection_conserves_mass_and_the_mean_inside_the_support():
    g = torch.Generator().manual_seed(0)
    support = torch.linspace(-10, 10, 101)
    atoms = torch.rand(64, 101, generator=g) * 18 - 9
    probs = torch.softmax(torch.randn(64, 101, generator=g), -1)
    out = categorical_projection(atoms, probs, support)
    torch.testing.assert_close(out.sum(-1), torch.ones(64))
    assert (out >= 0).all()
    torch.testing.assert_close((out * support).sum(-1), (probs * atoms).sum(-1), atol=1e-4, rtol=0)


def test_expected_value_of_logits():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0 + 1e-30]]))
    # -2 * 0.1 - 1 * 0.2 + 0 * 0.3 + 1 * 0.4 + 2 * 0 = 0.0
    torch.testing.assert_close(expected_value(logits, SUPPORT), torch.tensor([0.0]))
    torch.testing.assert_close(expected_value(torch.zeros(1, 5), SUPPORT), torch.tensor([0.0]))
    assert expected_value(torch.tensor([[0.0, 0, 0, 0, 50]]), SUPPORT).item() == pytest.approx(2.0)


def test_categorical_target_of_one_step_rewards_is_the_reward_distribution():
    """gamma = 0: the target distribution is the projection of the (scaled) reward."""
    agent = brc_agent(gamma=0.0, reward_normalization=False, num_bins=21, v_min=-1.0, v_max=1.0)
    b = batch()
    target = agent.critic_targets(b)
    assert target.shape == (T * 4, 21)
    torch.testing.assert_close(target.sum(-1), torch.ones(T * 4))
    torch.testing.assert_close((target * agent.support).sum(-1), b.reward)


def test_critic_ensemble_min_picks_the_lower_critic():
    agent = brc_agent(critic_ensemble="min", num_bins=5, v_min=-2.0, v_max=2.0)
    logits = torch.tensor([[[0.0, 0, 0, 0, 9]], [[9.0, 0, 0, 0, 0]]])  # critic 1 is lower
    torch.testing.assert_close(agent.ensemble_probs(logits), torch.softmax(logits[1], -1))
    assert agent.ensemble_q(logits).item() == pytest.approx(
        expected_value(logits[1], agent.support).item())
    agent.critic_ensemble = "mean"
    torch.testing.assert_close(agent.ensemble_probs(logits), torch.softmax(logits, -1).mean(0))


def test_popart_with_a_categorical_critic_is_refused():
    with pytest.raises(MtrlError, match="popart"):
        brc_agent(popart=True)
    with pytest.raises(MtrlError, match="^config: agent.popart"):
        load_config("mt10_brc", ["agent.popart=true"])
    with pytest.raises(MtrlError, match="critic_loss"):
        load_config("mt10", ["agent.critic_loss=quantile"])


# --------------------------------------------------------------- reward normalisation
def test_reward_normaliser_scale_after_known_episodes():
    norm = RewardNormalizer(3, gamma=0.5, v_max=10.0)  # horizon 1 / (1 - gamma) = 2
    # task 0, terminated [1, 2, 3]: values backwards 3, 2 + 1.5 = 3.5, 1 + 1.75 = 2.75 -> G 3.5
    # task 0, truncated [-4, -4]: tail -4 * 2 = -8, values -8 everywhere -> |.| 8 > 3.5
    # task 1, truncated [0, 1]: tail 0.5 * 2 = 1, v_1 = 1 + 0.5 = 1.5, v_0 = 0.75 -> G 1.5
    norm.observe(np.array([0, 0, 1]), [np.array([1.0, 2.0, 3.0]), np.array([-4.0, -4.0]),
                                       np.array([0.0, 1.0])], np.array([False, True, True]))
    torch.testing.assert_close(norm.max_value, torch.tensor([8.0, 1.5, 0.0]))
    alpha = torch.tensor([0.5, 1.0, 1.0])
    # lambda = -alpha * horizon * target_entropy / 2 = alpha * 2 (target entropy -2)
    torch.testing.assert_close(norm.scale(alpha, -2.0), torch.tensor([10 / 9, 10 / 3.5, 1.0]))
    norm.observe(np.array([1]), [np.array([5.0])], np.array([False]))  # 5 > 1.5
    torch.testing.assert_close(norm.scale(alpha, -2.0), torch.tensor([10 / 9, 10 / 7, 1.0]))


def test_discounted_values_bootstrap_a_truncated_tail_with_the_mean_reward():
    np.testing.assert_allclose(discounted_values(np.array([1.0, 2.0, 3.0]), 0.5, False),
                               [2.75, 3.5, 3.0])
    # constant rewards, truncated: the value of the reward forever at every step
    np.testing.assert_allclose(discounted_values(np.full(50, 2.0), 0.9, True), np.full(50, 20.0))


def test_agent_scales_rewards_per_task_and_checkpoints_the_statistics(tmp_path):
    agent = brc_agent(gamma=0.0, num_bins=201, v_min=-10.0, v_max=10.0, init_temperature=0.5,
                      target_entropy=-2.0)
    agent.observe_episodes(Episodes.from_rewards([0, 1], [[4.0] * 100, [0.1] * 100]))
    # horizon 1: G = [4, 0.1, -]; lambda = 0.5 * 1 * 2 / 2 = 0.5
    scale = torch.tensor([10 / 4.5, 10 / 0.6, 1.0])
    b = batch()
    metrics = agent.update(b)
    torch.testing.assert_close(metrics["reward_scale_per_task"], scale)
    # gamma = 0: the target is the scaled reward, clipped to the support
    scaled = (b.reward * scale[b.task_id]).clamp(-10.0, 10.0)
    assert metrics["target_q"].item() == pytest.approx(scaled.mean().item(), abs=1e-4)
    agent.save(tmp_path / "a.pt")
    loaded = load_agent(tmp_path / "a.pt")
    torch.testing.assert_close(loaded.reward_normalizer.max_value, torch.tensor([4.0, 0.1, 0.0]))
    assert loaded.reward_normalizer.seen.tolist() == [True, True, False]


def test_base_agent_ignores_episodes():
    agent = SAC(6, 2, T, BRONET)
    agent.observe_episodes(Episodes.from_rewards([0], [[1.0] * 5]))  # no-op, no error
    assert "reward_normalizer" not in agent.state_dict()


# -------------------------------------------------------------------- task embeddings
def test_task_embeddings_have_unit_norm_and_no_actor_gradient(tmp_path):
    agent = brc_agent()
    table = agent.critic.task_embedding.weight
    torch.testing.assert_close(agent.critic.embed(torch.arange(T)).norm(dim=-1), torch.ones(T))
    assert all(p is not table for p in agent.actor.parameters())
    b = batch()
    agent.actor_loss(b).values().sum().backward()
    assert table.grad is None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.actor.parameters())
    critic_loss = agent.critic_loss(b, agent.critic_targets(b)).values().sum()
    critic_loss.backward()
    assert table.grad is not None and (table.grad.abs().sum(-1) > 0).all()


def test_task_embeddings_learn_with_the_critic_and_are_checkpointed(tmp_path):
    agent = brc_agent()
    before = agent.critic.task_embedding.weight.detach().clone()
    for seed in range(3):
        agent.update(batch(seed=seed))
    after = agent.critic.task_embedding.weight.detach()
    assert not torch.allclose(before, after)
    agent.save(tmp_path / "a.pt")
    loaded = load_agent(tmp_path / "a.pt")
    torch.testing.assert_close(loaded.critic.task_embedding.weight, after)
    obs, task = torch.randn(5, 6), torch.tensor([0, 1, 2, 0, 1])
    torch.testing.assert_close(loaded.actor(obs, task)[0], agent.actor(obs, task)[0])


def test_embedding_changes_the_actor_input_per_task():
    agent = brc_agent()
    obs = torch.zeros(3, 6)
    mean = agent.actor(obs, torch.arange(3))[0]
    assert not torch.allclose(mean[0], mean[1])  # BroNet without one-hot: only the embedding


# ------------------------------------------------------------------------------ BroNet
def test_bronet_block_with_zero_weights_is_the_identity():
    block = BroBlock(8)
    with torch.no_grad():
        for layer in (block.dense1, block.dense2):
            layer.weight.zero_()
            layer.bias.zero_()
    x = torch.randn(4, 8)
    torch.testing.assert_close(block(x), x)


def test_bronet_shape_task_input_and_registration():
    net = build_network({**BRONET, "hidden_sizes": [16],
                         "bronet": {"num_blocks": 2, "task_input": True}}, 5, 3, T)
    assert isinstance(net, BroNet) and len(net.blocks) == 2 and net.stem[0].in_features == 5 + T
    x = torch.randn(2, 5)
    out = net(x.expand(2, 5), torch.tensor([0, 1]))
    assert out.shape == (2, 3) and not torch.allclose(out[0], out[1])
    blind = BroNet(5, 3, T, [16], task_input=False)
    out = blind(x[:1].expand(2, 5), torch.tensor([0, 1]))
    torch.testing.assert_close(out[0], out[1])
    assert BroNet(5, 3, T, [16, 16]).stem[0].out_features == 16  # one width, repeated: fine
    with pytest.raises(MtrlError, match="bronet: .*one value"):
        BroNet(5, 3, T, [16, 32])


def test_bronet_parameter_count_of_the_paper_critic():
    config = load_config("mt10_brc")
    spec = config.agent.critic_network
    with torch.device("meta"):
        critic = build_network(spec, 39 + 4 + 32, 101, 10)
    count = sum(p.numel() for p in critic.parameters())
    w = 4096
    assert count == (75 * w + w) + 2 * w + 2 * (2 * (w * w + w) + 4 * w) + (w * 101 + 101)
    assert 67e6 < count < 69e6  # "about 68M parameters per critic"


# ------------------------------------------------------------------ optimiser, combiners
def test_weight_decay_selects_adamw_and_zero_keeps_adam():
    assert type(SAC(6, 2, T, BRONET).critic_optimizer) is torch.optim.Adam
    agent = brc_agent(weight_decay=0.01)
    assert type(agent.critic_optimizer) is torch.optim.AdamW
    assert agent.critic_optimizer.param_groups[0]["weight_decay"] == 0.01


@pytest.mark.parametrize("actor,critic", [("mean", "mean"), ("pcgrad", "pcgrad"),
                                          ("cagrad", "gradnorm"), ("mean", "famo")])
def test_categorical_critic_with_each_combiner(actor, critic):
    agent = brc_agent(actor_combiner=actor, critic_combiner=critic)
    agent.observe_episodes(Episodes.from_rewards(range(T), [[0.5] * 100] * T))
    for seed in range(2):
        metrics = agent.update(batch(seed=seed))
    assert metrics["critic_loss_per_task"].shape == (T,)
    assert all(torch.isfinite(v).all() for v in metrics.values())


def test_categorical_sac_with_another_actor_architecture():
    net = {"type": "multihead", "hidden_sizes": [16, 16], "activation": "relu"}
    agent = SAC(6, 2, T, net, critic_network=BRONET, critic_loss="categorical",
                task_encoding="embedding", num_bins=11)
    agent.update(batch())
    assert type(agent.actor.policy.network).__name__ == "MultiHead"


def test_mse_default_is_unchanged():
    """Defaults build the same networks from the same seed as before the BRC options."""
    net = {"type": "mlp", "hidden_sizes": [16], "activation": "relu"}
    a, b = SAC(6, 2, T, net, seed=3), SAC(6, 2, T, net, seed=3, critic_network=net)
    for (_, p), (_, q) in zip(a.critic.named_parameters(), b.critic.named_parameters()):
        torch.testing.assert_close(p, q)
    assert a.critic.size == 2 and a.support.shape == (101,)


# ------------------------------------------------------------------------- learning
@pytest.mark.slow
def test_categorical_sac_learns_the_fake_env(run_dir):
    config = fake_config(
        "train.steps_per_task=1500", "train.eval_every=500", "train.eval_episodes=10",
        "agent.critic_loss=categorical", "agent.critic_ensemble=mean",
        "agent.task_encoding=embedding", "agent.reward_normalization=true",
        "agent.weight_decay=1e-4",
    )
    result = train_fn()(config, run_dir)
    assert result.success_rate >= 0.7, result.per_task


MT10_BRC_SMALL = [
    "env.tasks=fake:10", "env.num_workers=2", "env.eval_envs_per_task=2",
    "agent.network.hidden_sizes=[32]", "agent.critic_network.hidden_sizes=[64]",
    "agent.critic_network.bronet.num_blocks=1", "agent.num_bins=21",
    "replay.capacity_per_task=1000", "replay.batch_per_task=16",
    "train.steps_per_task=150", "train.warmup_steps_per_task=100", "train.eval_every=150",
    "train.eval_episodes=2", "train.checkpoint_every=150", "log.progress=false",
    "log.every=50", "log.tensorboard=false",
]


@pytest.mark.slow
def test_short_mt10_shaped_run_with_mt10_brc(run_dir):
    config = load_config("mt10_brc", MT10_BRC_SMALL)
    assert config.agent.critic_loss == "categorical" and config.train.updates_per_step == 2
    result = train_fn()(config, run_dir)
    assert 0.0 <= result.success_rate <= 1.0 and len(result.per_task) == 10
    from mtrl.serialization import load_file

    state = load_file(run_dir / "checkpoint.pt")["learner"]["state"]
    assert state["num_updates"] == 2 * (150 - 100)
    assert "reward_normalizer" in state and "task_embedding.weight" in state["critic"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    losses = [r for r in records if "train/critic_loss" in r]
    assert losses and all(np.isfinite(v) for r in losses for k, v in r.items()
                          if k.startswith("train/"))
    assert any(k.startswith("train/reward_scale/") for k in losses[-1])


def test_brc_presets_resolve():
    for name in ("mt10_brc", "mt50_brc", "quick_brc"):
        config = load_config(name)
        assert config.agent.critic_loss == "categorical" and config.agent.num_bins == 101
        assert config.agent.task_encoding == "embedding" and config.agent.reward_normalization
        assert config.agent.init_temperature == 0.1 and config.agent.target_entropy == -2.0
    quick, brc = load_config("quick"), load_config("quick_brc")
    assert (brc.env, brc.train, brc.replay) == (quick.env, quick.train, quick.replay)
    agent = build_agent(brc.agent, 39, 4, 2, "cpu", 0)
    assert agent.critic.ensemble.template.head.out_features == 101
