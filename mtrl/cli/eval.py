"""``mtrl eval RUN_DIR``: the official success-rate protocol on a trained agent (and videos)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtrl.cli.common import DEVICES
from mtrl.errors import MtrlError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a run with the official success-rate protocol",
                       description="Evaluate a trained agent: per-task success and the mean.")
    p.add_argument("target", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--episodes", type=int, default=50, help="episodes per task (default 50)")
    p.add_argument("--json", type=Path, default=None, help="write the result as JSON here")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--video", type=Path, default=None, metavar="DIR",
                   help="also render one episode per task to DIR/<task>.gif, success marked "
                        "(Meta-World needs offscreen GL: MUJOCO_GL=egl or osmesa)")
    p.add_argument("--policy", choices=("shared", "task"), default=None,
                   help="Distral runs: evaluate the task policies pi_i or the shared distilled "
                        "policy pi_0 (default: the run's agent.distral.eval_policy)")


def run(args: argparse.Namespace) -> int:
    from mtrl.agents import agent_from_payload
    from mtrl.config import Config, DistillConfig, from_dict
    from mtrl.serialization import load_file
    from mtrl.training.evaluation import format_table
    from mtrl.training.loop import evaluate_agent, make_eval_env
    from mtrl.training.rundir import find_checkpoint

    if args.episodes <= 0:
        raise MtrlError(f"--episodes must be positive, got {args.episodes}")
    payload = load_file(find_checkpoint(args.target))
    if "learner" not in payload or "config" not in payload:
        raise MtrlError(f"{args.target} is not an mtrl training checkpoint")
    schema = DistillConfig if "distill" in payload["config"] else Config  # a distill run's student
    config = from_dict(payload["config"], schema)
    agent = agent_from_payload(payload["learner"], args.device)
    if args.policy is not None:
        if not hasattr(agent, "set_eval_policy"):
            raise MtrlError(f"--policy applies to Distral runs, not to a '{agent.name}' agent")
        agent.set_eval_policy(args.policy)
    if args.video is not None:  # before MuJoCo is imported: it fixes its GL backend then
        from mtrl.analysis.video import check_video_support

        check_video_support(config.env.tasks)
    env = make_eval_env(config)
    try:
        step = int(payload.get("trainer", {}).get("steps_per_task", 0))
        result = evaluate_agent(agent, env, args.episodes, step)
    finally:
        env.close()
    print(format_table(result))
    if args.json is not None:
        result.write(args.json)
    if args.video is not None:
        from mtrl.analysis.video import record_agent_videos

        for video in record_agent_videos(agent, config, args.video):
            print(f"video {video.summary()}")
    return 0
