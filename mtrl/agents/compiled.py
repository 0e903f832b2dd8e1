"""SAC's update with its pieces compiled by ``torch.compile`` (``agent.compile=true``).

:meth:`CompiledUpdate.update` is :meth:`mtrl.agents.sac.SAC.update`, step for step, with the
tensor work of each step run by a ``torch.compile(fullgraph=True)`` function:

* the critic targets (no grad) and PopArt's statistics and output rescaling;
* the critic and actor losses, forward **and backward**: the compiled function returns the
  objective, and ``objective.backward()`` runs the backward graph AOTAutograd compiled with it
  (``backward()`` itself breaks a graph, so it is called between compiled pieces);
* the ``mean`` combiner whole (``sum_t w_t L_t`` inside the loss graph); ``pcgrad`` and
  ``cagrad``: the per-task gradients (the vmapped per-task VJPs) compiled, their small
  ``(T, T)`` Gram-matrix math eager, as in the eager update;
* each optimizer's ``step()``, compiled separately as in PyTorch's compiled-optimizer recipe
  (the one piece without ``fullgraph``: ``Optimizer.step`` breaks the graph on purpose around
  its body, which is one graph; an optimizer with no state yet takes its first step eagerly,
  which creates the state, so the graph never changes), the temperature loss, and the Polyak
  averaging of the target critic.

What stays eager: the sampling noise (``torch.Generator`` draws do not trace; drawing them in
the eager order makes the compiled update consume the same noise as the eager one), the
schedule (``actor_update_every``, ``target_update_every``), reward-scale and metric
bookkeeping, and the hooks of adapting networks (PaCo's ``observe_task_losses``).

Shapes are static (``T`` blocks of ``b`` rows) and the per-task reductions are tensor ops, so
after the first two updates nothing recompiles. (torch.optim's step frames are shared by all
optimizers and guarded on the optimizer object: each optimizer adds one cache entry in its
first compiled step, three per agent; past torch's limit of 8 entries, i.e. from about the
third compiled agent in one process, those steps run eagerly, correct but slower.)

Refused at construction (:class:`MtrlError`), rather than compiled in part: agents other than
``sac`` (Distral overrides pieces of the update) and combiners other than ``mean``,
``pcgrad``, ``cagrad`` (:data:`COMPILED_COMBINERS`): the others evaluate the loss in ways
the compiled pieces do not cover (``loss.values()`` under their own weights: uncertainty,
fixed, DWA, DTP, FAMO, which also re-evaluates it after the step; one layer's task gradients:
GradNorm, MGDA), so their losses would silently run eager. A network that does not trace as one graph fails at the
first update with an :class:`MtrlError` naming the piece.

On CUDA the same pieces compile with Inductor's default mode; ``mode="reduce-overhead"``
(CUDA graphs) is the next step and has not been measured.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor

from mtrl.errors import MtrlError
from mtrl.nn import observe_task_losses
from mtrl.optim import CAGrad, MeanCombiner, PCGrad, TaskLoss

if TYPE_CHECKING:
    from mtrl.data import Batch

# the SAC agent whose update this compiles (mtrl.agents.sac imports this module, so the type
# is not imported back)
SAC = Any

COMPILED_COMBINERS = {"mean": MeanCombiner, "pcgrad": PCGrad, "cagrad": CAGrad}
"""Combiners the compiled update supports: ``mean`` (compiled with the loss) and the gradient
surgery methods (compiled per-task gradients, eager coefficients)."""


# One module-level function per piece: torch.compile caches graphs per code object, so
# distinct functions keep the critic's and the actor's graphs from counting as recompiles.
def _critic_targets(agent: SAC, batch: Batch, noise: Tensor) -> Tensor:
    return agent.critic_targets(batch, noise)


def _popart_step(agent: SAC, target: Tensor) -> None:
    agent.popart_step(target)


def _critic_objective(loss: TaskLoss) -> tuple[Tensor, Tensor]:
    values = loss.values()  # MeanCombiner.backward, up to the backward() call
    return (values * loss.weights).sum(), values.detach()


def _actor_objective(loss: TaskLoss) -> tuple[Tensor, Tensor]:
    values = loss.values()
    return (values * loss.weights).sum(), values.detach()


def _critic_task_gradients(loss: TaskLoss) -> tuple[Tensor, dict[str, Tensor]]:
    return TaskLoss.task_gradients(loss)


def _actor_task_gradients(loss: TaskLoss) -> tuple[Tensor, dict[str, Tensor]]:
    return TaskLoss.task_gradients(loss)


def _temperature_loss(agent: SAC, log_prob: Tensor) -> Tensor:
    return agent.temperature_loss(log_prob)


def _critic_optimizer_step(agent: SAC) -> None:
    agent.critic_optimizer.step()


def _actor_optimizer_step(agent: SAC) -> None:
    agent.actor_optimizer.step()


def _alpha_optimizer_step(agent: SAC) -> None:
    agent.alpha_optimizer.step()


def _polyak(agent: SAC) -> None:
    with torch.no_grad():
        torch._foreach_lerp_(list(agent.critic_target.parameters()),
                             list(agent.critic.parameters()), agent.tau)


class _CompiledGradients(TaskLoss):
    """``loss`` whose :meth:`task_gradients` (of all parameters) runs compiled; a combiner
    uses it like the eager loss (weights, parameter names, ``accumulate``)."""

    def __init__(self, loss: TaskLoss, compiled: Callable[[TaskLoss], Any]) -> None:
        vars(self).update(vars(loss))
        self._compiled = compiled

    def task_gradients(self, names: Any = None) -> tuple[Tensor, dict[str, Tensor]]:
        if names is not None:  # not used by the supported combiners
            return super().task_gradients(names)
        return self._compiled(self)


class CompiledUpdate:
    """The compiled pieces of ``agent``'s update (see the module docstring).

    On CPU the graphs with a backward (losses and per-task gradients) are compiled to scalar
    C++ (Inductor's ``cpp.simdlen=0``): Inductor's vectorised code for the ReLU masks that the
    backward saves (bool stores and loads) ran ~10x slower than ATen's on the AVX2 machines
    here (torch 2.13), and the scalar graphs made the MT10 update ~7% faster than vectorised
    ones (still slower than eager there: see ``mtrl bench``'s ``update_compiled_vs_eager``).

    Args:
        agent: the SAC agent (checked: see :func:`check_compilable`).
        backend, mode: ``torch.compile``'s (``inductor``; tests use ``aot_eager`` to check the
            graphs quickly).
    """

    def __init__(self, agent: SAC, backend: str = "inductor", mode: str | None = None) -> None:
        check_compilable(agent)
        self.agent = agent
        # (torch.compile takes a mode or options, not both)
        scalar = backend == "inductor" and agent.device.type == "cpu" and mode is None

        def compiled(fn: Callable[..., Any], fullgraph: bool = True,
                     backward: bool = False) -> Callable[..., Any]:
            options = {"cpp.simdlen": 0} if backward and scalar else None
            return _one_graph(torch.compile(fn, fullgraph=fullgraph, backend=backend,
                                            mode=mode, options=options),
                              fn.__name__.lstrip("_"))

        def optimizer(fn: Callable[..., Any]) -> Callable[..., Any]:
            # Optimizer.step breaks the graph on purpose around its body (so that AOTAutograd
            # sees a no-grad graph of in-place updates): the body is one graph
            return compiled(fn, fullgraph=False)

        self.critic_targets = compiled(_critic_targets)
        self.popart_step = compiled(_popart_step)
        self.objective = {"critic": compiled(_critic_objective, backward=True),
                          "actor": compiled(_actor_objective, backward=True)}
        self.task_gradients = {"critic": compiled(_critic_task_gradients, backward=True),
                               "actor": compiled(_actor_task_gradients, backward=True)}
        self.temperature_loss = compiled(_temperature_loss)
        self.optimizer_step = {"critic": optimizer(_critic_optimizer_step),
                               "actor": optimizer(_actor_optimizer_step),
                               "alpha": optimizer(_alpha_optimizer_step)}
        self.polyak = compiled(_polyak)

    def combine(self, role: str, loss: TaskLoss) -> tuple[Tensor, TaskLoss]:
        """The combiner's ``backward`` for ``role`` (critic / actor): ``(losses, loss)`` with
        the loss object whose ``aux`` holds the rows' aux output."""
        combiner = getattr(self.agent, f"{role}_combiner")
        if type(combiner) is MeanCombiner:
            objective, losses = self.objective[role](loss)
            objective.backward()
            return losses, loss
        wrapped = _CompiledGradients(loss, self.task_gradients[role])
        return combiner.backward(wrapped), wrapped

    def step(self, name: str) -> None:
        """``optimizer.step()`` of ``name`` (critic / actor / alpha), compiled once it has
        state (its first step creates the state eagerly, so the graph never changes)."""
        optimizer = getattr(self.agent, f"{name}_optimizer")
        if not optimizer.state:
            optimizer.step()
        else:
            self.optimizer_step[name](self.agent)

    def update(self, batch: Batch) -> dict[str, Tensor]:
        """:meth:`mtrl.agents.sac.SAC.update`, its pieces compiled."""
        agent = self.agent
        metrics: dict[str, Tensor] = {}
        scale = agent.reward_scale()
        if scale is not None:
            batch = dataclasses.replace(batch, reward=batch.reward * scale[batch.task_id])
            metrics["reward_scale_per_task"] = scale
        target = self.critic_targets(agent, batch, agent.policy_noise(batch.next_obs.shape[0]))
        if agent.popart is not None:
            self.popart_step(agent, target)
            metrics["popart_sigma"] = agent.popart.sigma
        critic_loss = agent.critic_loss(batch, target)
        agent.critic_optimizer.zero_grad(set_to_none=True)
        critic_losses, critic_loss = self.combine("critic", critic_loss)
        self.step("critic")
        observe_task_losses(agent._critic_ensemble, critic_losses)
        agent.critic_combiner.after_step(critic_loss)
        metrics["critic_loss"] = critic_losses.mean()
        metrics["critic_loss_per_task"] = critic_losses
        metrics["target_q"] = ((target * agent.support).sum(-1) if agent.categorical
                               else target).mean()
        metrics.update({f"critic_{k}": v for k, v in agent.critic_combiner.metrics().items()})

        if agent.num_updates % agent.actor_update_every == 0:
            metrics.update(self.actor_step(batch))

        if agent.num_updates % agent.target_update_every == 0:
            self.polyak(agent)
        agent.num_updates += 1
        return metrics

    def actor_step(self, batch: Batch) -> dict[str, Tensor]:
        """:meth:`mtrl.agents.sac.SAC.actor_step`, its pieces compiled."""
        agent = self.agent
        actor_loss = agent.actor_loss(batch, agent.policy_noise(batch.obs.shape[0]))
        agent.actor_optimizer.zero_grad(set_to_none=True)
        actor_losses, actor_loss = self.combine("actor", actor_loss)
        self.step("actor")
        observe_task_losses(agent.actor, actor_losses)
        assert actor_loss.aux is not None
        aux = actor_loss.aux.view(agent.num_tasks, batch.rows_per_task, -1).mean(1)
        log_prob = aux[:, 0]
        agent.actor_combiner.after_step(actor_loss)
        alpha_loss = self.temperature_loss(agent, log_prob)
        agent.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.step("alpha")
        metrics = {f"actor_{k}": v for k, v in agent.actor_combiner.metrics().items()}
        metrics.update({f"{name}_per_task": aux[:, i]
                        for i, name in enumerate(agent.actor_aux[1:], 1)})
        return {"actor_loss": actor_losses.mean(), "entropy": -log_prob.mean(),
                "alpha": agent.log_alpha.detach().exp(), **metrics}


def check_compilable(agent: SAC) -> None:
    """Raise :class:`MtrlError` (one line, with the config key) for what cannot compile."""
    if agent.name != "sac":
        raise MtrlError(f"agent.compile supports agent 'sac' only, not '{agent.name}' (it "
                        "overrides pieces of the update); set agent.compile=false")
    for role in ("actor", "critic"):
        combiner = getattr(agent, f"{role}_combiner")
        name = agent.init_kwargs[f"{role}_combiner"]
        if type(combiner) is not COMPILED_COMBINERS.get(name):
            raise MtrlError(f"agent.compile does not support agent.{role}_combiner={name} "
                            f"(supported: {', '.join(COMPILED_COMBINERS)}); set "
                            "agent.compile=false")


def _one_graph(fn: Callable[..., Any], piece: str) -> Callable[..., Any]:
    """``fn`` with torch.compile's failures to capture one graph as :class:`MtrlError`."""
    def call(*args: Any) -> Any:
        try:
            return fn(*args)
        except torch._dynamo.exc.RecompileError:  # torch._dynamo.config.error_on_recompile
            raise
        except torch._dynamo.exc.TorchDynamoException as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
            raise MtrlError(f"agent.compile: the update's {piece} does not compile as one "
                            f"graph ({first}); use agent.compile=false") from error
    return call
