"""The tanh-squashed Gaussian policy shared by mtrl's agents."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtrl.errors import MtrlError

LOG_STD_MODES = ("clip", "tanh")
TANH_CORRECTIONS = ("bounded", "exact")
BOUNDED_EPS = 1e-6  # the original SAC code's, garage's, SB3's and the CARE code's epsilon
LOG_2PI = math.log(2 * math.pi)


def squash_correction(pre_tanh: Tensor, correction: str = "bounded") -> Tensor:
    """``sum log(1 - tanh(u)^2)`` over the last dim.

    * ``bounded`` (default): ``log(1 - tanh(u)^2 + 1e-6)``, as the original SAC code, garage
      (Meta-World's MT-SAC), stable-baselines3 and the CARE code compute it: each dimension's
      term is at least ``log(1e-6)``, so a saturated action costs a bounded amount of entropy.
    * ``exact``: the exact value, computed stably (``2 (log 2 - u - softplus(-2u))``), as the
      JAX baselines' tanh bijector does; it grows without bound as ``|u|`` grows.
    """
    if correction == "bounded":
        return torch.log(1.0 - torch.tanh(pre_tanh).pow(2) + BOUNDED_EPS).sum(-1)
    return (2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(-1)


def gaussian_log_prob(noise: Tensor, log_std: Tensor) -> Tensor:
    """Log-density of ``mean + std * noise`` under ``N(mean, std)``, summed over the last dim."""
    return (-0.5 * noise.pow(2) - log_std - 0.5 * LOG_2PI).sum(-1)


def rsample(mean: Tensor, log_std: Tensor, noise: Tensor, correction: str = "bounded"
            ) -> tuple[Tensor, Tensor]:
    """``(tanh(mean + std * noise), log-probability of that action)``; ``correction``: see
    :func:`squash_correction`."""
    pre_tanh = mean + log_std.exp() * noise
    log_prob = gaussian_log_prob(noise, log_std) - squash_correction(pre_tanh, correction)
    return torch.tanh(pre_tanh), log_prob


class TanhGaussianPolicy(nn.Module):
    """``a = tanh(mean + std * eps)`` with mean and log-std from any mtrl network.

    The network outputs ``2 * act_dim`` values; the log-std half is mapped into
    ``[log_std_min, log_std_max]`` by ``log_std_mode``:

    * ``clip`` (default): the raw output clipped, as stable-baselines3 and the JAX baselines
      do; a fresh network's output is near 0, so the initial std is about 1.
    * ``tanh``: squashed with a tanh, as in the CARE / facebookresearch-mtrl code; with the
      bounds [-20, 2] a fresh policy starts at log-std ~ -9 (std ~ 1e-4, almost deterministic).
    """

    def __init__(self, network: nn.Module, act_dim: int, log_std_min: float = -20.0,
                 log_std_max: float = 2.0, log_std_mode: str = "clip") -> None:
        super().__init__()
        if log_std_mode not in LOG_STD_MODES:
            raise MtrlError(f"log_std_mode must be one of {', '.join(LOG_STD_MODES)}, "
                            f"got '{log_std_mode}'")
        self.network = network
        self.act_dim = act_dim
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        self.log_std_mode = log_std_mode

    def distribution(self, network_output: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, log_std)`` of the pre-tanh Gaussian from the network's raw output."""
        mean, raw = network_output.chunk(2, dim=-1)
        if self.log_std_mode == "clip":
            return mean, raw.clamp(self.log_std_min, self.log_std_max)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (
            torch.tanh(raw) + 1.0
        )
        return mean, log_std

    def forward(self, obs: Tensor, task_id: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, log_std)`` of the pre-tanh Gaussian."""
        return self.distribution(self.network(obs, task_id))

    def sample(self, obs: Tensor, task_id: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        """Reparameterised action and its log-probability, given standard-normal ``noise``."""
        return rsample(*self(obs, task_id), noise)

    def mode(self, obs: Tensor, task_id: Tensor) -> Tensor:
        """The deterministic action ``tanh(mean)`` used for evaluation."""
        return torch.tanh(self(obs, task_id)[0])
