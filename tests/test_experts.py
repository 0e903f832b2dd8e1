"""Experts: the gymnasium view of one env, loading SB3 zips and mtrl checkpoints behind one
interface, one-line errors for bad experts, and ``mtrl expert`` end to end."""

import json

import numpy as np
import pytest
import torch

from mtrl.agents import SAC
from mtrl.serialization import atomic_save
from mtrl.cli import main
from mtrl.config import DistillOptions, ExpertConfig, load_config
from mtrl.envs import FakeMultiTaskVectorEnv, make_vector_env
from mtrl.errors import MtrlError
from mtrl.training.experts import (TaskExperts, TaskGymEnv, evaluate_policy_on_task, load_expert,
                          load_experts)

from sb3_experts import oracle_expert, untrained_expert

NET = {"type": "multihead", "hidden_sizes": [16], "activation": "relu"}


@pytest.fixture(scope="module")
def oracle_zip(tmp_path_factory):
    return oracle_expert(tmp_path_factory.mktemp("experts") / "oracle1.zip", 3, 1)


def test_task_gym_env_steps_only_its_env_and_reports_episode_success():
    vec = FakeMultiTaskVectorEnv(3, 1, seed=0, max_episode_steps=20)
    env = TaskGymEnv(vec, 1)
    obs, _ = env.reset()
    others = vec._pos[[0, 2]].copy()
    np.testing.assert_array_equal(obs[:2], vec._pos[1].astype(np.float32))
    goal = vec.goal_positions()[1]
    for step in range(20):
        direction = (goal - vec._pos[1]) * 10
        obs, reward, terminated, truncated, info = env.step(np.clip(direction, -1, 1))
        assert reward == pytest.approx(-np.linalg.norm(vec._pos[1] - goal), rel=1e-5)
        assert ("is_success" in info) == (terminated or truncated)
    assert truncated and not terminated and info["is_success"]
    np.testing.assert_array_equal(vec._pos[[0, 2]], others)  # the other envs never moved
    np.testing.assert_array_equal(obs[:2], vec._pos[1].astype(np.float32))  # no autoreset


def test_sb3_expert_gives_the_distribution_sb3_acts_with(oracle_zip):
    from stable_baselines3 import SAC as SB3SAC

    expert = load_expert(oracle_zip, "fake-task-1", 6, 2)
    obs = np.random.default_rng(0).uniform(-1, 1, (8, 6)).astype(np.float32)
    mean, log_std = expert.distribution(torch.as_tensor(obs))
    sb3_action, _ = SB3SAC.load(oracle_zip, device="cpu").predict(obs, deterministic=True)
    np.testing.assert_allclose(torch.tanh(mean).numpy(), sb3_action, atol=1e-6)
    torch.testing.assert_close(log_std, torch.full((8, 2), -1.0))


def test_oracle_expert_solves_its_task_under_the_official_protocol(oracle_zip):
    experts = TaskExperts([load_expert(oracle_zip, "fake-task-1", 6, 2)] * 3)
    env = FakeMultiTaskVectorEnv(3, 5, seed=10_000)
    result = evaluate_policy_on_task(experts.act, env, 1, 10, step=0)
    assert result.per_task == {"fake-task-1": 1.0} and result.mean_return is None


def test_mtrl_checkpoint_expert_uses_its_own_task_index(tmp_path):
    agent = SAC(6, 2, 3, NET, seed=3)
    payload = {"agent": agent.name, "kwargs": agent.init_kwargs, "state": agent.state_dict()}
    names = ["fake-task-0", "fake-task-1", "fake-task-2"]
    atomic_save({"learner": payload, "task_names": names}, tmp_path / "run" / "checkpoint.pt")
    expert = load_expert(tmp_path / "run", "fake-task-2", 6, 2)  # a run directory
    obs = torch.randn(5, 6)
    torch.testing.assert_close(expert.distribution(obs),
                               agent.actor(obs, torch.full((5,), 2)))
    with pytest.raises(MtrlError, match="not push-v3"):
        load_expert(tmp_path / "run", "push-v3", 6, 2)
    agent.save(tmp_path / "agent.pt")  # no task names: ambiguous for a 3-task agent
    with pytest.raises(MtrlError, match="does not say"):
        load_expert(tmp_path / "agent.pt", "fake-task-0", 6, 2)
    single = SAC(6, 2, 1, NET)
    single.save(tmp_path / "single.pt")
    assert load_expert(tmp_path / "single.pt", "reach-v3", 6, 2).task_index == 0


def test_bad_experts_are_one_line_errors(tmp_path, oracle_zip):
    (tmp_path / "junk.zip").write_bytes(b"definitely not a zip")
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(oracle_zip.read_bytes()[:400])
    (tmp_path / "empty_run").mkdir()
    big = untrained_expert(tmp_path / "mw.zip", 39, 4)
    cases = [
        (tmp_path / "missing.zip", "not found"),
        (tmp_path / "empty_run", "no expert.zip or checkpoint.pt"),
        (tmp_path / "junk.zip", "corrupt expert"),
        (truncated, "corrupt expert"),
        (big, "39/4 do not match the task's 6/2"),
    ]
    for path, message in cases:
        with pytest.raises(MtrlError, match=message) as info:
            load_expert(path, "fake-task-0", 6, 2)
        assert "\n" not in str(info.value)


def test_load_experts_resolves_one_expert_per_task(tmp_path, oracle_zip):
    names = ["fake-task-0", "fake-task-1"]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "expert.zip").write_bytes(oracle_zip.read_bytes())
    pattern = DistillOptions(expert_pattern=str(tmp_path / "{task}"))
    experts = load_experts(pattern, names, 6, 2)
    assert [e.source for e in experts.experts] == \
        [str(tmp_path / n / "expert.zip") for n in names]
    explicit = DistillOptions(experts={"fake-task-0": str(oracle_zip)},
                              expert_pattern=str(tmp_path / "{task}"))
    assert load_experts(explicit, names, 6, 2).experts[0].source == str(oracle_zip)
    with pytest.raises(MtrlError, match="no expert for task fake-task-1"):
        load_experts(DistillOptions(experts={"fake-task-0": str(oracle_zip)}), names, 6, 2)
    with pytest.raises(MtrlError, match="not in env.tasks: push-v3"):
        load_experts(DistillOptions(experts={"push-v3": str(oracle_zip)}), names, 6, 2)


def test_expert_config_checks():
    with pytest.raises(MtrlError, match="envs_per_task must be 1"):
        load_config(None, ["task=reach-v3", "env.envs_per_task=2"], schema=ExpertConfig)
    with pytest.raises(MtrlError, match="sac.net_arch"):
        load_config(None, ["task=reach-v3", "sac.net_arch=[]"], schema=ExpertConfig)


EXPERT_ARGS = ["env.tasks=fake:2", "train.warmup_steps_per_task=100", "train.eval_every=200",
               "train.eval_episodes=5", "train.checkpoint_every=200", "replay.batch_per_task=32",
               "replay.capacity_per_task=1000", "sac.net_arch=[32,32]", "log.every=100",
               "log.progress=false", "--device", "cpu"]


def test_expert_command_trains_saves_and_reports(tmp_path, capsys):
    run_dir = tmp_path / "expert"
    code = main(["expert", "fake-task-1", "--run-dir", str(run_dir), "--steps-per-task", "300",
                 *EXPERT_ARGS])
    out = capsys.readouterr().out
    assert code == 0 and "fake-task-1: success" in out
    info = json.loads((run_dir / "expert.json").read_text())
    final = json.loads((run_dir / "final_eval.json").read_text())
    assert info["task"] == "fake-task-1" and info["env_tasks"] == "fake:2"
    assert info["success_rate"] == final["success_rate"] == final["per_task"]["fake-task-1"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "eval/success_rate" in r] == [200, 300]
    # the saved zip is the evaluated policy: re-evaluating it reproduces the success rate
    expert = load_expert(run_dir / "expert.zip", "fake-task-1", 6, 2)
    env = make_vector_env("fake:2", 5, seed=10_000, goal_seed=0)
    again = evaluate_policy_on_task(TaskExperts([expert] * 2).act, env, 1, 5, step=300)
    assert again.success_rate == info["success_rate"]
    assert main(["expert", "fake-task-1", "--run-dir", str(run_dir), *EXPERT_ARGS]) == 2
    assert "already holds an expert" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["expert", "reach-v9"], "reach-v9"),
    (["expert", "fake-task-3", "env.tasks=fake:2"], "not in env.tasks"),
    (["expert", "reach-v3", "sac.learning_rate=fast"], "sac.learning_rate"),
])
def test_expert_command_bad_input(capsys, tmp_path, argv, message):
    code = main([*argv, "--run-dir", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_expert_command_on_a_metaworld_task(tmp_path, capsys):
    run_dir = tmp_path / "reach"
    code = main(["expert", "reach-v3", "--run-dir", str(run_dir), "--steps", "150",
                 "env.max_episode_steps=50", "env.mode=sync", "env.eval_envs_per_task=2",
                 "train.warmup_steps_per_task=50", "train.eval_episodes=2",
                 "sac.net_arch=[32]", "replay.batch_per_task=16", "log.progress=false"])
    assert code == 0
    expert = load_expert(run_dir, "reach-v3", 39, 4)
    mean, log_std = expert.distribution(torch.zeros(3, 39))
    assert mean.shape == log_std.shape == (3, 4)
