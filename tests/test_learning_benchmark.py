"""The learning benchmark's statistics and JSON (by hand), and its --quick smoke run."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("learning", ROOT / "benchmarks" / "learning.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["learning"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = load_benchmark()


def test_bootstrap_ci_by_hand():
    assert bench.bootstrap_ci([0.7, 0.7, 0.7]) == pytest.approx((0.7, 0.7))
    # resampled means of [0, 1]: 0, 0.5, 1 with probability 1/4, 1/2, 1/4
    assert bench.bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    low, high = bench.bootstrap_ci([0.2, 0.4, 0.6])
    assert 0.2 <= low < 0.4 < high <= 0.6


def test_report_ratios_by_hand():
    settings = {**bench.SETTINGS, "seeds": 2}
    single, multi = ["a"], ["a", "b"]
    results = {}
    for seed in range(2):
        results[bench.Run("mtrl", ("a",), seed)] = {"per_task": {"a": 0.8}, "seed": seed,
                                                    "seconds": 90.0}
        results[bench.Run("sb3", ("a",), seed)] = {"per_task": {"a": 0.4 + 0.2 * seed},
                                                   "seed": seed, "seconds": 100.0}
        results[bench.Run("sb3", ("b",), seed)] = {"per_task": {"b": 0.5}, "seed": seed,
                                                   "seconds": 100.0}
        results[bench.Run("mtrl", ("a", "b"), seed)] = {"per_task": {"a": 0.6, "b": 0.6},
                                                        "seed": seed, "seconds": 150.0}
    data = bench.report(results, settings, single, multi)
    assert data["single_task"]["a"]["sb3"]["per_seed"] == [0.4, 0.6]
    assert data["single_task_success_ratio_vs_sb3"] == pytest.approx(0.8 / 0.5)
    assert data["wallclock_ratio_vs_sb3"] == pytest.approx(0.9)
    # experts: a 0.5 (mean of 0.4, 0.6), b 0.5 -> 0.5; multi-task 0.6
    assert data["multitask_success_ratio_vs_experts"] == pytest.approx(1.2)
    assert data["multitask_wallclock_ratio_vs_experts"] == pytest.approx(150 / 200)
    assert "| single (vs SB3 SAC) | a | 0.80 [0.80, 0.80] |" in bench.markdown(data)


def test_quick_benchmark_trains_both_libraries_and_writes_the_json(tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--jobs", "1", "--out", str(tmp_path / "runs"),
                       "--suites", "single,multitask", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    for key in ("single_task_success_ratio_vs_sb3", "multitask_success_ratio_vs_experts",
                "wallclock_ratio_vs_sb3"):
        assert key in data
    row = data["single_task"]["reach-v3"]
    assert len(row["mtrl"]["per_seed"]) == len(row["sb3"]["per_seed"]) == 1
    assert row["mtrl"]["seconds"]["mean"] > 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["mtrl_mt2_s0", "mtrl_reach-v3_s0", "sb3_drawer-close-v3_s0", "sb3_reach-v3_s0"]


def test_an_interrupted_mtrl_run_resumes_into_the_uninterrupted_result(tmp_path, monkeypatch):
    """A run killed after its first checkpoint (a snapshot of its directory then) resumes from
    it, ends with the uninterrupted run's success rates and counts its wall-clock once."""
    from test_resume import _snapshot_at_first_checkpoint

    run = bench.Run("mtrl", ("reach-v3",), 0)
    settings = {**bench.SETTINGS, **bench.QUICK}
    with monkeypatch.context() as m:
        _snapshot_at_first_checkpoint(m, tmp_path / "killed" / run.name)
        full = bench.run_one(run, settings, str(tmp_path / "full"))
    assert full["segments"] == 1
    assert not (tmp_path / "killed" / run.name / bench.RESULT_FILE).exists()
    resumed = bench.run_one(run, settings, str(tmp_path / "killed"))
    assert resumed["segments"] == 2
    assert resumed["per_task"] == full["per_task"]
    assert 0 < resumed["seconds"] < 2 * full["seconds"] + 60


@pytest.mark.slow
def test_quick_peer_and_variant_suites(tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--jobs", "2", "--out", str(tmp_path / "runs"),
                       "--suites", "multitask,peer,brc,dtp", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["mtrl-brc_mt2_s0", "mtrl-dtp_mt2_s0", "mtrl-mtsac_mt2_s0", "mtrl_mt2_s0",
                    "sb3-mtsac_mt2_s0", "sb3_drawer-close-v3_s0", "sb3_reach-v3_s0"]
    assert "| multi-task MH-SAC + DTP (vs mtrl MH-SAC) | **mean** |" in bench.markdown(data)
    assert data["brc_wallclock_ratio_vs_multihead"] > 0
    assert data["variants"]["brc"]["overall"]["mtrl_brc"]["per_seed"][0] >= 0
    assert len(data["multitask_peer"]["overall"]["sb3_mtsac"]["per_seed"]) == 1


def test_sb3_mtsac_peer_trains_and_evaluates_every_task(tmp_path):
    settings = {**bench.SETTINGS, **bench.QUICK, "warmup_steps": 20, "steps": 60}
    per_task = bench._train_sb3_mtsac(bench.Run("sb3", ("fake:2",), 0, "mtsac"), settings,
                                      tmp_path)
    assert sorted(per_task) == ["fake-task-0", "fake-task-1"]
    assert all(0.0 <= v <= 1.0 for v in per_task.values())
    final = json.loads((tmp_path / "final_eval.json").read_text())
    assert final["episodes_per_task"] == settings["eval_episodes"]


def test_report_of_the_peer_suite_by_hand():
    settings = {**bench.SETTINGS, "seeds": 2}
    results = {}
    for seed in range(2):
        results[bench.Run("mtrl", ("a", "b"), seed, "mtsac")] = {
            "per_task": {"a": 1.0, "b": 0.2 * seed}, "seed": seed, "seconds": 60.0}
        results[bench.Run("sb3", ("a", "b"), seed, "mtsac")] = {
            "per_task": {"a": 0.5, "b": 0.5}, "seed": seed, "seconds": 80.0}
    data = bench.report(results, settings, [], [], ["a", "b"])
    assert data["single_task"] == {} and data["seeds_done"]["multitask"] == 0
    # mtrl per seed: (1 + 0) / 2, (1 + 0.2) / 2; SB3 0.5 both
    assert data["multitask_peer"]["overall"]["mtrl_mtsac"]["per_seed"] == [0.5, 0.6]
    assert data["multitask_peer_success_ratio_vs_sb3"] == pytest.approx(0.55 / 0.5)
    assert data["multitask_peer_wallclock_ratio_vs_sb3"] == pytest.approx(0.75)
    assert "| multi-task MT-SAC (vs SB3 MT-SAC) | **mean** | 0.55" in bench.markdown(data)


def test_report_of_the_brc_row_by_hand():
    settings = {**bench.SETTINGS, "seeds": 1}
    results = {bench.Run("mtrl", ("a", "b"), 0, "brc"): {"per_task": {"a": 0.9, "b": 0.3},
                                                         "seed": 0, "seconds": 120.0},
               bench.Run("mtrl", ("a", "b"), 0): {"per_task": {"a": 0.6, "b": 0.0}, "seed": 0,
                                                  "seconds": 100.0}}
    data = bench.report(results, settings, [], ["a", "b"])
    assert data["seeds_done"]["multitask"] == 0  # no experts: no multi-task row
    assert data["brc_success_ratio_vs_multihead"] == pytest.approx(0.6 / 0.3)
    assert data["brc_wallclock_ratio_vs_multihead"] == pytest.approx(1.2)
    assert "| multi-task BRC (vs mtrl MH-SAC) | **mean** | 0.60" in bench.markdown(data)
    assert "brc_success_ratio_vs_experts" not in data
    # with the experts of the same seed: BRC 0.6 vs the experts' (0.8 + 0.4) / 2
    results[bench.Run("sb3", ("a",), 0)] = {"per_task": {"a": 0.8}, "seed": 0, "seconds": 50.0}
    results[bench.Run("sb3", ("b",), 0)] = {"per_task": {"b": 0.4}, "seed": 0, "seconds": 50.0}
    data = bench.report(results, settings, [], ["a", "b"])
    assert data["brc_success_ratio_vs_experts"] == pytest.approx(0.6 / 0.6)
    assert data["multitask_success_ratio_vs_experts"] == pytest.approx(0.3 / 0.6)


@pytest.mark.parametrize("variant", sorted(bench.VARIANTS))
def test_every_variant_is_a_valid_config(variant, tmp_path):
    from mtrl.config import load_config

    run = bench.Run("mtrl", tuple(bench.MULTI_TASKS), 0, variant)
    settings = {**bench.SETTINGS, "mtrl_overrides": []}
    if variant == "brc":
        config = bench._brc_config(run, settings)
        assert config.agent.critic_loss == "categorical"
        assert config.train.steps_per_task == settings["steps"]
    else:
        config = load_config(None, [f"env.tasks={','.join(run.tasks)}",
                                    "agent.network.type=multihead", *bench.VARIANTS[variant]])
        if variant == "mtsac":  # the peer suite's algorithm: one-hot MLP, one temperature
            assert config.agent.network.type == "mlp" and config.agent.shared_temperature
        else:
            assert variant in (config.agent.actor_combiner, config.agent.critic_combiner)


def test_sb3_view_of_a_multitask_env_follows_the_vec_env_conventions():
    from mtrl.envs.factory import make_vector_env

    env = make_vector_env("fake:2", 1, seed=0, mode="sync", max_episode_steps=3)
    vec = bench.sb3_multitask_vec_env(env)
    obs = vec.reset()
    assert obs.shape == (2, env.obs_dim + 2)
    assert obs[:, env.obs_dim:].tolist() == [[1, 0], [0, 1]]  # one-hot task ids
    for _ in range(3):
        vec.step_async(np.zeros((2, env.act_dim), np.float32))
        obs, reward, done, infos = vec.step_wait()
    assert done.tolist() == [True, True]  # the time limit: bootstrapped by SB3
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True and "is_success" in info
        assert info["terminal_observation"][env.obs_dim:].tolist() == obs[i, env.obs_dim:].tolist()
    vec.close()
