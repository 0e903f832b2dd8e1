"""Multi-task vector environments: Meta-World v3 (worker processes or EnvPool) and a tiny fake env."""

from mtrl.envs.base import MultiTaskVectorEnv, StepResult
from mtrl.envs.envpool_env import EnvPoolVectorEnv
from mtrl.envs.factory import BACKENDS, make_vector_env
from mtrl.envs.fake import FakeMultiTaskVectorEnv
from mtrl.envs.metaworld_env import MetaWorldVectorEnv
from mtrl.envs.tasks import MT10_TASKS, MT50_TASKS, EnvError, resolve_tasks

__all__ = [
    "StepResult",
    "MultiTaskVectorEnv",
    "resolve_tasks",
    "make_vector_env",
    "MetaWorldVectorEnv",
    "EnvPoolVectorEnv",
    "BACKENDS",
    "FakeMultiTaskVectorEnv",
    "MT10_TASKS",
    "MT50_TASKS",
    "EnvError",
]
