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
