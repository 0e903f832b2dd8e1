"""The EnvPool backend: mtrl's vector-env semantics on EnvPool, and fidelity to Meta-World.

Everything but the missing-EnvPool and config checks is skipped when envpool is not installed.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from mtrl.config import load_config
from mtrl.envs import EnvError, MT50_TASKS, FakeMultiTaskVectorEnv, make_vector_env
from mtrl.errors import MtrlError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def envpool():
    return pytest.importorskip("envpool")


def _env(tasks="reach-v3,push-v3", envs_per_task=2, seed=3, horizon=20):
    return make_vector_env(tasks, envs_per_task, seed, max_episode_steps=horizon,
                           backend="envpool")


def _actions(rng, env):
    return rng.uniform(-1, 1, (env.num_envs, env.act_dim)).astype(np.float32)


def _load_fidelity():
    spec = importlib.util.spec_from_file_location(
        "envpool_fidelity", ROOT / "benchmarks" / "envpool_fidelity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["envpool_fidelity"] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- no EnvPool needed
def test_missing_envpool_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "envpool", None)  # makes `import envpool` fail
    with pytest.raises(MtrlError, match=r"pip install mtrl\[envpool\]") as info:
        make_vector_env("reach-v3", backend="envpool")
    assert "\n" not in str(info.value)


def test_backend_choices_and_config():
    with pytest.raises(MtrlError, match="env.backend must be one of metaworld, envpool"):
        make_vector_env("reach-v3", backend="gym")
    assert load_config(None, ["env.backend=envpool"]).env.backend == "envpool"
    assert load_config(None).env.backend == "metaworld"
    with pytest.raises(MtrlError, match="env.backend must be one of metaworld, envpool"):
        load_config(None, ["env.backend=envpol"])
    # the fake env is the fake env whatever the backend
    assert isinstance(make_vector_env("fake:2", backend="envpool"), FakeMultiTaskVectorEnv)
    with pytest.raises(MtrlError, match="goal_seed"):
        make_vector_env("reach-v3", goal_seed=0, backend="envpool")


# ------------------------------------------------------------------ the vector env
def test_shapes_dtypes_and_observable_goal(envpool):
    with _env() as env:
        assert (env.num_envs, env.obs_dim, env.act_dim, env.max_episode_steps) == (4, 39, 4, 20)
        assert env.task_names == ["reach-v3", "push-v3"]
        np.testing.assert_array_equal(env.task_id, [0, 0, 1, 1])
        obs = env.reset()
        assert obs.shape == (4, 39) and obs.dtype == np.float32
        assert np.abs(obs[:, 36:39]).sum(1).min() > 0  # the goal is visible
        np.testing.assert_array_equal(obs[:, :18], obs[:, 18:36])  # previous frame = first
        result = env.step(_actions(np.random.default_rng(0), env))
        for name, dtype in (("obs", np.float32), ("final_obs", np.float32),
                            ("reward", np.float32), ("terminated", np.bool_),
                            ("truncated", np.bool_), ("success", np.bool_),
                            ("task_id", np.int64)):
            value = getattr(result, name)
            assert value.dtype == dtype and value.shape[0] == 4, name
        assert ((result.reward >= 0) & (result.reward <= 10)).all()


def test_envpool_task_ids_match_envpool(envpool):
    from envpool.mujoco.metaworld.registration import metaworld_task_id

    from mtrl.envs.envpool_env import envpool_task_id

    assert [envpool_task_id(t) for t in MT50_TASKS] == [metaworld_task_id(t) for t in MT50_TASKS]
    assert set(map(envpool_task_id, MT50_TASKS)) <= set(envpool.list_all_envs())


def test_truncation_and_same_step_autoreset_with_true_final_obs(envpool):
    actions = np.random.default_rng(0).uniform(-1, 1, (25, 4, 4)).astype(np.float32)
    with _env() as auto, _env() as manual:
        manual.set_autoreset(False)
        auto.reset(), manual.reset()
        for t in range(25):
            a, m = auto.step(actions[t]), manual.step(actions[t])
            if t < 19:
                assert not a.done.any()
                np.testing.assert_array_equal(a.obs, m.obs)
            elif t == 19:  # the 20th step: truncated, reset in the same step
                assert a.truncated.all() and not a.terminated.any()
                np.testing.assert_array_equal(a.final_obs, m.obs)  # the true last observation
                assert not np.allclose(a.obs, a.final_obs)
                np.testing.assert_array_equal(a.obs[:, :18], a.obs[:, 18:36])  # a first obs
            else:  # autoreset off: the old episode goes on, truncated stays True
                assert m.truncated.all() and not a.truncated.any()
                np.testing.assert_array_equal(m.final_obs, m.obs)


def test_mask_semantics(envpool):
    actions = np.random.default_rng(1).uniform(-1, 1, (25, 4, 4)).astype(np.float32)
    mask = np.array([True, False, True, True])
    with _env() as masked, _env() as full:
        first = masked.reset()
        full.reset()
        for t in range(20):
            r, f = masked.step(actions[t], mask=mask), full.step(actions[t])
            np.testing.assert_array_equal(r.obs[mask], f.obs[mask])  # others are unaffected
            np.testing.assert_array_equal(r.obs[1], first[1])  # not stepped
            np.testing.assert_array_equal(r.final_obs[1], first[1])
            assert r.reward[1] == 0 and not (r.terminated[1] or r.truncated[1] or r.success[1])
        assert r.truncated[mask].all()
        for t in range(20):  # env 1 alone: its own horizon counts its own steps
            r = masked.step(actions[t], mask=~mask)
            assert r.truncated[1] == (t == 19) and not r.truncated[mask].any()


def test_same_seed_same_episodes(envpool):
    def rollout(seed):
        rng = np.random.default_rng(2)
        with _env(seed=seed, horizon=10) as env:
            out = [env.reset()]
            for _ in range(25):  # crosses two autoresets
                out.append(env.step(_actions(rng, env)).obs)
        return np.concatenate(out)

    a, b, c = rollout(5), rollout(5), rollout(6)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_goals_are_sampled_and_goal_index_is_refused(envpool):
    with _env("MT1:reach-v3", envs_per_task=1) as env:
        goals = {tuple(np.round(env.reset()[0, 36:39], 4)) for _ in range(4)}
        assert len(goals) == 4
        with pytest.raises(MtrlError, match="cannot reset to Meta-World's enumerated goals"):
            env.reset(goal_index=[0])


def test_async_protocol_state_and_close(envpool):
    env = _env()
    with pytest.raises(EnvError, match="reset"):
        env.step(np.zeros((4, 4), np.float32))
    env.reset()
    with pytest.raises(EnvError, match="shape"):
        env.step(np.zeros((3, 4), np.float32))
    env.step_async(np.zeros((4, 4), np.float32))
    with pytest.raises(EnvError, match="pending"):
        env.reset()
    env.step_wait()
    with pytest.raises(EnvError, match="without a pending"):
        env.step_wait()
    state = env.get_state()
    env.set_state(state)
    with pytest.raises(EnvError, match="reset"):
        env.step(np.zeros((4, 4), np.float32))
    assert env.reset().shape == (4, 39)
    with pytest.raises(EnvError, match="metaworld"):
        env.set_state({"task_names": env.task_names, "num_envs": 4, "goal_rng": []})
    env.close()
    env.close()
    with pytest.raises(EnvError, match="closed"):
        env.reset()


def test_refused_tasks_are_a_clear_error(envpool, monkeypatch):
    from mtrl.envs import envpool_env

    monkeypatch.setitem(envpool_env.REFUSED_TASKS, "push-v3", "success 2/10 vs 10/10")
    with pytest.raises(MtrlError, match="refuses push-v3 .*success 2/10"):
        _env()


# ----------------------------------------------------------------------- fidelity
def test_fisher_exact_test_by_hand():
    bench = _load_fidelity()
    assert bench.fisher_exact_p(10, 10, 10, 10) == 1.0
    # 10/10 vs 0/10: only the observed table and its mirror are that extreme
    assert bench.fisher_exact_p(10, 10, 0, 10) == pytest.approx(2 / 184756)
    assert bench.fisher_exact_p(3, 10, 5, 10) == pytest.approx(0.6499, abs=1e-4)


def _check_row(row):
    assert row["success_agree"], row
    assert row["reward_agree"] is not False, row
    for side in ("metaworld", "envpool"):
        low, high = row[side]["reward"]
        assert 0.0 <= low <= high <= 10.0, row
    # same reward scale: the ranges overlap and reach similar maxima
    a, b = row["metaworld"]["reward"], row["envpool"]["reward"]
    assert max(a[0], b[0]) <= min(a[1], b[1]) and abs(a[1] - b[1]) <= 2.0, row


@pytest.mark.parametrize("task", ["reach-v3", "button-press-topdown-v3"])
def test_scripted_policy_agrees_on_a_few_tasks(envpool, task):
    row = _load_fidelity().compare_task(task, episodes=3)
    _check_row(row)
    assert row["matched"]["matched"] and row["matched"]["same_state_steps"] > 0, row


@pytest.mark.slow
@pytest.mark.parametrize("task", MT50_TASKS)
def test_scripted_policy_agrees_on_every_task(envpool, task):
    from mtrl.envs.envpool_env import REFUSED_TASKS

    row = _load_fidelity().compare_task(task, episodes=10)
    if task in REFUSED_TASKS:
        assert not row["agree"], f"{task} is refused but agrees now: {row}"
    else:
        _check_row(row)


def test_training_on_envpool_evaluates_on_metaworld(envpool, tmp_path):
    """``env.backend=envpool`` trains on EnvPool's envs and keeps the official evaluation on
    Meta-World's goal sets (the evaluation env is a MetaWorldVectorEnv)."""
    from mtrl.envs import EnvPoolVectorEnv, MetaWorldVectorEnv
    from mtrl.training.loop import make_eval_env, make_train_env, train

    config = load_config("quick", [
        "env.tasks=reach-v3,push-v3", "env.backend=envpool", "env.mode=sync",
        "env.envs_per_task=2", "env.eval_envs_per_task=1", "env.max_episode_steps=50",
        "agent.network.hidden_sizes=[16]", "replay.batch_per_task=8", "train.steps_per_task=100",
        "train.warmup_steps_per_task=50", "train.eval_every=100", "train.eval_episodes=1",
        "train.checkpoint_every=100", "log.progress=false", "log.tensorboard=false",
        "train.device=cpu",
    ])
    env = make_train_env(config)
    assert isinstance(env, EnvPoolVectorEnv)
    eval_env = make_eval_env(config, env)
    assert isinstance(eval_env, MetaWorldVectorEnv)
    env.close(), eval_env.close()
    result = train(config, tmp_path / "run")
    assert result.step == 100 and set(result.per_task) == {"reach-v3", "push-v3"}
