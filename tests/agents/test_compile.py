"""``agent.compile=true``: the compiled update gives the eager update's parameters, compiles
once (no recompilation from step to step), round-trips through a checkpoint, and refuses what
it cannot compile.

The default suite checks the graphs with torch.compile's ``aot_eager`` backend (Dynamo's
capture and AOTAutograd's forward/backward split, without Inductor's code generation, which
takes ~30-60 s per agent on two cores); ``-m slow`` runs the same checks with Inductor.
"""

import copy

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from mtrl.agents import SAC, build_agent
from mtrl.agents.compiled import CompiledUpdate
from mtrl.config import AgentConfig
from mtrl.data import MultiTaskReplay
from mtrl.errors import MtrlError

OBS, ACT, T, ROWS = 5, 2, 3, 4
NET = {"type": "multihead", "hidden_sizes": [16, 16], "activation": "relu"}
CONFIGS = {
    "mean": {},
    "popart": {"popart": True},
    "pcgrad": {"actor_combiner": "pcgrad", "critic_combiner": "pcgrad"},
    "cagrad": {"actor_combiner": "cagrad", "critic_combiner": "cagrad"},
    "categorical": {"critic_loss": "categorical", "critic_ensemble": "mean", "num_bins": 11,
                    "task_encoding": "embedding", "reward_normalization": True,
                    "weight_decay": 0.01},
}
FAST = ("mean", "popart")  # the others under -m slow


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def agents(config: str, backend: str, device: str = "cpu", network: dict | None = None
           ) -> tuple[SAC, SAC]:
    """An eager and a compiled agent from the same seed (``network``: default ``NET``)."""
    net = NET if network is None else network
    eager = SAC(OBS, ACT, T, net, device=device, seed=0, **CONFIGS[config])
    compiled = SAC(OBS, ACT, T, net, device=device, seed=0, **CONFIGS[config])
    compiled.compiled = CompiledUpdate(compiled, backend=backend)
    return eager, compiled


def batches(count: int, device: str = "cpu") -> list:
    rng = np.random.default_rng(0)
    replay = MultiTaskReplay(T, 50, OBS, ACT, device)
    n = 30
    replay.add(rng.normal(size=(n, OBS)), rng.uniform(-1, 1, (n, ACT)), rng.normal(size=n),
               rng.normal(size=(n, OBS)), rng.random(n) < 0.1, np.arange(n) % T)
    torch.manual_seed(0)
    return [replay.sample(ROWS) for _ in range(count)]


def state(agent: SAC) -> dict[str, torch.Tensor]:
    tensors = {f"actor.{k}": v for k, v in agent.actor.state_dict().items()}
    tensors.update({f"critic.{k}": v for k, v in agent.critic.state_dict().items()})
    tensors.update({f"target.{k}": v for k, v in agent.critic_target.state_dict().items()})
    tensors["log_alpha"] = agent.log_alpha_param.detach()
    if agent.popart is not None:
        tensors.update({f"popart.{k}": v for k, v in agent.popart.state_dict().items()})
    return tensors


def assert_same_run(eager: SAC, compiled: SAC, steps: int = 5, warmup: int = 2,
                    device: str = "cpu") -> None:
    """``steps`` updates of both on the same batches: same metrics and parameters; after the
    first ``warmup`` updates nothing recompiles and no new graph appears."""
    initial = {k: v.clone() for k, v in state(compiled).items()}
    data = batches(steps, device)
    for i, batch in enumerate(data):
        if i == warmup:
            graphs = counters["stats"]["unique_graphs"]
            assert graphs > 0
        with torch._dynamo.config.patch(error_on_recompile=i >= warmup):
            want, got = eager.update(batch), compiled.update(batch)
        assert want.keys() == got.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5, msg=key)
    assert counters["stats"]["unique_graphs"] == graphs
    assert compiled.num_updates == eager.num_updates == steps
    want_state, got_state = state(eager), state(compiled)
    for key, value in want_state.items():
        torch.testing.assert_close(got_state[key], value, rtol=1e-4, atol=1e-5, msg=key)
    for part in ("actor.", "critic.", "target."):  # the updates moved every part
        assert any(not torch.equal(got_state[k], v) for k, v in initial.items()
                   if k.startswith(part))


@pytest.mark.parametrize("config", [
    pytest.param(name, marks=() if name in FAST else pytest.mark.slow) for name in CONFIGS])
def test_compiled_update_matches_eager_without_recompiling(config):
    assert_same_run(*agents(config, "aot_eager"))


@pytest.mark.parametrize("config", ["mean", "pcgrad"])
def test_compiled_update_matches_eager_with_the_one_hot_mlp(config):
    """The one-hot MLP's critics take their stacked path under Dynamo (and vmap's inside
    PCGrad's per-task gradients)."""
    assert_same_run(*agents(config, "aot_eager",
                            network={**NET, "type": "mlp"}))


@pytest.mark.slow
@pytest.mark.parametrize("config", list(CONFIGS))
def test_inductor_update_matches_eager_without_recompiling(config):
    assert_same_run(*agents(config, "inductor"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("config", FAST)
def test_inductor_update_matches_eager_on_cuda(config):
    assert_same_run(*agents(config, "inductor", "cuda"), device="cuda")


def test_checkpoint_round_trip_continues_the_same_run():
    """Loading a state into an agent whose pieces already compiled (new optimizer state
    tensors) continues exactly as the eager agent does."""
    eager, compiled = agents("mean", "aot_eager")
    data = batches(6)
    for batch in data[:3]:
        eager.update(batch), compiled.update(batch)
    saved = copy.deepcopy(compiled.state_dict())
    for batch in data[3:]:
        compiled.update(batch)
    after = state(compiled)
    compiled.load_state_dict(saved)
    for batch in data[3:]:
        eager.update(batch), compiled.update(batch)
    for key, value in state(eager).items():
        torch.testing.assert_close(state(compiled)[key], value, rtol=1e-4, atol=1e-5, msg=key)
        torch.testing.assert_close(after[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_config_field_reaches_the_agent_and_its_checkpoint():
    config = AgentConfig(compile=True)
    agent = build_agent(config, OBS, ACT, T, "cpu", seed=0)
    assert isinstance(agent.compiled, CompiledUpdate)
    assert agent.init_kwargs["compile"] is True
    assert build_agent(AgentConfig(), OBS, ACT, T, "cpu", seed=0).compiled is None


@pytest.mark.parametrize("options, match", [
    ({"critic_combiner": "gradnorm"}, "agent.critic_combiner=gradnorm"),
    ({"actor_combiner": "mgda"}, "agent.actor_combiner=mgda"),
    ({"critic_combiner": "famo"}, "supported: mean, pcgrad, cagrad"),
])
def test_uncompilable_combiners_are_refused_at_construction(options, match):
    with pytest.raises(MtrlError, match=match):
        SAC(OBS, ACT, T, NET, compile=True, **options)


def test_other_agents_are_refused_at_construction():
    from mtrl.agents import Distral

    with pytest.raises(MtrlError, match="agent.compile supports agent 'sac' only"):
        Distral(OBS, ACT, T, NET, compile=True)
