"""The fake env follows the vector-env contract: autoreset, truncation, masks, goals."""

import numpy as np
import pytest

from mtrl.envs import EnvError, FakeMultiTaskVectorEnv, make_vector_env, resolve_tasks


def test_resolve_specs():
    assert resolve_tasks("MT10")[0] == "reach-v3" and len(resolve_tasks("MT10")) == 10
    assert len(resolve_tasks("MT50")) == 50
    assert resolve_tasks("MT1:push-v3") == ["push-v3"]
    assert resolve_tasks("reach-v3, push-v3") == ["reach-v3", "push-v3"]
    assert len(resolve_tasks("fake:4")) == 4
    for bad in ("reach-v9", "MT1:nope", "reach-v3,reach-v3", "fake:0"):
        with pytest.raises(EnvError):
            resolve_tasks(bad)


def test_truncation_returns_true_final_obs_and_resets():
    env = make_vector_env("fake:2", envs_per_task=2, seed=0, max_episode_steps=5)
    assert isinstance(env, FakeMultiTaskVectorEnv)
    np.testing.assert_array_equal(env.task_id, [0, 0, 1, 1])
    obs = env.reset()
    for t in range(5):
        result = env.step(np.ones((4, 2)))
        if t < 4:
            assert not result.done.any()
            np.testing.assert_array_equal(result.final_obs, result.obs)
    assert result.truncated.all() and not result.terminated.any()
    # final_obs is the end of the finished episode (time feature 1), obs starts the next (0)
    np.testing.assert_allclose(result.final_obs[:, 4], 1.0)
    np.testing.assert_allclose(result.obs[:, 4], 0.0)
    assert not np.allclose(result.final_obs[:, :2], obs[:, :2])


def test_mask_freezes_envs_and_goal_index_enumerates_goals():
    env = make_vector_env("fake:2", envs_per_task=1, seed=1)
    first = env.reset(goal_index=[3, 3])
    again = env.reset(goal_index=[3, 3])
    np.testing.assert_allclose(first[:, 2:4], again[:, 2:4])  # same goal offset
    result = env.step(np.ones((2, 2)), mask=np.array([True, False]))
    assert result.reward[1] == 0.0
    np.testing.assert_allclose(result.obs[1], again[1])


def test_same_seed_same_episodes_and_state_round_trip():
    a = make_vector_env("fake:3", seed=7)
    b = make_vector_env("fake:3", seed=7)
    np.testing.assert_allclose(a.reset(), b.reset())
    actions = np.random.default_rng(0).uniform(-1, 1, (3, 2))
    a.step(actions), b.step(actions)
    state = a.get_state()  # RNGs and episodes in flight: after a restore, the same resets
    a_obs = a.reset()
    b.set_state(state)
    np.testing.assert_allclose(b.reset(), a_obs)
