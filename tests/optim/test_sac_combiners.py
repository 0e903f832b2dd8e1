"""SAC with every gradient combiner and with PopArt: updates, learning, checkpoints, config."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mtrl.agents import SAC, build_agent, load_agent
from mtrl.config import load_config
from mtrl.data import MultiTaskReplay
from mtrl.envs import make_vector_env
from mtrl.errors import MtrlError
from mtrl.optim import GradNorm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import fake_config  # noqa: E402

T = 3
NET = {"type": "multihead", "hidden_sizes": [32, 32], "activation": "relu"}
OPTIONS = {"fixed": {"weights": [1.0, 2.0, 1.0]}, "cagrad": {"c": 0.4, "iterations": 10}}
# (actor combiner, critic combiner, popart): every combiner once, PopArt on both architectures
SETUPS = [
    ("mean", "mean", True),
    ("pcgrad", "pcgrad", False),
    ("cagrad", "cagrad", False),
    ("fixed", "gradnorm", False),
    ("mean", "uncertainty", False),
    ("pcgrad", "famo", True),
]


def fake_replay(seed: int = 0, steps: int = 150) -> MultiTaskReplay:
    """Random-action transitions of the fake point-mass env (obs 6, act 2)."""
    env = make_vector_env(f"fake:{T}", envs_per_task=2, seed=seed)
    replay = MultiTaskReplay(T, 1000, env.obs_dim, env.act_dim, "cpu")
    rng = np.random.default_rng(seed)
    obs = env.reset()
    for _ in range(steps):
        action = rng.uniform(-1, 1, (env.num_envs, env.act_dim))
        result = env.step(action)
        replay.add(obs, action, result.reward, result.final_obs, result.terminated, env.task_id)
        obs = result.obs
    env.close()
    return replay


def make_agent(actor: str, critic: str, popart: bool, network=NET, **kwargs) -> SAC:
    return SAC(6, 2, T, network, actor_combiner=actor, critic_combiner=critic,
               combiners=OPTIONS, popart=popart, actor_lr=3e-3, critic_lr=3e-3, seed=1,
               **kwargs)


@pytest.mark.parametrize("actor,critic,popart", SETUPS)
def test_sac_learns_a_little_with_each_combiner(actor, critic, popart):
    """gamma = 0 on fake-env data: the critic regresses rewards, the actor climbs Q."""
    replay = fake_replay()
    agent = make_agent(actor, critic, popart, gamma=0.0, init_temperature=0.01)
    gen = torch.Generator().manual_seed(0)
    held_out = replay.sample(64, gen)

    def critic_error() -> float:
        with torch.no_grad():
            x = torch.cat([held_out.obs, held_out.action], -1)
            q = agent.critic(x, held_out.task_id).squeeze(-1)
            if agent.popart is not None:
                q = agent.popart.denormalize(q, held_out.task_id)
            return float((q - held_out.reward).pow(2).mean())

    def policy_value() -> float:
        with torch.no_grad():
            action = agent.actor.mode(held_out.obs, held_out.task_id)
            q = agent.critic(torch.cat([held_out.obs, action], -1), held_out.task_id)
            return float(agent.popart.denormalize(q.squeeze(-1), held_out.task_id).mean()
                         if agent.popart is not None else q.mean())

    start = critic_error()
    for _ in range(40):
        metrics = agent.update(replay.sample(32, gen))
    assert all(torch.isfinite(v).all() for v in metrics.values())
    assert critic_error() < 0.5 * start
    agent.critic_optimizer.param_groups[0]["lr"] = 0.0  # freeze the critic (PopArt keeps
    value_before = policy_value()                        # its outputs): the actor climbs Q
    for _ in range(20):
        agent.update(replay.sample(32, gen))
    assert policy_value() > value_before
    if critic in ("gradnorm", "uncertainty", "famo"):
        assert metrics["critic_weights"].shape == (T,)
    if popart:
        assert metrics["popart_sigma"].shape == (T,)


def test_popart_with_a_shared_output_layer_adds_a_per_task_affine_layer():
    agent = make_agent("mean", "mean", True, network={**NET, "type": "mlp"})
    assert agent._critic_output == "affine"
    assert {"affine__weight", "affine__bias"} <= agent._critic_task_params
    agent.update(fake_replay(steps=20).sample(8))


def test_positive_loss_combiners_are_refused_for_the_actor():
    for name in ("gradnorm", "uncertainty", "famo"):
        with pytest.raises(MtrlError, match="actor_combiner"):
            make_agent(name, "mean", False)


def test_agent_checkpoint_round_trip_with_combiner_state_and_popart(tmp_path):
    replay = fake_replay()
    for actor, critic in (("pcgrad", "gradnorm"), ("cagrad", "famo")):
        agent = make_agent(actor, critic, True)
        for k in range(3):
            agent.update(replay.sample(16, torch.Generator().manual_seed(k)))
        agent.save(tmp_path / "agent.pt")
        loaded = load_agent(tmp_path / "agent.pt")
        assert loaded.init_kwargs["popart"] and loaded.init_kwargs["combiners"] == OPTIONS
        for a in (agent, loaded):
            a.update(replay.sample(16, torch.Generator().manual_seed(10)))
        for (name, p), q in zip(agent.critic.state_dict().items(),
                                loaded.critic.state_dict().values()):
            torch.testing.assert_close(p, q, msg=name)
        for p, q in zip(agent.actor.parameters(), loaded.actor.parameters()):
            torch.testing.assert_close(p, q)
        torch.testing.assert_close(agent.popart.mean, loaded.popart.mean)
        torch.testing.assert_close(agent.critic_combiner.state_dict(),
                                   loaded.critic_combiner.state_dict())


def test_config_selects_combiners_options_and_popart():
    config = load_config("mt10_pcgrad")
    assert config.agent.actor_combiner == config.agent.critic_combiner == "pcgrad"
    config = load_config("mt10_cagrad", ["agent.combiners.cagrad.c=0.4", "agent.popart=true"])
    agent = build_agent(config.agent, 6, 2, 10, "cpu", 0)
    assert agent.actor_combiner.c == 0.4 and agent.popart is not None
    with pytest.raises(MtrlError, match="unknown gradient combiner 'pcgard'"):
        load_config("mt10_mtmhsac", ["agent.critic_combiner=pcgard"])
    with pytest.raises(MtrlError, match="agent.combiners.cagrad"):
        load_config("mt10_mtmhsac", ["agent.combiners.cagrad.radius=1"])


# ------------------------------------------------------------------------ slow: learning
LEARN = [
    ("mean", "mean", True), ("pcgrad", "pcgrad", False), ("cagrad", "cagrad", False),
    ("fixed", "gradnorm", False), ("mean", "uncertainty", False), ("mean", "famo", False),
    ("pcgrad", "pcgrad", True),
]


@pytest.mark.slow
@pytest.mark.parametrize("actor,critic,popart", LEARN)
def test_each_combiner_learns_the_fake_env(actor, critic, popart, run_dir):
    from mtrl.training.loop import train

    config = fake_config(
        "env.tasks=fake:3", "train.steps_per_task=1500", "train.eval_every=500",
        "train.eval_episodes=10", f"agent.actor_combiner={actor}",
        f"agent.critic_combiner={critic}", f"agent.popart={str(popart).lower()}",
        "agent.combiners.fixed.weights=[1,2,1]",
    )
    result = train(config, run_dir)
    assert result.success_rate >= 0.7, result.per_task


@pytest.mark.slow
@pytest.mark.parametrize("actor,critic,popart", LEARN)
def test_short_mt10_run_with_each_combiner(actor, critic, popart, run_dir):
    from mtrl.training.loop import train

    config = load_config("mt10_mtmhsac", [
        "env.num_workers=2", "agent.network.hidden_sizes=[64,64]", "replay.batch_per_task=32",
        "train.steps_per_task=150", "train.warmup_steps_per_task=100", "train.eval_every=150",
        "train.eval_episodes=1", "train.checkpoint_every=150", "log.progress=false",
        "log.every=50", f"agent.actor_combiner={actor}", f"agent.critic_combiner={critic}",
        f"agent.popart={str(popart).lower()}",
        "agent.combiners.fixed.weights=[1,1,1,1,1,2,2,2,2,2]",
    ])
    result = train(config, run_dir)
    assert 0.0 <= result.success_rate <= 1.0 and len(result.per_task) == 10
    # every learning step ran one update through the combiners, and what they logged is finite
    import json

    from mtrl.serialization import load_file

    state = load_file(run_dir / "checkpoint.pt")["learner"]["state"]
    assert state["num_updates"] == 150 - 100
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    losses = [r for r in records if "train/critic_loss" in r]
    assert losses and all(np.isfinite(v) for r in losses for k, v in r.items()
                          if k.startswith("train/"))
    assert any(k.startswith("train/popart_sigma") for k in losses[-1]) == popart


EXPECTED_GRADNORM_LAYER = {  # architecture -> its last shared weight matrix (module-local)
    "mlp": "head.weight", "multihead": "trunk.2.weight", "softmod": "head.weight",
    "care": "trunk.4.weight", "film": "head.weight", "paco": "layers.2.weight",
    "moore": "experts.1.weight",
}
NETWORK_OPTIONS = {"care": {"care": {"context": "learned"}}}


@pytest.mark.parametrize("kind", sorted(EXPECTED_GRADNORM_LAYER))
def test_gradnorm_measures_each_architectures_last_shared_weight_matrix(kind):
    """Never a bias (on the stacked twin critics every bias is 2-D), never a per-task
    parameter: the layer each architecture names, in the actor's and the critics' names."""
    network = {**NET, "type": kind, **NETWORK_OPTIONS.get(kind, {})}
    agent = make_agent("mean", "gradnorm", False, network=network)
    gradnorm = GradNorm(T)  # the actor loss has no sign: a GradNorm of its own, only to ask
    batch = fake_replay(steps=20).sample(8, torch.Generator().manual_seed(0))
    local = EXPECTED_GRADNORM_LAYER[kind]
    for loss, name, member_dims in (
        (agent.critic_loss(batch, batch.reward), local.replace(".", "__"), 1),
        (agent.actor_loss(batch), "network." + local, 0),
    ):
        chosen = gradnorm.shared_layer(loss)
        assert chosen == name
        assert chosen in loss.shared_parameters and not chosen.endswith("bias")
        assert loss.params[chosen].dim() - member_dims >= 2
