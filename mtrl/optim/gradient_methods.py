"""Pure functions of multi-task gradient methods, usable outside mtrl.

Every gradient method here returns a combined update that is a linear combination of the
task gradients, ``d = coefficients @ grads``. The ``*_coefficients`` functions compute those
``(T,)`` coefficients from what the method needs (the ``(T, T)`` Gram matrix ``grads @
grads.T`` for gradient surgery, losses or learned state for loss weighting), so a caller
never has to materialise the ``(T, P)`` matrix: the Gram matrix can be summed parameter by
parameter. :func:`pcgrad` and :func:`cagrad` take the ``(T, P)`` matrix of flattened per-task
gradients and return the combined ``(P,)`` gradient.

Scale convention: mtrl averages task losses, so with no conflict (or ``c = 0``) the combined
gradient is the **mean** task gradient (the PCGrad paper sums; pass ``reduction="sum"``).
"""

from __future__ import annotations

import torch
from torch import Tensor

_TINY = 1e-20


def gram(grads: Tensor) -> Tensor:
    """``grads @ grads.T`` for a ``(T, P)`` matrix (float32 or wider)."""
    return grads @ grads.transpose(0, 1)


def _reduce(coefficients: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return coefficients / coefficients.shape[0]
    if reduction == "sum":
        return coefficients
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


# ---------------------------------------------------------------------------------- PCGrad
def pcgrad_order(num_tasks: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> Tensor:
    """For each task ``i``, the other tasks in an independent random order: ``(T, T-1)``."""
    keys = torch.rand(num_tasks, num_tasks, generator=generator, device=device)
    keys.fill_diagonal_(2.0)  # each task's own index sorts last and is dropped
    return keys.argsort(dim=1)[:, : num_tasks - 1]


def pcgrad_coefficients(gram_matrix: Tensor, order: Tensor, reduction: str = "mean") -> Tensor:
    """PCGrad (Yu et al. 2020) as coefficients on the original task gradients.

    For each task ``i`` and each other task ``j`` in ``order[i]``: if the (already projected)
    ``g_i`` conflicts with ``g_j`` (negative dot product), remove its component along ``g_j``:
    ``g_i <- g_i - (g_i . g_j) / |g_j|^2 g_j``. The projected gradients are summed (or averaged).
    Every projected ``g_i`` stays a combination ``C[i] @ grads``, so the whole procedure runs
    on the Gram matrix: ``O(T^3)`` work after one ``O(T^2 P)`` product.

    Args:
        gram_matrix: ``(T, T)`` inner products of the task gradients.
        order: ``(T, T-1)`` projection order per task (:func:`pcgrad_order`).
        reduction: ``"mean"`` (default) or ``"sum"`` of the projected gradients.
    Returns:
        ``(T,)`` coefficients ``a`` such that the update is ``a @ grads``.
    """
    num_tasks = gram_matrix.shape[0]
    coef = torch.eye(num_tasks, dtype=gram_matrix.dtype, device=gram_matrix.device)
    dots = gram_matrix.clone()  # dots[i, k] = (C[i] @ grads) . g_k
    sq_norms = gram_matrix.diagonal().clamp_min(_TINY)
    rows = torch.arange(num_tasks, device=gram_matrix.device)
    for step in range(num_tasks - 1):
        j = order[:, step]
        conflict = dots[rows, j].clamp(max=0.0)
        scale = conflict / sq_norms[j]
        coef[rows, j] -= scale
        dots -= scale.unsqueeze(1) * gram_matrix[j]
    return _reduce(coef.sum(0), reduction)


def pcgrad(grads: Tensor, generator: torch.Generator | None = None,
           reduction: str = "mean") -> Tensor:
    """PCGrad on a ``(T, P)`` matrix of task gradients: the combined ``(P,)`` gradient.

    The random projection order comes from ``generator`` (on ``grads``' device).
    """
    order = pcgrad_order(grads.shape[0], generator, grads.device)
    return pcgrad_coefficients(gram(grads), order, reduction) @ grads


# ---------------------------------------------------------------------------------- CAGrad
def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of ``v (T,)`` onto the probability simplex (sort-based)."""
    num = v.shape[-1]
    u = torch.sort(v, descending=True).values
    css = u.cumsum(-1) - 1.0
    k = torch.arange(1, num + 1, dtype=v.dtype, device=v.device)
    support = (u - css / k > 0).to(v.dtype)
    rho = (support * k).argmax(-1, keepdim=True)  # last index in the support
    theta = css.gather(-1, rho) / (rho + 1).to(v.dtype)
    return (v - theta).clamp_min(0.0)


def cagrad_weights(gram_matrix: Tensor, c: float, iterations: int = 50,
                   init: Tensor | None = None) -> Tensor:
    """CAGrad's inner problem: ``w* = argmin_{w in simplex} g_w . g_0 + c |g_0| |g_w|``.

    ``g_w = w @ grads``, ``g_0`` the mean gradient. Solved on the Gram matrix (scaled to unit
    mean diagonal) by accelerated projected gradient descent with a fixed number of
    iterations (no host synchronisation) that keeps the best iterate; ``init`` warm-starts it.
    """
    num_tasks = gram_matrix.shape[0]
    a = gram_matrix / gram_matrix.diagonal().mean().clamp_min(_TINY)
    uniform = torch.full((num_tasks,), 1.0 / num_tasks, dtype=a.dtype, device=a.device)
    b = a @ uniform  # g_i . g_0
    radius = c * (uniform @ b).clamp_min(0.0).sqrt()  # c |g_0|
    lipschitz = radius * torch.linalg.matrix_norm(a) + _TINY  # >= radius * lambda_max(A)

    def objective(aw: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        norm = (w @ aw).clamp_min(_TINY).sqrt()
        return w @ b + radius * norm, norm

    w = uniform if init is None else init.to(a)
    aw = a @ w
    best_value, _ = objective(aw, w)
    best = w
    y, ay, t = w, aw, 1.0
    for _ in range(iterations):
        _, y_norm = objective(ay, y)
        grad = b + radius * ay / y_norm
        w_next = project_simplex(y - (y_norm / lipschitz) * grad)
        aw_next = a @ w_next
        value, _ = objective(aw_next, w_next)
        better = value < best_value
        best = torch.where(better, w_next, best)
        best_value = torch.where(better, value, best_value)
        t_next = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
        momentum = (t - 1.0) / t_next
        y = w_next + momentum * (w_next - w)
        ay = aw_next + momentum * (aw_next - aw)
        w, aw, t = w_next, aw_next, t_next
    return best


def cagrad_coefficients(gram_matrix: Tensor, c: float = 0.5, rescale: bool = True,
                        iterations: int = 50, weights: Tensor | None = None) -> Tensor:
    """CAGrad (Liu et al. 2021) as coefficients on the task gradients.

    The update is ``d = g_0 + c |g_0| / |g_w*| g_w*`` (divided by ``1 + c^2`` with
    ``rescale``, as in the authors' code), the direction within distance ``c |g_0|`` of the
    mean gradient ``g_0`` that maximises the worst task's improvement. ``c = 0`` is the mean.

    Args:
        gram_matrix: ``(T, T)`` inner products of the task gradients.
        c: the conflict-aversion radius (>= 0).
        rescale: divide by ``1 + c^2``.
        iterations: inner solver iterations (see :func:`cagrad_weights`).
        weights: a precomputed solution ``w*`` of the inner problem (skips the solve).
    """
    num_tasks = gram_matrix.shape[0]
    uniform = torch.full((num_tasks,), 1.0 / num_tasks, dtype=gram_matrix.dtype,
                         device=gram_matrix.device)
    if c == 0.0:
        return uniform
    w = cagrad_weights(gram_matrix, c, iterations) if weights is None else weights
    g0_norm = (uniform @ gram_matrix @ uniform).clamp_min(0.0).sqrt()
    gw_norm = (w @ gram_matrix @ w).clamp_min(_TINY).sqrt()
    coef = uniform + (c * g0_norm / gw_norm) * w
    return coef / (1.0 + c * c) if rescale else coef


def cagrad(grads: Tensor, c: float = 0.5, rescale: bool = True, iterations: int = 50) -> Tensor:
    """CAGrad on a ``(T, P)`` matrix of task gradients: the combined ``(P,)`` gradient."""
    return cagrad_coefficients(gram(grads), c, rescale, iterations) @ grads


# ------------------------------------------------------------------------- loss weighting
def gradnorm_weight_grad(weights: Tensor, grad_norms: Tensor, losses: Tensor,
                         initial_losses: Tensor, alpha: float = 1.5) -> Tensor:
    """Gradient of GradNorm's loss (Chen et al. 2018) with respect to the task weights.

    ``L_grad = sum_i |G_i - mean(G) r_i^alpha|`` with ``G_i = w_i |grad_W L_i|`` on the last
    shared layer ``W`` and the relative inverse training rate ``r_i = L~_i / mean(L~)``,
    ``L~_i = L_i / L_i(0)`` measured against the **initial** losses. The target
    ``mean(G) r^alpha`` is a constant, so ``dL_grad/dw_i = sign(G_i - target_i) |grad_W L_i|``.
    Losses enter by magnitude (GradNorm assumes positive losses).
    """
    norms = weights * grad_norms
    ratio = losses.abs() / initial_losses.abs().clamp_min(_TINY)
    rate = ratio / ratio.mean().clamp_min(_TINY)
    target = norms.mean() * rate.pow(alpha)
    return torch.sign(norms - target) * grad_norms


def renormalize(weights: Tensor, total: float, minimum: float = 1e-3) -> Tensor:
    """Clamp weights to ``>= minimum`` and rescale them to sum to ``total``."""
    w = weights.clamp_min(minimum)
    return w * (total / w.sum())


def uncertainty_coefficients(log_vars: Tensor) -> Tensor:
    """Uncertainty weighting (Kendall et al. 2018): task ``i``'s loss weight ``exp(-s_i) / T``
    for the objective ``mean_i exp(-s_i) L_i + s_i`` (``s_i`` the log-variance)."""
    return torch.exp(-log_vars) / log_vars.shape[0]


def uncertainty_log_var_grad(log_vars: Tensor, losses: Tensor) -> Tensor:
    """``d/ds_i`` of ``mean_i exp(-s_i) |L_i| + s_i``: the optimum is ``s_i = log |L_i|``."""
    return (1.0 - torch.exp(-log_vars) * losses.abs()) / log_vars.shape[0]


def famo_coefficients(logits: Tensor, losses: Tensor, min_losses: Tensor | float = 0.0,
                      eps: float = 1e-8) -> Tensor:
    """FAMO (Liu et al. 2023): the update is the gradient of ``sum_i z_i log(L_i - L_i*) / c``.

    ``z = softmax(logits)``, ``c = sum_i z_i / (L_i - L_i*)``, i.e. a convex combination of the
    task gradients with coefficients ``(z_i / (L_i - L_i*)) / c`` (returned).
    """
    z = torch.softmax(logits, -1)
    inverse = z / (losses - min_losses + eps)
    return inverse / inverse.sum()


def famo_logit_grad(logits: Tensor, losses_before: Tensor, losses_after: Tensor,
                    min_losses: Tensor | float = 0.0, eps: float = 1e-8) -> Tensor:
    """FAMO's logit gradient: the softmax Jacobian applied to the log-loss decrease
    ``log(L_i(t) - L_i*) - log(L_i(t+1) - L_i*)`` of the step just taken (same batch)."""
    delta = (losses_before - min_losses + eps).log() - (losses_after - min_losses + eps).log()
    z = torch.softmax(logits, -1)
    return z * (delta - (z * delta).sum())
