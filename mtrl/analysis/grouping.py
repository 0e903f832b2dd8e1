"""Which tasks should share a network: score tables and network selection (Standley et al. 2020).

A **score table** gives, for trained networks (task subsets), each member task's score — lower
is better (``1 - success rate``, a negative normalized return, or a negative affinity). Its JSON
form, written by ``mtrl affinity pairs`` and read by ``mtrl group``, is::

    {"tasks": [names], "scores": {NETWORK: {task: score}}}

where ``NETWORK`` is the ``+``-joined sorted task names of one network. Singles and pairs are
required; a larger network that was not trained gets the **higher-order approximation** of
Standley et al.: a task's score in a group is the mean of its scores in the pairs it forms with
the other members. An online affinity matrix ``Z`` (``RUN_DIR/affinity.json``, rows = source
task i, columns = target task j) gives the table of Fifty et al. 2021: a pair's score for task
j is ``-Z(i -> j)``, so a task's score in a group is minus the mean affinity of the other members
onto it, and a task alone scores 0 (no transfer).

**Network selection** picks at most ``budget`` networks minimizing the sum over tasks of the
best score any chosen network gives that task (networks may overlap, as in Standley et al.: a
task may help in one network while another serves it; ``disjoint=True`` asks for a partition,
which is what ``mtrl train`` with ``agent.network.groups`` trains). Up to ``exact_max_tasks``
tasks (12 by default) every network is scored and the optimum is found exactly by
branch-and-bound. A selection serves each task from one network, so it splits the tasks into
*served sets*; for every task set A the cheapest network serving it is precomputed (A itself
when ``disjoint``, else the best superset of A). The search builds the partition block by block
(the block holding the lowest unserved task), tries blocks cheapest-first and cuts a branch as
soon as its cost plus every unserved task's best score anywhere cannot beat the best solution.
Beyond that (e.g. MT50 from an online affinity matrix) the **approximation** is a local search:
a partition from agglomerative merging of singletons and from seeded random starts, each
improved by moving single tasks between groups until no move helps; when overlap is allowed,
the best partition is then improved by also adding or dropping single memberships. It is not
guaranteed optimal (``Grouping.exact`` says which solver ran).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mtrl.errors import MtrlError

SEPARATOR = "+"
EXACT_MAX_TASKS = 12


def network_key(names: Sequence[str]) -> str:
    """The JSON name of a network: its task names sorted and ``+``-joined."""
    return SEPARATOR.join(sorted(names))


def _bits(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


class ScoreTable:
    """Per-task scores of trained networks (lower is better), completed by approximation.

    Args:
        tasks: task names; task ``i`` is bit ``i`` of a network mask.
        measured: ``{mask: {task index: score}}`` for trained networks; every single and
            every pair must be present.
    """

    def __init__(self, tasks: Sequence[str], measured: Mapping[int, Mapping[int, float]]) -> None:
        self.tasks = list(tasks)
        self.measured = {int(m): {int(t): float(s) for t, s in v.items()}
                         for m, v in measured.items()}
        self.num_tasks = len(self.tasks)
        missing = [m for m in self._required() if m not in self.measured]
        if missing:
            shown = ", ".join(self.key(m) for m in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise MtrlError(f"score table lacks networks (singles and pairs are required): "
                            f"{shown}{more}")
        self._pairs = self._pair_matrix()
        self._cache: dict[int, np.ndarray] = {}

    def _required(self) -> list[int]:
        singles = [1 << i for i in range(self.num_tasks)]
        pairs = [(1 << i) | (1 << j)
                 for i, j in itertools.combinations(range(self.num_tasks), 2)]
        return singles + pairs

    # ------------------------------------------------------------------ io
    @classmethod
    def from_json(cls, data: Any, source: str = "scores") -> "ScoreTable":
        """Parse ``{"tasks": [...], "scores": {NETWORK: {task: score}}}`` (checked)."""
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), list) \
                or not isinstance(data.get("scores"), dict):
            raise MtrlError(f'{source}: expected {{"tasks": [names], "scores": '
                            '{NETWORK: {task: score}}}')
        tasks = [str(t) for t in data["tasks"]]
        if not tasks or len(set(tasks)) != len(tasks) or any(SEPARATOR in t for t in tasks):
            raise MtrlError(f"{source}: 'tasks' must be distinct names without '+'")
        index = {name: i for i, name in enumerate(tasks)}
        measured: dict[int, dict[int, float]] = {}
        for key, entry in data["scores"].items():
            names = str(key).split(SEPARATOR)
            unknown = [n for n in names if n not in index]
            if unknown or len(set(names)) != len(names):
                raise MtrlError(f"{source}: network '{key}' names unknown or repeated tasks "
                                f"{unknown}")
            if not isinstance(entry, dict) or set(entry) != set(names):
                raise MtrlError(f"{source}: network '{key}' must give a score for exactly "
                                f"its tasks {names}")
            scores: dict[int, float] = {}
            for name, value in entry.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)) \
                        or not math.isfinite(value):
                    raise MtrlError(f"{source}: score of {name} in '{key}' must be a finite "
                                    f"number, got {value!r}")
                scores[index[name]] = float(value)
            mask = sum(1 << index[n] for n in names)
            if mask in measured:
                raise MtrlError(f"{source}: network '{key}' is listed twice")
            measured[mask] = scores
        return cls(tasks, measured)

    @classmethod
    def from_affinity(cls, tasks: Sequence[str], matrix: Any) -> "ScoreTable":
        """Scores from an affinity matrix ``Z[i][j]`` (source i onto target j; higher is
        better): a pair scores ``-Z(i -> j)`` for task j, a single scores 0."""
        z = np.asarray(matrix, dtype=np.float64)
        n = len(tasks)
        if z.shape != (n, n) or not np.isfinite(z).all():
            raise MtrlError(f"affinity matrix must be a finite {n} x {n} array, got shape "
                            f"{z.shape}")
        measured: dict[int, dict[int, float]] = {1 << i: {i: 0.0} for i in range(n)}
        for i, j in itertools.combinations(range(n), 2):
            measured[(1 << i) | (1 << j)] = {j: -float(z[i, j]), i: -float(z[j, i])}
        return cls(tasks, measured)

    def key(self, mask: int) -> str:
        """The JSON name of the network ``mask``."""
        return network_key([self.tasks[i] for i in _bits(mask)])

    def to_json(self) -> dict[str, Any]:
        """The measured networks in the JSON format."""
        return {"tasks": self.tasks,
                "scores": {self.key(m): {self.tasks[t]: s for t, s in sorted(v.items())}
                           for m, v in sorted(self.measured.items(),
                                              key=lambda kv: (bin(kv[0]).count("1"), kv[0]))}}

    # -------------------------------------------------------------- scores
    def _pair_matrix(self) -> np.ndarray:
        n = self.num_tasks
        pairs = np.zeros((n, n))
        for i in range(n):
            pairs[i, i] = self.measured[1 << i][i]
        for i, j in itertools.combinations(range(n), 2):
            entry = self.measured[(1 << i) | (1 << j)]
            pairs[i, j], pairs[j, i] = entry[j], entry[i]
        return pairs

    def pair_matrix(self) -> np.ndarray:
        """``P[i, j]`` = score of task j in the pair {i, j}; ``P[j, j]`` = task j alone."""
        return self._pairs.copy()

    def approximate(self, mask: int, task: int) -> float:
        """Higher-order approximation: mean of ``task``'s scores in its pairs within ``mask``."""
        others = [u for u in _bits(mask) if u != task]
        if not others:
            return float(self._pairs[task, task])
        return float(self._pairs[others, task].mean())

    def network_scores(self, mask: int) -> np.ndarray:
        """``(T,)`` scores of the member tasks of network ``mask`` (``inf`` elsewhere):
        measured where the network was trained, else the higher-order approximation."""
        if mask not in self._cache:
            scores = np.full(self.num_tasks, np.inf)
            measured = self.measured.get(mask, {})
            for t in _bits(mask):
                scores[t] = measured.get(t, math.nan)
                if math.isnan(scores[t]):
                    scores[t] = self.approximate(mask, t)
            self._cache[mask] = scores
        return self._cache[mask]

    def all_networks(self) -> tuple[np.ndarray, np.ndarray]:
        """Every non-empty network: masks ``(2^T - 1,)`` and scores ``(2^T - 1, T)``."""
        n = self.num_tasks
        masks = np.arange(1, 1 << n, dtype=np.int64)
        member = (masks[:, None] >> np.arange(n)) & 1
        size = member.sum(1, keepdims=True)
        off_diagonal = self._pairs * (1.0 - np.eye(n))
        with np.errstate(invalid="ignore", divide="ignore"):
            approx = (member @ off_diagonal) / (size - 1)
        approx = np.where(size == 1, np.diag(self._pairs)[None, :], approx)
        scores = np.where(member == 1, approx, np.inf)
        for mask, entry in self.measured.items():
            for t, s in entry.items():
                scores[mask - 1, t] = s
        return masks, scores


# ---------------------------------------------------------------- selection
@dataclass
class Grouping:
    """A network selection: the groups (task names) and the sum of the tasks' best scores."""

    groups: list[list[str]]
    total_score: float
    task_scores: dict[str, float]
    exact: bool

    def to_json(self) -> dict[str, Any]:
        """``{"groups": [[names], ...], "total_score": float}`` (what ``mtrl group`` writes)."""
        return {"groups": self.groups, "total_score": self.total_score}


def _cost(masks: Sequence[int], table: ScoreTable) -> float:
    if not masks:
        return math.inf
    best = np.min([table.network_scores(m) for m in masks], axis=0)
    return float(best.sum())


def _subsets(mask: int) -> np.ndarray:
    """All submasks of ``mask`` (including 0), as an array."""
    subs = np.zeros(1, dtype=np.int64)
    for b in _bits(mask):
        subs = np.concatenate([subs, subs | (1 << b)])
    return subs


def _served_costs(masks: np.ndarray, scores: np.ndarray, disjoint: bool
                  ) -> tuple[np.ndarray, np.ndarray]:
    """For every task set A: the cheapest way one network can serve exactly A.

    Returns ``cost[A]`` = min over networks N (N = A when ``disjoint``, else N ⊇ A) of the
    sum of A's scores in N, and ``network[A]`` = that N.
    """
    n = scores.shape[1]
    cost = np.full(1 << n, np.inf)
    cost[0] = 0.0
    network = np.zeros(1 << n, dtype=np.int64)
    if disjoint:
        cost[masks] = np.where(np.isfinite(scores), scores, 0.0).sum(1)
        network[masks] = masks
        return cost, network
    for row, mask in enumerate(masks):
        bits = np.asarray(_bits(int(mask)))
        subs = _subsets(int(mask))
        sums = ((subs[:, None] >> bits) & 1) @ scores[row, bits]
        better = sums < cost[subs]
        cost[subs[better]] = sums[better]
        network[subs[better]] = mask
    return cost, network


def _branch_and_bound(masks: np.ndarray, scores: np.ndarray, budget: int,
                      disjoint: bool) -> list[int]:
    """The optimal networks (masks), exactly (see the module docstring)."""
    n = scores.shape[1]
    cost, network = _served_costs(masks, scores, disjoint)
    best_score = np.where(np.isfinite(scores), scores, np.inf).min(0)
    every = np.arange(1 << n, dtype=np.int64)
    bound = ((every[:, None] >> np.arange(n)) & 1) @ best_score  # sum of best scores in R
    tol = 1e-12 * max(1.0, float(np.abs(cost[np.isfinite(cost)]).max()))
    best_total, best_blocks = math.inf, []

    def search(remaining: int, left: int, total: float, blocks: list[int]) -> None:
        nonlocal best_total, best_blocks
        if remaining == 0 or left == 1:
            total += cost[remaining]
            if total < best_total - tol:
                best_total, best_blocks = total, blocks + ([remaining] if remaining else [])
            return
        low = remaining & -remaining
        blocks_here = _subsets(remaining & ~low) | low
        value = cost[blocks_here] + bound[remaining & ~blocks_here]
        for i in np.argsort(value, kind="stable"):
            if total + value[i] >= best_total - tol:
                break  # sorted: no later block can do better
            block = int(blocks_here[i])
            search(remaining & ~block, left - 1, total + cost[block], blocks + [block])

    search((1 << n) - 1, min(budget, n), 0.0, [])
    return sorted({int(network[b]) for b in best_blocks})


def _local_search(table: ScoreTable, budget: int, disjoint: bool, restarts: int,
                  seed: int) -> list[int]:
    """Approximate selection for many tasks (see the module docstring)."""
    n = table.num_tasks
    budget = min(budget, n)
    rng = np.random.default_rng(seed)

    def group_cost(mask: int) -> float:
        return float(table.network_scores(mask)[_bits(mask)].sum())

    def agglomerate() -> list[int]:
        groups = [1 << i for i in range(n)]
        while len(groups) > 1:
            best = None
            for a, b in itertools.combinations(range(len(groups)), 2):
                delta = group_cost(groups[a] | groups[b]) - group_cost(groups[a]) \
                    - group_cost(groups[b])
                if best is None or delta < best[0]:
                    best = (delta, a, b)
            assert best is not None
            if len(groups) <= budget and best[0] >= 0:
                break
            _, a, b = best
            groups = [g for k, g in enumerate(groups) if k not in (a, b)] + \
                [groups[a] | groups[b]]
        return groups

    def random_start() -> list[int]:
        label = rng.integers(0, budget, n)
        return [m for m in (sum(1 << t for t in range(n) if label[t] == g)
                            for g in range(budget)) if m]

    def improve(groups: list[int], overlap: bool) -> list[int]:
        cost = _cost(groups, table)
        improved = True
        while improved:
            improved = False
            for task in range(n):
                bit = 1 << task
                without = [m & ~bit for m in groups]
                candidates = [[m for m in without[:g] + [without[g] | bit] + without[g + 1:]
                               if m] for g in range(len(groups)) if groups[g] != bit]
                if len(groups) < budget:
                    candidates.append([m for m in without if m] + [bit])
                if overlap:  # add the task to one more network, or drop one membership
                    for g in range(len(groups)):
                        toggled = list(groups)
                        toggled[g] ^= bit
                        if toggled[g]:
                            candidates.append(toggled)
                for option in candidates:
                    value = _cost(option, table)
                    if value < cost - 1e-12 * max(1.0, abs(cost)):
                        groups, cost, improved = option, value, True
                        break
        return groups

    starts = [agglomerate()] + [random_start() for _ in range(restarts)]
    best: list[int] = []
    best_cost = math.inf
    for start in starts:
        groups = improve(start, overlap=False)
        value = _cost(groups, table)
        if value < best_cost:
            best, best_cost = groups, value
    return best if disjoint else improve(best, overlap=True)


def select_networks(table: ScoreTable, budget: int, disjoint: bool = False,
                    exact_max_tasks: int = EXACT_MAX_TASKS, restarts: int = 20,
                    seed: int = 0) -> Grouping:
    """Choose at most ``budget`` networks minimizing the sum of each task's best score.

    Exact (branch-and-bound over all ``2^T - 1`` networks) for ``T <= exact_max_tasks``,
    else the local-search approximation (``restarts`` seeded random starts besides the
    agglomerative one). ``disjoint`` restricts the choice to partitions of the tasks.
    """
    if budget < 1:
        raise MtrlError(f"--budget must be at least 1, got {budget}")
    n = table.num_tasks
    exact = n <= exact_max_tasks
    if exact:
        masks, scores = table.all_networks()
        picked = _branch_and_bound(masks, scores, budget, disjoint)
    else:
        picked = _local_search(table, budget, disjoint, restarts, seed)
    picked.sort(key=lambda m: (m & -m).bit_length())
    best = np.min([table.network_scores(m) for m in picked], axis=0)
    return Grouping(
        groups=[[table.tasks[t] for t in _bits(m)] for m in picked],
        total_score=float(best.sum()),
        task_scores={table.tasks[t]: float(best[t]) for t in range(n)},
        exact=exact,
    )


def read_json(path: Path) -> Any:
    """The JSON in ``path``; a missing or malformed file is a one-line :class:`MtrlError`."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MtrlError(f"no such file: {path}") from None
    except json.JSONDecodeError as exc:
        raise MtrlError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def select_matrix(data: Mapping[str, Any], kind: str) -> np.ndarray:
    """One matrix of an ``affinity.json``: a kind, or ``lookahead`` / ``cosine`` (the mean of
    its critic and actor matrices)."""
    matrices = data.get("matrices", {})
    if kind in matrices:
        return np.asarray(matrices[kind], dtype=np.float64)
    parts = [f"{kind}_critic", f"{kind}_actor"]
    if all(p in matrices for p in parts):
        return np.mean([np.asarray(matrices[p], dtype=np.float64) for p in parts], axis=0)
    choices = sorted(set(matrices) | {k.rsplit("_", 1)[0] for k in matrices})
    raise MtrlError(f"affinity file has no matrix '{kind}' (choose from {', '.join(choices)})")


def load_table(path: str | Path, matrix: str = "lookahead") -> ScoreTable:
    """A score table from a scores JSON or an affinity JSON (``matrix`` picks the affinity:
    a key of its ``matrices``, or ``lookahead`` / ``cosine`` for the critic-actor mean)."""
    path = Path(path)
    data = read_json(path)
    if isinstance(data, dict) and "matrices" in data:
        return ScoreTable.from_affinity(data.get("tasks", []), select_matrix(data, matrix))
    return ScoreTable.from_json(data, str(path))


def groups_override(path: str | Path) -> str:
    """The ``agent.network.groups=...`` override that trains the groups of an ``mtrl group``
    JSON (``{"groups": [[names], ...], ...}``)."""
    path = Path(path)
    data = read_json(path)
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
        raise MtrlError(f'{path}: expected {{"groups": [[task names], ...]}}')
    return f"agent.network.groups={json.dumps(groups)}"
