"""The pure gradient-method functions on hand-built (T, P) matrices."""

import pytest
import torch

from mtrl.optim import cagrad, cagrad_coefficients, pcgrad, pcgrad_coefficients
from mtrl.optim.gradient_methods import (
    famo_coefficients,
    famo_logit_grad,
    gradnorm_weight_grad,
    gram,
    pcgrad_order,
    project_simplex,
    renormalize,
    uncertainty_log_var_grad,
)


# ---------------------------------------------------------------------------------- PCGrad
def test_pcgrad_two_conflicting_gradients_by_hand():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # g1 . g2 = -1
    # g1' = g1 - (-1 / 2) g2 = (0.5, 0.5); g2' = g2 - (-1 / 1) g1 = (0, 1)
    torch.testing.assert_close(pcgrad(g, reduction="sum"), torch.tensor([0.5, 1.5]))
    torch.testing.assert_close(pcgrad(g), torch.tensor([0.25, 0.75]))


def test_pcgrad_leaves_non_conflicting_gradients_unchanged():
    g = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 1.0], [2.0, 1.0, 3.0]])
    assert (gram(g) >= 0).all()
    torch.testing.assert_close(pcgrad(g), g.mean(0))
    torch.testing.assert_close(pcgrad(g, reduction="sum"), g.sum(0))


def reference_pcgrad(g: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """The paper's loop on explicit vectors."""
    out = []
    for i in range(g.shape[0]):
        gi = g[i].clone()
        for j in order[i].tolist():
            dot = gi @ g[j]
            if dot < 0:
                gi = gi - dot / (g[j] @ g[j]) * g[j]
        out.append(gi)
    return torch.stack(out).sum(0)


def test_pcgrad_gram_form_equals_the_papers_loop():
    g = torch.randn(6, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g[1] = -0.8 * g[0] + 0.1 * g[1]  # make sure there are conflicts
    order = pcgrad_order(6, torch.Generator().manual_seed(3))
    assert sorted(order[2].tolist()) == [0, 1, 3, 4, 5]  # every other task once, never itself
    coef = pcgrad_coefficients(gram(g), order, reduction="sum")
    torch.testing.assert_close(coef @ g, reference_pcgrad(g, order))


def test_pcgrad_removes_the_conflict_of_two_tasks_and_order_is_seeded():
    g = torch.tensor([[3.0, 1.0, 0.0], [-2.0, 1.0, 1.0]])
    d = pcgrad(g)
    assert (g @ d >= -1e-6).all()  # the update no longer hurts either task
    g5 = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
    a = pcgrad(g5, torch.Generator().manual_seed(7))
    b = pcgrad(g5, torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------------- CAGrad
def test_cagrad_with_c_zero_is_the_mean():
    g = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(cagrad(g, c=0.0), g.mean(0))
    torch.testing.assert_close(cagrad(g, c=0.0, rescale=False), g.mean(0))


def brute_force_cagrad(g: torch.Tensor, c: float) -> torch.Tensor:
    """Two tasks: scan w = (p, 1 - p) on a fine grid; d = g0 + c|g0| g_w / |g_w|."""
    g = g.double()
    g0 = g.mean(0)
    p = torch.linspace(0, 1, 200_001, dtype=torch.float64)
    gw = p[:, None] * g[0] + (1 - p[:, None]) * g[1]
    value = gw @ g0 + c * g0.norm() * gw.norm(dim=1)
    best = gw[value.argmin()]
    return (g0 + c * g0.norm() * best / best.norm()).float()


@pytest.mark.parametrize("c", [0.2, 0.5, 0.9])
def test_cagrad_two_tasks_matches_brute_force(c):
    g = torch.tensor([[1.0, 0.2, 0.0], [-0.6, 1.0, 0.3]])
    torch.testing.assert_close(cagrad(g, c=c, rescale=False), brute_force_cagrad(g, c),
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("num_tasks", [3, 10])
def test_cagrad_stays_in_the_ball_and_improves_the_worst_task(num_tasks):
    gen = torch.Generator().manual_seed(num_tasks)
    g = torch.randn(num_tasks, 50, generator=gen, dtype=torch.float64) + 0.3
    c = 0.5
    g0 = g.mean(0)
    d = cagrad(g, c=c, rescale=False, iterations=200)
    # optimal d lies on the sphere of radius c |g0| around g0 ...
    torch.testing.assert_close((d - g0).norm(), c * g0.norm(), rtol=1e-6, atol=1e-9)
    # ... and no task does worse with d than the worst task does with the mean gradient
    assert (g @ d).min() >= (g @ g0).min() - 1e-9
    # rescaling only divides by 1 + c^2
    torch.testing.assert_close(cagrad(g, c=c, iterations=200), d / (1 + c * c))
    # optimality: no direction in the ball beats it on the worst task (random probes)
    u = torch.randn(2000, 50, generator=gen, dtype=torch.float64)
    probes = g0 + c * g0.norm() * u / u.norm(dim=1, keepdim=True)
    assert (probes @ g.T).min(1).values.max() <= (g @ d).min() + 1e-6


def test_cagrad_identical_gradients_and_simplex_projection():
    g = torch.tensor([[1.0, 2.0]] * 3)
    torch.testing.assert_close(cagrad(g, c=0.5, rescale=False), 1.5 * g[0])
    v = torch.tensor([0.9, 0.5, -1.0])
    w = project_simplex(v)
    torch.testing.assert_close(w, torch.tensor([0.7, 0.3, 0.0]))
    coef = cagrad_coefficients(gram(g), c=0.0)
    torch.testing.assert_close(coef, torch.full((3,), 1 / 3))


# ------------------------------------------------------------------------- loss weighting
def test_gradnorm_weight_gradient_uses_initial_loss_ratios():
    w = torch.ones(2)
    norms = torch.tensor([1.0, 3.0])  # G = (1, 3), mean 2
    # equal training rates: targets = 2, so the big-gradient task's weight must go down
    grad = gradnorm_weight_grad(w, norms, torch.tensor([1.0, 4.0]), torch.tensor([2.0, 8.0]))
    torch.testing.assert_close(grad, torch.tensor([-1.0, 3.0]))
    # task 0 trains slower (ratio 1 vs 0.25): r = (1.6, 0.4); targets 2 * r^1.5 = (4.05, 0.51)
    grad = gradnorm_weight_grad(w, norms, torch.tensor([2.0, 2.0]), torch.tensor([2.0, 8.0]))
    torch.testing.assert_close(grad, torch.tensor([-1.0, 3.0]))
    # the same losses against different initial losses flip task 1's sign
    grad = gradnorm_weight_grad(w, norms, torch.tensor([2.0, 2.0]), torch.tensor([8.0, 0.5]))
    assert grad[0] > 0 and grad[1] < 0
    torch.testing.assert_close(renormalize(torch.tensor([2.0, -1.0, 1.0]), 3.0).sum(),
                               torch.tensor(3.0))


def test_famo_and_uncertainty_formulas():
    logits = torch.zeros(3)
    losses = torch.tensor([1.0, 2.0, 4.0])
    coef = famo_coefficients(logits, losses)
    # equal z: weights proportional to 1 / L, normalised
    torch.testing.assert_close(coef, torch.tensor([4.0, 2.0, 1.0]) / 7, rtol=1e-6, atol=1e-6)
    # task 2's loss decreased least: gradient descent raises its logit
    after = torch.tensor([0.5, 1.0, 3.9])
    grad = famo_logit_grad(logits, losses, after)
    assert grad[2] < 0 < grad[0] and abs(grad.sum()) < 1e-6
    s = torch.log(losses)
    torch.testing.assert_close(uncertainty_log_var_grad(s, losses), torch.zeros(3))
