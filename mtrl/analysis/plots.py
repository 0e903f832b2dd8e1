"""Figures of ``mtrl report``: learning curves, a per-task grid and a final-success heatmap.

Figures are built with matplotlib's object API (``Figure`` + Agg canvas), never ``pyplot``, so
that no global backend or figure state is touched. Every image has a fixed pixel size, given by
the ``*_size`` functions (``(width, height)`` in pixels at :data:`DPI`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mtrl.errors import require

DPI = 100
GRID_COLUMNS = 5


@dataclass
class Band:
    """A curve with a shaded band: ``y`` with ``[lo, hi]`` at every ``x``."""

    x: np.ndarray
    y: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def curves_size() -> tuple[int, int]:
    """Pixel size of the aggregate learning-curve figure."""
    return 800, 500


def grid_size(num_tasks: int) -> tuple[int, int]:
    """Pixel size of the per-task grid: 300 x 240 px per panel, 5 panels a row, plus a 40 px
    title and a 60 px legend row."""
    cols = min(GRID_COLUMNS, num_tasks)
    rows = math.ceil(num_tasks / cols)
    return 300 * cols, 240 * rows + 100


def heatmap_size(num_methods: int, num_tasks: int) -> tuple[int, int]:
    """Pixel size of the methods x tasks heatmap (grows with both)."""
    return max(600, 60 * num_tasks + 260), 50 * num_methods + 160


def _figure(size: tuple[int, int]):
    Figure = require("matplotlib.figure", "report", "mtrl report's figures").Figure

    return Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)  # no bbox_inches="tight": the size stays as given


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    """One fixed colour per method (matplotlib's ``tab10`` cycle), shared by all figures."""
    palette = [f"C{i % 10}" for i in range(len(methods))]
    return dict(zip(methods, palette))


def _draw_band(ax, band: Band, color: str, label: str | None) -> None:
    ax.plot(band.x, band.y, color=color, label=label, linewidth=1.8)
    if len(band.x) > 0 and np.any(band.hi > band.lo):
        ax.fill_between(band.x, band.lo, band.hi, color=color, alpha=0.2, linewidth=0)


def _step_axis(ax) -> None:
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)


def plot_curves(curves: Mapping[str, Band], path: Path, title: str) -> tuple[int, int]:
    """Mean success rate vs env steps per task, one line per method, CI band; returns size."""
    size = curves_size()
    fig = _figure(size)
    ax = fig.add_axes((0.1, 0.12, 0.86, 0.78))
    colors = method_colors(list(curves))
    for name, band in curves.items():
        _draw_band(ax, band, colors[name], name)
    _step_axis(ax)
    ax.set_xlabel("env steps per task")
    ax.set_ylabel("mean success rate")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)
    return size


def plot_task_grid(curves: Mapping[str, Mapping[str, Band]], tasks: Sequence[str],
                   path: Path) -> tuple[int, int]:
    """One panel per task (``curves[method][task]``), one line per method; returns size."""
    size = grid_size(len(tasks))
    fig = _figure(size)
    cols = min(GRID_COLUMNS, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    colors = method_colors(list(curves))
    height = size[1]
    gs = fig.add_gridspec(rows, cols, left=0.06 if cols > 2 else 0.12, right=0.98,
                          bottom=(60 + 24) / height, top=1 - 64 / height, hspace=0.55,
                          wspace=0.25)
    fig.suptitle("Success rate per task vs env steps per task (band: 95% CI over seeds)",
                 fontsize=10, y=1 - 12 / height, va="top")
    labelled: set[str] = set()
    for k, task in enumerate(tasks):
        ax = fig.add_subplot(gs[k // cols, k % cols])
        for name, per_task in curves.items():
            if task in per_task:
                _draw_band(ax, per_task[task], colors[name],
                           None if name in labelled else name)
                labelled.add(name)
        _step_axis(ax)
        ax.set_title(task, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.xaxis.get_offset_text().set_fontsize(7)
    handles, labels = [], []
    for ax in fig.axes:
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8,
               frameon=False)
    _save(fig, path)
    return size


def plot_heatmap(values: np.ndarray, methods: Sequence[str], tasks: Sequence[str],
                 path: Path, title: str) -> tuple[int, int]:
    """``values (methods, tasks)`` in [0, 1] (NaN: task not run) as a heatmap; returns size."""
    size = heatmap_size(len(methods), len(tasks))
    fig = _figure(size)
    width, height = size
    ax = fig.add_axes((200 / width, 120 / height, 1 - 280 / width, 1 - 160 / height))
    image = ax.imshow(np.ma.masked_invalid(values), vmin=0.0, vmax=1.0, cmap="viridis",
                      aspect="auto")
    ax.set_xticks(range(len(tasks)), labels=list(tasks), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(methods)), labels=list(methods), fontsize=8)
    ax.set_title(title, fontsize=10)
    if values.size <= 400:
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if v > 0.6 else "white")
    cax = fig.add_axes((1 - 60 / width, 120 / height, 15 / width, 1 - 160 / height))
    fig.colorbar(image, cax=cax)
    _save(fig, path)
    return size
