"""The success-rate protocol, by hand on the fake env, and Meta-World's evaluator adapter."""

import numpy as np
import pytest

from mtrl.envs import make_vector_env
from mtrl.training.evaluation import MetaWorldAgent, evaluate


def test_protocol_counts_success_at_any_step_per_task():
    env = make_vector_env("fake:2", envs_per_task=3, seed=0)
    centres = env.task_centres

    def policy(obs, task_id):
        # task 0: drive to the goal (success); task 1: stand still (never within 0.1 of goal)
        goal = centres[task_id] + obs[:, 2:4]
        toward = np.clip((goal - obs[:, :2]) / 0.1, -1, 1)
        return np.where((task_id == 0)[:, None], toward, 0.0)

    result = evaluate(policy, env, episodes=7, step=12)
    assert result.per_task == {"fake-task-0": 1.0, "fake-task-1": 0.0}
    assert result.success_rate == 0.5 and result.episodes_per_task == 7 and result.step == 12


def test_meta_world_adapter_feeds_one_hot_observations_to_the_agent():
    from mtrl.agents import SAC

    agent = SAC(39, 4, 10, {"type": "multihead", "hidden_sizes": [8], "activation": "relu"})
    obs = np.random.default_rng(0).normal(size=(10, 39)).astype(np.float32)
    one_hot = np.concatenate([obs, np.eye(10, dtype=np.float32)], 1)
    adapter = MetaWorldAgent(agent)
    adapter.reset(np.ones(10, bool))
    np.testing.assert_allclose(adapter.eval_action(one_hot),
                               agent.act(obs, np.arange(10), deterministic=True), atol=1e-6)


@pytest.mark.slow
def test_meta_world_evaluator_agrees_with_mtrl_eval():
    """A scripted reach policy: Meta-World's evaluator and mtrl's protocol agree."""
    import gymnasium as gym
    import metaworld.evaluation

    class Reach:  # moves the hand to the goal (last 3 obs dims) -> reach-v3 succeeds
        num_tasks, obs_dim = 1, 39

        def predict(self, obs, deterministic=True):
            obs = np.asarray(obs)[:, :39]
            return np.concatenate([np.clip((obs[:, -3:] - obs[:, :3]) * 10, -1, 1),
                                   np.zeros((len(obs), 1))], 1), None

    envs = gym.make_vec("Meta-World/custom-mt-envs", vector_strategy="sync",
                        envs_list=["reach-v3"], seed=0)
    official, *_ = metaworld.evaluation.evaluation(MetaWorldAgent(Reach()), envs, 4)
    envs.close()
    env = make_vector_env("MT1:reach-v3", envs_per_task=2, seed=0, mode="sync")
    ours = evaluate(lambda o, t: Reach().predict(o)[0], env, 4)
    env.close()
    assert official == ours.success_rate == 1.0
