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
``alpha_t = (1 / |g_t|^2) / sum_s (1 / |g_s|^2)``. Frank-Wolfe converges to it (from the
best pair, exactly once ``T - 2`` iterations have added the other vertices); the combiner takes
this limit in closed form (:func:`diagonal_min_norm_weights`) rather than run 50 iterations of
small kernels (about 12 ms per update on one CPU thread); tests check both. MGDA-UB thus gives
more weight to tasks whose loss is flat in ``Z``. The full MGDA of the paper
(``gradients="parameters"``: the Gram matrix of every shared parameter's task gradients,
from one vmapped pass as for PCGrad) does see conflicts between tasks.

**Which Z, in mtrl.** The paper's ``Z`` is the representation of the whole batch and
``L_t`` the mean of task ``t``'s loss over it; there every sample carries every task's label,
so the task gradients overlap row by row. In mtrl task ``t``'s loss is the mean over *its own*
``b`` rows, so the paper's construction, applied as it stands, gives gradients on disjoint rows
of ``Z``: the Gram matrix is diagonal (above). That is still the paper's problem (the upper
bound holds for any ``Z``), so it is what ``representation`` computes. The alternatives are
not MGDA-UB: the gradient of one ``d``-vector shared by all rows (the layer's bias,
``sum_r grad_{z_r} L_t``) bounds nothing, because every row has its own Jacobian ``dz_r/dtheta``
and no common factor comes out; the Gram matrix of the shared parameters' gradients is full
MGDA (``gradients="parameters"``), where task conflicts do show.

**One backward to Z.** ``Z`` is the pre-activation output of the last shared layer,
``z_r = x_r W + b``, so ``grad_{z_r} l_r`` is the gradient of a zero *per-row* offset ``delta``
added to its bias: the forward runs with the bias replaced by ``b + delta`` (one copy of ``b``
per row, ``delta = 0``), and one backward of ``sum_r l_r`` to ``delta`` (it stops at ``Z``:
only the layers above ``Z`` are traversed) gives every row's gradient at once, because row
``r``'s loss only depends on row ``r`` of ``Z``. Then
``|grad_Z L_t|^2 = sum_{r in t} |grad_{z_r} l_r|^2 / b^2``. The same forward's graph then
takes the ordinary backward of ``sum_t alpha_t L_t`` (the offset is zero, so the values and
every parameter gradient are those of the plain forward): an update costs one forward, one
backward and a backward through the layers above ``Z``, against one forward and one backward
for ``mean``. Where the per-row bias enters ``Z``'s tensor (after the leading member dimension
of :class:`~mtrl.nn.Ensemble`, for instance) depends on the architecture: on the first update
the combiner tries each position on two rows per task and keeps the first that reproduces the
reference (a ``vmap`` over single rows of the gradient of the bias: exact for any
architecture, but inside the fused twin critics it re-materialises the critics' weights per
row, and an MT10 update took 20-50x ``mean``'s on one CPU thread). An architecture whose layer
takes no row-shaped bias (the cross-stitch network adds its bias per column) keeps the
reference, with a warning. A task whose rows do not reach ``Z`` (a routing network's task that
takes "pass" at the last routed depth) has ``grad_Z L_t = 0``: the origin is then in the hull,
and the min-norm point puts all the weight on such tasks (shared equally), as the paper's
problem says.

Gradient normalisation before the solve, as in the authors' code (``gradient_normalizers``):
``none`` (the paper's algorithm, default), ``l2`` (``g_t / |g_t|``), ``loss`` (``g_t / L_t``),
``loss+`` (``g_t / (L_t |g_t|)``); the weights then scale the unnormalised losses. ``loss`` and
``loss+`` assume positive losses (the combiner declares ``positive_losses`` then).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

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


def probe_forward(row_loss: Callable[..., Any], params: dict[str, Tensor],
                  rows: tuple[Tensor, ...], bias: str, dim: int,
                  split: Callable[[Any], Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """The rows' losses ``(n,)`` with the bias ``bias`` replaced by ``b + delta``: one copy of
    ``b`` per row (the row dimension inserted at ``dim``) plus a zero ``delta`` that requires
    grad. The values and the parameters' gradients are those of the plain forward; the
    gradient of ``delta`` holds each row's gradient of the layer's output. Returns
    ``(loss_rows, delta)``."""
    b = params[bias]
    shape = list(b.shape)
    shape.insert(dim, rows[0].shape[0])
    delta = torch.zeros(shape, dtype=b.dtype, device=b.device, requires_grad=True)
    out = row_loss({**params, bias: b.unsqueeze(dim) + delta}, *rows)
    if split is not None:
        return split(out), delta
    return (out[0] if isinstance(out, tuple) else out), delta


def row_square_norms(grad_rows: Tensor, dim: int) -> Tensor:
    """``(n,)`` squared norms of each row's slice of a probe's gradient (rows at ``dim``)."""
    return grad_rows.movedim(dim, 0).reshape(grad_rows.shape[dim], -1).pow(2).sum(1)


def diagonal_min_norm_weights(diag: Tensor, active: Tensor | None = None) -> Tensor:
    """The exact min-norm weights for mutually orthogonal vectors (a diagonal Gram matrix with
    diagonal ``diag (T,)``): ``alpha_t = (1 / d_t) / sum_s (1 / d_s)`` over the active vectors,
    the point Frank-Wolfe (:func:`min_norm_weights`) converges to. Zero vectors (the hull
    holds the origin) share the weight equally; inactive ones get 0; none active: uniform."""
    num = diag.shape[0]
    if active is None:
        active = torch.ones(num, dtype=torch.bool, device=diag.device)
    d = torch.where(active, diag.clamp_min(0.0), torch.zeros_like(diag))
    d = d / d.max().clamp_min(_TINY)  # scale-invariant; in [0, 1]
    inv = torch.where(active, 1.0 / d.clamp_min(_TINY), torch.zeros_like(d))
    uniform = torch.full_like(d, 1.0 / num)
    return torch.where(active.any(), inv / inv.sum().clamp_min(_TINY), uniform)


@dataclass
class MGDAOptions:
    """MGDA-UB (Sener & Koltun 2018): min-norm point of the task gradients (Frank-Wolfe)."""

    gradients: str = "representation"  # representation (MGDA-UB) | parameters (full MGDA)
    normalization: str = "none"  # none | l2 | loss | loss+ (loss*: positive losses)
    iterations: int = 50  # Frank-Wolfe iterations per update (parameters; representation: exact)
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
        iterations: Frank-Wolfe iterations per update (after the best-pair start), for
            ``gradients="parameters"``; ``representation``'s Gram matrix is diagonal and its
            min-norm point, Frank-Wolfe's limit, is taken in closed form.
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
        # bias name and shape -> position of the row dimension in its probe (None: reference)
        self._probe_dims: dict[tuple[str, tuple[int, ...]], int | None] = {}

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
        values, gram = self.representation(loss)
        return values.detach(), gram

    def representation(self, loss: TaskLoss) -> tuple[Tensor, Tensor]:
        """The loss vector ``(T,)`` *with* its autograd graph (as :meth:`TaskLoss.values`,
        masked tasks detached) and the Gram matrix of ``grad_Z L_t``, from one forward and
        one backward to ``Z`` (the row probe, module docstring); the reference per-row
        ``vmap`` where the architecture takes no probe."""
        bias = self.representation_bias(loss)
        dim = self.probe_dim(loss, bias)
        if dim is None:
            losses, gram = self.representation_gram_reference(loss)
            return loss.values(), gram
        loss_rows, delta = probe_forward(loss.row_loss, loss.params, loss.rows, bias, dim,
                                         split=loss._split)
        (grad_rows,) = torch.autograd.grad(loss_rows.sum(), delta, retain_graph=True)
        values = loss_rows.view(self.num_tasks, -1).mean(1)
        if loss.task_mask is not None:
            values = torch.where(loss.task_mask(values.detach()), values.detach(), values)
        return values, self._gram(row_square_norms(grad_rows, dim), loss)

    def representation_gram_reference(self, loss: TaskLoss) -> tuple[Tensor, Tensor]:
        """:meth:`representation_gram` from a ``vmap`` over single rows of the gradient of the
        last shared layer's bias (exact for any architecture, slow in an ensemble)."""
        bias = self.representation_bias(loss)
        num_rows = loss.rows[0].shape[0]
        per_row = TaskLoss(loss.row_loss, loss.params, loss.rows, num_rows)
        row_losses, grads = per_row.task_gradients([bias])
        sq = grads[bias].reshape(num_rows, -1).pow(2).sum(1)
        losses = row_losses.view(self.num_tasks, -1).mean(1)
        return losses, self._gram(sq, loss)

    def _gram(self, row_sq: Tensor, loss: TaskLoss) -> Tensor:
        """``diag(|grad_Z L_t|^2)`` scaled by ``T * loss.weights`` from the rows' squared norms
        ``|grad_{z_r} l_r|^2`` (L_t is the mean of its ``b`` rows)."""
        rows_per_task = row_sq.shape[0] // self.num_tasks
        sq = row_sq.view(self.num_tasks, rows_per_task).sum(1) / rows_per_task ** 2
        scale = loss.weights * self.num_tasks
        return torch.diag(sq * scale * scale)

    def probe_dim(self, loss: TaskLoss, bias: str) -> int | None:
        """Where the row dimension goes in the bias's probe (``None``: no position works, use
        the reference), found once per bias on two rows per task (module docstring)."""
        param = loss.params[bias]
        key = (bias, tuple(param.shape))
        if key in self._probe_dims:
            return self._probe_dims[key]
        rows_per_task = loss.rows[0].shape[0] // self.num_tasks
        keep = min(2, rows_per_task)
        sub = tuple(r.reshape(self.num_tasks, rows_per_task, *r.shape[1:])[:, :keep]
                    .reshape(self.num_tasks * keep, *r.shape[1:]) for r in loss.rows)
        reference = TaskLoss(loss.row_loss, loss.params, sub, self.num_tasks * keep)
        _, grads = reference.task_gradients([bias])
        want = grads[bias].detach()
        scale = float(want.abs().max())  # 0: no gradient reaches Z on these rows (e.g. every
        # task routes around the layer): any position that runs agrees, so decide again later
        found = None
        for dim in range(param.dim()):
            try:
                loss_rows, delta = probe_forward(loss.row_loss, loss.params, sub, bias, dim)
                if loss_rows.shape != (sub[0].shape[0],):
                    continue
                (got,) = torch.autograd.grad(loss_rows.sum(), delta, allow_unused=True)
            except (RuntimeError, ValueError, IndexError, TypeError):
                continue
            if got is not None and got.movedim(dim, 0).shape == want.shape and bool(
                    (got.movedim(dim, 0) - want).abs().max() <= 1e-4 * scale):
                found = dim
                break
        if scale == 0.0:
            return found
        if found is None:
            warnings.warn(f"mgda: the last shared layer's bias '{bias}' takes no per-row probe "
                          "in this architecture; the representation gradients use the per-row "
                          "vmap (exact, much slower)", stacklevel=3)
        self._probe_dims[key] = found
        return found

    # ------------------------------------------------------------------------- weights
    def solve(self, gram: Tensor, losses: Tensor, loss: TaskLoss,
              diagonal: bool = False) -> Tensor:
        """The min-norm weights (sum one) for this update's Gram matrix and losses;
        ``diagonal``: the Gram matrix is diagonal (``representation``), solved exactly."""
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
        if diagonal:  # orthogonal gradients: Frank-Wolfe's limit in closed form (no loop)
            w = diagonal_min_norm_weights(normalized.diagonal(), active)
        else:
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
        values, gram = self.representation(loss)
        w = self.solve(gram, values.detach(), loss, diagonal=True)
        (values * (w * loss.weights * self.num_tasks)).sum().backward()
        return values.detach()

    def metrics(self) -> dict[str, Tensor]:
        return {"weights": self.weights * self.num_tasks}

    def extra_repr(self) -> str:
        return f"gradients={self.gradients}, normalization={self.normalization}"
