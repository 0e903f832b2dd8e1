"""FiLM task conditioning (Perez et al. 2018, "FiLM: Visual Reasoning with a General
Conditioning Layer") of every hidden layer of an MLP.

Hidden layer ``l`` computes ``act(gamma_l(task) * (W_l h + b_l) + beta_l(task))``: a
feature-wise affine map applied after the linear layer and before the non-linearity, as in
the paper's FiLM-ed residual blocks. The FiLM generator maps the conditioning input (here a
learned task embedding, ``relu`` of a per-task table) through an MLP to every layer's
``(gamma, beta)`` at once. Our choice: the generator predicts ``delta_gamma`` with
``gamma = 1 + delta_gamma`` and its last layer starts at zero, so the network starts as the
unconditioned MLP and learns task-specific modulation from there. The output layer is
shared. Per-task parameters: the task embedding table.

The FiLM baseline of the CARE code modulates each layer with one scalar (gamma, beta); we
implement the paper's feature-wise version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from torch import Tensor, nn

from mtrl.errors import MtrlError
from mtrl.nn.base import make_activation, mlp_layers
from mtrl.nn.layers import TaskEmbedding
from mtrl.nn.registry import register_network


@dataclass
class FiLMOptions:
    """FiLM (Perez et al. 2018) of every hidden layer by a task-conditioned generator."""

    embedding_dim: int = 50
    generator_hidden: list[int] = field(default_factory=lambda: [50])


@register_network("film", options=FiLMOptions)
class FiLM(nn.Module):
    """MLP whose hidden layers are FiLM-ed by a task-conditioned generator.

    Args:
        in_dim, out_dim, num_tasks: sizes.
        hidden_sizes, activation: the conditioned MLP.
        embedding_dim: width of the learned task embedding (50, as the CARE code's FiLM).
        generator_hidden: hidden sizes of the FiLM generator MLP (``[50]``).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: Sequence[int] = (400, 400, 400),
        activation: str = "relu",
        embedding_dim: int = 50,
        generator_hidden: Sequence[int] = (50,),
    ) -> None:
        super().__init__()
        if embedding_dim < 1:
            raise MtrlError(f"film embedding_dim must be positive, got {embedding_dim}")
        sizes = list(hidden_sizes)
        self.sizes = sizes
        self.act = make_activation(activation)
        widths = [in_dim, *sizes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.head = nn.Linear(sizes[-1], out_dim)
        self.last_shared_weight = "head.weight"
        self.embedding = TaskEmbedding(num_tasks, embedding_dim)
        hidden = list(generator_hidden)
        self.generator = nn.Sequential(
            make_activation(activation),
            *mlp_layers(embedding_dim, hidden, activation),
            nn.Linear(hidden[-1] if hidden else embedding_dim, 2 * sum(sizes)),
        )
        nn.init.zeros_(self.generator[-1].weight)
        nn.init.zeros_(self.generator[-1].bias)

    def film_parameters(self, task_id: Tensor) -> list[tuple[Tensor, Tensor]]:
        """``[(gamma_l, beta_l)]`` for each hidden layer, each ``(B, size_l)``.

        The generator depends on the task only: it runs once per task (``T`` rows) and each
        row gathers its task's output, instead of running once per row.
        """
        out = self.generator(self.embedding.weight)[task_id]
        gammas, betas = out.split(sum(self.sizes), dim=-1)
        return [(1.0 + g, b) for g, b in zip(gammas.split(self.sizes, -1),
                                             betas.split(self.sizes, -1))]

    def forward(self, x: Tensor, task_id: Tensor) -> Tensor:
        h = x
        for layer, (gamma, beta) in zip(self.layers, self.film_parameters(task_id)):
            h = self.act(gamma * layer(h) + beta)
        return self.head(h)

