"""Policy distillation: the student's losses, the expert-rollout schedule, distilling SB3
experts on the fake env to the experts' success, resume, ``mtrl eval`` of the student, bad
inputs, and a short Meta-World run."""

import json

import numpy as np
import pytest
import torch

from mtrl.agents import load_agent
from mtrl.agents.distill import LabelledBatch, Student
from mtrl.agents.kl import gaussian_kl
from mtrl.cli import main
from mtrl.config import DistillConfig, load_config
from mtrl.training.distill import expert_fraction, format_comparison
from mtrl.training.evaluation import EvalResult
from mtrl.training.logging import read_metrics

from sb3_experts import oracle_expert, untrained_expert

NET = {"type": "multihead", "hidden_sizes": [16], "activation": "relu"}
T = 3


@pytest.fixture(scope="module")
def experts_dir(tmp_path_factory):
    """Oracle SB3 experts for the three fake tasks: ``<dir>/fake-task-<k>/expert.zip``."""
    root = tmp_path_factory.mktemp("experts")
    for k in range(T):
        (root / f"fake-task-{k}").mkdir()
        oracle_expert(root / f"fake-task-{k}" / "expert.zip", T, k)
    return root


def distill_args(experts_dir, *extra):
    return ["mt10_distill", "env.tasks=fake:3", "env.envs_per_task=2", "env.eval_envs_per_task=5",
            f"distill.expert_pattern={experts_dir}/{{task}}",
            "student.network.hidden_sizes=[64,64]", "student.lr=3e-3",
            "replay.batch_per_task=64", "replay.capacity_per_task=5000",
            "train.steps_per_task=400", "train.updates_per_step=2",
            "train.warmup_steps_per_task=20", "distill.expert_rollouts_steps=200",
            "train.eval_every=200", "train.eval_episodes=10", "train.checkpoint_every=200",
            "log.every=100", "log.progress=false", "--device", "cpu", *extra]


def test_student_losses_by_hand():
    student = Student(4, 2, T, NET, loss="kl")
    g = torch.Generator().manual_seed(0)
    obs, task = torch.randn(6, 4, generator=g), torch.arange(T).repeat_interleave(2)
    mean_e, log_std_e = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g) * 0.3
    batch = LabelledBatch(obs, task, mean_e, log_std_e)
    with torch.no_grad():
        mean, log_std = student.action_distribution(obs, task)
    kl = gaussian_kl(mean_e, log_std_e, mean, log_std).view(T, 2).mean(1)
    mse = (torch.tanh(mean) - torch.tanh(mean_e)).pow(2).sum(-1).view(T, 2).mean(1)
    torch.testing.assert_close(student.distill_loss(batch).values().detach(), kl)
    student.loss = "mse"
    torch.testing.assert_close(student.distill_loss(batch).values().detach(), mse)
    metrics = student.update(batch)
    torch.testing.assert_close(metrics["distill_loss_per_task"], mse)
    torch.testing.assert_close(metrics["kl_per_task"], kl)


def test_student_matches_a_gaussian_expert_and_round_trips(tmp_path):
    student = Student(4, 2, 1, NET, lr=1e-2, log_std_min=-5.0)
    obs = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    task = torch.zeros(64, dtype=torch.int64)
    target_mean, target_log_std = obs[:, :2] * 0.5, torch.full((64, 2), -1.0)
    batch = LabelledBatch(obs, task, target_mean, target_log_std)
    first = student.update(batch)["distill_loss"].item()
    for _ in range(300):
        last = student.update(batch)["distill_loss"].item()
    assert last < 0.1 < 1.0 < first  # KL(expert || student): ~1.2 from a fresh std-1 policy, then near 0
    student.save(tmp_path / "student.pt")
    loaded = load_agent(tmp_path / "student.pt")
    np.testing.assert_array_equal(student.act(obs.numpy(), task.numpy(), True),
                                  loaded.act(obs.numpy(), task.numpy(), True))


def test_expert_rollout_schedule_is_linear_then_flat():
    config = load_config("mt10_distill", ["distill.expert_rollouts_start=0.8",
                                          "distill.expert_rollouts_end=0.2",
                                          "distill.expert_rollouts_steps=100"],
                         schema=DistillConfig)
    assert [expert_fraction(config, s) for s in (0, 50, 100, 500)] == \
        pytest.approx([0.8, 0.5, 0.2, 0.2])
    config.distill.expert_rollouts_steps = 0
    assert expert_fraction(config, 0) == 0.2


def test_comparison_table_lists_student_and_expert_per_task():
    student = EvalResult(0.5, {"reach-v3": 1.0, "push-v3": 0.0}, 50, 1000)
    experts = EvalResult(0.75, {"reach-v3": 1.0, "push-v3": 0.5}, 50, 1000)
    lines = format_comparison(student, experts).splitlines()
    assert lines[2].split() == ["reach-v3", "1.000", "1.000"]
    assert lines[3].split() == ["push-v3", "0.000", "0.500"]
    assert lines[5].split() == ["mean", "0.500", "0.750"]
    assert "final evaluation" in lines[6]


def test_distilling_sb3_experts_reaches_their_success(tmp_path, capsys, experts_dir):
    run_dir = tmp_path / "run"
    assert main(["distill", *distill_args(experts_dir), "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    student = json.loads((run_dir / "final_eval.json").read_text())
    experts = json.loads((run_dir / "expert_eval.json").read_text())
    assert experts["success_rate"] == 1.0
    for task, rate in experts["per_task"].items():
        assert student["per_task"][task] >= rate - 0.1, student
        assert task in out
    records = read_metrics(run_dir)
    train = [r for r in records if "train/distill_loss" in r]
    assert train[-1]["train/distill_loss"] < 0.2 * train[0]["train/distill_loss"]
    assert [r["train/expert_fraction"] for r in train] == pytest.approx([0.5, 0.0, 0.0, 0.0])
    assert {"train/kl/fake-task-0", "train/action_mse/fake-task-2",
            "train/distill_loss/fake-task-1"} <= set(train[-1])
    assert "eval/expert_success/fake-task-0" in records[-1]
    assert list(run_dir.glob("events.out.tfevents.*"))
    # `mtrl eval` evaluates the student of a distillation run, reproducing its final result
    assert main(["eval", str(run_dir), "--episodes", "10", "--json", str(tmp_path / "e.json")]) == 0
    again = json.loads((tmp_path / "e.json").read_text())
    assert again["per_task"] == student["per_task"]
    assert main(["eval", str(run_dir), "--policy", "task"]) == 2
    assert "Distral runs" in capsys.readouterr().err


def test_resume_continues_from_the_checkpoint(tmp_path, experts_dir):
    run_dir = tmp_path / "run"
    base = distill_args(experts_dir, "train.steps_per_task=100", "train.eval_every=1000",
                        "train.eval_episodes=2", "train.checkpoint_every=50",
                        "student.network.hidden_sizes=[16]", "distill.evaluate_experts=false",
                        "log.every=50", "--run-dir", str(run_dir))
    assert main(["distill", *base]) == 0
    assert not (run_dir / "expert_eval.json").exists()
    assert main(["distill", *base]) == 2  # the run dir holds a run: --resume or another dir
    assert main(["distill", *base, "--resume", "train.steps_per_task=150"]) == 0
    steps = [r["step"] for r in read_metrics(run_dir) if "train/distill_loss" in r]
    assert steps == [50, 100, 150]
    assert json.loads((run_dir / "final_eval.json").read_text())["step"] == 150
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    # 2 updates per vector step after the warm-up (2 envs per task: 75 vector steps, 10 warm-up)
    assert checkpoint["learner"]["state"]["num_updates"] == 2 * (75 - 10)


def test_bad_experts_fail_in_one_line_before_the_run_dir_is_written(tmp_path, capsys,
                                                                     experts_dir):
    (tmp_path / "junk.zip").write_bytes(b"\x00" * 64)
    wrong = untrained_expert(tmp_path / "wrong.zip", 39, 4)
    cases = [
        ([f"distill.experts.fake-task-0={experts_dir}/fake-task-0", "distill.expert_pattern=null"],
         "no expert for task fake-task-1"),
        ([f"distill.experts.fake-task-1={wrong}"], "do not match the task's 6/2"),
        ([f"distill.experts.fake-task-2={tmp_path / 'junk.zip'}"], "corrupt expert"),
        (["distill.loss=huber"], "distill.loss must be one of kl, mse"),
        (["train.affinity_every=10"], "not distillation"),
    ]
    for extra, message in cases:
        run_dir = tmp_path / "run"
        code = main(["distill", *distill_args(experts_dir, *extra), "--run-dir", str(run_dir)])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err
        assert not run_dir.exists()


def test_short_metaworld_distillation_end_to_end(tmp_path, capsys):
    tasks = ["reach-v3", "push-v3"]
    experts = [f"distill.experts.{t}={untrained_expert(tmp_path / f'{t}.zip', 39, 4, k)}"
               for k, t in enumerate(tasks)]
    run_dir = tmp_path / "run"
    code = main(["distill", "mt10_distill", "--run-dir", str(run_dir), "--device", "cpu",
                 f"env.tasks={','.join(tasks)}", "env.mode=sync", "env.max_episode_steps=40",
                 "env.eval_envs_per_task=2", "distill.expert_pattern=null", *experts,
                 "student.network.hidden_sizes=[32]", "replay.batch_per_task=16",
                 "train.steps_per_task=200", "train.warmup_steps_per_task=40",
                 "distill.expert_rollouts_steps=100", "train.eval_every=100",
                 "train.eval_episodes=2", "train.checkpoint_every=100", "log.every=100",
                 "log.progress=false"])
    assert code == 0
    out = capsys.readouterr().out
    assert "reach-v3" in out and "push-v3" in out
    student = json.loads((run_dir / "final_eval.json").read_text())
    assert set(student["per_task"]) == set(tasks) and student["step"] == 200
    train = [r for r in read_metrics(run_dir) if "train/distill_loss" in r]
    assert train[-1]["train/distill_loss"] < train[0]["train/distill_loss"]
