"""PopArt: per-task normalisation of value targets that preserves outputs precisely.

Hessel et al. 2019 ("Multi-task deep reinforcement learning with PopArt"), after van Hasselt
et al. 2016. The critic learns *normalised* values ``n_t(s, a)``; the value of task ``t`` is
``sigma_t n_t + mu_t``. Every update first moves the statistics toward the batch's targets
(ART), then rescales the critic's per-task output layer so that unnormalised outputs are
exactly what they were (POP): ``W'_t = W_t sigma_t / sigma'_t``,
``b'_t = (sigma_t b_t + mu_t - mu'_t) / sigma'_t``. The statistics are bias-corrected
exponential moving averages with step ``beta`` (the first update uses the batch's own
statistics instead of a prior of mean 0, std 1); ``sigma`` is clipped to
``[1e-4, 1e6]`` as in the paper.

Output-layer protocol: a network that supports PopArt names its per-task output layer in
the attribute ``output_layer`` (a submodule path, e.g. ``"head"``). That layer computes
``y = x @ weight[t] + bias[t]`` for a row of task ``t`` with ``weight (T, in, out)`` and
``bias (T, out)``, as :class:`~mtrl.nn.TaskLinear` does. A network whose last layer is shared
by all tasks (the one-hot ``mlp``) declares none: :func:`with_task_output` then appends a
per-task affine output layer (a ``TaskLinear`` initialised to the identity, trained with the
network like a head), which PopArt rescales instead.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtrl.errors import MtrlError
from mtrl.nn import TaskLinear


def output_layer_name(network: nn.Module, num_tasks: int) -> str | None:
    """The declared per-task output layer of ``network`` (checked), or ``None``."""
    name = getattr(network, "output_layer", None)
    if name is None:
        return None
    try:
        layer = network.get_submodule(name)
    except AttributeError:
        raise MtrlError(
            f"{type(network).__name__}.output_layer names '{name}', which is not a submodule"
        ) from None
    weight, bias = getattr(layer, "weight", None), getattr(layer, "bias", None)
    if (not isinstance(weight, Tensor) or not isinstance(bias, Tensor) or weight.dim() != 3
            or bias.dim() != 2 or weight.shape[0] != num_tasks or bias.shape[0] != num_tasks):
        raise MtrlError(
            f"{type(network).__name__}.output_layer '{name}' must hold per-task "
            f"weight ({num_tasks}, in, out) and bias ({num_tasks}, out)"
        )
    return name


class TaskAffineOutput(nn.Module):
    """``network`` followed by a per-task affine map of its outputs (identity at start)."""

    output_layer = "affine"

    def __init__(self, network: nn.Module, out_dim: int, num_tasks: int) -> None:
        super().__init__()
        self.network = network
        self.affine = TaskLinear(out_dim, out_dim, num_tasks)
        with torch.no_grad():
            self.affine.weight.copy_(torch.eye(out_dim).expand(num_tasks, out_dim, out_dim))
            self.affine.bias.zero_()

    def forward(self, x: Tensor, task_id: Tensor) -> Tensor:
        return self.affine(self.network(x, task_id), task_id)


def with_task_output(network: nn.Module, out_dim: int, num_tasks: int) -> nn.Module:
    """``network`` if it declares a per-task output layer, else wrapped in
    :class:`TaskAffineOutput`."""
    if output_layer_name(network, num_tasks) is not None:
        return network
    return TaskAffineOutput(network, out_dim, num_tasks)


class PopArt(nn.Module):
    """Per-task target statistics (registered buffers, checkpointed) and the POP rescaling.

    Args:
        num_tasks: ``T``.
        beta: step size of the statistics (3e-4 in the paper).
        sigma_min, sigma_max: clip of the scale.
    """

    def __init__(self, num_tasks: int, beta: float = 3e-4, sigma_min: float = 1e-4,
                 sigma_max: float = 1e6) -> None:
        super().__init__()
        if not 0.0 < beta <= 1.0:
            raise MtrlError(f"popart: beta must be in (0, 1], got {beta}")
        self.num_tasks, self.beta = num_tasks, float(beta)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.register_buffer("mean", torch.zeros(num_tasks))
        self.register_buffer("second_moment", torch.ones(num_tasks))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    @property
    def sigma(self) -> Tensor:
        """``(T,)`` scales ``sqrt(nu - mu^2)``, clipped."""
        variance = (self.second_moment - self.mean.pow(2)).clamp_min(self.sigma_min ** 2)
        return variance.sqrt().clamp_max(self.sigma_max)

    def normalize(self, values: Tensor, task_id: Tensor) -> Tensor:
        """Unnormalised values (rows of tasks ``task_id``) -> normalised."""
        return (values - self.mean[task_id]) / self.sigma[task_id]

    def denormalize(self, values: Tensor, task_id: Tensor) -> Tensor:
        """Normalised values -> unnormalised (``sigma n + mu``)."""
        return values * self.sigma[task_id] + self.mean[task_id]

    @torch.no_grad()
    def update(self, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Move the statistics toward ``targets (T, n)`` (row ``t``: task ``t``'s targets).

        Returns:
            ``(mean, sigma)`` from before the update, for :meth:`preserve_outputs_`.
        """
        old_mean, old_sigma = self.mean.clone(), self.sigma
        self.count += 1
        step = self.beta / (1.0 - (1.0 - self.beta) ** self.count.to(self.mean.dtype))
        self.mean.lerp_(targets.mean(1), step)
        self.second_moment.lerp_(targets.pow(2).mean(1), step)
        return old_mean, old_sigma

    @torch.no_grad()
    def preserve_outputs_(self, weight: Tensor, bias: Tensor, old_mean: Tensor,
                          old_sigma: Tensor) -> None:
        """Rescale a per-task output layer in place so that ``sigma n + mu`` is unchanged.

        ``weight (..., T, in, out)`` and ``bias (..., T, out)``; leading dimensions (ensemble
        members) share the statistics.
        """
        sigma = self.sigma
        weight.mul_((old_sigma / sigma).view(-1, 1, 1))
        bias.mul_(old_sigma.view(-1, 1)).add_((old_mean - self.mean).view(-1, 1))
        bias.div_(sigma.view(-1, 1))
