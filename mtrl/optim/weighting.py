"""Loss weighting: GradNorm, uncertainty weighting, FAMO, fixed weights.

These combiners scale each task's loss; ``mean`` is the special case of equal weights. All
weights multiply ``T * loss.weights`` (1 unless the agent weights tasks itself) and are scaled
so that equal weights give exactly the ``mean`` gradient. Heads get the weighted loss's
gradient, as for any weighted loss.

Learned state (log-variances, GradNorm weights, FAMO logits) is an ``nn.Parameter`` of the
combiner with its **own** Adam optimizer, stepped by the combiner itself (in ``backward``,
or in ``after_step`` for FAMO, which needs the losses after the parameter step). The
optimizer's state travels in the combiner's ``state_dict`` (``get_extra_state``), so an agent
checkpoints a combiner with ``combiner.state_dict()`` and nothing else.

Uncertainty weighting, GradNorm and FAMO balance loss magnitudes and assume positive losses
(``positive_losses = True``): SAC allows them for the critic (a squared error), not for the
actor, whose loss ``alpha log pi - Q`` has no sign; this is also how the FAMO authors ran
them on Meta-World.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from mtrl.errors import MtrlError
from mtrl.optim.combiners import GradientCombiner, register_combiner
from mtrl.optim.gradient_methods import (
    famo_coefficients,
    famo_logit_grad,
    gradnorm_weight_grad,
    renormalize,
    uncertainty_coefficients,
    uncertainty_log_var_grad,
)
from mtrl.optim.surgery import TaskGradientCombiner
from mtrl.optim.task_loss import TaskLoss


def _weighted_backward(loss: TaskLoss, coefficients: Tensor) -> Tensor:
    """Backward of ``sum_t coefficients_t T weights_t L_t``; returns the detached losses."""
    values = loss.values()
    scale = coefficients.detach() * loss.weights * loss.num_tasks
    (values * scale).sum().backward()
    return values.detach()


class _OwnOptimizer:
    """Mixin: a combiner parameter trained by its own Adam, whose state is checkpointed."""

    optimizer: torch.optim.Optimizer

    def get_extra_state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])

    def _step(self, param: nn.Parameter, grad: Tensor) -> None:
        param.grad = grad.detach()
        self.optimizer.step()
        param.grad = None


def _check_lr(name: str, lr: float) -> None:
    if lr <= 0:
        raise MtrlError(f"{name}: lr must be positive, got {lr}")


@dataclass
class GradNormOptions:
    """GradNorm (Chen et al. 2018) on the last shared layer."""

    alpha: float = 1.5  # asymmetry: strength of the pull toward equal training rates
    lr: float = 1e-3  # Adam learning rate of the task weights
    layer: str = ""  # parameter name of the shared layer; empty = the last shared weight


@register_combiner("gradnorm", options=GradNormOptions)
class GradNorm(_OwnOptimizer, TaskGradientCombiner):
    """GradNorm (Chen et al. 2018) on the last shared layer.

    Task weights ``w`` (sum ``T``) are trained so that each task's weighted gradient norm on
    the last shared weight matrix ``W`` approaches ``mean norm * r_t^alpha``, where ``r_t``
    compares the task's loss ratio ``L_t / L_t(0)`` against the **initial** losses (recorded at
    the first update and checkpointed) with the mean ratio. After every step of their own
    Adam, the weights are renormalised to sum to ``T``. The network's gradient is
    ``sum_t (w_t / T) grad L_t`` with the weights of before the step (the paper's order).

    Args:
        alpha: the asymmetry (restoring force) hyperparameter.
        lr: learning rate of the weights.
        layer: name of ``W`` among the loss's parameters; empty = the network's last shared
            weight matrix as its architecture names it (``TaskLoss.shared_layer``), else the
            last shared parameter called ``*weight`` with two or more dimensions.
    """

    positive_losses = True

    def __init__(self, num_tasks: int, seed: int = 0, alpha: float = 1.5, lr: float = 1e-3,
                 layer: str = "") -> None:
        super().__init__(num_tasks, seed)
        _check_lr("gradnorm", lr)
        self.alpha, self.layer = float(alpha), layer
        self.weights = nn.Parameter(torch.ones(num_tasks))
        self.optimizer = torch.optim.Adam([self.weights], lr=lr)
        self.register_buffer("initial_losses", torch.ones(num_tasks))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def shared_layer(self, loss: TaskLoss) -> str:
        """The name of ``W`` among ``loss.params``."""
        shared = loss.shared_parameters
        if self.layer:
            if self.layer not in shared:
                raise MtrlError(
                    f"gradnorm: layer '{self.layer}' is not a shared parameter "
                    f"(choose from {', '.join(shared)})"
                )
            return self.layer
        if loss.shared_layer:
            return loss.shared_layer
        matrices = [name for name in shared if name.endswith("weight")
                    and loss.params[name].dim() >= 2]
        if not matrices:
            raise MtrlError("gradnorm: the network has no shared weight matrix")
        return matrices[-1]

    def coefficients(self, gram: Tensor, losses: Tensor, grads: dict[str, Tensor],
                     loss: TaskLoss) -> tuple[Tensor, Tensor]:
        w = self.weights.detach().clone()
        scale = loss.weights * self.num_tasks
        layer_norms = grads[self.shared_layer(loss)].reshape(self.num_tasks, -1).norm(dim=1)
        initial = torch.where(self.initialized, self.initial_losses, losses)
        self.initial_losses.copy_(initial)
        self.initialized.fill_(True)
        self._step(self.weights,
                   gradnorm_weight_grad(w, layer_norms * scale, losses, initial, self.alpha))
        with torch.no_grad():
            self.weights.copy_(renormalize(self.weights, float(self.num_tasks)))
        coef = w / self.num_tasks
        return coef, coef

    def metrics(self) -> dict[str, Tensor]:
        return {"weights": self.weights.detach()}


@dataclass
class UncertaintyOptions:
    """Uncertainty weighting (Kendall et al. 2018)."""

    lr: float = 0.025  # Adam learning rate of the log-variances


@register_combiner("uncertainty", options=UncertaintyOptions)
class UncertaintyWeighting(_OwnOptimizer, GradientCombiner):
    """Uncertainty weighting (Kendall et al. 2018) with learned log-variances ``s``.

    Objective ``mean_t exp(-s_t) L_t + s_t`` (Kendall's regression form times two: same
    optimum ``s_t = log L_t`` and same direction); the network follows ``exp(-s_t) / T``
    weights, ``s`` its own Adam (learning rate ``lr``, as in the FAMO authors' Meta-World runs).
    """

    positive_losses = True

    def __init__(self, num_tasks: int, seed: int = 0, lr: float = 0.025) -> None:
        super().__init__(num_tasks, seed)
        _check_lr("uncertainty", lr)
        self.log_vars = nn.Parameter(torch.zeros(num_tasks))
        self.optimizer = torch.optim.Adam([self.log_vars], lr=lr)

    def backward(self, loss: TaskLoss) -> Tensor:
        s = self.log_vars.detach().clone()
        losses = _weighted_backward(loss, uncertainty_coefficients(s))
        self._step(self.log_vars, uncertainty_log_var_grad(s, losses))
        return losses

    def metrics(self) -> dict[str, Tensor]:
        return {"weights": torch.exp(-self.log_vars.detach())}


@dataclass
class FAMOOptions:
    """FAMO (Liu et al. 2023)."""

    lr: float = 0.025  # Adam learning rate of the task logits
    gamma: float = 0.01  # weight decay of the logits
    min_loss: float = 0.0  # lower bound of every task loss


@register_combiner("famo", options=FAMOOptions)
class FAMO(_OwnOptimizer, GradientCombiner):
    """FAMO (Liu et al. 2023): fast adaptive multitask optimization, O(1) per step.

    The update is ``sum_t (z_t / L_t) grad L_t / sum_t (z_t / L_t)`` with ``z = softmax(xi)``
    (one backward pass). After the parameter step, ``after_step`` re-evaluates the same batch
    (one forward pass, no backward) and moves the logits ``xi`` with their own Adam (``lr``,
    weight decay ``gamma``) toward tasks whose log-loss decreased least.

    Args:
        lr: learning rate of the logits (0.025 in the paper's Meta-World runs).
        gamma: weight decay of the logits (0.01 in the paper's Meta-World runs).
        min_loss: a lower bound ``L*`` of every task loss (0 for squared errors).
    """

    positive_losses = True

    def __init__(self, num_tasks: int, seed: int = 0, lr: float = 0.025, gamma: float = 0.01,
                 min_loss: float = 0.0) -> None:
        super().__init__(num_tasks, seed)
        _check_lr("famo", lr)
        if gamma < 0:
            raise MtrlError(f"famo: gamma must be >= 0, got {gamma}")
        self.min_loss = float(min_loss)
        self.logits = nn.Parameter(torch.zeros(num_tasks))
        self.optimizer = torch.optim.Adam([self.logits], lr=lr, weight_decay=gamma)
        self.register_buffer("previous_losses", torch.ones(num_tasks), persistent=False)

    def backward(self, loss: TaskLoss) -> Tensor:
        values = loss.values()
        detached = values.detach()
        coef = famo_coefficients(self.logits.detach(), detached, self.min_loss)
        (values * coef * loss.weights * self.num_tasks).sum().backward()
        self.previous_losses.copy_(detached)
        return detached

    def after_step(self, loss: TaskLoss) -> None:
        with torch.no_grad():
            after = loss.values()
        self._step(self.logits, famo_logit_grad(self.logits.detach(), self.previous_losses,
                                                after, self.min_loss))

    def metrics(self) -> dict[str, Tensor]:
        return {"weights": torch.softmax(self.logits.detach(), -1) * self.num_tasks}


@dataclass
class FixedWeightsOptions:
    """Fixed task weights (normalised to sum to one)."""

    weights: list[float] = field(default_factory=list)  # one per task


@register_combiner("fixed", options=FixedWeightsOptions)
class FixedWeights(GradientCombiner):
    """Fixed per-task loss weights (normalised to sum to one), e.g. to down-weight easy tasks.

    Args:
        weights: ``T`` non-negative numbers.
    """

    def __init__(self, num_tasks: int, seed: int = 0, weights: Sequence[float] = ()) -> None:
        super().__init__(num_tasks, seed)
        values = [float(w) for w in weights]
        if len(values) != num_tasks or min(values, default=-1.0) < 0 or sum(values) <= 0:
            raise MtrlError(
                f"fixed: weights must be {num_tasks} non-negative numbers with a positive sum "
                f"(agent.combiners.fixed.weights), got {values}"
            )
        w = torch.tensor(values)
        self.register_buffer("weights", w / w.sum(), persistent=False)

    def backward(self, loss: TaskLoss) -> Tensor:
        return _weighted_backward(loss, self.weights)

    def metrics(self) -> dict[str, Tensor]:
        return {"weights": self.weights}
