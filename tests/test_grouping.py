"""Network selection (Standley et al. 2020): exactness, budgets, approximation, JSON formats."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from mtrl.analysis.grouping import ScoreTable, groups_override, network_key, select_networks
from mtrl.cli import main
from mtrl.envs.tasks import resolve_groups
from mtrl.errors import MtrlError


def random_table(n: int, rng: np.random.Generator) -> ScoreTable:
    measured = {1 << i: {i: float(rng.random())} for i in range(n)}
    for i, j in itertools.combinations(range(n), 2):
        measured[(1 << i) | (1 << j)] = {i: float(rng.random()), j: float(rng.random())}
    return ScoreTable([f"t{i}" for i in range(n)], measured)


def brute_force(table: ScoreTable, budget: int, disjoint: bool) -> float:
    masks, scores = table.all_networks()
    full = (1 << table.num_tasks) - 1
    best = math.inf
    for k in range(1, budget + 1):
        for combo in itertools.combinations(range(len(masks)), k):
            chosen = [int(masks[c]) for c in combo]
            if disjoint and sum(bin(m).count("1") for m in chosen) != table.num_tasks:
                continue
            union = 0
            for m in chosen:
                union |= m
            if union == full:
                best = min(best, float(scores[list(combo)].min(0).sum()))
    return best


def clustered_table(n: int, clusters: list[list[int]], alone: float = 0.5) -> ScoreTable:
    """Tasks of one cluster help each other (0.2), tasks of different clusters hurt (0.9)."""
    label = {t: k for k, c in enumerate(clusters) for t in c}
    measured = {1 << i: {i: alone} for i in range(n)}
    for i, j in itertools.combinations(range(n), 2):
        s = 0.2 if label[i] == label[j] else 0.9
        measured[(1 << i) | (1 << j)] = {i: s, j: s}
    return ScoreTable([f"t{i}" for i in range(n)], measured)


@pytest.mark.parametrize("disjoint", [False, True])
@pytest.mark.parametrize("n,budget", [(3, 1), (3, 2), (4, 2), (4, 3), (5, 2), (5, 4), (6, 3),
                                      (8, 2)])
def test_branch_and_bound_equals_brute_force(n: int, budget: int, disjoint: bool) -> None:
    rng = np.random.default_rng(100 * n + budget)
    for _ in range(2):
        table = random_table(n, rng)
        result = select_networks(table, budget, disjoint)
        assert result.exact
        assert len(result.groups) <= budget
        assert result.total_score == pytest.approx(brute_force(table, budget, disjoint),
                                                   abs=1e-9)
        covered = sorted(t for g in result.groups for t in g)
        assert set(covered) == set(table.tasks)
        if disjoint:
            assert len(covered) == n


def test_splitting_beats_one_network_when_the_budget_allows() -> None:
    table = clustered_table(6, [[0, 1, 2], [3, 4, 5]])
    one = select_networks(table, 1)
    assert one.groups == [table.tasks]
    assert one.total_score == pytest.approx(6 * (2 * 0.2 + 3 * 0.9) / 5)
    two = select_networks(table, 2, disjoint=True)
    assert two.groups == [["t0", "t1", "t2"], ["t3", "t4", "t5"]]
    assert two.total_score == pytest.approx(6 * 0.2)
    assert select_networks(table, 2).total_score == pytest.approx(6 * 0.2)


def test_overlapping_networks_serve_tasks_better() -> None:
    # b helps a and c, which hurt each other; b alone is best. With 2 networks, Standley's
    # selection puts b into both {a, b} and {b, c}; a partition cannot do as well.
    names = ["a", "b", "c"]
    data = {"tasks": names, "scores": {
        "a": {"a": 1.0}, "b": {"b": 0.1}, "c": {"c": 1.0},
        "a+b": {"a": 0.2, "b": 0.3}, "b+c": {"b": 0.3, "c": 0.2},
        "a+c": {"a": 1.5, "c": 1.5}}}
    table = ScoreTable.from_json(data)
    overlap = select_networks(table, 2)
    assert overlap.groups == [["a", "b"], ["b", "c"]]
    assert overlap.total_score == pytest.approx(0.2 + 0.3 + 0.2)
    partition = select_networks(table, 2, disjoint=True)
    assert partition.total_score > overlap.total_score
    assert partition.total_score == pytest.approx(brute_force(table, 2, True))


def test_higher_order_approximation_by_hand() -> None:
    data = {"tasks": ["a", "b", "c", "d"], "scores": {
        "a": {"a": 0.5}, "b": {"b": 0.6}, "c": {"c": 0.7}, "d": {"d": 0.8},
        "a+b": {"a": 0.1, "b": 0.2}, "a+c": {"a": 0.3, "c": 0.4},
        "a+d": {"a": 0.9, "d": 0.0}, "b+c": {"b": 0.5, "c": 0.6},
        "b+d": {"b": 0.7, "d": 0.8}, "c+d": {"c": 0.2, "d": 0.4},
        "a+b+d": {"a": 0.05, "b": 0.06, "d": 0.07}}}  # a measured triple wins
    table = ScoreTable.from_json(data)
    abc = table.network_scores(0b0111)
    assert abc[:3] == pytest.approx([(0.1 + 0.3) / 2, (0.2 + 0.5) / 2, (0.4 + 0.6) / 2])
    assert math.isinf(abc[3])
    assert table.network_scores(0b1111) == pytest.approx(
        [(0.1 + 0.3 + 0.9) / 3, (0.2 + 0.5 + 0.7) / 3, (0.4 + 0.6 + 0.2) / 3,
         (0.0 + 0.8 + 0.4) / 3])
    assert table.network_scores(0b1011)[[0, 1, 3]] == pytest.approx([0.05, 0.06, 0.07])
    masks, scores = table.all_networks()
    for mask in (0b0001, 0b0101, 0b0111, 0b1011, 0b1111):
        assert scores[mask - 1] == pytest.approx(table.network_scores(mask))
    pairs = table.pair_matrix()
    assert pairs[0, 1] == 0.2 and pairs[1, 0] == 0.1 and pairs[2, 2] == 0.7


def test_affinity_matrix_becomes_scores() -> None:
    z = np.array([[9.0, 0.4, -0.2], [0.1, 9.0, 0.3], [-0.5, 0.6, 9.0]])
    table = ScoreTable.from_affinity(["a", "b", "c"], z)
    assert table.network_scores(0b001)[0] == 0.0  # alone: no transfer
    assert table.network_scores(0b011)[:2] == pytest.approx([-0.1, -0.4])
    assert table.network_scores(0b111) == pytest.approx(
        [-(0.1 - 0.5) / 2, -(0.4 + 0.6) / 2, -(-0.2 + 0.3) / 2])


def test_score_json_round_trip_and_errors() -> None:
    table = random_table(3, np.random.default_rng(0))
    data = table.to_json()
    assert list(data) == ["tasks", "scores"]
    assert set(data["scores"]) == {"t0", "t1", "t2", "t0+t1", "t0+t2", "t1+t2"}
    assert ScoreTable.from_json(json.loads(json.dumps(data))).measured == table.measured
    assert network_key(["reach-v3", "door-open-v3"]) == "door-open-v3+reach-v3"
    reordered = {"tasks": data["tasks"],
                 "scores": {"+".join(reversed(k.split("+"))): v
                            for k, v in data["scores"].items()}}
    assert ScoreTable.from_json(reordered).measured == table.measured
    missing = {"tasks": data["tasks"],
               "scores": {k: v for k, v in data["scores"].items() if k != "t0+t2"}}
    with pytest.raises(MtrlError, match="t0\\+t2"):
        ScoreTable.from_json(missing)
    with pytest.raises(MtrlError, match="unknown"):
        ScoreTable.from_json({"tasks": ["t0"], "scores": {"t0+zz": {"t0": 1, "zz": 1}}})
    with pytest.raises(MtrlError, match="finite number"):
        ScoreTable.from_json({"tasks": ["t0"], "scores": {"t0": {"t0": "x"}}})
    with pytest.raises(MtrlError, match="exactly its tasks"):
        ScoreTable.from_json({"tasks": ["t0", "t1"], "scores": {"t0+t1": {"t0": 1}}})


@pytest.mark.parametrize("disjoint", [False, True])
def test_budget_is_respected_and_monotone(disjoint: bool) -> None:
    table = random_table(7, np.random.default_rng(3))
    previous = math.inf
    for budget in range(1, 9):
        result = select_networks(table, budget, disjoint)
        assert len(result.groups) <= budget
        assert result.total_score <= previous + 1e-12
        previous = result.total_score
    with pytest.raises(MtrlError):
        select_networks(table, 0)


def test_approximation_beyond_the_exact_limit() -> None:
    clusters = [[0, 3, 6, 9, 12], [1, 4, 7, 10, 13], [2, 5, 8, 11, 14]]
    table = clustered_table(15, clusters)
    result = select_networks(table, 3, disjoint=True)
    assert not result.exact
    assert sorted(result.groups) == sorted([[f"t{t}" for t in c] for c in clusters])
    assert result.total_score == pytest.approx(15 * 0.2)
    # On small random instances the local search stays feasible, within budget, near optimal.
    rng = np.random.default_rng(5)
    for disjoint in (False, True):
        table = random_table(7, rng)
        approx = select_networks(table, 3, disjoint, exact_max_tasks=0)
        exact = select_networks(table, 3, disjoint)
        assert len(approx.groups) <= 3
        assert {t for g in approx.groups for t in g} == set(table.tasks)
        assert exact.total_score - 1e-12 <= approx.total_score <= 1.1 * exact.total_score


def test_resolve_groups() -> None:
    names = ["a", "b", "c"]
    assert resolve_groups([["c", 0], ["1"]], names) == [[0, 2], [1]]
    with pytest.raises(MtrlError, match="more than one group"):
        resolve_groups([[0, 1], [1, 2]], names)
    with pytest.raises(MtrlError, match="in no group: c"):
        resolve_groups([[0, 1]], names)
    with pytest.raises(MtrlError, match="unknown task 'z'"):
        resolve_groups([["z"], [0, 1, 2]], names)


def test_group_command_reads_scores_and_writes_groups(tmp_path, capsys) -> None:
    table = clustered_table(4, [[0, 1], [2, 3]])
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps(table.to_json()))
    out = tmp_path / "groups.json"
    assert main(["group", str(scores), "--budget", "2", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data == {"groups": [["t0", "t1"], ["t2", "t3"]], "total_score": pytest.approx(0.8)}
    assert "--groups" in capsys.readouterr().out
    assert json.loads(groups_override(out).split("=", 1)[1]) == data["groups"]
    # default output next to the input; an affinity file works as input too
    affinity = tmp_path / "affinity.json"
    z = np.full((4, 4), -1.0)
    z[0, 1] = z[1, 0] = z[2, 3] = z[3, 2] = 1.0
    affinity.write_text(json.dumps({"tasks": ["p", "q", "r", "s"], "matrices": {
        "lookahead_critic": z.tolist(), "lookahead_actor": z.tolist()}}))
    assert main(["group", str(affinity), "--budget", "2", "--disjoint"]) == 0
    data = json.loads((tmp_path / "groups_k2.json").read_text())
    assert data["groups"] == [["p", "q"], ["r", "s"]]
    assert data["total_score"] == pytest.approx(-4.0)
    assert main(["group", str(affinity), "--budget", "2", "--matrix", "nope"]) == 2
    assert main(["group", str(tmp_path / "missing.json"), "--budget", "2"]) == 2
    # `mtrl train --groups` checks the file and the grouping before training
    assert main(["train", "mt10_mtmhsac", "env.tasks=fake:4", "--groups", str(out),
                 "--run-dir", str(tmp_path / "run")]) == 2  # t0..t3 are not fake-task names
    assert "unknown task 't0'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
