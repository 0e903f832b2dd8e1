"""Per-task losses of one update, as gradient combiners see them.

The agent defines a loss *per row* of a task-balanced batch (rows grouped by task: ``T``
blocks of ``b`` rows). :class:`TaskLoss` evaluates it in two ways:

* :meth:`TaskLoss.values` — one batched forward over all rows, reduced to the loss vector
  ``(T,)`` (with autograd graph): enough for combiners that weight losses (``mean``, ...).
* :meth:`TaskLoss.task_gradients` — each task's gradient of every parameter, as ``(T, ...)``
  tensors, with ``vmap`` over the task blocks of ``grad`` of one block's loss. Each task's
  loss only touches its own rows, so this costs about one backward pass of the whole batch
  (per-block vector-Jacobian products), not ``T`` full backward passes.
"""

from __future__ import annotations

from typing import Callable, Iterable, Union

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

RowLoss = Callable[..., Union[Tensor, tuple[Tensor, Tensor]]]
"""``row_loss(params, *rows) -> loss_rows (n,)`` or ``(loss_rows (n,), aux_rows (n, ...))``."""


class TaskLoss:
    """A row-wise loss over a task-major batch, reducible per task.

    Args:
        row_loss: ``row_loss(params, *rows)`` computes the loss of each row (and optionally a
            detached auxiliary output per row) using the parameter dict ``params`` (call the
            module with ``torch.func.functional_call``).
        params: the trainable parameters, by name.
        rows: tensors with ``T * b`` rows, task-major.
        num_tasks: ``T``.
        task_parameters: names in ``params`` that belong to one task each (per-task heads):
            each task's gradient only reaches its own slice of them.
        weights: ``(T,)`` task weights that sum to one (default ``1/T``); combiners that
            average losses use them (e.g. soft modularization's temperature weighting).
        shared_layer: name in ``params`` of the network's last shared weight matrix
            (:func:`mtrl.nn.last_shared_weight_name`), for combiners that measure one layer.
        task_mask: ``task_mask(losses) -> (T,) bool`` given this update's detached per-task
            losses: the tasks left out of this very update's gradient (PaCo's loss masking,
            :func:`mtrl.nn.task_loss_mask`). Every combiner honours it, because both
            :meth:`values` and :meth:`task_gradients` apply it; masked losses are still
            returned (for logging and for the networks that react to them).
    """

    def __init__(
        self,
        row_loss: RowLoss,
        params: dict[str, nn.Parameter],
        rows: tuple[Tensor, ...],
        num_tasks: int,
        task_parameters: Iterable[str] = (),
        weights: Tensor | None = None,
        shared_layer: str = "",
        task_mask: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.row_loss = row_loss
        self.params = params
        self.rows = rows
        self.num_tasks = num_tasks
        self.task_parameters = set(task_parameters) & set(params)
        device = next(iter(params.values())).device
        self.weights = (
            weights.detach()
            if weights is not None
            else torch.full((num_tasks,), 1.0 / num_tasks, device=device)
        )
        self.shared_layer = shared_layer
        self.task_mask = task_mask
        self.aux: Tensor | None = None

    @property
    def shared_parameters(self) -> list[str]:
        """Names of the parameters that all tasks share."""
        return [name for name in self.params if name not in self.task_parameters]

    def _split(self, out: Union[Tensor, tuple[Tensor, Tensor]]) -> Tensor:
        if isinstance(out, tuple):
            loss_rows, aux = out
            self.aux = aux.detach()
            return loss_rows
        return out

    def values(self) -> Tensor:
        """The loss vector ``(T,)`` from one batched forward (differentiable)."""
        loss_rows = self._split(self.row_loss(self.params, *self.rows))
        values = loss_rows.view(self.num_tasks, -1).mean(1)
        if self.task_mask is None:
            return values
        return torch.where(self.task_mask(values.detach()), values.detach(), values)

    def task_gradients(
        self, names: Iterable[str] | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-task losses ``(T,)`` and gradients ``{name: (T, *param.shape)}``.

        Args:
            names: the parameters to differentiate (default: all); the others enter as
                constants, so autograd stops where they are used (e.g. GradNorm only needs the
                last shared layer).
        """
        blocks = tuple(r.view(self.num_tasks, -1, *r.shape[1:]) for r in self.rows)
        wanted = set(self.params) if names is None else set(names)
        variables = {n: p.detach() for n, p in self.params.items() if n in wanted}
        constants = {n: p.detach() for n, p in self.params.items() if n not in wanted}

        def block_loss(params: dict[str, Tensor], *block: Tensor) -> tuple[Tensor, Tensor]:
            out = self.row_loss({**constants, **params}, *block)
            if isinstance(out, tuple):
                return out[0].mean(), out[1]
            return out.mean(), out.detach()

        in_dims = (None,) + (0,) * len(blocks)
        grads, (losses, aux) = vmap(
            grad_and_value(block_loss, has_aux=True), in_dims=in_dims, randomness="different"
        )(variables, *blocks)
        self.aux = aux.reshape(-1, *aux.shape[2:]).detach()
        if self.task_mask is not None:
            masked = self.task_mask(losses.detach())
            grads = {n: torch.where(masked.view(-1, *(1,) * (g.dim() - 1)), torch.zeros_like(g), g)
                     for n, g in grads.items()}
        return losses.detach(), grads

    def accumulate(self, grads: dict[str, Tensor]) -> None:
        """Add ``grads`` (one tensor per parameter name) to the parameters' ``.grad``."""
        for name, g in grads.items():
            p = self.params[name]
            p.grad = g.detach().clone() if p.grad is None else p.grad + g


def call_with(module: nn.Module, params: dict[str, Tensor], own: dict[str, Tensor],
              *inputs: Tensor) -> Tensor:
    """``module(*inputs)`` computed with ``params``: a plain call when ``params`` is ``own``
    (the module's own parameter dict, which :meth:`TaskLoss.values` passes unchanged), else
    ``functional_call`` (detached copies, :meth:`TaskLoss.task_gradients`' variables). The
    same numbers either way; the plain call skips the parameter swap."""
    if params is own:
        return module(*inputs)
    return functional_call(module, params, inputs)
