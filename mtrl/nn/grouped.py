"""One network per task group, trained side by side in one run (``agent.network.groups``)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from mtrl.errors import MtrlError
from mtrl.nn.ensemble import Ensemble, _flat


class GroupedNetwork(nn.Module):
    """A copy of a base architecture for each group of tasks; a row uses its task's group.

    The ``K`` copies are stacked in an :class:`~mtrl.nn.Ensemble` and evaluated together (one
    batched matmul per layer); each row then takes the output of its own group's copy, so a
    task's loss reaches only its group's parameters. Each copy is built for all ``T`` tasks and
    sees the run's task ids (task-conditioned architectures such as CARE keep their task
    contexts; the heads of tasks outside a group stay unused). Every copy sees every row: the
    forward cost is ``K`` times that of one copy.

    Args:
        make_base: ``make_base(num_tasks) -> module`` with ``forward(x, task_id)``.
        groups: task indices per group; they must partition ``range(num_tasks)``.
        num_tasks: the number of tasks of the run.
    """

    def __init__(self, make_base: Callable[[int], nn.Module], groups: Sequence[Sequence[int]],
                 num_tasks: int) -> None:
        super().__init__()
        members = sorted(int(t) for group in groups for t in group)
        if members != list(range(num_tasks)) or any(len(g) == 0 for g in groups):
            raise MtrlError(f"network groups {list(map(list, groups))} must partition the "
                            f"task indices 0..{num_tasks - 1} (each task in exactly one group)")
        self.groups = [sorted(int(t) for t in group) for group in groups]
        group_of = torch.empty(num_tasks, dtype=torch.int64)
        for g, group in enumerate(self.groups):
            group_of[group] = g
        self.register_buffer("group_of", group_of, persistent=False)
        self.networks = Ensemble([make_base(num_tasks) for _ in self.groups])

    def forward(self, x: Tensor, task_id: Tensor) -> Tensor:
        out = self.networks(x, task_id)  # (K, B, out)
        index = self.group_of[task_id].view(1, -1, 1).expand(1, -1, out.shape[-1])
        return out.gather(0, index).squeeze(0)

    def observe_task_losses(self, losses: Tensor, state: dict[str, Tensor]) -> None:
        """Pass an update's per-task losses on to copies that adapt to them (PaCo).

        ``state`` holds this module's live tensors (stacked over the copies, and over outer
        ensemble members); each adapting submodule of the copies gets its own slice of names.
        """
        hooks = [(prefix, module.observe_task_losses)
                 for prefix, module in self.networks.template.named_modules()
                 if hasattr(module, "observe_task_losses")]
        if not hooks:
            return
        tensors = {name: state[f"networks.{_flat(name)}"]
                   for name in self.networks.member_state()}
        for prefix, hook in hooks:
            start = f"{prefix}." if prefix else ""
            hook(losses, {name[len(start):]: t for name, t in tensors.items()
                          if name.startswith(start)})

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
