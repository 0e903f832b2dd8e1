"""Which tasks help each other: online task affinity and pairwise training.

**Online affinity** (Fifty et al. 2021, "Efficiently Identifying Task Groupings in Multi-Task
Learning"). On a replay batch, for each source task i the shared parameters take one SGD step
along task i's gradient, ``theta_i' = theta - lr * grad L_i(theta)`` (``lr``: the network
optimizer's learning rate; per-task parameters such as heads stay put), and every target task j
is re-evaluated on the same batch::

    Z(i -> j) = (L_j(theta) - L_j(theta_i')) / |L_j(theta)|

which is the paper's ``1 - L_j(theta_i') / L_j(theta)`` for a positive loss (the critic's) and
keeps its meaning (positive = the step along i lowers j's loss) for a loss of any sign (the
actor's ``alpha log pi - Q``). It is measured on the critic and on the actor loss, together
with the cosine similarity of the tasks' shared-parameter gradients. The ``T + 1`` evaluations
(unmoved parameters and one step per source) run as one ``vmap`` over stacked parameters; the
per-task gradients come from :meth:`~mtrl.optim.TaskLoss.task_gradients`.

With ``train.affinity_every`` set, training measures every that many steps per task (on its
own batches and random streams: the training trajectory is unchanged), logs per-task summaries
(``affinity/<kind>/<task>`` = mean affinity of the other tasks onto it) and a heatmap to
TensorBoard, and keeps the average over training in ``RUN_DIR/affinity.json`` (with the
heatmap ``affinity.png`` beside it)::

    {"tasks": [names], "measurements": n, "first_step": s0, "last_step": s1,
     "convention": "...", "matrices": {kind: T x T}}

for the kinds ``lookahead_critic``, ``lookahead_actor``, ``cosine_critic``, ``cosine_actor``
(row = source task i, column = target task j).

**Pairwise training** (Standley et al. 2020, "Which Tasks Should Be Learned Together in
Multi-task Learning?"): ``mtrl affinity pairs`` trains every single task and every pair with a
short budget (the paper's early-stopping approximation) and writes each task's score in each
network as the score table of :mod:`mtrl.analysis.grouping`. The networks are trained as groups side by
side (:class:`~mtrl.nn.GroupedNetwork`): a round-robin schedule puts every pair into one of
``T - 1`` runs of ``T / 2`` disjoint pairs (``T`` runs for odd ``T``, where each task sits out
alone once, which gives its single-task score), plus one run of ``T`` single-task networks for
even ``T``. Grouped networks share nothing, so each is trained as if alone.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from mtrl.errors import MtrlError, require
from mtrl.training.hooks import crossed, register_hook
from mtrl.training.rundir import AFFINITY_FILE, CONFIG_FILE
from mtrl.training.rundir import AFFINITY_HISTORY_FILE as HISTORY_FILE

if TYPE_CHECKING:  # torch is imported where used: `mtrl --help` stays fast
    import torch
    from torch import Tensor

    from mtrl.optim import TaskLoss

KINDS = ("lookahead_critic", "lookahead_actor", "cosine_critic", "cosine_actor")
PLOT_FILE = "affinity.png"
SCORES_FILE = "scores.json"
CHECKPOINT_KEY = "affinity_sampler"  # the tracker's sampling stream in a training checkpoint
CONVENTION = ("row i = source task, column j = target task; lookahead: Z(i -> j) = "
              "(L_j(theta) - L_j(theta - lr grad L_i)) / |L_j(theta)|; cosine: cosine of the "
              "shared-parameter gradients")
_TINY = 1e-12
_ROWS_PER_CHUNK = 1 << 16  # rows evaluated at once by the lookahead vmap


# ------------------------------------------------------------------ measuring
def lookahead_affinity(loss: TaskLoss, lr: float, chunk_size: int | None = None
                       ) -> tuple[Tensor, Tensor]:
    """Lookahead affinity ``Z (T, T)`` and gradient cosine similarity ``(T, T)`` of ``loss``.

    ``Z[i, j]`` is the relative decrease of task j's loss after an SGD step of size ``lr`` on
    the shared parameters along task i's gradient (module docstring). Both are zero for tasks
    that share no parameter.
    """
    import torch
    from torch.func import vmap

    num_tasks = loss.num_tasks
    shared = loss.shared_parameters
    device = next(iter(loss.params.values())).device
    if not shared:
        zeros = torch.zeros(num_tasks, num_tasks, device=device)
        return zeros, zeros.clone()
    _, grads = loss.task_gradients(shared)
    params = {name: p.detach() for name, p in loss.params.items()}
    steps = {name: lr * torch.cat([torch.zeros_like(grads[name][:1]), grads[name]])
             for name in shared}  # (T + 1, ...): row 0 = no step

    def task_losses(step: dict[str, Tensor]) -> Tensor:
        moved = {**params, **{name: params[name] - step[name] for name in shared}}
        out = loss.row_loss(moved, *loss.rows)
        rows = out[0] if isinstance(out, tuple) else out
        return rows.view(num_tasks, -1).mean(1)

    if chunk_size is None:
        chunk_size = max(1, _ROWS_PER_CHUNK // loss.rows[0].shape[0])
    with torch.no_grad():
        after = vmap(task_losses, randomness="same", chunk_size=chunk_size)(steps)
    before = after[0]
    z = (before - after[1:]) / before.abs().clamp_min(_TINY)
    flat = torch.cat([grads[name].reshape(num_tasks, -1) for name in shared], 1)
    unit = flat / flat.norm(dim=1, keepdim=True).clamp_min(_TINY)
    return z, unit @ unit.T


def _learning_rate(optimizer: Any) -> float:
    return float(optimizer.param_groups[0]["lr"])


def measure_affinity(agent: Any, batch: Any) -> dict[str, Tensor]:
    """The four ``(T, T)`` matrices of :data:`KINDS` for an actor-critic agent (SAC).

    Uses the agent's ``critic_targets`` / ``critic_loss`` / ``actor_loss`` and its optimizers'
    learning rates; the agent's sampling noise stream is left where it was.
    """
    needed = ("critic_targets", "critic_loss", "actor_loss", "critic_optimizer",
              "actor_optimizer", "generator")
    missing = [name for name in needed if not hasattr(agent, name)]
    if missing:
        raise MtrlError(f"train.affinity_every: agent '{getattr(agent, 'name', agent)}' has "
                        f"no {', '.join(missing)} (online affinity needs an actor-critic agent)")
    noise_state = agent.generator.get_state()
    try:
        critic = agent.critic_loss(batch, agent.critic_targets(batch))
        z_critic, cos_critic = lookahead_affinity(critic, _learning_rate(agent.critic_optimizer))
        actor = agent.actor_loss(batch)
        z_actor, cos_actor = lookahead_affinity(actor, _learning_rate(agent.actor_optimizer))
    finally:
        agent.generator.set_state(noise_state)
    return {"lookahead_critic": z_critic, "lookahead_actor": z_actor,
            "cosine_critic": cos_critic, "cosine_actor": cos_actor}


def onto_task(matrix: np.ndarray) -> np.ndarray:
    """``(T,)``: mean affinity of the other tasks onto each task (column means, no diagonal)."""
    n = matrix.shape[0]
    if n < 2:
        return np.zeros(n)
    return (matrix.sum(0) - np.diag(matrix)) / (n - 1)


# ------------------------------------------------------------------- plotting
def plot_matrices(path: str | Path | None, tasks: Sequence[str],
                  panels: Mapping[str, np.ndarray], title: str = "") -> Any:
    """A heatmap per matrix (tasks labelled; rows = source, columns = target; the colour scale
    spans the off-diagonal entries), saved to ``path`` when given; returns the figure."""
    Figure = require("matplotlib.figure", "report", "affinity plots").Figure

    n = len(tasks)
    cols = min(2, len(panels))
    rows = math.ceil(len(panels) / cols)
    side = max(4.0, 0.32 * n + 2.5)
    fig = Figure(figsize=(side * cols, side * rows), layout="constrained")
    labels = [t.removesuffix("-v3") for t in tasks]
    for k, (name, matrix) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        matrix = np.asarray(matrix, dtype=np.float64)
        off = matrix[~np.eye(n, dtype=bool)]  # colours follow the off-diagonal (transfer)
        limit = float(np.abs(off if off.size and np.abs(off).max() > 0 else matrix).max()) or 1.0
        exponent = math.floor(math.log10(limit)) if not 0.1 <= limit < 100 else 0
        shown, limit = matrix / 10.0 ** exponent, limit / 10.0 ** exponent
        image = ax.imshow(shown, cmap="RdBu", vmin=-limit, vmax=limit)
        ax.set_title(f"{name} (x 1e{exponent})" if exponent else name)
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7 if n > 12 else 8)
        ax.set_yticks(range(n), labels, fontsize=7 if n > 12 else 8)
        ax.set_xlabel("target task j")
        ax.set_ylabel("source task i")
        if n <= 12:
            for i in range(n):
                for j in range(n):
                    value = shown[i, j]
                    text = f"{value:.2f}" if limit <= 1 else f"{value:.1f}" \
                        if abs(value) < 100 else f"{value:.0e}"
                    ax.text(j, i, text, ha="center", va="center", fontsize=6)
        fig.colorbar(image, ax=ax, shrink=0.8)
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


# -------------------------------------------------------------------- tracker
class AffinityTracker:
    """Online affinity of a training run: measures, logs, averages into ``affinity.json``.

    Every measurement is appended to ``affinity_history.jsonl``; a resumed run drops the
    measurements made after the checkpoint it continues from (``resume_step``), so the
    average counts each step once.
    """

    def __init__(self, run_dir: str | Path, task_names: Sequence[str], batch_per_task: int,
                 seed: int = 0, resume_step: int | None = None, every: int = 0) -> None:
        self.run_dir = Path(run_dir)
        self.every = every  # steps per task between measurements (as a training hook)
        self.task_names = list(task_names)
        self.batch_per_task = batch_per_task
        self.seed = seed
        n = len(self.task_names)
        self.sums = {kind: np.zeros((n, n)) for kind in KINDS}
        self.steps: list[int] = []
        self._generator: Any = None  # torch.Generator on the replay's device
        path = self.run_dir / HISTORY_FILE
        records = []
        if resume_step is not None and path.exists():
            records = [json.loads(line) for line in path.read_text().splitlines() if line]
            records = [r for r in records if r["step"] <= resume_step]
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        for record in records:
            self._add(record["step"], {k: np.asarray(record[k]) for k in KINDS})

    def _add(self, step: int, values: Mapping[str, np.ndarray]) -> None:
        for kind in KINDS:
            self.sums[kind] += values[kind]
        self.steps.append(step)

    def measure(self, agent: Any, replay: Any, step: int, logger: Any = None
                ) -> dict[str, np.ndarray]:
        """Measure on a fresh replay batch at ``step`` (steps per task); log and write."""
        import torch

        if self._generator is None:
            self._generator = torch.Generator(replay.device)
            self._generator.manual_seed(self.seed + 7919)
        batch = replay.sample(self.batch_per_task, self._generator)
        values = {k: v.double().cpu().numpy() for k, v in measure_affinity(agent, batch).items()}
        self._add(step, values)
        with open(self.run_dir / HISTORY_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **{k: v.tolist() for k, v in values.items()}})
                    + "\n")
        figure = self.write()
        if logger is not None:
            scalars: dict[str, float] = {}
            for kind, matrix in values.items():
                onto = onto_task(matrix)
                scalars[f"affinity/{kind}/mean"] = float(onto.mean())
                scalars.update({f"affinity/{kind}/{t}": float(v)
                                for t, v in zip(self.task_names, onto)})
            logger.log(step, scalars, step * len(self.task_names))
            if getattr(logger, "writer", None) is not None:
                logger.writer.add_figure("affinity/average", figure, step)
        return values

    # ------------------------------------------------- the training hook
    def after_update_step(self, learner: Any, replay: Any, step: int, per_step: int,
                          logger: Any) -> None:
        """Measure when this vector step crossed a multiple of ``train.affinity_every``."""
        if self.every and crossed(step, per_step, self.every):
            self.measure(learner, replay, step, logger)

    def state_dict(self) -> dict[str, Any]:
        stream = self._generator
        return {CHECKPOINT_KEY: None if stream is None else stream.get_state()}

    def load_state_dict(self, trainer: Mapping[str, Any], device: torch.device) -> None:
        import torch

        from mtrl.serialization import restore_generator

        if trainer.get(CHECKPOINT_KEY) is not None:
            self._generator = torch.Generator(device)
            restore_generator(self._generator, trainer[CHECKPOINT_KEY])

    def matrices(self) -> dict[str, np.ndarray]:
        """The average of every measurement so far, per kind."""
        count = max(len(self.steps), 1)
        return {kind: s / count for kind, s in self.sums.items()}

    def write(self) -> Any:
        """Write ``affinity.json`` and ``affinity.png``; returns the heatmap figure."""
        matrices = self.matrices()
        data = {"tasks": self.task_names, "measurements": len(self.steps),
                "first_step": self.steps[0] if self.steps else None,
                "last_step": self.steps[-1] if self.steps else None,
                "convention": CONVENTION,
                "matrices": {k: m.tolist() for k, m in matrices.items()}}
        path = self.run_dir / AFFINITY_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)
        title = f"task affinity, mean of {len(self.steps)} measurements " \
                f"(steps {data['first_step']}..{data['last_step']} per task)"
        return plot_matrices(self.run_dir / PLOT_FILE, self.task_names, matrices, title)


def tracker_for_run(config: Any, run_dir: str | Path, task_names: Sequence[str],
                    resume_step: int | None) -> AffinityTracker | None:
    """The run's tracker when ``train.affinity_every`` is on, else ``None`` (the training
    loop's hook factory)."""
    if not config.train.affinity_every:
        return None
    return AffinityTracker(run_dir, task_names, config.replay.batch_per_task,
                           config.train.seed, resume_step, config.train.affinity_every)


register_hook("affinity", tracker_for_run)


# ----------------------------------------------------------- pairwise (Standley)
def round_robin(num_tasks: int) -> list[list[list[int]]]:
    """Rounds of disjoint groups in which every pair of tasks meets exactly once (circle
    method). With an odd count each round leaves one task alone, each task exactly once."""
    players: list[int | None] = list(range(num_tasks)) + ([None] if num_tasks % 2 else [])
    m = len(players)
    rounds = []
    for _ in range(m - 1):
        groups = []
        for i in range(m // 2):
            pair = [p for p in (players[i], players[m - 1 - i]) if p is not None]
            groups.append(sorted(pair))
        rounds.append(sorted(groups))
        players = [players[0], players[-1], *players[1:-1]]
    return rounds


def pair_runs(num_tasks: int) -> list[tuple[str, list[list[int]]]]:
    """``(run name, groups)`` of the grouped runs that train every single and every pair."""
    runs = [(f"round-{k + 1:02d}", groups) for k, groups in enumerate(round_robin(num_tasks))]
    if num_tasks % 2 == 0:
        runs.insert(0, ("singles", [[t] for t in range(num_tasks)]))
    return runs


def _final_returns(run_dir: Path, tasks: Sequence[str]) -> dict[str, float]:
    """Each task's mean training-episode return in the last log window of a run."""
    from mtrl.training.logging import read_metrics

    returns: dict[str, float] = {}
    for record in reversed(read_metrics(run_dir)):
        for task in tasks:
            key = f"train/episode_return/{task}"
            if task not in returns and key in record:
                returns[task] = float(record[key])
        if len(returns) == len(tasks):
            return returns
    raise MtrlError(f"{run_dir}: no finished training episodes of "
                    f"{', '.join(t for t in tasks if t not in returns)} were logged "
                    "(raise the budget or lower log.every)")


def run_pairs(config: Any, out_dir: str | Path, steps_per_task: int, score: str = "success",
              device: str | None = None, log: Callable[[str], None] = print) -> Any:
    """Train every single and pair of ``config.env.tasks``; return the score table.

    ``score``: ``success`` (``1 - success rate`` of the final evaluation) or ``return``
    (minus the task's mean training return, divided by the largest absolute return of that
    task over its networks). Finished runs in ``out_dir`` are reused, interrupted ones resumed.
    """
    from mtrl.config import validate
    from mtrl.envs import resolve_tasks
    from mtrl.analysis.grouping import ScoreTable
    from mtrl.training.loop import train

    if score not in ("success", "return"):
        raise MtrlError(f"--score must be success or return, got '{score}'")
    if steps_per_task <= 0:
        raise MtrlError(f"--steps-per-task must be positive, got {steps_per_task}")
    tasks = resolve_tasks(config.env.tasks)
    if len(tasks) < 2:
        raise MtrlError("affinity pairs needs at least 2 tasks")
    out = Path(out_dir)
    raw: dict[int, dict[int, float]] = {}
    runs = pair_runs(len(tasks))
    for k, (name, groups) in enumerate(runs):
        cfg = copy.deepcopy(config)
        cfg.name = f"{config.name}-{name}"
        cfg.agent.network.groups = groups
        cfg.train.steps_per_task = steps_per_task
        cfg.train.affinity_every = 0
        validate(cfg)
        run_dir = out / name
        shown = " | ".join("+".join(tasks[t].removesuffix("-v3") for t in g) for g in groups)
        log(f"[{k + 1}/{len(runs)}] {name}: {shown}")
        result = train(cfg, run_dir, resume=(run_dir / CONFIG_FILE).exists(), device=device)
        if score == "success":
            values = {t: 1.0 - result.per_task[t] for t in tasks}
        else:
            values = {t: -v for t, v in _final_returns(run_dir, tasks).items()}
        for group in groups:
            raw[sum(1 << t for t in group)] = {t: values[tasks[t]] for t in group}
    if score == "return":
        scale = np.zeros(len(tasks))
        for entry in raw.values():
            for t, v in entry.items():
                scale[t] = max(scale[t], abs(v))
        raw = {m: {t: v / scale[t] if scale[t] > 0 else 0.0 for t, v in entry.items()}
               for m, entry in raw.items()}
    return ScoreTable(tasks, raw)


def write_scores(table: Any, out_dir: str | Path, note: str = "") -> Path:
    """Write ``scores.json`` and its heatmap ``scores.png`` (pair table) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / SCORES_FILE
    path.write_text(json.dumps(table.to_json(), indent=2) + "\n")
    title = "score of column task j trained with row task i (diagonal: alone); lower is better"
    plot_matrices(out / "scores.png", table.tasks, {"pairwise scores": table.pair_matrix()},
                  f"{title}\n{note}" if note else title)
    return path


def format_pairs(table: Any) -> str:
    """The pair table as text: row i, column j = score of j when trained with i."""
    names = [t.removesuffix("-v3")[:14] for t in table.tasks]
    width = max(8, *(len(n) for n in names))
    matrix = table.pair_matrix()
    lines = [" " * width + " " + " ".join(f"{n:>{width}}" for n in names)]
    for i, name in enumerate(names):
        lines.append(f"{name:>{width}} " + " ".join(f"{v:>{width}.3f}" for v in matrix[i]))
    return "\n".join(lines)
