"""KL divergences between the (tanh-squashed) diagonal Gaussian policies of mtrl.

mtrl's policies are ``a = tanh(u)`` with ``u ~ N(mean, diag(exp(log_std))^2)``. ``tanh`` is a
bijection, and a KL divergence is invariant under a bijection applied to both distributions
(the log-Jacobian terms cancel in ``log p(a) - log q(a)``). So the KL of two tanh-Gaussians is
the closed-form KL of their pre-tanh Gaussians: exact, cheap and free of ``atanh`` near +-1.
"""

from __future__ import annotations

from torch import Tensor


def gaussian_kl(mean_p: Tensor, log_std_p: Tensor, mean_q: Tensor, log_std_q: Tensor) -> Tensor:
    """``KL(N(mean_p, std_p^2) || N(mean_q, std_q^2))`` of diagonal Gaussians, summed over the
    last dimension::

        sum_d  log std_q - log std_p + (std_p^2 + (mean_p - mean_q)^2) / (2 std_q^2) - 1/2
    """
    ratio = (log_std_p - log_std_q).mul(2.0).exp()  # std_p^2 / std_q^2
    scaled = (mean_p - mean_q) * (-log_std_q).exp()  # (mean_p - mean_q) / std_q
    return 0.5 * (ratio + scaled.pow(2) - 1.0).sum(-1) - (log_std_p - log_std_q).sum(-1)


def tanh_gaussian_kl(
    mean_p: Tensor, log_std_p: Tensor, mean_q: Tensor, log_std_q: Tensor
) -> Tensor:
    """``KL(p || q)`` of two tanh-squashed Gaussians given by their pre-tanh parameters.

    Equal to :func:`gaussian_kl` of the pre-tanh Gaussians (see the module docstring).
    """
    return gaussian_kl(mean_p, log_std_p, mean_q, log_std_q)
