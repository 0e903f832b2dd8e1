"""Multi-task vector environments: Meta-World v3 (worker processes or EnvPool) and a tiny fake env.

Any of them is also a ``gymnasium.vector.VectorEnv`` through :func:`as_gymnasium`
(:mod:`mtrl.envs.gymnasium_vector`, imported on first use).
"""

from typing import TYPE_CHECKING, Any

from mtrl.envs.base import MultiTaskVectorEnv, StepResult
from mtrl.envs.envpool_env import EnvPoolVectorEnv
from mtrl.envs.factory import BACKENDS, make_vector_env
from mtrl.envs.fake import FakeMultiTaskVectorEnv
from mtrl.envs.metaworld_env import MetaWorldVectorEnv
from mtrl.envs.tasks import MT10_TASKS, MT50_TASKS, EnvError, resolve_tasks

if TYPE_CHECKING:
    from mtrl.envs.gymnasium_vector import GymnasiumVectorEnv, as_gymnasium

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
    "GymnasiumVectorEnv",
    "as_gymnasium",
]

_LAZY = ("GymnasiumVectorEnv", "as_gymnasium")


def __getattr__(name: str) -> Any:
    """The gymnasium adapter, imported on first use (``import mtrl.envs`` stays light)."""
    if name in _LAZY:
        from mtrl.envs import gymnasium_vector

        return getattr(gymnasium_vector, name)
    raise AttributeError(f"module 'mtrl.envs' has no attribute {name!r}")
