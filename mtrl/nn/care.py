"""CARE: contextual attention-based representations (Sodhani et al. 2021, "Multi-Task
Reinforcement Learning with Context-based Representations"), following the authors' code
(``facebookresearch/mtrl``: ``TaskEncoder``, ``MixtureofExpertsEncoder``,
``AttentionBasedExperts``).

For one row ``(x, task)``:

1. context ``z_ctx``: the task's description embedding (frozen; shipped in
   ``mtrl/data/task_embeddings.json``, see ``scripts/embed_task_descriptions.py``) passed
   through ``relu -> Linear(2 * context_dim) -> relu -> Linear(context_dim) -> relu`` and an
   MLP of ``context_hidden`` to ``context_dim``. With ``context="learned"`` a learned task
   embedding (``relu`` of a per-task table) replaces the language embedding (the fallback,
   e.g. for tasks without a description such as the fake env's).
2. attention ``alpha = softmax(MLP(z_ctx) / temperature)`` over ``k`` experts; the context
   enters the attention detached (the paper's dashed line: the router does not train the
   context encoder).
3. ``k`` expert encoders (MLPs ``encoder_hidden -> encoder_dim``, batched), mixed:
   ``z_enc = sum_i alpha_i enc_i(x)``.
4. the SAC network (``hidden_sizes``, a single shared output layer) reads ``[z_enc, z_ctx]``.

Choices where our interface differs from the reference code: each network (actor, each twin
critic) owns its context encoder and experts, trained by its own loss (the reference shares
one context encoder trained by the critic loss and ties the actor's experts to the critic's).
The reason: actor and stacked twin critics are independent networks of any architecture, so
that every architecture composes with every agent, gradient method and PopArt; tying one
architecture's encoder across them would break that composition. Further,
a critic's experts encode its whole input ``[s, a]`` (the reference concatenates the action
after encoding). Expert counts in the presets: 4 on MT10 (the authors' README command) and
6 on MT50.
"""

from __future__ import annotations

import json
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtrl.errors import MtrlError
from mtrl.nn.base import last_linear, make_activation, mlp_layers
from mtrl.nn.layers import BatchedLinear, TaskEmbedding
from mtrl.nn.registry import register_network

EMBEDDINGS_FILE = Path(__file__).resolve().parents[1] / "data" / "task_embeddings.json"
CONTEXTS = ("language", "learned")


@lru_cache(maxsize=1)
def _embedding_table() -> dict[str, list[float]]:
    return json.loads(EMBEDDINGS_FILE.read_text())["embeddings"]


def load_task_embeddings(task_names: Sequence[str]) -> Tensor:
    """The shipped description embeddings of ``task_names``, ``(T, 384)`` float32.

    Raises:
        MtrlError: a task has no shipped description (e.g. the fake env's tasks).
    """
    table = _embedding_table()
    missing = [name for name in task_names if name not in table]
    if missing:
        raise MtrlError(
            f"CARE has no description embedding for task(s) {', '.join(missing)} "
            "(use agent.network.care.context=learned)"
        )
    return torch.tensor([table[name] for name in task_names], dtype=torch.float32)


def _mlp(in_dim: int, hidden: Sequence[int], out_dim: int, activation: str) -> nn.Sequential:
    """``Linear -> act`` for each hidden size, then a plain ``Linear`` to ``out_dim``."""
    body = mlp_layers(in_dim, hidden, activation)
    return nn.Sequential(*body, nn.Linear(hidden[-1] if hidden else in_dim, out_dim))


class ContextEncoder(nn.Module):
    """Task id -> context vector ``z_ctx`` (language or learned task embedding + MLP)."""

    def __init__(self, num_tasks: int, context: str, tasks: str, context_dim: int,
                 hidden: Sequence[int], activation: str) -> None:
        super().__init__()
        if context not in CONTEXTS:
            raise MtrlError(f"care context must be one of {', '.join(CONTEXTS)}, got '{context}'")
        self.act = make_activation(activation)
        if context == "language":
            names = _task_names(tasks, num_tasks)
            self.register_buffer("language", load_task_embeddings(names))
            self.embedding: TaskEmbedding | None = None
            self.project: nn.Module = nn.Sequential(
                make_activation(activation), nn.Linear(self.language.shape[1], 2 * context_dim),
                make_activation(activation), nn.Linear(2 * context_dim, context_dim),
                make_activation(activation),
            )
        else:
            self.register_buffer("language", None)
            self.embedding = TaskEmbedding(num_tasks, context_dim)
            self.project = make_activation(activation)
        self.trunk = _mlp(context_dim, hidden, context_dim, activation)

    def forward(self, task_id: Tensor) -> Tensor:
        base = self.embedding(task_id) if self.embedding is not None else self.language[task_id]
        return self.trunk(self.project(base))


def _task_names(tasks: str, num_tasks: int) -> list[str]:
    from mtrl.envs.tasks import EnvError, resolve_tasks

    try:
        names = resolve_tasks(tasks)
    except EnvError as exc:
        raise MtrlError(f"agent.network.care.tasks: {exc}") from None
    if len(names) != num_tasks:
        raise MtrlError(
            f"agent.network.care.tasks names {len(names)} tasks but the network has {num_tasks}"
        )
    return names


@dataclass
class CareOptions:
    """CARE (Sodhani et al. 2021): experts mixed by attention on a task context."""

    num_experts: int = 4  # k encoders (4 MT10, 6 MT50)
    encoder_hidden: list[int] = field(default_factory=lambda: [50])
    encoder_dim: int = 50
    context: str = "language"  # language (shipped description embeddings) | learned
    tasks: str = "${env.tasks}"  # the tasks whose descriptions give the context (in order)
    context_dim: int = 50
    context_hidden: list[int] = field(default_factory=lambda: [50, 50])
    attention_hidden: list[int] = field(default_factory=lambda: [50, 50])
    temperature: float = 1.0


@register_network("care", options=CareOptions)
class CARE(nn.Module):
    """Mixture of ``k`` state encoders mixed by attention on a task context.

    Args:
        in_dim, out_dim, num_tasks: sizes.
        hidden_sizes: the SAC network on ``[z_enc, z_ctx]`` (paper: 3 x 400).
        activation: activation of every hidden layer.
        num_experts: ``k`` encoders (4 on MT10 as in the authors' README, 6 on MT50).
        encoder_hidden, encoder_dim: each expert's hidden sizes and output width (50, 50).
        context: ``language`` (shipped description embeddings) or ``learned``.
        tasks: task spec naming the network's tasks in order (``MT10``, ``MT50``, a comma
            list); the config fills it from ``env.tasks``. Only used for ``language``.
        context_dim, context_hidden: context encoder width and trunk hidden sizes
            (50, ``[50, 50]``).
        attention_hidden: hidden sizes of the attention MLP (``[50, 50]``).
        temperature: softmax temperature of the attention.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: Sequence[int] = (400, 400, 400),
        activation: str = "relu",
        num_experts: int = 4,
        encoder_hidden: Sequence[int] = (50,),
        encoder_dim: int = 50,
        context: str = "language",
        tasks: str = "MT10",
        context_dim: int = 50,
        context_hidden: Sequence[int] = (50, 50),
        attention_hidden: Sequence[int] = (50, 50),
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if num_experts < 1 or encoder_dim < 1 or context_dim < 1 or temperature <= 0:
            raise MtrlError("care needs positive num_experts, encoder_dim, context_dim and "
                            "temperature")
        self.num_tasks, self.temperature = num_tasks, temperature
        self.act = make_activation(activation)
        self.context = ContextEncoder(num_tasks, context, tasks, context_dim,
                                      list(context_hidden), activation)
        self.attention = _mlp(context_dim, list(attention_hidden), num_experts, activation)
        widths = [in_dim, *encoder_hidden, encoder_dim]
        self.experts = nn.ModuleList(
            BatchedLinear(num_experts, a, b) for a, b in zip(widths[:-1], widths[1:])
        )
        self.trunk = _mlp(encoder_dim + context_dim, list(hidden_sizes), out_dim, activation)
        self.last_shared_weight = last_linear(self.trunk, "trunk")

    def attention_weights(self, task_id: Tensor) -> tuple[Tensor, Tensor]:
        """``(alpha (B, k), z_ctx (B, context_dim))``; ``alpha`` rows sum to one.

        Both depend on the task only: they are computed once per task (``T`` rows) and each
        row gathers its task's, instead of running the context MLPs once per row.
        """
        tasks = torch.arange(self.num_tasks, device=task_id.device)
        z_ctx = self.context(tasks)
        alpha = F.softmax(self.attention(z_ctx.detach()) / self.temperature, dim=-1)
        return alpha[task_id], z_ctx[task_id]

    def encode(self, x: Tensor) -> Tensor:
        """The experts' encodings ``(B, k, encoder_dim)``."""
        h = self.experts[0](x)
        for layer in self.experts[1:]:
            h = layer(self.act(h))
        return h

    def forward(self, x: Tensor, task_id: Tensor) -> Tensor:
        alpha, z_ctx = self.attention_weights(task_id)
        z_enc = torch.einsum("bk,bkd->bd", alpha, self.encode(x))
        return self.trunk(torch.cat([z_enc, z_ctx], -1))
