"""Benchmark helpers measure what they say (no timing assertions)."""

import os

from mtrl.training import bench


def test_tree_rss_counts_this_process():
    rss = bench._tree_rss_bytes(os.getpid())
    assert 10 * 2**20 < rss < 64 * 2**30


def test_update_flops_match_the_networks_matmuls():
    """FLOPs per update of a 1-hidden-layer multi-head SAC, counted by hand."""
    T, b, h, obs, act = 2, 4, 8, 39, 4
    n = T * b
    result = bench.mtrl_update_seconds(T, batch_per_task=b, hidden_sizes=(h,), repeats=1,
                                       obs_dim=obs, act_dim=act)
    # matmul FLOPs (2 * rows * in * out); backward costs 2x forward for weights+inputs
    actor_fwd = 2 * n * (obs * h + h * 2 * act)
    critic_fwd = 2 * 2 * n * ((obs + act) * h + h * 1)  # twin critics
    target = actor_fwd + critic_fwd  # next action + target critics (no grad)
    critic_step = 3 * critic_fwd - 2 * 2 * n * (obs + act) * h  # no grad wrt critic inputs
    actor_step = 3 * actor_fwd - 2 * n * obs * h + 3 * critic_fwd - 2 * 2 * n * obs * h
    # actor step: critic forward + backward to its action input only (weights are constants)
    actor_step -= 2 * 2 * n * ((obs + act) * h + h)  # no critic weight gradients
    expected = target + critic_step + actor_step
    assert abs(result["flops"] - expected) / expected < 0.35
    assert result["seconds"] > 0


def test_format_suite_lists_every_figure():
    text = bench.format_suite({"device": "cpu", "update_vs_sb3": 1.5})
    assert "update_vs_sb3" in text and "1.500" in text


def test_evaluation_seconds_times_one_full_evaluation(monkeypatch):
    """The figure is the clock around exactly one evaluation (every task's episodes) and
    nothing else."""
    import types

    import mtrl.training.evaluation as evaluation

    clock = iter([100.0, 103.5])
    calls = []
    real_evaluate = evaluation.evaluate

    def recorded(policy, env, episodes, **kwargs):
        calls.append((env.num_tasks, episodes))
        return real_evaluate(policy, env, episodes, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", recorded)
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    seconds = bench.evaluation_seconds("fake:2", episodes=2, envs_per_task=1, max_episode_steps=5)
    assert seconds == 3.5 and calls == [(2, 2)]


def test_single_task_update_comparison_times_both_libraries(monkeypatch):
    """Alternating rounds, mtrl first, each timed in CPU time; per library the median round
    per update. A fake clock gives mtrl rounds of 2 and 4 s and SB3 rounds of 6 and 8 s for
    2 updates each (the warm-up rounds read no clock)."""
    import types

    clock = iter([0.0, 2.0, 2.0, 8.0, 8.0, 12.0, 12.0, 20.0])
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(process_time=lambda: next(clock)))
    result = bench.single_task_update_seconds(repeats=2, rounds=2, hidden_sizes=(8,),
                                              batch=16)
    assert result == {"mtrl_seconds": 1.5, "sb3_seconds": 3.5}
