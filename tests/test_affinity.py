"""Online task affinity (Fifty et al. 2021) and pairwise training (Standley et al. 2020)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn

from mtrl.analysis.affinity import (
    AFFINITY_FILE,
    HISTORY_FILE,
    AffinityTracker,
    lookahead_affinity,
    measure_affinity,
    pair_runs,
    round_robin,
)
from mtrl.agents import SAC
from mtrl.cli import main
from mtrl.data import MultiTaskReplay
from mtrl.training.logging import read_metrics
from mtrl.optim import TaskLoss
from mtrl.training.loop import train

from conftest import fake_config

TINY = [  # a few seconds per run on the fake env
    "train.steps_per_task=160", "train.warmup_steps_per_task=60", "train.eval_every=1000",
    "train.eval_episodes=2", "train.checkpoint_every=1000", "log.every=40",
    "env.eval_envs_per_task=2", "replay.batch_per_task=16", "agent.network.hidden_sizes=[16]",
]


def quadratic_loss(centers: torch.Tensor, theta: torch.Tensor, head: torch.Tensor,
                   rows: int = 3) -> TaskLoss:
    """Task t: ``0.5 |theta - c_t|^2 + 1 + 0.5 (h_t - 1)^2``; ``h`` is a per-task parameter."""
    num_tasks = centers.shape[0]
    params = {"theta": nn.Parameter(theta.clone()), "head": nn.Parameter(head.clone())}
    task = torch.arange(num_tasks).repeat_interleave(rows)

    def row_loss(p: dict[str, torch.Tensor], c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * (p["theta"] - c).pow(2).sum(-1) + 1.0 + 0.5 * (p["head"][t] - 1.0) ** 2

    return TaskLoss(row_loss, params, (centers[task], task), num_tasks, ["head"])


def test_lookahead_matches_the_formula_on_a_quadratic() -> None:
    centers = torch.tensor([[1.0, 0.0], [0.5, 2.0], [-1.0, -0.5]])
    theta, head, lr = torch.tensor([0.2, -0.3]), torch.tensor([0.0, 2.0, 1.5]), 0.1
    z, cosine = lookahead_affinity(quadratic_loss(centers, theta, head), lr)

    def loss(j: int, th: torch.Tensor) -> float:
        return float(0.5 * (th - centers[j]).pow(2).sum() + 1.0 + 0.5 * (head[j] - 1.0) ** 2)

    for i, j in itertools.product(range(3), range(3)):
        moved = theta - lr * (theta - centers[i])  # only the shared parameter steps
        expected = 1.0 - loss(j, moved) / loss(j, theta)
        assert z[i, j].item() == pytest.approx(expected, rel=1e-4, abs=1e-7)
    g = theta - centers
    expected_cos = (g @ g.T) / (g.norm(dim=1)[:, None] * g.norm(dim=1)[None, :])
    assert torch.allclose(cosine, expected_cos, atol=1e-6)


def test_identical_tasks_attract_and_opposed_tasks_repel() -> None:
    centers = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    z, cosine = lookahead_affinity(quadratic_loss(centers, torch.zeros(2), torch.ones(3)), 0.1)
    assert z[0, 1] > 0 and z[1, 0] > 0 and z[0, 1] == pytest.approx(z[0, 0].item())
    assert z[0, 2] < 0 and z[2, 0] < 0 and z[1, 2] < 0
    assert cosine[0, 1] == pytest.approx(1.0) and cosine[0, 2] == pytest.approx(-1.0)


def filled_replay(num_tasks: int = 3, seed: int = 0) -> MultiTaskReplay:
    replay = MultiTaskReplay(num_tasks, 200, 6, 2)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        n = 2 * num_tasks
        replay.add(rng.normal(size=(n, 6)), rng.uniform(-1, 1, (n, 2)), rng.normal(size=n),
                   rng.normal(size=(n, 6)), np.zeros(n), np.repeat(np.arange(num_tasks), 2))
    return replay


def make_agent(groups: list | None = None) -> SAC:
    network = {"type": "multihead", "hidden_sizes": [32, 32], "activation": "relu",
               "groups": groups or []}
    return SAC(6, 2, 3, network=network, seed=0)


def test_sac_affinity_shapes_symmetry_and_no_side_effects() -> None:
    agent = make_agent()
    batch = filled_replay().sample(16)
    before = {k: v.clone() for k, v in agent.critic.state_dict().items()}
    noise = agent.generator.get_state()
    values = measure_affinity(agent, batch)
    assert set(values) == {"lookahead_critic", "lookahead_actor", "cosine_critic",
                           "cosine_actor"}
    for kind, matrix in values.items():
        assert matrix.shape == (3, 3) and torch.isfinite(matrix).all(), kind
    for kind in ("cosine_critic", "cosine_actor"):
        assert torch.allclose(values[kind], values[kind].T, atol=1e-6)
        assert torch.allclose(values[kind].diagonal(), torch.ones(3), atol=1e-5)
    assert (values["lookahead_critic"].diagonal() > 0).all()  # a task's own step helps it
    assert torch.equal(agent.generator.get_state(), noise)
    assert all(torch.equal(v, agent.critic.state_dict()[k]) for k, v in before.items())


def test_grouped_agent_has_zero_affinity_across_groups() -> None:
    values = measure_affinity(make_agent([[0, 2], [1]]), filled_replay().sample(16))
    for matrix in values.values():
        for i, j in ((0, 1), (1, 0), (1, 2), (2, 1)):
            assert matrix[i, j] == 0
        assert matrix[0, 2] != 0


def test_tracker_averages_and_drops_measurements_after_a_resume_point(tmp_path) -> None:
    agent, replay = make_agent(), filled_replay()
    tracker = AffinityTracker(tmp_path, ["a", "b", "c"], 8, seed=1)
    measured = [tracker.measure(agent, replay, step) for step in (10, 20, 30)]
    data = json.loads((tmp_path / AFFINITY_FILE).read_text())
    assert data["tasks"] == ["a", "b", "c"] and data["measurements"] == 3
    assert (data["first_step"], data["last_step"]) == (10, 30)
    mean = np.mean([m["lookahead_critic"] for m in measured], axis=0)
    assert np.allclose(data["matrices"]["lookahead_critic"], mean)
    assert (tmp_path / "affinity.png").stat().st_size > 0
    resumed = AffinityTracker(tmp_path, ["a", "b", "c"], 8, seed=1, resume_step=20)
    assert resumed.steps == [10, 20]
    assert len((tmp_path / HISTORY_FILE).read_text().splitlines()) == 2
    assert np.allclose(resumed.matrices()["cosine_actor"],
                       np.mean([m["cosine_actor"] for m in measured[:2]], axis=0))
    assert AffinityTracker(tmp_path, ["a", "b", "c"], 8).steps == []  # a fresh run


@pytest.mark.parametrize("num_tasks", [2, 3, 4, 5, 6, 7])
def test_round_robin_meets_every_pair_once(num_tasks: int) -> None:
    rounds = round_robin(num_tasks)
    pairs = [tuple(g) for r in rounds for g in r if len(g) == 2]
    assert sorted(pairs) == list(itertools.combinations(range(num_tasks), 2))
    for groups in rounds:
        assert sorted(t for g in groups for t in g) == list(range(num_tasks))
    byes = sorted(g[0] for r in rounds for g in r if len(g) == 1)
    runs = pair_runs(num_tasks)
    if num_tasks % 2:  # each task sits out alone exactly once: its single-task score
        assert byes == list(range(num_tasks)) and len(runs) == num_tasks
    else:
        assert byes == [] and runs[0] == ("singles", [[t] for t in range(num_tasks)])
        assert len(runs) == num_tasks


def test_grouped_training_run_with_online_affinity(run_dir) -> None:
    config = fake_config(*TINY, "agent.network.groups=[[fake-task-0,fake-task-2],[1]]",
                         "train.affinity_every=40")
    result = train(config, run_dir)
    assert set(result.per_task) == {"fake-task-0", "fake-task-1", "fake-task-2"}
    data = json.loads((run_dir / AFFINITY_FILE).read_text())
    assert data["tasks"] == list(result.per_task)
    assert data["measurements"] == 3 and data["last_step"] == 160  # at 80, 120, 160
    for kind, matrix in data["matrices"].items():
        matrix = np.asarray(matrix)
        assert matrix.shape == (3, 3) and np.isfinite(matrix).all(), kind
        assert matrix[0, 1] == matrix[1, 0] == matrix[1, 2] == matrix[2, 1] == 0, kind
    assert (run_dir / "affinity.png").exists()
    logged = [r for r in read_metrics(run_dir) if "affinity/cosine_actor/fake-task-2" in r]
    assert [r["step"] for r in logged] == [80, 120, 160]


def test_pairs_command_writes_scores_that_group_reads(tmp_path, capsys) -> None:
    out = tmp_path / "pairs"
    overrides = [o for o in TINY if not o.startswith("train.steps_per_task")]
    code = main(["affinity", "pairs", "mt10_mtmhsac", "--tasks", "fake:3", "--out", str(out),
                 "--steps-per-task", "100", "--score", "return", "log.progress=false",
                 "env.envs_per_task=2", *overrides])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["round-01", "round-02", "round-03",
                                                      "scores.json", "scores.png"]
    data = json.loads((out / "scores.json").read_text())
    names = ["fake-task-0", "fake-task-1", "fake-task-2"]
    assert data["tasks"] == names
    expected = {*names, "fake-task-0+fake-task-1", "fake-task-0+fake-task-2",
                "fake-task-1+fake-task-2"}
    assert set(data["scores"]) == expected
    for key, entry in data["scores"].items():
        assert set(entry) == set(key.split("+"))
        assert all(0 < v <= 1 for v in entry.values())  # -return / max |return|
    assert main(["group", str(out / "scores.json"), "--budget", "2", "--disjoint"]) == 0
    groups = json.loads((out / "groups_k2.json").read_text())
    assert set(groups) == {"groups", "total_score"} and len(groups["groups"]) <= 2
    assert sorted(t for g in groups["groups"] for t in g) == names
    # a second call reuses the finished runs
    assert main(["affinity", "pairs", "mt10_mtmhsac", "--tasks", "fake:3", "--out", str(out),
                 "--steps-per-task", "100", "--score", "return", "env.envs_per_task=2",
                 *overrides]) == 0
    assert json.loads((out / "scores.json").read_text()) == data
