"""MGDA-UB: multi-task learning as multi-objective optimisation (Sener & Koltun 2018, "Multi-Task
Learning as Multi-Objective Optimization").

MGDA finds the minimum-norm point of the convex hull of the task gradients,
``alpha* = argmin_{alpha in simplex} |sum_t alpha_t g_t|^2``; stepping along it decreases every
task loss unless the point is zero (a Pareto-stationary point). The paper's **upper bound**
(MGDA-UB) takes ``g_t = grad_Z L_t``, the gradient of task ``t``'s loss with respect to the
*representation* ``Z``, the output of the last shared layer, instead of the gradient of every
shared parameter: ``|sum_t alpha_t grad_theta L_t| <= |dZ/dtheta| |sum_t alpha_t grad_Z L_t|``,
so one backward pass to ``Z`` per task is enough. The weights then scale the task losses and
one ordinary backward pass of ``sum_t alpha_t L_t`` writes every gradient (the authors' code:
per-task heads get their ``alpha_t``-scaled gradient too).

The solver (:func:`min_norm_weights`) is the paper's Frank-Wolfe procedure (Algorithm 2) on
the ``(T, T)`` Gram matrix, with the analytic minimum-norm point of two vectors (Algorithm 1,
:func:`min_norm_2`) as the line search: at each iteration the vertex ``e_t`` with the smallest
``(G alpha)_t`` is chosen and ``alpha <- gamma alpha + (1 - gamma) e_t`` with the exact
``gamma``. It starts from the best pair of vertices, as the authors' ``MinNormSolver`` does (the
paper's Algorithm 2 writes a uniform start; the best pair converges in far fewer iterations),
and runs a fixed number of iterations on the device (no host synchronisation; the authors stop
when ``alpha`` changes by less than 1e-5, at most 250 iterations).

**In mtrl** each task's loss only touches its own rows of the task-balanced batch, so the
representation gradients of different tasks live on different rows of ``Z`` and are mutually
orthogonal: the Gram matrix is diagonal and the min-norm point is
``alpha_t = (1 / |g_t|^2) / sum_s (1 / |g_s|^2)`` (Frank-Wolfe converges to it; tests check
both). MGDA-UB thus gives more weight to tasks whose loss is flat in ``Z``. The full MGDA of the
paper (``gradients="parameters"``: the Gram matrix of every shared parameter's task gradients,
from one vmapped pass as for PCGrad) does see conflicts between tasks.

``grad_Z L_t`` is read, row by row, as the gradient of the last shared layer's **bias**
(``z = x W + b``: the gradient of one row's loss with respect to ``b`` is its gradient with
respect to ``z``), computed for every row at once with ``vmap`` over single rows (a pass that
stops at that layer), exact for any architecture. **Cost (known problem):** inside the fused
twin critics (:class:`~mtrl.nn.Ensemble`, itself a ``vmap``), the nested ``vmap`` materialises
the critics' weight matrices once per row: on MT10 (3 x 400, 1280 rows, CPU, one thread) an
update took about 50x the ``mean`` update, against about 1.4x for PCGrad and for
``gradients="parameters"``. A per-row additive probe on the bias (one forward, one backward to
``Z``) would cost about one extra forward pass, but needs each layer to accept a row-shaped bias.

Gradient normalisation before the solve, as in the authors' code (``gradient_normalizers``):
``none`` (the paper's algorithm, default), ``l2`` (``g_t / |g_t|``), ``loss`` (``g_t / L_t``),
``loss+`` (``g_t / (L_t |g_t|)``); the weights then scale the unnormalised losses. ``loss`` and
``loss+`` assume positive losses (the combiner declares ``positive_losses`` then).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mtrl.errors import MtrlError
from mtrl.optim.combiners import register_combiner
from mtrl.optim.surgery import TaskGradientCombiner
from mtrl.optim.task_loss import TaskLoss

_TINY = 1e-20
GRADIENTS = ("representation", "parameters")
NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def min_norm_2(v1v1: Tensor, v1v2: Tensor, v2v2: Tensor) -> tuple[Tensor, Tensor]:
    """The paper's Algorithm 1: ``gamma = argmin_{gamma in [0, 1]} |gamma x1 + (1 - gamma) x2|^2``
    from the inner products ``x1.x1``, ``x1.x2``, ``x2.x2`` (any matching shapes); returns
    ``(gamma, min norm^2)``."""
    denom = (v1v1 + v2v2 - 2.0 * v1v2).clamp_min(_TINY)
    gamma = ((v2v2 - v1v2) / denom).clamp(0.0, 1.0)
    cost = gamma * gamma * v1v1 + 2.0 * gamma * (1.0 - gamma) * v1v2 + (1.0 - gamma) ** 2 * v2v2
    return gamma, cost


def min_norm_weights(gram: Tensor, iterations: int = 50, active: Tensor | None = None) -> Tensor:
    """Weights ``alpha (T,)`` on the simplex of the min-norm point of the convex hull of ``T``
    vectors whose inner products are ``gram (T, T)``: Frank-Wolfe (Sener & Koltun 2018,
    Algorithm 2) with the exact two-vector step, started from the best pair of vectors.

    Args:
        gram: ``(T, T)`` Gram matrix (positive semi-definite).
        iterations: Frank-Wolfe iterations after the pair start (fixed: no host sync).
        active: ``(T,) bool``, the vectors allowed in the hull (default: all); the others get
            weight 0. If none is active the weights are uniform.
    """
    num = gram.shape[0]
    g = gram / gram.diagonal().mean().clamp_min(_TINY)  # the solution is scale-invariant
    diag = g.diagonal()
    if active is None:
        active = torch.ones(num, dtype=torch.bool, device=g.device)
    inf = torch.tensor(float("inf"), dtype=g.dtype, device=g.device)
    # start: the best of all pairs (i, j), i == j included (a single vector)
    gamma, cost = min_norm_2(diag.unsqueeze(1), g, diag.unsqueeze(0))  # gamma on x_i
    pair_ok = active.unsqueeze(1) & active.unsqueeze(0)
    best = torch.where(pair_ok, cost, inf).flatten().argmin()
    index = torch.arange(num, device=g.device)

    def unit(k: Tensor) -> Tensor:  # e_k for a 0-d index tensor, without a host sync
        return (index == k).to(g.dtype)

    gamma_ij = gamma.flatten().gather(0, best.view(1)).squeeze(0)
    alpha = gamma_ij * unit(best // num) + (1.0 - gamma_ij) * unit(best % num)
    for _ in range(iterations):
        g_alpha = g @ alpha
        vertex = unit(torch.where(active, g_alpha, inf).argmin())
        step, _ = min_norm_2(alpha @ g_alpha, vertex @ g_alpha, vertex @ diag)
        alpha = step * alpha + (1.0 - step) * vertex
    uniform = torch.full_like(alpha, 1.0 / num)
    return torch.where(active.any(), alpha, uniform)


@dataclass
class MGDAOptions:
    """MGDA-UB (Sener & Koltun 2018): min-norm point of the task gradients (Frank-Wolfe)."""

    gradients: str = "representation"  # representation (MGDA-UB) | parameters (full MGDA)
    normalization: str = "none"  # none | l2 | loss | loss+ (loss*: positive losses)
    iterations: int = 50  # Frank-Wolfe iterations per update (>= T - 2: exact when diagonal)
    layer: str = ""  # the last shared layer's weight name; empty = the architecture's


@register_combiner("mgda", options=MGDAOptions)
class MGDA(TaskGradientCombiner):
    """MGDA-UB (Sener & Koltun 2018): the task losses weighted by the min-norm point of the
    convex hull of their gradients w.r.t. the shared representation (module docstring).

    Args:
        gradients: ``representation`` (MGDA-UB, the paper's fast variant: gradients of the last
            shared layer's output) or ``parameters`` (MGDA: gradients of every shared
            parameter, one vmapped pass as for PCGrad).
        normalization: ``none`` | ``l2`` | ``loss`` | ``loss+`` (the authors' code).
        iterations: Frank-Wolfe iterations per update (after the best-pair start).
        layer: the last shared layer's weight name among the loss's parameters; empty = the
            architecture's (``TaskLoss.shared_layer``), as for GradNorm. Its bias gives ``Z``.
    """

    def __init__(self, num_tasks: int, seed: int = 0, gradients: str = "representation",
                 normalization: str = "none", iterations: int = 50, layer: str = "") -> None:
        super().__init__(num_tasks, seed)
        if gradients not in GRADIENTS:
            raise MtrlError(f"mgda: gradients must be one of {', '.join(GRADIENTS)}, "
                            f"got '{gradients}'")
        if normalization not in NORMALIZATIONS:
            raise MtrlError(f"mgda: normalization must be one of {', '.join(NORMALIZATIONS)}, "
                            f"got '{normalization}'")
        if iterations < 0:
            raise MtrlError(f"mgda: iterations must be >= 0, got {iterations}")
        self.gradients, self.normalization = gradients, normalization
        self.iterations, self.layer = iterations, layer
        # dividing by the losses assumes they are positive (as GradNorm / FAMO do)
        self.positive_losses = normalization in ("loss", "loss+")  # type: ignore[misc]
        self.register_buffer("weights", torch.full((num_tasks,), 1.0 / num_tasks),
                             persistent=False)

    # ------------------------------------------------------------------ the representation
    def representation_bias(self, loss: TaskLoss) -> str:
        """The name of the last shared layer's bias (its per-row gradient is ``grad_Z``)."""
        shared = loss.shared_parameters
        name = self.layer or loss.shared_layer
        if self.layer and self.layer not in shared:
            raise MtrlError(f"mgda: layer '{self.layer}' is not a shared parameter "
                            f"(choose from {', '.join(shared)})")
        if not name:
            matrices = [n for n in shared if n.endswith("weight") and loss.params[n].dim() >= 2]
            if not matrices:
                raise MtrlError("mgda: the network has no shared weight matrix")
            name = matrices[-1]
        bias = name[: -len("weight")] + "bias" if name.endswith("weight") else ""
        if bias not in shared:
            raise MtrlError(f"mgda: the last shared layer '{name}' has no shared bias to read "
                            "the representation gradient from (set agent.combiners.mgda.layer, "
                            "or gradients=parameters)")
        return bias

    def representation_gram(self, loss: TaskLoss) -> tuple[Tensor, Tensor]:
        """Per-task losses ``(T,)`` and the Gram matrix of ``grad_Z L_t`` (scaled by
        ``T * loss.weights``). Rows of different tasks are disjoint, so it is diagonal."""
        bias = self.representation_bias(loss)
        num_rows = loss.rows[0].shape[0]
        per_row = TaskLoss(loss.row_loss, loss.params, loss.rows, num_rows)
        row_losses, grads = per_row.task_gradients([bias])
        rows_per_task = num_rows // self.num_tasks
        # L_t = mean of its rows: grad_{z_r} L_t = grad_{z_r} l_r / b for the rows r of task t
        sq = grads[bias].reshape(self.num_tasks, -1).pow(2).sum(1) / rows_per_task ** 2
        scale = loss.weights * self.num_tasks
        losses = row_losses.view(self.num_tasks, rows_per_task).mean(1)
        return losses, torch.diag(sq * scale * scale)

    # ------------------------------------------------------------------------- weights
    def solve(self, gram: Tensor, losses: Tensor, loss: TaskLoss) -> Tensor:
        """The min-norm weights (sum one) for this update's Gram matrix and losses."""
        norms = gram.diagonal().clamp_min(0.0).sqrt()
        if self.normalization == "l2":
            divisor = norms
        elif self.normalization == "loss":
            divisor = losses
        elif self.normalization == "loss+":
            divisor = losses * norms
        else:
            divisor = torch.ones_like(losses)
        divisor = divisor.clamp_min(_TINY)
        normalized = gram / (divisor.unsqueeze(0) * divisor.unsqueeze(1))
        active = None if loss.task_mask is None else ~loss.task_mask(losses)
        w = min_norm_weights(normalized, self.iterations, active)
        self.weights.copy_(w)
        return w

    def coefficients(self, gram: Tensor, losses: Tensor, grads: dict[str, Tensor],
                     loss: TaskLoss) -> tuple[Tensor, Tensor]:
        w = self.solve(gram, losses, loss)
        return w, w

    def backward(self, loss: TaskLoss) -> Tensor:
        if self.gradients == "parameters":
            return super().backward(loss)
        losses, gram = self.representation_gram(loss)
        w = self.solve(gram, losses, loss)
        values = loss.values()
        (values * (w * loss.weights * self.num_tasks)).sum().backward()
        return values.detach()

    def metrics(self) -> dict[str, Tensor]:
        return {"weights": self.weights * self.num_tasks}

    def extra_repr(self) -> str:
        return f"gradients={self.gradients}, normalization={self.normalization}"
