"""Closed-form KL of diagonal Gaussians and of tanh-squashed Gaussians vs Monte Carlo."""

import math

import torch

from mtrl.agents.kl import gaussian_kl, tanh_gaussian_kl

N = 400_000


def params(seed: int):
    g = torch.Generator().manual_seed(seed)
    mean_p, mean_q = torch.randn(3, generator=g, dtype=torch.float64) * 0.6, \
        torch.randn(3, generator=g, dtype=torch.float64) * 0.6
    log_std_p = torch.rand(3, generator=g, dtype=torch.float64) * 0.8 - 1.0
    log_std_q = torch.rand(3, generator=g, dtype=torch.float64) * 0.8 - 1.0
    return mean_p, log_std_p, mean_q, log_std_q


def normal_log_prob(x, mean, log_std):
    return (-0.5 * ((x - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def tanh_log_prob(a, mean, log_std):
    """Density of the action ``a`` itself: change of variables through ``atanh``."""
    return normal_log_prob(torch.atanh(a), mean, log_std) - torch.log1p(-a.pow(2)).sum(-1)


def assert_close_to_monte_carlo(exact, samples):
    stderr = samples.std() / math.sqrt(samples.numel())
    assert abs(samples.mean() - exact) < 4 * stderr + 1e-9, (samples.mean(), exact, stderr)


def test_gaussian_kl_matches_monte_carlo_and_torch():
    mean_p, log_std_p, mean_q, log_std_q = params(0)
    exact = gaussian_kl(mean_p, log_std_p, mean_q, log_std_q)
    x = mean_p + log_std_p.exp() * torch.randn(N, 3, generator=torch.Generator().manual_seed(1),
                                               dtype=torch.float64)
    assert_close_to_monte_carlo(
        exact, normal_log_prob(x, mean_p, log_std_p) - normal_log_prob(x, mean_q, log_std_q))
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean_p, log_std_p.exp()),
        torch.distributions.Normal(mean_q, log_std_q.exp())).sum()
    torch.testing.assert_close(exact, reference)
    assert gaussian_kl(mean_p, log_std_p, mean_p, log_std_p) == 0


def test_tanh_gaussian_kl_matches_monte_carlo_on_squashed_actions():
    mean_p, log_std_p, mean_q, log_std_q = params(2)
    exact = tanh_gaussian_kl(mean_p, log_std_p, mean_q, log_std_q)
    u = mean_p + log_std_p.exp() * torch.randn(N, 3, generator=torch.Generator().manual_seed(3),
                                               dtype=torch.float64)
    a = torch.tanh(u).clamp(-1 + 1e-12, 1 - 1e-12)
    assert_close_to_monte_carlo(
        exact, tanh_log_prob(a, mean_p, log_std_p) - tanh_log_prob(a, mean_q, log_std_q))
    assert exact > 0.05  # a real difference, not a trivially small one


def test_kl_is_batched_over_leading_dimensions():
    mean_p, log_std_p, mean_q, log_std_q = (t.float().expand(5, 3) for t in params(4))
    out = gaussian_kl(mean_p, log_std_p, mean_q, log_std_q)
    assert out.shape == (5,)
    torch.testing.assert_close(out, out[:1].expand(5))
