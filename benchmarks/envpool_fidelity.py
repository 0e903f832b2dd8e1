"""Does EnvPool's Meta-World v3 agree with Meta-World's? Task by task, with scripted policies.

For every task, Meta-World's scripted policy (``metaworld.policies.ENV_POLICY_MAP``) runs
``--episodes`` episodes in each backend through mtrl's vector envs (``MetaWorldVectorEnv`` on
its seeded goals, ``EnvPoolVectorEnv`` on EnvPool's sampled goals), official protocol (an
episode succeeds if ``success`` is set at any step; it stops there; horizon 500):

* success rates must agree within binomial noise (two-sided Fisher exact test, ``p >= alpha``);
* observation layout and reward scale are reported (per-step reward range, observation
  range of the goal dims);
* same states (``--matched-episodes`` per task): EnvPool's first observation is mapped back
  to Meta-World's ``rand_vec`` (the object / goal positions it shows), a fresh Meta-World env
  is reset to it, and both are stepped with the same scripted actions; per-step rewards are
  compared while the positions stay within ``STATE_TOL`` of each other (95th percentile of
  the difference <= ``REWARD_TOL``). Where the map fails (a ``rand_vec`` entry that no
  observation shows) the task is reported as unmatched, not as a disagreement.

A task agrees if both its success rate and its same-state rewards agree.

Prints one JSON line per task and a summary line; ``--markdown FILE`` writes the table.
Usage: ``python benchmarks/envpool_fidelity.py [--tasks MT50] [--episodes 10] [--speed]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mtrl.envs import EnvPoolVectorEnv, MetaWorldVectorEnv, resolve_tasks  # noqa: E402

STATE_TOL = 1e-3  # states closer than this (max abs obs difference) count as the same state
REWARD_TOL = 0.1  # per-step reward difference allowed on the same state (1% of the 0..10 scale)
MATCH_TOL = 1e-2  # states closer than this after the first step: the start is matched
STATE_DIMS = [0, 1, 2, 3, 4, 5, 6, 11, 12, 13, 36, 37, 38]  # hand, gripper, object and goal xyz


def fisher_exact_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher exact test p-value for successes ``k1 / n1`` vs ``k2 / n2``."""
    total, successes = n1 + n2, k1 + k2

    def prob(k: int) -> float:
        return math.comb(successes, k) * math.comb(total - successes, n1 - k) / \
            math.comb(total, n1)

    observed = prob(k1)
    lo, hi = max(0, successes - n2), min(successes, n1)
    return min(1.0, sum(p for k in range(lo, hi + 1) if (p := prob(k)) <= observed * (1 + 1e-9)))


def scripted_rollouts(env: Any, task: str, episodes: int, horizon: int,
                      goal_index: np.ndarray | None) -> dict[str, Any]:
    """``episodes`` scripted-policy episodes (one per env) of a one-task vector env."""
    from metaworld.policies import ENV_POLICY_MAP

    policy = ENV_POLICY_MAP[task]()
    env.set_autoreset(False)
    env.set_terminate_on_success(True)
    obs = env.reset(goal_index=goal_index) if goal_index is not None else env.reset()
    running = np.ones(env.num_envs, bool)
    succeeded = np.zeros(env.num_envs, bool)
    rewards: list[np.ndarray] = []
    goal_obs = [obs[:, 36:39].copy()]
    actions = np.zeros((env.num_envs, env.act_dim), np.float32)
    for _ in range(horizon):
        for i in np.flatnonzero(running):
            actions[i] = policy.get_action(obs[i].astype(np.float64))
        result = env.step(actions, mask=running)
        rewards.append(result.reward[running])
        succeeded |= result.success & running
        running &= ~result.done
        obs = result.obs
        if not running.any():
            break
    reward = np.concatenate(rewards)
    return {
        "successes": int(succeeded.sum()),
        "episodes": int(env.num_envs),
        "reward": [round(float(reward.min()), 3), round(float(reward.max()), 3)],
        "reward_mean": round(float(reward.mean()), 3),
        "goal_range": [np.round(np.concatenate(goal_obs).min(0), 3).tolist(),
                       np.round(np.concatenate(goal_obs).max(0), 3).tolist()],
    }


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    """Raise TimeoutError after ``seconds`` (Meta-World's resets loop forever on some inputs)."""
    def handler(*_: Any) -> None:
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, handler)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _raw_metaworld(task: str) -> Any:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    env = ALL_V3_ENVIRONMENTS[task](reward_function_version="v2")
    env.seed(0)
    env._partially_observable = False
    with contextlib.suppress(AttributeError):
        del env.sawyer_observation_space  # recomputed for the observable goal
    env._set_task_called = True
    env.max_path_length = sys.maxsize
    return env


def rand_vec_map(task: str, samples: int = 4) -> list[tuple[str, int, float]]:
    """How each ``rand_vec`` entry shows in the first observation: ``("obs", j, c)`` (entry =
    ``obs[j] - c``), ``("const", -1, v)`` (fixed range) or ``("hidden", -1, mid)``."""
    env = _raw_metaworld(task)
    env._freeze_rand_vec, env.seeded_rand_vec = False, True
    obs, vecs = [], []
    for _ in range(samples):
        obs.append(env.reset()[0])
        vecs.append(np.array(env._last_rand_vec, float))
    env.close()
    obs_a, vec_a = np.array(obs), np.array(vecs)
    low, high = env._random_reset_space.low, env._random_reset_space.high
    mapping = []
    for k in range(vec_a.shape[1]):
        if high[k] - low[k] < 1e-12:
            mapping.append(("const", -1, float(low[k])))
            continue
        for j in [j for j in range(39) if not 18 <= j < 36]:
            offset = obs_a[:, j] - vec_a[:, k]
            if np.ptp(offset) < 1e-9 and np.ptp(vec_a[:, k]) > 1e-6:
                mapping.append(("obs", j, float(offset[0])))
                break
        else:
            mapping.append(("hidden", -1, float((low[k] + high[k]) / 2)))
    return mapping


def matched_rollout(task: str, seed: int, steps: int = 150) -> dict[str, Any]:
    """Reset Meta-World to EnvPool's first state, step both with the same (scripted) actions
    and compare per-step rewards while the states stay the same.

    States are compared on :data:`STATE_DIMS` (positions; resting objects' quaternions jitter
    at 1e-3 in both). ``reset_obs_diff`` is the first observations' difference (all dims);
    the start is matched if the states agree after the first step (Meta-World's first
    observation of a few tasks is stale, e.g. window-close's handle). ``reward_diffs`` are the
    per-step |reward differences| on same-state steps; ``components`` counts the steps where
    an ``info`` reward term differs by more than :data:`REWARD_TOL`.
    """
    import envpool
    from metaworld.policies import ENV_POLICY_MAP

    from mtrl.envs.envpool_env import envpool_task_id

    mapping = rand_vec_map(task)
    pool = envpool.make_gymnasium(envpool_task_id(task), num_envs=1, env_seed=[seed],
                                  partially_observable=False, max_episode_steps=2**31 - 1)
    ep_obs = pool.reset()[0][0]
    rand_vec = np.array([ep_obs[j] - c if kind == "obs" else c for kind, j, c in mapping])
    out: dict[str, Any] = {"hidden_rand_vec": sum(kind == "hidden" for kind, _, _ in mapping),
                           "matched": False, "reset_obs_diff": None}
    env = _raw_metaworld(task)
    env._freeze_rand_vec = True
    env._last_rand_vec = rand_vec
    try:
        try:
            with _time_limit(5):
                mw_obs = env.reset()[0]
        except TimeoutError:  # a rejection-sampling loop that the inferred rand_vec never leaves
            return out
        diff = np.abs(mw_obs - ep_obs)
        out["reset_obs_diff"] = round(float(diff.max()), 6)
        out["reset_obs_diff_dims"] = np.flatnonzero(diff > STATE_TOL).tolist()
        policy = ENV_POLICY_MAP[task]()
        reward_diffs: list[float] = []
        components: dict[str, int] = {}
        success_diff = 0
        for t in range(steps):
            action = np.clip(policy.get_action(mw_obs), -1, 1).astype(np.float32)
            mw_obs, r_mw, _, _, info = env.step(action)
            ep, r_ep, _, _, ep_info = pool.step(action[None])
            ep_obs = ep[0]
            state_diff = float(np.abs(mw_obs - ep_obs)[STATE_DIMS].max())
            if t == 0:
                out["first_step_state_diff"] = round(state_diff, 6)
                out["matched"] = state_diff < MATCH_TOL
            if state_diff > STATE_TOL:
                break
            reward_diffs.append(round(abs(float(r_mw) - float(r_ep[0])), 5))
            success_diff += int(bool(info["success"]) != bool(ep_info["success"][0] > 0.5))
            for key in ("grasp_reward", "in_place_reward", "near_object", "obj_to_target"):
                if key in ep_info and abs(float(info[key]) - float(ep_info[key][0])) > REWARD_TOL:
                    components[key] = components.get(key, 0) + 1
        out.update(same_state_steps=len(reward_diffs), reward_diffs=reward_diffs,
                   success_flag_diffs=success_diff, components=components)
    finally:
        env.close()
        pool.close()
    return out


def summarize_matched(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool :func:`matched_rollout` episodes: ``matched`` (any), same-state steps, reward
    difference max and 95th percentile (robust to a step where one side crosses a reward
    threshold, e.g. the jump to 10 at success), differing reward terms."""
    diffs = [d for e in episodes if e["matched"] for d in e["reward_diffs"]]
    components: dict[str, int] = {}
    for e in episodes:
        for key, count in e.get("components", {}).items():
            components[key] = components.get(key, 0) + count
    return {
        "episodes": len(episodes),
        "matched": sum(e["matched"] for e in episodes),
        "reset_obs_diff": max((e["reset_obs_diff"] for e in episodes
                               if e["reset_obs_diff"] is not None), default=None),
        "reset_obs_diff_dims": sorted({d for e in episodes
                                       for d in e.get("reset_obs_diff_dims", [])}),
        "same_state_steps": len(diffs),
        "reward_diff_max": round(max(diffs), 4) if diffs else None,
        "reward_diff_p95": round(float(np.percentile(diffs, 95)), 4) if diffs else None,
        "success_flag_diffs": sum(e.get("success_flag_diffs", 0) for e in episodes),
        "components": components,
    }


def classify(row: dict[str, Any], alpha: float = 0.01) -> dict[str, Any]:
    """Add the verdicts to a row: ``success_agree`` (Fisher p >= ``alpha``), ``reward_agree``
    (None where states could not be matched) and ``agree`` (both, None counting as yes)."""
    k1, k2, n = row["metaworld"]["successes"], row["envpool"]["successes"], row["episodes"]
    row["success_p"] = round(fisher_exact_p(k1, n, k2, n), 4)
    row["success_agree"] = row["success_p"] >= alpha
    m = row["matched"]
    row["reward_agree"] = None if not m["same_state_steps"] else \
        m["reward_diff_p95"] <= REWARD_TOL
    row["agree"] = bool(row["success_agree"] and row["reward_agree"] is not False)
    reasons = []
    if not row["success_agree"]:
        reasons.append(f"scripted success {k1}/{n} in Meta-World vs {k2}/{n} in EnvPool")
    if row["envpool"]["reward"] == [0.0, 0.0] and row["metaworld"]["reward"][1] > 0:
        reasons.append("EnvPool's reward is always 0")
    elif row["reward_agree"] is False:
        terms = ", ".join(sorted(m["components"], key=m["components"].get, reverse=True))
        reasons.append(f"reward differs on the same state (p95 {m['reward_diff_p95']:.2g}"
                       + (f"; in {terms}" if terms else "") + ")")
    row["reason"] = "; ".join(reasons)
    return row


def compare_task(task: str, episodes: int = 10, seed: int = 0, horizon: int = 500,
                 alpha: float = 0.01, matched_episodes: int = 3) -> dict[str, Any]:
    """One row of the fidelity table (see the module docstring)."""
    row: dict[str, Any] = {"task": task, "episodes": episodes}
    start = time.perf_counter()
    mw = MetaWorldVectorEnv(task, episodes, seed=seed, mode="sync", max_episode_steps=horizon)
    try:
        goals = np.arange(episodes) % mw.num_goals
        row["metaworld"] = scripted_rollouts(mw, task, episodes, horizon, goals)
    finally:
        mw.close()
    ep = EnvPoolVectorEnv(task, episodes, seed=seed, max_episode_steps=horizon, num_threads=1)
    try:
        row["envpool"] = scripted_rollouts(ep, task, episodes, horizon, None)
    finally:
        ep.close()
    row["matched"] = summarize_matched(
        [matched_rollout(task, seed + k) for k in range(matched_episodes)])
    classify(row, alpha)
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def measure_speed(tasks: str = "MT10", steps: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Env steps per second, random actions, one env per task: the Python collector
    (``MetaWorldVectorEnv``, worker processes) vs ``EnvPoolVectorEnv``, same run."""
    out: dict[str, Any] = {"tasks": tasks, "steps": steps}
    for name, make in (("metaworld", lambda: MetaWorldVectorEnv(tasks, 1, seed=seed)),
                       ("envpool", lambda: EnvPoolVectorEnv(tasks, 1, seed=seed))):
        env = make()
        try:
            rng = np.random.default_rng(0)
            actions = rng.uniform(-1, 1, (steps, env.num_envs, env.act_dim)).astype(np.float32)
            env.reset()
            for t in range(20):  # warm up
                env.step(actions[t])
            start = time.perf_counter()
            for t in range(steps):
                env.step(actions[t])
            out[f"{name}_steps_per_s"] = round(env.num_envs * steps / (time.perf_counter() - start))
        finally:
            env.close()
    out["ratio"] = round(out["envpool_steps_per_s"] / out["metaworld_steps_per_s"], 2)
    return out


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The table as markdown."""
    lines = [
        "# EnvPool vs Meta-World v3: scripted-policy fidelity",
        "",
        f"Command: `{meta['command']}` ({meta['date']}; envpool {meta['envpool']}, "
        f"metaworld {meta['metaworld']}; one CPU core).",
        "",
        "* **Success**: Meta-World's scripted policy, official protocol, N episodes per backend "
        "(Meta-World: its seeded goals 0..N-1; EnvPool: its sampled goals); agrees if Fisher's "
        f"exact p >= {meta['alpha']}.",
        "* **Reward range**: min..max per-step reward over those episodes.",
        "* **Same state**: Meta-World reset to the object / goal positions of EnvPool's first "
        "observation, both stepped with the same scripted actions; *matched* counts episodes "
        f"whose positions agree within {MATCH_TOL} after the first step (in brackets: the first "
        f"observations' max difference and the dims above {STATE_TOL}); *steps* counts the "
        f"steps while positions stay within {STATE_TOL}; *reward diff* is the 95th percentile "
        f"/ max of |reward difference| on those steps (agrees if the 95th percentile <= "
        f"{REWARD_TOL}, i.e. 1% of the reward scale; a single step can differ where one side "
        "crosses a reward threshold).",
        "",
        "| task | success MW | success EP | p | reward MW | reward EP | matched | steps "
        "| reward diff p95 / max | agree | why not |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m, a, b = r["matched"], r["metaworld"], r["envpool"]
        matched = f"{m['matched']}/{m['episodes']}"
        if m["reset_obs_diff"] is not None:
            matched += f" ({m['reset_obs_diff']:.1g}"
            matched += f", dims {m['reset_obs_diff_dims']})" if m["reset_obs_diff_dims"] else ")"
        diff = "-" if m["reward_diff_p95"] is None else \
            f"{m['reward_diff_p95']:.3g} / {m['reward_diff_max']:.3g}"
        lines.append(
            f"| {r['task']} | {a['successes']}/{a['episodes']} | {b['successes']}/{b['episodes']} "
            f"| {r['success_p']:.2g} | {a['reward'][0]:.2f}..{a['reward'][1]:.2f} | "
            f"{b['reward'][0]:.2f}..{b['reward'][1]:.2f} | {matched} | {m['same_state_steps']} "
            f"| {diff} | {'yes' if r['agree'] else '**no**'} | {r['reason']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="MT50")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--matched-episodes", type=int, default=3)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--speed", action="store_true", help="also measure env steps/s (MT10)")
    parser.add_argument("--rescore", type=Path, default=None,
                        help="re-judge the JSON lines of an earlier run instead of running")
    args = parser.parse_args(argv)
    import envpool
    import metaworld

    rows = []
    command = "python benchmarks/envpool_fidelity.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    if args.rescore is not None:
        for line in args.rescore.read_text().splitlines():
            with contextlib.suppress(ValueError):
                row = json.loads(line)
                if "task" in row:
                    rows.append(classify(row, args.alpha))
                command = row.get("command", command)
    else:
        print(json.dumps({"command": command}), flush=True)
        for task in resolve_tasks(args.tasks):
            row = compare_task(task, args.episodes, args.seed, alpha=args.alpha,
                               matched_episodes=args.matched_episodes)
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary: dict[str, Any] = {
        "tasks": len(rows),
        "disagree": {r["task"]: r["reason"] for r in rows if not r["agree"]},
        "unmatched": [r["task"] for r in rows if not r["matched"]["matched"]],
    }
    if args.speed:
        summary["speed"] = measure_speed()
    print(json.dumps({"summary": summary}), flush=True)
    if args.markdown is not None:
        meta = {"command": command, "date": time.strftime("%Y-%m-%d"), "envpool": envpool.__version__,
                "metaworld": metaworld.__version__ if hasattr(metaworld, "__version__")
                else "3.1.1", "alpha": args.alpha}
        text = markdown(rows, meta) + "\n## Summary\n\n```json\n" + \
            json.dumps(summary, indent=1) + "\n```\n"
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
