"""Every vector env implements the whole MultiTaskVectorEnv protocol that the trainer, the
evaluator and the gymnasium adapter use."""

from __future__ import annotations

import inspect

import pytest

from mtrl.envs import (EnvPoolVectorEnv, FakeMultiTaskVectorEnv, MetaWorldVectorEnv,
                       MultiTaskVectorEnv)

METHODS = ("reset", "step", "step_async", "step_wait", "set_autoreset",
           "set_terminate_on_success", "get_state", "set_state", "close")


def test_protocol_lists_what_the_trainer_calls():
    members = {name for name, value in vars(MultiTaskVectorEnv).items()
               if callable(value) and not name.startswith("_")}
    assert members == set(METHODS)


@pytest.mark.parametrize("cls", [MetaWorldVectorEnv, EnvPoolVectorEnv, FakeMultiTaskVectorEnv])
def test_every_env_class_implements_every_method(cls):
    for name in METHODS:
        method = getattr(cls, name, None)
        assert callable(method), f"{cls.__name__}.{name}"
        expected = list(inspect.signature(getattr(MultiTaskVectorEnv, name)).parameters)
        assert list(inspect.signature(method).parameters) == expected, f"{cls.__name__}.{name}"


def test_fake_env_is_a_multi_task_vector_env():
    env = FakeMultiTaskVectorEnv(2, 2)
    assert isinstance(env, MultiTaskVectorEnv)
    assert (env.num_envs, env.envs_per_task, env.seed) == (4, 2, 0)
