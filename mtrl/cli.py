"""The ``mtrl`` command line: ``mtrl train | eval | ...``.

Each command is a small module-level pair ``add_<name>(subparsers)`` / ``run_<name>(args)``
registered in :data:`COMMANDS`. User errors (bad config, unknown task, missing checkpoint) are
printed as one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from mtrl.cli_common import DEVICES, add_run_arguments
from mtrl.errors import MtrlError
from mtrl.rundir import FINAL_EVAL_FILE
from mtrl.affinity import add_affinity, run_affinity
from mtrl.grouping import add_group, run_group
from mtrl.sweep import add_sweep, run_sweep
from mtrl.report import add_report, run_report
from mtrl.distill_cli import add_distill, add_expert, run_distill, run_expert



# ---------------------------------------------------------------------- train
def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an agent (a preset name or a YAML config)",
                       description="Train a multi-task agent. Overrides: section.field=value.")
    add_run_arguments(p, "mt10_mtmhsac, quick", "train.steps_per_task=20000")
    p.add_argument("--groups", type=Path, default=None, metavar="FILE",
                   help="train one network per task group of this `mtrl group` JSON")


def run_train(args: argparse.Namespace) -> int:
    from mtrl.config import load_config
    from mtrl.evaluation import format_table
    from mtrl.train import train

    if args.groups is not None:
        from mtrl.grouping import groups_override

        args.overrides = [*args.overrides, groups_override(args.groups)]
    config = load_config(args.config, args.overrides)
    run_dir = args.run_dir or Path("runs") / config.name
    result = train(config, run_dir, resume=args.resume, device=args.device,
                   overrides=tuple(args.overrides))
    print(format_table(result))
    print(f"final evaluation written to {Path(run_dir) / FINAL_EVAL_FILE}")
    return 0


# ----------------------------------------------------------------------- eval
def add_eval(sub: argparse._SubParsersAction) -> None:
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


def run_eval(args: argparse.Namespace) -> int:
    from mtrl.agents import agent_from_payload
    from mtrl.checkpoint import find_checkpoint, load_file
    from mtrl.config import Config, DistillConfig, from_dict
    from mtrl.evaluation import format_table
    from mtrl.train import evaluate_agent, make_eval_env

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
        from mtrl.video import check_video_support

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
        from mtrl.video import record_agent_videos

        for video in record_agent_videos(agent, config, args.video):
            print(f"video {video.summary()}")
    return 0


# ---------------------------------------------------------------------- bench
def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure throughput against peers (table + JSON)",
                       description="Env steps/s vs gymnasium and raw physics, update time vs "
                                   "stable-baselines3 and the matmul rate, end-to-end "
                                   "training rate and peak memory. Ratios > 1: mtrl faster.")
    p.add_argument("--quick", action="store_true", help="short measurements (~2 minutes)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--device", choices=DEVICES, default="auto")


def run_bench(args: argparse.Namespace) -> int:
    import json

    from mtrl.agents import resolve_device
    from mtrl.bench import format_suite, run_suite

    result = run_suite(args.quick, str(resolve_device(args.device)))
    print(format_suite(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


COMMANDS: dict[str, tuple[Callable[[argparse._SubParsersAction], None],
                          Callable[[argparse.Namespace], int]]] = {
    "train": (add_train, run_train),
    "eval": (add_eval, run_eval),
    "bench": (add_bench, run_bench),
    "affinity": (add_affinity, run_affinity),
    "group": (add_group, run_group),
    "sweep": (add_sweep, run_sweep),
    "report": (add_report, run_report),
    "expert": (add_expert, run_expert),
    "distill": (add_distill, run_distill),
}


def build_parser() -> argparse.ArgumentParser:
    from mtrl import __version__

    parser = argparse.ArgumentParser(
        prog="mtrl", description="Multi-task reinforcement learning on Meta-World.")
    parser.add_argument("--version", action="version", version=f"mtrl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mtrl`` console script."""
    parser = build_parser()
    # Overrides may come before or after options: collect stray ``key=value`` tokens.
    args, extra = parser.parse_known_args(argv)
    stray = [tok for tok in extra if tok.startswith("-") or "=" not in tok]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    from mtrl.envs import EnvError

    try:
        return COMMANDS[args.command][1](args)
    except (MtrlError, EnvError) as exc:
        print(f"mtrl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mtrl: interrupted (checkpoint saved where a run was training)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
