"""The Meta-World vector env: worker processes agree with the in-process mode."""

import numpy as np
import pytest

from mtrl.envs import EnvError, make_vector_env


def _rollout(mode: str, steps: int = 30):
    env = make_vector_env("reach-v3,push-v3", envs_per_task=2, seed=3, num_workers=2,
                          mode=mode, max_episode_steps=20)
    try:
        assert (env.obs_dim, env.act_dim, env.num_envs) == (39, 4, 4)
        np.testing.assert_array_equal(env.task_id, [0, 0, 1, 1])
        out = [env.reset()]
        rng = np.random.default_rng(0)
        truncated = []
        for _ in range(steps):
            result = env.step(rng.uniform(-1, 1, (4, 4)).astype(np.float32))
            out += [result.obs, result.final_obs, np.repeat(result.reward[:, None], 39, 1)]
            truncated.append(result.truncated)
        return np.concatenate(out, 0), np.array(truncated)
    finally:
        env.close()


def test_async_workers_match_sync_mode_and_truncate_at_horizon():
    a, trunc_a = _rollout("async")
    s, trunc_s = _rollout("sync")
    np.testing.assert_allclose(a, s, rtol=1e-6, atol=1e-6)
    assert trunc_a[19].all() and not trunc_a[:19].any()
    np.testing.assert_array_equal(trunc_a, trunc_s)


def test_goals_are_resampled_each_reset():
    env = make_vector_env("MT1:reach-v3", envs_per_task=1, seed=0, mode="sync")
    try:
        goals = {tuple(np.round(env.reset()[0, -3:], 4)) for _ in range(5)}
        assert len(goals) > 1
    finally:
        env.close()


def test_unknown_task_is_a_clear_error():
    with pytest.raises(EnvError, match="reach-v9"):
        make_vector_env("reach-v9")


def _eval_rollout(env, steps: int = 12) -> np.ndarray:
    rng = np.random.default_rng(1)
    out = [env.reset(goal_index=np.arange(env.num_envs) % 50)]
    for _ in range(steps):
        out.append(env.step(rng.uniform(-1, 1, (env.num_envs, 4)).astype(np.float32)).obs)
    return np.concatenate(out, 0)


def test_eval_env_shares_the_training_workers_and_matches_its_own_envs():
    import multiprocessing as mp

    spec = dict(tasks="reach-v3,push-v3", max_episode_steps=20)
    train = make_vector_env(spec["tasks"], 1, seed=3, num_workers=2, mode="async",
                            max_episode_steps=20)
    try:
        train.reset()
        children = {p.pid for p in mp.active_children()}
        shared = make_vector_env(spec["tasks"], 3, seed=10_003, mode="async",
                                 max_episode_steps=20, goal_seed=3, share_workers_with=train)
        # no new processes: the eval envs live in the training workers
        assert {p.pid for p in mp.active_children()} == children
        assert shared.worker_pids == train.worker_pids and shared.num_envs == 6
        # training goals, eval seeds: identical to the same envs stepped in this process
        alone = make_vector_env(spec["tasks"], 3, seed=10_003, mode="sync",
                                max_episode_steps=20, goal_seed=3)
        np.testing.assert_allclose(_eval_rollout(shared), _eval_rollout(alone), atol=1e-6)
        assert [g[0].data for g in shared.task_goals] == [g[0].data for g in train.task_goals]
        alone.close()
        # closing the eval env leaves the training envs running in the same workers
        shared.close()
        train.step(np.zeros((2, 4), np.float32))
        assert {p.pid for p in mp.active_children()} == children
    finally:
        train.close()
    with pytest.raises(EnvError, match="closed"):
        shared.reset()


def test_a_killed_worker_is_a_clear_error_not_a_hang():
    import os
    import signal
    import time

    train = make_vector_env("reach-v3,push-v3", 1, seed=0, num_workers=2, max_episode_steps=20)
    evaluation = make_vector_env("reach-v3,push-v3", 1, seed=1, goal_seed=0,
                                 share_workers_with=train, max_episode_steps=20)
    try:
        train.reset()
        evaluation.reset()
        os.kill(train.worker_pids[1], signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(EnvError, match=r"env worker 1 .* killed by signal SIGKILL"):
            train.step(np.zeros((2, 4), np.float32))
        assert time.monotonic() - start < 10
        # the pool is down for every env that shared it
        with pytest.raises(EnvError, match="closed"):
            evaluation.reset()
    finally:
        train.close()
        evaluation.close()


def test_overlapped_steps_give_the_same_transitions_as_blocking_steps():
    """step_async + work + step_wait (how the trainer overlaps learning) == step()."""
    def collect(overlapped: bool) -> list[np.ndarray]:
        env = make_vector_env("reach-v3,push-v3", 2, seed=5, num_workers=2, max_episode_steps=8)
        rng = np.random.default_rng(0)
        try:
            out = [env.reset()]
            for _ in range(12):
                actions = rng.uniform(-1, 1, (4, 4)).astype(np.float32)
                if overlapped:
                    env.step_async(actions)
                    sum(range(10_000))  # the learner's work would run here
                    result = env.step_wait()
                else:
                    result = env.step(actions)
                out += [result.obs, result.final_obs, result.reward, result.truncated]
            return out
        finally:
            env.close()

    for a, b in zip(collect(True), collect(False)):
        np.testing.assert_array_equal(a, b)


def test_goals_are_cached_on_disk_and_regenerated_if_the_cache_is_bad(tmp_path, monkeypatch):
    from mtrl.envs import metaworld_env

    monkeypatch.setenv("MTRL_CACHE_DIR", str(tmp_path))
    names = ("reach-v3", "push-v3")
    metaworld_env._goal_tasks.cache_clear()
    fresh = metaworld_env.make_goal_tasks(names, 7)
    (cached_file,) = tmp_path.glob("goals-*.json")
    metaworld_env._goal_tasks.cache_clear()
    assert metaworld_env.make_goal_tasks(names, 7) == fresh  # read back from disk
    assert [len(g) for g in fresh] == [50, 50] and fresh[1][0].env_name == "push-v3"
    cached_file.write_text("{not json")
    metaworld_env._goal_tasks.cache_clear()
    assert metaworld_env.make_goal_tasks(names, 7) == fresh  # regenerated, file rewritten
    assert cached_file.read_text().startswith("{\"reach-v3\"")
    monkeypatch.setenv("MTRL_CACHE_DIR", "")  # empty: no disk cache
    assert metaworld_env.goal_cache_dir() is None
    metaworld_env._goal_tasks.cache_clear()
