"""Videos of evaluation episodes: one GIF per task, with success marked on the frames.

Meta-World tasks are rendered offscreen by MuJoCo, which needs a headless OpenGL backend:
EGL (GPU or Mesa software) or OSMesa, chosen through ``MUJOCO_GL`` *before* MuJoCo is imported
(:func:`select_gl_backend` probes them in a subprocess and sets it). The fake point-mass tasks
are drawn with PIL and need no GL. Episodes follow the evaluation protocol (deterministic
actions, success = the success flag at any step) and run a few steps past the first success so
that it can be seen; frames carry the task, the step, a green border and "SUCCESS @ step k" once
solved, a red border and "no success" when an episode ends unsolved.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import numpy as np

from mtrl.errors import MtrlError, require

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from mtrl.agents import Agent
    from mtrl.config import Config

GL_BACKENDS = ("egl", "osmesa")
SUCCESS_RGB = (40, 200, 60)
FAILURE_RGB = (220, 40, 40)
BORDER = 5

Policy = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``policy(obs (T, obs_dim), task_id (T,)) -> actions (T, act_dim)``, deterministic."""

_PROBE = (
    "import mujoco\n"
    "xml = '<mujoco><worldbody><geom size=\"0.1\"/></worldbody></mujoco>'\n"
    "m = mujoco.MjModel.from_xml_string(xml)\n"
    "d = mujoco.MjData(m)\n"
    "r = mujoco.Renderer(m, 16, 16)\n"
    "mujoco.mj_forward(m, d)\n"
    "r.update_scene(d)\n"
    "assert r.render().shape == (16, 16, 3)\n"
    "r.close()\n"
)


# ------------------------------------------------------------------ GL backend
@functools.lru_cache(maxsize=None)
def gl_backend_works(backend: str) -> bool:
    """Whether MuJoCo can render offscreen with ``MUJOCO_GL=backend`` (tried in a subprocess,
    because MuJoCo fixes its backend when it is first imported)."""
    env = {**os.environ, "MUJOCO_GL": backend}
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                              timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def find_gl_backend() -> str | None:
    """The backend to render with: ``MUJOCO_GL`` if set and working, else the first working of
    :data:`GL_BACKENDS`; ``None`` if none works."""
    requested = os.environ.get("MUJOCO_GL", "").strip().lower()
    for backend in (requested,) if requested else GL_BACKENDS:
        if gl_backend_works(backend):
            return backend
    return None


def select_gl_backend() -> str:
    """Find a working offscreen backend and set ``MUJOCO_GL`` for this process (it takes effect
    if MuJoCo has not been imported yet); :class:`MtrlError` with one line if there is none."""
    backend = find_gl_backend()
    if backend is None:
        requested = os.environ.get("MUJOCO_GL")
        tried = f"MUJOCO_GL={requested}" if requested else "MUJOCO_GL=egl and MUJOCO_GL=osmesa"
        raise MtrlError(
            f"--video needs an offscreen OpenGL backend for MuJoCo and none works here (tried "
            f"{tried}); install EGL (libegl1, or a GPU driver) or OSMesa (libosmesa6)"
        )
    previous = os.environ.get("MUJOCO_GL", "").strip().lower()
    if "mujoco" in sys.modules and previous != backend:
        raise MtrlError(f"MuJoCo was imported before its GL backend was chosen; start with "
                        f"MUJOCO_GL={backend} set in the environment")
    os.environ["MUJOCO_GL"] = backend
    return backend


def check_video_support(tasks: str | Sequence[str]) -> None:
    """Fail early (before MuJoCo is imported) if ``tasks`` cannot be rendered here."""
    from mtrl.envs.tasks import is_fake, resolve_tasks

    require("PIL.Image", "video", "videos (GIFs)")

    if not is_fake(resolve_tasks(tasks)):
        select_gl_backend()


# ---------------------------------------------------------------------- scenes
class Scene(Protocol):
    """One episode per task, stepped in lockstep, each renderable on its own."""

    task_names: list[str]
    horizon: int

    def reset(self) -> np.ndarray:
        """Start every task's episode; returns ``obs (T, obs_dim)``."""

    def step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Step the tasks where ``active``; returns ``obs (T, obs_dim)``, ``success (T,) bool``."""

    def render(self, task: int) -> np.ndarray:
        """``(H, W, 3) uint8`` frame of task ``task``."""

    def close(self) -> None:
        """Release renderers and envs."""


class FakeScene:
    """The fake point-mass tasks drawn from above with PIL: the goal disc (success radius), the
    other tasks' goal centres, the path so far and the point."""

    def __init__(self, num_tasks: int, seed: int, goal_index: int, horizon: int,
                 size: tuple[int, int]) -> None:
        from mtrl.envs.fake import _SUCCESS_DISTANCE, FakeMultiTaskVectorEnv

        self.env = FakeMultiTaskVectorEnv(num_tasks, 1, seed, horizon)
        self.env.set_autoreset(False)
        self.task_names = list(self.env.task_names)
        self.horizon = horizon
        self.size = size
        self.goal_index = goal_index
        self._radius = _SUCCESS_DISTANCE
        self._obs = np.zeros((num_tasks, self.env.obs_dim), dtype=np.float32)
        self._paths: list[list[tuple[float, float]]] = []

    def reset(self) -> np.ndarray:
        self._obs = self.env.reset(goal_index=np.full(self.env.num_envs, self.goal_index))
        self._paths = [[tuple(o[:2])] for o in self._obs]
        return self._obs

    def step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        result = self.env.step(actions, mask=active)
        self._obs = result.obs
        for i in np.flatnonzero(active):
            self._paths[i].append(tuple(self._obs[i, :2]))
        return result.obs, result.success

    def _pixel(self, xy: Sequence[float]) -> tuple[float, float]:
        width, height = self.size
        scale = 0.45 * min(width, height)
        return width / 2 + scale * float(xy[0]), height / 2 - scale * float(xy[1])

    def render(self, task: int) -> np.ndarray:
        from PIL import Image, ImageDraw

        width, height = self.size
        image = Image.new("RGB", self.size, (245, 245, 240))
        draw = ImageDraw.Draw(image)
        scale = 0.45 * min(width, height)
        for centre in self.env.task_centres:
            x, y = self._pixel(centre)
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(190, 190, 190))
        goal = self.env.task_centres[task] + self._obs[task, 2:4]
        x, y = self._pixel(goal)
        r = self._radius * scale
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(200, 235, 200), outline=(60, 140, 60))
        path = [self._pixel(p) for p in self._paths[task]]
        if len(path) > 1:
            draw.line(path, fill=(90, 120, 200), width=2)
        x, y = path[-1]
        draw.ellipse((x - 5, y - 5, x + 5, y + 5), fill=(30, 60, 180))
        return np.asarray(image)

    def close(self) -> None:
        self.env.close()


class MetaWorldScene:
    """Raw Meta-World v3 envs (one per task, goal ``goal_index`` of the seeded evaluation
    goals) rendered by ``mujoco.Renderer`` from a fixed free camera over the table."""

    def __init__(self, task_names: Sequence[str], seed: int, goal_index: int, horizon: int,
                 size: tuple[int, int]) -> None:
        import mujoco
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        from mtrl.envs.metaworld_env import make_goal_tasks

        self.task_names = list(task_names)
        self.horizon = horizon
        goals = make_goal_tasks(self.task_names, seed)
        if not 0 <= goal_index < len(goals[0]):
            raise MtrlError(f"goal index must be in [0, {len(goals[0])}), got {goal_index}")
        self._goals = [g[goal_index] for g in goals]
        self._envs = []
        self._renderers = []
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self._camera.lookat[:] = (0.0, 0.65, 0.15)
        self._camera.distance, self._camera.azimuth, self._camera.elevation = 1.5, 135.0, -25.0
        self._flags_off = (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION)
        width, height = size
        try:
            for name in self.task_names:
                env = ALL_V3_ENVIRONMENTS[name](reward_function_version="v2")
                env.seed(seed)
                env.max_path_length = sys.maxsize  # the horizon is counted here
                self._envs.append(env)
                model = env.model
                model.vis.quality.offsamples = 0  # no multisampling: 5-10x faster in software GL
                model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
                model.vis.global_.offheight = max(model.vis.global_.offheight, height)
                self._renderers.append(mujoco.Renderer(model, height, width))
        except Exception as exc:
            self.close()
            if isinstance(exc, MtrlError):
                raise
            raise MtrlError(f"MuJoCo offscreen rendering failed ({type(exc).__name__}: {exc}); "
                            f"set MUJOCO_GL=egl or osmesa before starting") from exc

    def reset(self) -> np.ndarray:
        obs = []
        for env, goal in zip(self._envs, self._goals):
            env.set_task(goal)
            obs.append(env.reset()[0])
        self._obs = np.asarray(obs, dtype=np.float32)
        return self._obs.copy()

    def step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        actions = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
        success = np.zeros(len(self._envs), dtype=bool)
        for i in np.flatnonzero(active):
            obs, _, _, _, info = self._envs[i].step(actions[i])
            self._obs[i] = obs
            success[i] = bool(info["success"])
        return self._obs.copy(), success

    def render(self, task: int) -> np.ndarray:
        renderer = self._renderers[task]
        renderer.update_scene(self._envs[task].data, camera=self._camera)
        for flag in self._flags_off:
            renderer.scene.flags[flag] = 0
        return renderer.render()

    def close(self) -> None:
        for renderer in self._renderers:
            renderer.close()
        for env in self._envs:
            env.close()
        self._renderers, self._envs = [], []


# ---------------------------------------------------------------------- frames
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def annotate(frame: np.ndarray, task: str, step: int, success_step: int | None,
             final: bool) -> PILImage.Image:
    """The frame with a caption bar (task, step) and the outcome: green border and "SUCCESS @
    step k" once solved; red border and "no success" on the last frame of an unsolved episode."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(np.ascontiguousarray(frame[..., :3], dtype=np.uint8))
    width, height = image.size
    draw = ImageDraw.Draw(image)
    font = _font(max(10, height // 18))
    bar = max(16, height // 10)
    draw.rectangle((0, 0, width, bar), fill=(0, 0, 0))
    draw.text((BORDER + 2, 1), f"{task}  step {step}", fill=(255, 255, 255), font=font)
    label, color = None, None
    if success_step is not None:
        label, color = f"SUCCESS @ step {success_step}", SUCCESS_RGB
    elif final:
        label, color = f"no success in {step} steps", FAILURE_RGB
    if color is not None:
        draw.rectangle((0, height - bar, width, height), fill=color)
        draw.text((BORDER + 2, height - bar + 2), label, fill=(255, 255, 255), font=font)
        for k in range(BORDER):
            draw.rectangle((k, k, width - 1 - k, height - 1 - k), outline=color)
    return image


@dataclass
class VideoResult:
    """One task's video and its episode's outcome."""

    task: str
    path: str
    success: bool
    success_step: int | None
    frames: int

    def summary(self) -> str:
        outcome = f"success @ step {self.success_step}" if self.success else "no success"
        return f"{self.task}: {outcome} -> {self.path}"


def write_gif(frames: Sequence[PILImage.Image], path: Path, fps: int) -> None:
    """An endlessly looping GIF; the last frame is held for 1.5 s."""
    durations = [max(20, round(1000 / fps))] * len(frames)
    durations[-1] = 1500
    frames[0].save(path, save_all=True, append_images=list(frames[1:]), duration=durations,
                   loop=0, optimize=False)


def record_scene(scene: Scene, policy: Policy, out_dir: str | Path, frame_every: int = 1,
                 hold_steps: int = 5, fps: int = 20) -> list[VideoResult]:
    """Run one episode per task of ``scene`` with ``policy``, write ``<task>.gif`` and
    ``videos.json`` to ``out_dir``. Every ``frame_every``-th step is a frame (plus the first
    success and the last step); an episode goes on ``hold_steps`` steps past its first success."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = scene.task_names
    count = len(names)
    task_id = np.arange(count, dtype=np.int64)
    obs = scene.reset()
    frames = [[annotate(scene.render(i), names[i], 0, None, False)] for i in range(count)]
    success_step: list[int | None] = [None] * count
    active = np.ones(count, dtype=bool)
    for step in range(1, scene.horizon + 1):
        obs, success = scene.step(policy(obs, task_id), active)
        for i in np.flatnonzero(active):
            first = bool(success[i]) and success_step[i] is None
            if first:
                success_step[i] = step
            solved = success_step[i]
            done = step == scene.horizon or (solved is not None and step - solved >= hold_steps)
            if first or done or step % frame_every == 0:
                frames[i].append(annotate(scene.render(i), names[i], step, solved, done))
            active[i] = not done
        if not active.any():
            break
    results = []
    for i, name in enumerate(names):
        path = out / f"{name}.gif"
        write_gif(frames[i], path, fps)
        results.append(VideoResult(name, str(path), success_step[i] is not None,
                                   success_step[i], len(frames[i])))
    (out / "videos.json").write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return results


def record_videos(policy: Policy, tasks: str | Sequence[str], out_dir: str | Path,
                  seed: int = 0, goal_index: int = 0, max_episode_steps: int | None = None,
                  size: tuple[int, int] = (320, 240), fps: int = 20,
                  frame_every: int | None = None) -> list[VideoResult]:
    """One GIF per task of ``tasks`` (any spec ``make_vector_env`` accepts) showing ``policy``
    on goal ``goal_index`` of the goals seeded by ``seed``. Meta-World tasks need an offscreen
    GL backend (:func:`select_gl_backend`); fake tasks do not."""
    from mtrl.envs.tasks import is_fake, resolve_tasks

    require("PIL.Image", "video", "videos (GIFs)")

    names = resolve_tasks(tasks)
    scene: Scene
    if is_fake(names):
        horizon = max_episode_steps or 50
        scene = FakeScene(len(names), seed, goal_index, horizon, size)
    else:
        select_gl_backend()
        horizon = max_episode_steps or 500
        scene = MetaWorldScene(names, seed, goal_index, horizon, size)
    every = frame_every or max(1, horizon // 100)
    try:
        return record_scene(scene, policy, out_dir, every, hold_steps=5 * every, fps=fps)
    finally:
        scene.close()


def record_agent_videos(agent: Agent, config: Config, out_dir: str | Path,
                        **options) -> list[VideoResult]:
    """Videos of ``agent``'s deterministic policy on the evaluation goals of ``config`` (the
    training goals, seeded by ``train.seed``; see :func:`mtrl.training.loop.make_eval_env`)."""
    return record_videos(lambda o, t: agent.act(o, t, deterministic=True), config.env.tasks,
                         out_dir, seed=config.train.seed,
                         max_episode_steps=config.env.max_episode_steps, **options)
