"""Actor-Mimic's feature regression in distillation (Parisotto et al. 2016): the loss by hand
(batched and per-task-gradient paths, masking of narrower experts, gradient isolation of the
per-task prediction networks), weight 0 is the plain student's update, the feature loss falls
on fixed states, the experts' features (SB3 ``latent_pi``, mtrl output-layer inputs), one-line
errors, and a short run with mtrl experts that logs the feature loss, resumes and round-trips."""

import copy
import json

import numpy as np
import pytest
import torch

from mtrl.agents import SAC, load_agent
from mtrl.agents.distill import FeaturePredictor, LabelledBatch, Student
from mtrl.agents.kl import tanh_gaussian_kl
from mtrl.cli import main
from mtrl.config import DistillConfig, load_config
from mtrl.errors import MtrlError
from mtrl.serialization import atomic_save
from mtrl.training.distill import ExpertLabeller
from mtrl.training.experts import TaskExperts, load_expert
from mtrl.training.logging import read_metrics

from sb3_experts import oracle_expert, untrained_expert

NET = {"type": "multihead", "hidden_sizes": [16], "activation": "relu"}
T = 3
NAMES = [f"fake-task-{k}" for k in range(T)]


def labelled(rows_per_task=2, feature_dims=(5, 3, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    n = T * rows_per_task
    obs, task = torch.randn(n, 4, generator=g), torch.arange(T).repeat_interleave(rows_per_task)
    mean_e, log_std_e = torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g) * 0.3
    features = torch.randn(n, max(feature_dims), generator=g)  # padding left non-zero: masked
    return LabelledBatch(obs, task, mean_e, log_std_e, features)


def by_hand(student, batch, dims, beta):
    """Per-task (total loss, feature error) computed from the student's parts."""
    with torch.no_grad():
        mean, log_std = student.action_distribution(batch.obs, batch.task_id)
        h = student.policy.network.features(batch.obs, batch.task_id)  # MultiHead's trunk
        kl = tanh_gaussian_kl(batch.expert_mean, batch.expert_log_std, mean, log_std)
        layer = student.feature_predictor.layers[0]
        error = torch.empty(len(h))
        for i, t in enumerate(batch.task_id.tolist()):
            prediction = h[i] @ layer.weight[t] + layer.bias[t]
            error[i] = (prediction - batch.expert_features[i])[:dims[t]].pow(2).sum()
    return (kl + beta * error).view(T, -1).mean(1), error.view(T, -1).mean(1)


def test_feature_loss_by_hand_in_both_loss_paths_with_isolated_predictors():
    dims, beta = [5, 3, 5], 0.5
    student = Student(4, 2, T, NET, feature_regression_weight=beta, expert_feature_dims=dims)
    assert student.feature_predictor.layers[0].weight.shape == (T, 16, 5)
    batch = labelled()
    total, error = by_hand(student, batch, dims, beta)
    loss = student.distill_loss(batch)
    torch.testing.assert_close(loss.values().detach(), total)
    torch.testing.assert_close(loss.aux[:, 2].view(T, -1).mean(1), error)
    # the per-task-gradient path (vmap over task blocks) gives the same losses; task k's
    # gradient reaches only slice k of the prediction networks
    losses, grads = student.distill_loss(batch).task_gradients()
    torch.testing.assert_close(losses, total)
    g = grads["feature_predictor.layers.0.weight"]  # (task, T, 16, 5)
    for k in range(T):
        others = [j for j in range(T) if j != k]
        assert g[k, others].abs().max() == 0 and g[k, k].abs().max() > 0
    assert g[1, 1, :, 3:].abs().max() == 0  # task 1's expert has 3 features: padding masked
    metrics = student.update(batch)
    torch.testing.assert_close(metrics["feature_loss_per_task"], error)
    torch.testing.assert_close(metrics["distill_loss_per_task"], total)
    pcgrad = Student(4, 2, T, NET, combiner="pcgrad", feature_regression_weight=beta,
                     expert_feature_dims=dims)
    torch.testing.assert_close(pcgrad.update(batch)["feature_loss_per_task"],
                               by_hand(Student(4, 2, T, NET, feature_regression_weight=beta,
                                               expert_feature_dims=dims), batch, dims, beta)[1])


def test_predictor_with_a_hidden_layer_maps_each_task_block_with_its_own_mlp():
    f = FeaturePredictor(T, 4, [2, 2, 2], hidden=8)
    h, task = torch.randn(6, 4), torch.arange(T).repeat_interleave(2)
    out = f(h, task, 2)
    for i, t in enumerate(task.tolist()):
        a, b = f.layers
        expected = torch.relu(h[i] @ a.weight[t] + a.bias[t]) @ b.weight[t] + b.bias[t]
        torch.testing.assert_close(out[i], expected)


def test_weight_zero_is_the_plain_students_update():
    batch = labelled(rows_per_task=8)
    student = Student(4, 2, T, NET, lr=1e-2, feature_regression_weight=0.0)
    assert student.feature_predictor is None and "feature_predictor" not in student.state_dict()
    # today's update written out: the mean over tasks of the per-task KL, one Adam step
    reference = copy.deepcopy(student.policy)
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2)
    for _ in range(3):
        metrics = student.update(batch)
        mean, log_std = reference(batch.obs, batch.task_id)
        kl = tanh_gaussian_kl(batch.expert_mean, batch.expert_log_std, mean, log_std)
        optimizer.zero_grad()
        kl.view(T, -1).mean(1).mean().backward()
        optimizer.step()
    assert not any(k.startswith("feature_loss") for k in metrics)
    for (name, p), q in zip(student.policy.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, msg=name)
    # a feature-regression student starts from the same policy (its f_i have their own seed)
    mimic = Student(4, 2, T, NET, lr=1e-2, feature_regression_weight=0.1,
                    expert_feature_dims=[5, 5, 5])
    plain = Student(4, 2, T, NET, lr=1e-2)
    for p, q in zip(mimic.policy.parameters(), plain.policy.parameters()):
        torch.testing.assert_close(p, q)


def test_feature_loss_falls_on_fixed_labelled_states(tmp_path):
    g = torch.Generator().manual_seed(3)
    obs = torch.randn(T * 32, 4, generator=g)
    task = torch.arange(T).repeat_interleave(32)
    expert_map = torch.randn(T, 4, 6, generator=g)
    features = torch.relu(torch.einsum("ni,nio->no", obs, expert_map[task]))
    batch = LabelledBatch(obs, task, obs[:, :2] * 0.5, torch.full((T * 32, 2), -1.0), features)
    student = Student(4, 2, T, {**NET, "hidden_sizes": [32, 32]}, lr=1e-2, log_std_min=-5.0,
                      feature_regression_weight=1.0, expert_feature_dims=[6, 6, 6])
    first = student.update(batch)["feature_loss_per_task"]
    for _ in range(300):
        last = student.update(batch)["feature_loss_per_task"]
    assert (last < 0.2 * first).all(), (first, last)
    # save / load round trip: same prediction networks, same next update
    student.save(tmp_path / "student.pt")
    loaded = load_agent(tmp_path / "student.pt")
    for p, q in zip(student.feature_predictor.parameters(),
                    loaded.feature_predictor.parameters()):
        torch.testing.assert_close(p, q)
    torch.testing.assert_close(student.update(batch)["feature_loss_per_task"],
                               loaded.update(batch)["feature_loss_per_task"])


def test_expert_features_sb3_latent_pi_and_mtrl_output_layer_input(tmp_path):
    oracle = load_expert(oracle_expert(tmp_path / "o.zip", T, 0), NAMES[0], 6, 2)  # net_arch []
    wide = load_expert(untrained_expert(tmp_path / "u.zip", 6, 2), NAMES[1], 6, 2)  # [32]
    agent = SAC(6, 2, T, NET, seed=3)
    atomic_save({"learner": {"agent": agent.name, "kwargs": agent.init_kwargs,
                             "state": agent.state_dict()}, "task_names": NAMES},
                tmp_path / "run" / "checkpoint.pt")
    mtrl_expert = load_expert(tmp_path / "run", NAMES[2], 6, 2)
    experts = TaskExperts([oracle, wide, mtrl_expert])
    labeller = ExpertLabeller(experts, 6)
    assert labeller.feature_dims == [6, 32, 16]
    obs = torch.randn(T * 4, 6)
    mean, log_std, features = labeller(obs)
    torch.testing.assert_close((mean, log_std), experts.distribution(obs))
    assert features.shape == (T * 4, 32)
    torch.testing.assert_close(features[:4, :6], obs[:4])  # no hidden layer: the observation
    assert features[:4, 6:].abs().max() == 0
    torch.testing.assert_close(features[4:8], wide.model.policy.actor.latent_pi(obs[4:8]))
    task = torch.full((4,), 2)
    torch.testing.assert_close(features[8:, :16], agent.actor.network.features(obs[8:], task))


def write_mtrl_experts(root, network=NET):
    """One 3-task mtrl SAC checkpoint that serves as every fake task's expert."""
    agent = SAC(6, 2, T, network, seed=3)
    atomic_save({"learner": {"agent": agent.name, "kwargs": agent.init_kwargs,
                             "state": agent.state_dict()}, "task_names": NAMES},
                root / "checkpoint.pt")
    return root


def mimic_args(expert_dir, run_dir, *extra):
    return ["distill", "mt10_distill_actor_mimic", "--run-dir", str(run_dir), "--device", "cpu",
            "env.tasks=fake:3", "env.envs_per_task=2", "env.eval_envs_per_task=2",
            f"distill.expert_pattern={expert_dir}", "student.network.hidden_sizes=[32]",
            "distill.feature_regression_weight=0.1", "student.lr=3e-3",
            "train.updates_per_step=2", "replay.batch_per_task=16",
            "replay.capacity_per_task=1000", "train.steps_per_task=100",
            "train.warmup_steps_per_task=20", "distill.expert_rollouts_steps=50",
            "train.eval_every=1000", "train.eval_episodes=2", "train.checkpoint_every=50",
            "distill.evaluate_experts=false", "log.every=50", "log.progress=false", *extra]


def test_short_distillation_with_mtrl_experts_logs_features_resumes_and_round_trips(tmp_path):
    config = load_config("mt10_distill_actor_mimic", schema=DistillConfig)
    assert config.distill.feature_regression_weight > 0 and config.distill.loss == "kl"
    expert_dir = write_mtrl_experts(tmp_path)
    run_dir = tmp_path / "run"
    assert main(mimic_args(expert_dir, run_dir)) == 0
    assert main(mimic_args(expert_dir, run_dir, "--resume", "train.steps_per_task=150")) == 0
    train = [r for r in read_metrics(run_dir) if "train/distill_loss" in r]
    assert [r["step"] for r in train] == [50, 100, 150]
    assert {f"train/feature_loss/{t}" for t in NAMES} <= set(train[-1])
    assert train[-1]["train/feature_loss/fake-task-0"] < train[0]["train/feature_loss/fake-task-0"]
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    state = checkpoint["learner"]["state"]
    assert state["feature_predictor"]["layers.0.weight"].shape == (T, 32, 16)
    student = load_agent(run_dir / "checkpoint.pt")
    assert student.feature_regression_weight == pytest.approx(0.1)
    for name, value in student.feature_predictor.state_dict().items():
        torch.testing.assert_close(value, state["feature_predictor"][name])
    student.save(tmp_path / "student.pt")
    again = load_agent(tmp_path / "student.pt")
    obs = np.random.default_rng(0).uniform(-1, 1, (6, 6)).astype(np.float32)
    ids = np.repeat(np.arange(T), 2)
    np.testing.assert_array_equal(student.act(obs, ids, True), again.act(obs, ids, True))
    assert main(["eval", str(run_dir), "--episodes", "2", "--json",
                 str(tmp_path / "e.json")]) == 0
    assert set(json.loads((tmp_path / "e.json").read_text())["per_task"]) == set(NAMES)


def test_unreachable_expert_features_fail_in_one_line_before_the_run_dir(tmp_path, capsys):
    (tmp_path / "grouped").mkdir()
    grouped = write_mtrl_experts(tmp_path / "grouped", {**NET, "groups": [[0, 1], [2]]})
    run_dir = tmp_path / "run"
    assert main(mimic_args(grouped, run_dir)) == 2
    err = capsys.readouterr().err
    assert "grouped networks" in err and err.count("\n") == 1, err
    assert not run_dir.exists()
    # weight 0: the same expert distils as before (its features are never read)
    assert main(mimic_args(grouped, run_dir, "distill.feature_regression_weight=0",
                           "train.steps_per_task=40")) == 0
    assert not any("train/feature_loss/fake-task-0" in r for r in read_metrics(run_dir))
    with pytest.raises(MtrlError, match="must be >= 0"):
        Student(4, 2, T, NET, feature_regression_weight=-1.0)
    with pytest.raises(MtrlError, match="feature sizes"):
        Student(4, 2, T, NET, feature_regression_weight=1.0)
    with pytest.raises(MtrlError, match="experts' features"):
        Student(4, 2, T, NET, feature_regression_weight=1.0,
                expert_feature_dims=[2, 2, 2]).update(
            LabelledBatch(*[getattr(labelled(), k) for k in
                            ("obs", "task_id", "expert_mean", "expert_log_std")]))
