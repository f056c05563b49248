"""Pictures of 2-D (and 1-D) particle flows: the target (grey) and the particles (red) at a few
snapshot steps. Shared by ``experiments/flows2d.py`` (its ``snapshots.png`` and ``flow.gif``
artifacts) and ``figures/three_rings.py`` (its snapshot grid); plain matplotlib and numpy, so
the experiment needs no figure helper beyond this file.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402


def pick_snapshots(steps, count: int) -> list[int]:
    """Indices of ``count`` snapshots spread over the run (first and last included)."""
    if len(steps) <= count:
        return list(range(len(steps)))
    return sorted(set(np.linspace(0, len(steps) - 1, count).round().astype(int).tolist()))


def fixed_window(target: np.ndarray, snapshots: np.ndarray, margin: float = 0.05):
    """One window ``((x_low, y_low), (x_high, y_high))`` holding the target and every snapshot
    (``snapshots: [S, N, 2]``), so panels share their axes; for 1-D data, the histogram range."""
    points = np.concatenate([target.reshape(-1, target.shape[-1]), snapshots.reshape(-1, target.shape[-1])])
    low, high = points.min(0), points.max(0)
    pad = margin * np.maximum(high - low, 1e-12)
    return low - pad, high + pad


def draw_particles(ax, target: np.ndarray, particles: np.ndarray, title: str, window=None, size: float = 10,
                   fontsize: float = 9) -> None:  # fmt: skip
    """One panel: ``target: [M, d]`` grey, ``particles: [N, d]`` red; scatter plots in 2-D (in the
    fixed ``window`` ((x_low, y_low), (x_high, y_high)) without ticks when given), histograms in 1-D
    (over the window's range when given)."""
    if target.shape[1] == 1:
        span = (window[0][0], window[1][0]) if window is not None else None
        bins = np.histogram_bin_edges(np.concatenate([target[:, 0], particles[:, 0]]), bins=50, range=span)
        ax.hist(target[:, 0], bins=bins, density=True, color="0.6", alpha=0.6, label="target")
        ax.hist(particles[:, 0], bins=bins, density=True, color="tab:red", alpha=0.6, label="particles")
    else:
        ax.scatter(target[:, 0], target[:, 1], s=size, c="0.6", linewidths=0, label="target")
        ax.scatter(particles[:, 0], particles[:, 1], s=size, c="tab:red", linewidths=0, label="particles")
        if window is None:
            ax.set_aspect("equal", adjustable="datalim")
        else:
            (x_low, y_low), (x_high, y_high) = window
            ax.set_xlim(x_low, x_high)
            ax.set_ylim(y_low, y_high)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
    ax.set_title(title, fontsize=fontsize)


def draw_snapshots(axes, target: np.ndarray, snapshots: np.ndarray, steps, **style) -> None:
    """One panel per axis of ``axes`` at snapshots spread over the run (``snapshots: [S, N, d]``
    taken at ``steps: [S]``); axes left over are switched off. ``style``: see :func:`draw_particles`."""
    axes = list(axes)
    picks = pick_snapshots(steps, len(axes))
    for ax, index in zip(axes, picks):
        draw_particles(ax, target, snapshots[index], f"step {steps[index]}", **style)
    for ax in axes[len(picks):]:
        ax.set_axis_off()


def save_pictures(directory: Path, target: np.ndarray, snapshots: np.ndarray, steps, title: str) -> list[Path]:
    """``snapshots.png`` (up to 8 snapshots, 4 a row, one fixed window, ``title`` above, a legend)
    and ``flow.gif`` (every snapshot, 5 per second, the same window) in ``directory``; their paths."""
    count = min(8, len(steps))
    columns = min(4, count)
    rows = -(-count // columns)
    window = fixed_window(target, snapshots)
    extent = window[1] - window[0]
    aspect = float(np.clip(extent[1] / extent[0], 0.4, 2.5)) if target.shape[1] > 1 else 0.75  # panel height / width
    width = 2.4 if aspect > 1 else 3.0
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, width * aspect * rows + 0.9), squeeze=False)
    draw_snapshots(axes.flat, target, snapshots, steps, window=window)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, ["target (grey)", "particles (red)"][: len(labels)], loc="lower center", ncol=2, fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    grid = directory / "snapshots.png"
    figure.savefig(grid, dpi=100)
    plt.close(figure)

    def frame(ax, index):
        draw_particles(ax, target, snapshots[index], f"{title}\nstep {steps[index]}", window=window, fontsize=7)

    return [grid, save_animation(directory / "flow.gif", len(steps), frame, fps=5)]


def save_animation(path: Path, frames: int, draw, fps: int) -> Path:
    """A GIF at ``path`` of ``frames`` frames, each drawn by ``draw(ax, index)`` on a cleared 4 x 4.4 inch axis."""
    figure, ax = plt.subplots(figsize=(4, 4.4))

    def frame(index):
        ax.clear()
        draw(ax, index)

    FuncAnimation(figure, frame, frames=frames).save(path, writer=PillowWriter(fps=fps))
    plt.close(figure)
    return path
