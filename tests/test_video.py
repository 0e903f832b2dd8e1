"""``mtrl eval --video``: one GIF per task with success marked; MuJoCo offscreen rendering where
a GL backend exists (skipped cleanly where none does), a one-line error where it is needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import fake_config
from PIL import Image, ImageSequence

from mtrl.analysis import video
from mtrl.cli import main
from mtrl.envs import FakeMultiTaskVectorEnv
from mtrl.errors import MtrlError


def frames(path: Path) -> list[np.ndarray]:
    with Image.open(path) as gif:
        return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]


def border_color(frame: np.ndarray) -> np.ndarray:
    """Mean colour of the left border strip (inside the caption bars)."""
    height = frame.shape[0]
    return frame[height // 3: 2 * height // 3, : video.BORDER - 1].reshape(-1, 3).mean(axis=0)


def oracle(num_tasks: int):
    """Moves straight at the goal (the fake env observes the offset, the centre is known)."""
    centres = FakeMultiTaskVectorEnv(num_tasks).task_centres

    def policy(obs: np.ndarray, task_id: np.ndarray) -> np.ndarray:
        goal = centres[task_id] + obs[:, 2:4]
        return np.clip((goal - obs[:, :2]) / 0.1, -1.0, 1.0)

    return policy


def test_fake_videos_mark_success(tmp_path: Path) -> None:
    results = video.record_videos(oracle(3), "fake:3", tmp_path, seed=5, size=(160, 120))
    assert [r.task for r in results] == ["fake-task-0", "fake-task-1", "fake-task-2"]
    index = json.loads((tmp_path / "videos.json").read_text())
    for result, entry in zip(results, index):
        assert result.success and entry["success"] and entry["success_step"] == result.success_step
        shown = frames(Path(result.path))
        assert len(shown) == result.frames
        # frame 0, every step up to the success, then 5 held steps
        assert len(shown) == result.success_step + 5 + 1
        assert all(f.shape == (120, 160, 3) and f.std() > 0 for f in shown)
        r, g, b = border_color(shown[-1])
        assert g > 150 and r < 100 and b < 110  # green: solved
        r, g, b = border_color(shown[0])
        assert min(r, g, b) > 200  # no mark before the success


def test_fake_video_marks_failure(tmp_path: Path) -> None:
    def still(obs: np.ndarray, task_id: np.ndarray) -> np.ndarray:
        return np.zeros((len(obs), 2))

    (result,) = video.record_videos(still, "fake:1", tmp_path, max_episode_steps=20,
                                    size=(96, 64))
    assert not result.success and result.success_step is None
    shown = frames(Path(result.path))
    assert len(shown) == 21 and shown[0].shape == (64, 96, 3)
    r, g, b = border_color(shown[-1])
    assert r > 150 and g < 100 and b < 100  # red: never solved


def test_no_gl_backend_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video, "gl_backend_works", lambda backend: False)
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    with pytest.raises(MtrlError) as info:
        video.check_video_support("reach-v3")
    message = str(info.value)
    assert "\n" not in message and "MUJOCO_GL=egl" in message and "osmesa" in message
    video.check_video_support("fake:2")  # drawn with PIL: no GL needed
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    with pytest.raises(MtrlError, match="tried MUJOCO_GL=osmesa"):
        video.select_gl_backend()


def test_backend_must_be_chosen_before_mujoco_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video, "gl_backend_works", lambda backend: backend == "egl")
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setitem(sys.modules, "mujoco", sys.modules.get("mujoco", object()))
    with pytest.raises(MtrlError, match="MUJOCO_GL=egl"):
        video.select_gl_backend()
    monkeypatch.delitem(sys.modules, "mujoco")
    assert video.select_gl_backend() == "egl" and os.environ["MUJOCO_GL"] == "egl"


def test_eval_cli_writes_videos(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mtrl.training.loop import train

    run = tmp_path / "run"
    train(fake_config("env.tasks=fake:2", "env.envs_per_task=1", "env.eval_envs_per_task=2",
                      "agent.network.hidden_sizes=[16]", "replay.batch_per_task=16",
                      "train.steps_per_task=30", "train.warmup_steps_per_task=20",
                      "train.eval_every=30", "train.eval_episodes=1",
                      "log.tensorboard=false"), run)
    capsys.readouterr()
    out = tmp_path / "videos"
    assert main(["eval", str(run), "--episodes", "1", "--video", str(out)]) == 0
    printed = capsys.readouterr().out
    index = json.loads((out / "videos.json").read_text())
    assert [v["task"] for v in index] == ["fake-task-0", "fake-task-1"]
    for entry in index:
        assert Path(entry["path"]).exists() and f"video {entry['task']}: " in printed
        assert frames(Path(entry["path"]))[0].shape == (240, 320, 3)


@pytest.fixture(scope="module")
def gl_backend() -> str:
    backend = video.find_gl_backend()
    if backend is None:
        pytest.skip("no offscreen OpenGL backend for MuJoCo here (MUJOCO_GL=egl/osmesa)")
    return backend


def test_metaworld_video_with_mujoco(gl_backend: str, tmp_path: Path) -> None:
    """Meta-World's scripted reach policy, rendered offscreen in a fresh interpreter (MuJoCo
    fixes its GL backend at import)."""
    script = textwrap.dedent(f"""
        import numpy as np
        from mtrl.analysis.video import record_videos, select_gl_backend
        select_gl_backend()
        from metaworld.policies import SawyerReachV3Policy
        scripted = SawyerReachV3Policy()
        policy = lambda obs, task_id: np.stack([scripted.get_action(o) for o in obs])
        record_videos(policy, "reach-v3", {str(tmp_path)!r}, seed=3, max_episode_steps=150,
                      size=(96, 72), frame_every=5)
    """)
    env = {**os.environ, "MUJOCO_GL": gl_backend}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (entry,) = json.loads((tmp_path / "videos.json").read_text())
    assert entry["task"] == "reach-v3" and entry["success"]
    shown = frames(tmp_path / "reach-v3.gif")
    assert len(shown) == entry["frames"] and shown[0].shape == (72, 96, 3)
    middle = shown[len(shown) // 2][20:60, 10:86]
    assert middle.std() > 10  # a rendered scene, not a blank buffer
    r, g, b = border_color(shown[-1])
    assert g > 150 and r < 100
