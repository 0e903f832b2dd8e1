"""Task lists of the Meta-World v3 multi-task benchmarks and parsing of task specs.

The lists are spelled out here (rather than read from ``metaworld``) so that importing
``mtrl.envs`` does not import MuJoCo; ``tests/envs/test_tasks.py`` checks that they equal
``metaworld.env_dict.MT10_V3`` / ``MT50_V3`` key for key, in order.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Sequence

from mtrl.errors import MtrlError


class EnvError(ValueError):
    """A bad environment spec, or a failure while stepping environments (dead worker...)."""


MT10_TASKS: tuple[str, ...] = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)
"""The MT10 tasks in Meta-World's order (``metaworld.env_dict.MT10_V3``)."""

MT50_TASKS: tuple[str, ...] = (
    "assembly-v3",
    "basketball-v3",
    "bin-picking-v3",
    "box-close-v3",
    "button-press-topdown-v3",
    "button-press-topdown-wall-v3",
    "button-press-v3",
    "button-press-wall-v3",
    "coffee-button-v3",
    "coffee-pull-v3",
    "coffee-push-v3",
    "dial-turn-v3",
    "disassemble-v3",
    "door-close-v3",
    "door-lock-v3",
    "door-open-v3",
    "door-unlock-v3",
    "hand-insert-v3",
    "drawer-close-v3",
    "drawer-open-v3",
    "faucet-open-v3",
    "faucet-close-v3",
    "hammer-v3",
    "handle-press-side-v3",
    "handle-press-v3",
    "handle-pull-side-v3",
    "handle-pull-v3",
    "lever-pull-v3",
    "pick-place-wall-v3",
    "pick-out-of-hole-v3",
    "pick-place-v3",
    "plate-slide-v3",
    "plate-slide-side-v3",
    "plate-slide-back-v3",
    "plate-slide-back-side-v3",
    "peg-insert-side-v3",
    "peg-unplug-side-v3",
    "soccer-v3",
    "stick-push-v3",
    "stick-pull-v3",
    "push-v3",
    "push-wall-v3",
    "push-back-v3",
    "reach-v3",
    "reach-wall-v3",
    "shelf-place-v3",
    "sweep-into-v3",
    "sweep-v3",
    "window-open-v3",
    "window-close-v3",
)
"""All 50 Meta-World v3 tasks in the MT50 order (``metaworld.env_dict.MT50_V3``)."""

FAKE_TASK_PREFIX = "fake-task-"
_FAKE_SPEC = re.compile(r"fake:(\d+)")


def fake_task_names(num_tasks: int) -> list[str]:
    """Names of the fake env's tasks: ``["fake-task-0", ..., f"fake-task-{num_tasks - 1}"]``."""
    return [f"{FAKE_TASK_PREFIX}{i}" for i in range(num_tasks)]


def is_fake(task_names: Sequence[str]) -> bool:
    """Whether resolved ``task_names`` name the fake env's tasks (see :func:`resolve_tasks`)."""
    return bool(task_names) and task_names[0].startswith(FAKE_TASK_PREFIX)


def resolve_tasks(spec: str | Sequence[str]) -> list[str]:
    """Turn a task spec into the ordered list of task names.

    Accepted specs: ``"MT10"``, ``"MT50"`` (Meta-World's orders), ``"MT1:<task>"``, a
    comma-separated string or a list of v3 task names (``"reach-v3,push-v3"``), and
    ``"fake:<T>"`` for :class:`~mtrl.envs.fake.FakeMultiTaskVectorEnv` with ``T`` tasks (its
    names ``fake-task-0..T-1`` in order are accepted too, so resolved lists round-trip).

    Raises:
        EnvError: unknown task (the message suggests close matches), duplicate, empty spec.
    """
    if isinstance(spec, str):
        text = spec.strip()
        if text.upper() == "MT10":
            return list(MT10_TASKS)
        if text.upper() == "MT50":
            return list(MT50_TASKS)
        if text.upper().startswith("MT1:"):
            names = [text[4:].strip()]
        elif (fake := _FAKE_SPEC.fullmatch(text)) is not None:
            num_tasks = int(fake.group(1))
            if num_tasks < 1:
                raise EnvError(f"task spec {spec!r}: the fake env needs at least 1 task")
            return fake_task_names(num_tasks)
        else:
            names = [name.strip() for name in text.split(",")]
    else:
        names = [str(name).strip() for name in spec]

    if not names or not all(names):
        raise EnvError(f"task spec {spec!r} has an empty task name")
    for name in names:
        if names.count(name) > 1:
            raise EnvError(f"task {name!r} is listed more than once in {spec!r}")
    if any(name.startswith(FAKE_TASK_PREFIX) for name in names):
        if names != fake_task_names(len(names)):
            raise EnvError(
                f"fake tasks must be exactly fake-task-0..fake-task-{len(names) - 1} in order "
                f"(use 'fake:{len(names)}'), got {names}"
            )
        return names
    for name in names:
        if name not in MT50_TASKS:
            raise EnvError(_unknown_task_message(name))
    return names


def _unknown_task_message(name: str) -> str:
    matches = difflib.get_close_matches(name, MT50_TASKS, n=3, cutoff=0.5)
    hint = (
        f"did you mean {', '.join(repr(m) for m in matches)}?"
        if matches
        else "valid specs: 'MT10', 'MT50', 'MT1:<task>', 'fake:<T>' or v3 task names"
    )
    return f"unknown Meta-World task {name!r}; {hint}"


def resolve_groups(groups: Sequence[Sequence[Any]], task_names: Sequence[str]) -> list[list[int]]:
    """Task groups given by names or 0-based indices -> sorted index lists.

    Raises:
        MtrlError: unknown task, empty group, or groups that do not partition the tasks
            (every task in exactly one group).
    """
    index = {name: i for i, name in enumerate(task_names)}
    resolved: list[list[int]] = []
    for group in groups:
        members = []
        for item in group:
            if isinstance(item, int) and not isinstance(item, bool) \
                    and 0 <= item < len(task_names):
                members.append(item)
            elif isinstance(item, str) and item in index:
                members.append(index[item])
            elif isinstance(item, str) and item.isdigit() and int(item) < len(task_names):
                members.append(int(item))
            else:
                raise MtrlError(f"config: agent.network.groups: unknown task {item!r} (tasks: "
                                f"{', '.join(task_names)} or indices 0..{len(task_names) - 1})")
        if not members:
            raise MtrlError("config: agent.network.groups: a group is empty")
        resolved.append(sorted(members))
    seen: dict[int, int] = {}
    for g, members in enumerate(resolved):
        for t in members:
            if t in seen:
                raise MtrlError(
                    f"config: agent.network.groups: task {task_names[t]} is in more than one "
                    "group "
                    "(training needs disjoint groups: use `mtrl group --disjoint`)")
            seen[t] = g
    missing = [task_names[t] for t in range(len(task_names)) if t not in seen]
    if missing:
        raise MtrlError(f"config: agent.network.groups: tasks in no group: {', '.join(missing)}")
    return resolved
