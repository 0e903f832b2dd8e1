"""mtrl's vector envs as gymnasium vector envs: spaces, reset/step conventions, same-step and
next-step autoreset, and stock gymnasium wrappers that see the native env's episodes."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.wrappers.vector import ClipAction, RecordEpisodeStatistics, TransformObservation

from mtrl.envs import EnvError, FakeMultiTaskVectorEnv, GymnasiumVectorEnv, as_gymnasium

TASKS, PER_TASK, HORIZON = 3, 2, 12
N = TASKS * PER_TASK


def fake_env(seed: int = 3) -> FakeMultiTaskVectorEnv:
    env = FakeMultiTaskVectorEnv(TASKS, PER_TASK, seed=seed, max_episode_steps=HORIZON)
    env.set_terminate_on_success(True)  # episodes of every length: successes and time limits
    return env


def policy(env: FakeMultiTaskVectorEnv, obs: np.ndarray, rng: np.random.Generator
           ) -> np.ndarray:
    """Even envs head for their goal (they succeed and terminate), odd envs act at random
    (they mostly reach the time limit); actions beyond [-1, 1] for the clipping wrappers."""
    actions = rng.uniform(-1.5, 1.5, (env.num_envs, env.act_dim))
    toward = np.clip((env.goal_positions() - obs[:, :2]) / 0.1, -1.0, 1.0)
    actions[::2] = toward[::2]
    return actions.astype(np.float32)  # what ClipAction passes on: the same values natively


def test_spaces_metadata_and_reset():
    env = as_gymnasium(fake_env())
    assert isinstance(env, VectorEnv) and isinstance(env, GymnasiumVectorEnv)
    assert env.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    assert env.num_envs == N
    assert env.single_observation_space == gym.spaces.Box(-np.inf, np.inf, (6,), np.float32)
    assert env.single_action_space == gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    assert env.observation_space.shape == (N, 6) and env.observation_space.dtype == np.float32
    assert env.action_space.shape == (N, 2) and env.action_space.dtype == np.float32
    obs, info = env.reset()
    assert obs.shape == (N, 6) and obs.dtype == np.float32 and obs in env.observation_space
    np.testing.assert_array_equal(info["task_id"], np.repeat(np.arange(TASKS), PER_TASK))
    assert info["task_id"].dtype == np.int64 and info["_task_id"].all()
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs.shape == (N, 6) and obs.dtype == np.float32
    assert reward.shape == (N,) and reward.dtype == np.float64
    assert terminated.dtype == np.bool_ and truncated.dtype == np.bool_
    assert info["success"].dtype == np.bool_ and info["_success"].all()
    env.close()
    assert env.closed


def test_stock_wrappers_see_the_native_episodes_with_same_step_autoreset():
    """RecordEpisodeStatistics over ClipAction over the adapter, against the native env driven
    with the same actions: same observations, rewards, flags, final observations, episodes."""
    native, adapted = fake_env(), fake_env()
    envs = RecordEpisodeStatistics(ClipAction(as_gymnasium(adapted)))
    rng = np.random.default_rng(0)
    obs_native = native.reset()
    obs, info = envs.reset()
    np.testing.assert_array_equal(obs, obs_native)
    returns, lengths = np.zeros(N), np.zeros(N, dtype=np.int64)
    episodes = {"terminated": 0, "truncated": 0}
    for _ in range(60):
        actions = policy(native, obs_native, rng)
        result = native.step(actions)
        obs, reward, terminated, truncated, info = envs.step(actions)
        np.testing.assert_array_equal(obs, result.obs)
        np.testing.assert_array_equal(reward, result.reward.astype(np.float64))
        np.testing.assert_array_equal(terminated, result.terminated)
        np.testing.assert_array_equal(truncated, result.truncated)
        np.testing.assert_array_equal(info["success"], result.success)
        returns += result.reward
        lengths += 1
        done = result.done
        if done.any():
            np.testing.assert_array_equal(info["_final_obs"], done)
            assert all(o is None for o in info["final_obs"][~done])
            final = np.stack(info["final_obs"][done])
            assert final.dtype == np.float32
            np.testing.assert_array_equal(final, result.final_obs[done])
            assert not np.array_equal(final, result.obs[done])  # obs starts the next episode
            np.testing.assert_array_equal(info["_final_info"], done)
            np.testing.assert_array_equal(info["final_info"]["success"], result.success & done)
            np.testing.assert_array_equal(info["_episode"], done)
            np.testing.assert_array_equal(info["episode"]["r"][done], returns[done])
            np.testing.assert_array_equal(info["episode"]["l"][done], lengths[done])
            episodes["terminated"] += int(result.terminated.sum())
            episodes["truncated"] += int(result.truncated.sum())
            returns[done], lengths[done] = 0.0, 0
        else:
            assert "final_obs" not in info and "episode" not in info
        obs_native = result.obs
    assert episodes["terminated"] > 0 and episodes["truncated"] > 0
    assert envs.episode_count == episodes["terminated"] + episodes["truncated"]
    envs.close()


def test_next_step_autoreset_works_with_observation_wrappers():
    """Observation wrappers refuse same-step autoreset; next-step mode shows the final
    observation at the done step and the new episode's first one at the next step."""
    with pytest.raises(ValueError, match="autoreset_mode"):
        TransformObservation(as_gymnasium(fake_env()), lambda o: o)
    native, adapted = fake_env(), fake_env()
    base = as_gymnasium(adapted, autoreset_mode=AutoresetMode.NEXT_STEP)
    assert base.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP
    envs = RecordEpisodeStatistics(TransformObservation(base, lambda o: 2.0 * o))
    rng = np.random.default_rng(1)
    native_obs = native.reset()
    obs, _ = envs.reset()
    np.testing.assert_array_equal(obs, 2.0 * native_obs)
    awaiting = np.zeros(N, dtype=bool)
    returns, lengths = np.zeros(N), np.zeros(N, dtype=np.int64)
    ended = 0
    for _ in range(60):
        actions = policy(native, native_obs, rng)
        result = native.step(actions, mask=~awaiting)  # envs awaiting their reset wait a step
        obs, reward, terminated, truncated, info = envs.step(actions)
        np.testing.assert_array_equal(obs, 2.0 * result.final_obs)
        assert "final_obs" not in info
        # the step after an episode's end shows the new episode: time feature 0, reward 0
        assert (obs[awaiting, 4] == 0.0).all() and (reward[awaiting] == 0.0).all()
        assert not (terminated | truncated)[awaiting].any()
        returns += np.where(awaiting, 0.0, result.reward)
        lengths += ~awaiting
        done = result.done
        if done.any():
            np.testing.assert_array_equal(info["_episode"], done)
            np.testing.assert_array_equal(info["episode"]["r"][done], returns[done])
            np.testing.assert_array_equal(info["episode"]["l"][done], lengths[done])
            returns[done], lengths[done] = 0.0, 0
            ended += int(done.sum())
        awaiting = done
        native_obs = result.obs
    assert ended > N and envs.episode_count == ended
    envs.close()


def test_step_async_and_step_wait_equal_step():
    a, b = as_gymnasium(fake_env()), as_gymnasium(fake_env())
    a.reset(), b.reset()
    actions = np.random.default_rng(2).uniform(-1, 1, (N, 2)).astype(np.float32)
    for _ in range(HORIZON + 1):  # across an autoreset
        expected = a.step(actions)
        b.step_async(actions)
        got = b.step_wait()
        for x, y in zip(expected[:4], got[:4]):
            np.testing.assert_array_equal(x, y)
        assert expected[4].keys() == got[4].keys()


def test_reset_options_seed_and_one_hot():
    native = fake_env()
    env = as_gymnasium(fake_env(), task_one_hot=True)
    assert env.single_observation_space.shape == (6 + TASKS,)
    goals = np.full(N, 7)
    obs, info = env.reset(options={"goal_index": goals})
    np.testing.assert_array_equal(obs[:, :6], native.reset(goal_index=goals))
    np.testing.assert_array_equal(obs[:, 6:], np.eye(TASKS, dtype=np.float32)[info["task_id"]])
    assert obs in env.observation_space
    for _ in range(HORIZON):
        obs, *_, info = env.step(np.zeros((N, 2)))
    final = np.stack(info["final_obs"][info["_final_obs"]])
    assert final.shape == (int(info["_final_obs"].sum()), 6 + TASKS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env.reset(seed=3)  # the construction seed: nothing to say
        env.reset(options={"reset_mask": np.ones(N, dtype=bool)})  # a full reset is fine
    with pytest.warns(UserWarning, match="seeded when built"):
        env.reset(seed=4)
    partial = np.zeros(N, dtype=bool)
    partial[0] = True
    with pytest.raises(EnvError, match="partial resets"):
        env.reset(options={"reset_mask": partial})
    with pytest.raises(EnvError, match="unknown reset options"):
        env.reset(options={"nope": 1})
    with pytest.raises(EnvError):
        as_gymnasium(fake_env(), autoreset_mode=AutoresetMode.DISABLED)


def test_close_closes_the_native_env_unless_asked_not_to():
    native = fake_env()
    as_gymnasium(native, close_env=False).close()
    native.reset()  # still open
    env = as_gymnasium(native)
    env.close()
    env.close()  # idempotent
    with pytest.raises(EnvError, match="closed"):
        native.reset()


@pytest.mark.parametrize("backend", ["metaworld", "envpool"])
def test_meta_world_backends_through_record_episode_statistics(backend):
    """The worker pool (async, with step_async overlap) and EnvPool behind the adapter."""
    if backend == "envpool":
        pytest.importorskip("envpool")
    from mtrl.envs import make_vector_env

    kwargs = {"num_workers": 2, "mode": "async"} if backend == "metaworld" else {}
    native = make_vector_env("reach-v3,push-v3", envs_per_task=1, seed=3, max_episode_steps=6,
                             backend=backend, **kwargs)
    envs = RecordEpisodeStatistics(as_gymnasium(native))
    try:
        assert envs.single_observation_space.shape == (39,)
        assert envs.action_space.shape == (2, 4)
        obs, info = envs.reset()
        assert obs.shape == (2, 39) and obs.dtype == np.float32
        np.testing.assert_array_equal(info["task_id"], [0, 1])
        rewards = np.zeros(2)
        for _ in range(6):
            obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
            rewards += reward
        assert truncated.all() and info["_final_obs"].all()
        final = np.stack(info["final_obs"])
        assert final.shape == (2, 39) and not np.array_equal(final, obs)
        np.testing.assert_allclose(info["episode"]["r"], rewards)
        np.testing.assert_array_equal(info["episode"]["l"], [6, 6])
    finally:
        envs.close()
