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
                       "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    for key in ("single_task_success_ratio_vs_sb3", "multitask_success_ratio_vs_experts",
                "wallclock_ratio_vs_sb3"):
        assert key in data
    row = data["single_task"]["reach-v3"]
    assert len(row["mtrl"]["per_seed"]) == len(row["sb3"]["per_seed"]) == 1
    assert row["mtrl"]["seconds"]["mean"] > 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["mtrl-mtsac_mt2_s0", "mtrl_mt2_s0", "mtrl_reach-v3_s0", "sb3-mtsac_mt2_s0",
                    "sb3_drawer-close-v3_s0", "sb3_reach-v3_s0"]
    assert "multitask_peer_wallclock_ratio_vs_sb3" in data
    assert len(data["multitask_peer"]["overall"]["sb3_mtsac"]["per_seed"]) == 1


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
