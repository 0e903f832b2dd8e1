"""A method is one file: a network type, a gradient combiner and an agent registered here, as a
new module of mtrl would register them, are selectable and type-checked in a config, build an
agent that trains, saves and loads, and are gone again once unregistered."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pytest
import torch
from torch import Tensor, nn

from mtrl.agents import AGENT_CLASSES, SAC, build_agent, load_agent
from mtrl.config import AgentConfig, CombinerOptions, Config, assemble_schema, from_dict, \
    load_config, to_dict
from mtrl.data.replay import Batch
from mtrl.errors import MtrlError
from mtrl.nn import NETWORKS, NetworkConfig, build_network, register_network
from mtrl.optim import COMBINERS, GradientCombiner, TaskLoss, register_combiner
from mtrl.registry import Registry

OBS, ACT, T = 5, 2, 3


# ------------------------------------------------------------- a tiny method of each kind
@dataclass
class TinyOptions:
    scale: float = 1.0  # multiplies the output


class TinyNet(nn.Module):
    """A shared linear layer; ignores the task."""

    def __init__(self, in_dim: int, out_dim: int, num_tasks: int, hidden_sizes=(8,),
                 activation: str = "relu", scale: float = 1.0) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.scale = scale

    def forward(self, x: Tensor, task_id: Tensor) -> Tensor:
        return self.scale * self.linear(x)


@dataclass
class HalfOptions:
    factor: float = 0.5

    def validate(self, key: str) -> None:
        if self.factor <= 0:
            raise MtrlError(f"{key}.factor must be positive, got {self.factor}")


class Half(GradientCombiner):
    """``factor`` times the weighted mean of the task losses."""

    def __init__(self, num_tasks: int, seed: int = 0, factor: float = 0.5) -> None:
        super().__init__(num_tasks, seed)
        self.factor = factor

    def backward(self, loss: TaskLoss) -> Tensor:
        values = loss.values()
        (self.factor * (values * loss.weights).sum()).backward()
        return values.detach()


@dataclass
class BonusOptions:
    bonus: float = 0.0


@contextmanager
def tiny_methods() -> Iterator[None]:
    """Register the tiny network and combiner (as their own module would) for the block."""
    register_network("tiny", options=TinyOptions)(TinyNet)
    register_combiner("half", options=HalfOptions)(Half)
    try:
        yield
    finally:
        NETWORKS.unregister("tiny")
        COMBINERS.unregister("half")


TINY = ["agent.network.type=tiny", "agent.network.tiny.scale=2", "agent.actor_combiner=half",
        "agent.critic_combiner=half", "agent.combiners.half.factor=0.25"]


def random_batch(rows_per_task: int = 4) -> Batch:
    g = torch.Generator().manual_seed(0)
    n = T * rows_per_task
    return Batch(obs=torch.randn(n, OBS, generator=g), action=torch.rand(n, ACT, generator=g),
                 reward=torch.randn(n, generator=g), next_obs=torch.randn(n, OBS, generator=g),
                 terminated=torch.zeros(n), task_id=torch.arange(T).repeat_interleave(rows_per_task),
                 rows_per_task=rows_per_task)


# ------------------------------------------------------------------------------- the tests
def test_a_registered_network_and_combiner_are_config_sections_and_build_an_agent(tmp_path):
    with tiny_methods():
        config = load_config("mt10_mtmhsac", TINY)
        assert config.agent.network.tiny == TinyOptions(scale=2.0)
        assert config.agent.combiners.half == HalfOptions(factor=0.25)
        assert isinstance(config, Config) and isinstance(config.agent.network, NetworkConfig)
        agent = build_agent(config.agent, OBS, ACT, T, "cpu", 0)
        tiny = [m for m in agent.actor.modules() if isinstance(m, TinyNet)]
        assert tiny and tiny[0].scale == 2.0
        assert isinstance(agent.actor_combiner, Half) and agent.critic_combiner.factor == 0.25
        before = [p.detach().clone() for p in agent.actor.parameters()]
        metrics = agent.update(random_batch())
        assert all(torch.isfinite(v).all() for v in metrics.values())
        assert any(not torch.equal(a, b) for a, b in zip(before, agent.actor.parameters()))
        agent.save(tmp_path / "agent.pt")
        loaded = load_agent(tmp_path / "agent.pt")
        obs, task = torch.randn(4, OBS).numpy(), torch.tensor([0, 1, 2, 0]).numpy()
        assert (loaded.act(obs, task, True) == agent.act(obs, task, True)).all()
        # the saved resolved config rebuilds the same config
        assert from_dict(to_dict(config)) == config
        # the options are type-checked and unknown keys fail, one line each, naming the key
        for bad, key in (("agent.network.tiny.scale=big", "agent.network.tiny.scale"),
                         ("agent.network.tiny.width=3", "agent.network.tiny"),
                         ("agent.combiners.half.power=2", "agent.combiners.half"),
                         ("agent.combiners.half.factor=0", "agent.combiners.half.factor")):
            with pytest.raises(MtrlError, match=f"^config: {key}") as info:
                load_config("mt10_mtmhsac", TINY + [bad])
            assert "\n" not in str(info.value)
    # unregistered: the sections and the choices are gone
    with pytest.raises(MtrlError, match="agent.network.tiny"):
        load_config("mt10_mtmhsac", ["agent.network.tiny.scale=2"])
    with pytest.raises(MtrlError, match="unknown gradient combiner 'half'"):
        load_config("mt10_mtmhsac", ["agent.critic_combiner=half"])
    with pytest.raises(MtrlError, match="unknown network type 'tiny'"):
        build_network({"type": "tiny", "hidden_sizes": [4], "activation": "relu"}, 3, 2, 2)
    assert "tiny" not in NETWORKS and "half" not in COMBINERS


def test_an_agent_subclass_with_options_gets_its_own_section():
    class BonusSAC(SAC):
        name = "bonus_sac"
        options = BonusOptions

        def __init__(self, *args, bonus: float = 0.0, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.bonus = bonus

    try:
        assert AGENT_CLASSES["bonus_sac"] is BonusSAC
        config = load_config("mt10_mtmhsac", ["agent.name=bonus_sac", "agent.bonus_sac.bonus=2",
                                              "agent.network.hidden_sizes=[8]"])
        agent = build_agent(config.agent, OBS, ACT, T, "cpu", 0)
        assert isinstance(agent, BonusSAC) and agent.bonus == 2.0
        sac = build_agent(load_config("mt10_mtmhsac", ["agent.network.hidden_sizes=[8]"]).agent,
                          OBS, ACT, T, "cpu", 0)  # another agent's section is not passed
        assert type(sac) is SAC
    finally:
        AGENT_CLASSES.unregister("bonus_sac")
    with pytest.raises(MtrlError, match="agent.bonus_sac"):
        load_config("mt10_mtmhsac", ["agent.bonus_sac.bonus=2"])


def test_the_registries_in_their_order_and_the_schema_built_from_them():
    assert list(NETWORKS) == ["mlp", "multihead", "softmod", "care", "film", "paco", "moore",
                              "bronet", "cross_stitch", "routing"]
    assert list(COMBINERS) == ["mean", "pcgrad", "cagrad", "gradnorm", "uncertainty", "famo",
                               "fixed", "mgda", "dwa", "dtp"]
    assert set(AGENT_CLASSES) >= {"sac", "distral", "student"}
    schema = assemble_schema(Config)
    assert assemble_schema(Config) is schema  # cached while the registries stay the same
    hints = {f.name: f.type for f in dataclasses.fields(schema)}
    agent = hints["agent"]
    assert issubclass(agent, AgentConfig)
    agent_fields = {f.name: f.type for f in dataclasses.fields(agent)}
    assert issubclass(agent_fields["combiners"], CombinerOptions)
    network_sections = [f.name for f in dataclasses.fields(agent_fields["network"])
                        if f.name in NETWORKS]
    assert network_sections == list(NETWORKS.option_sections())
    assert [f.name for f in dataclasses.fields(agent_fields["combiners"])] == \
        list(COMBINERS.option_sections())
    assert "distral" in agent_fields
    # every option is a keyword argument of the method's constructor
    for registry in (NETWORKS, COMBINERS):
        for name, options in registry.option_sections().items():
            params = inspect.signature(registry[name]).parameters
            for f in dataclasses.fields(options):
                assert f.name in params, (name, f.name)


def test_an_assembled_config_pickles_and_copies():
    config = load_config("mt10_distral", ["agent.network.paco.num_param_sets=3"])
    for other in (pickle.loads(pickle.dumps(config)), copy.deepcopy(config)):
        assert other == config and type(other) is type(config)
        assert type(other.agent.distral.shared_network) is type(config.agent.network)


def test_registry_errors():
    registry: Registry[type] = Registry("widget")
    registry.register("a")(int)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(float)
    with pytest.raises(TypeError, match="dataclass"):
        registry.register("b", options=dict)
    with pytest.raises(MtrlError, match=r"^unknown widget 'c' \(choose from a\)$"):
        registry.lookup("c")
    registry.unregister("a")
    assert len(registry) == 0
    with tiny_methods():  # an options section may not hide a common field
        register_network("groups", options=TinyOptions)(TinyNet)
        try:
            with pytest.raises(MtrlError, match="groups"):
                load_config("mt10_mtmhsac")
        finally:
            NETWORKS.unregister("groups")
