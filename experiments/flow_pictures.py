"""Pictures of particle flows: the target (grey) and the particles (red) at a few snapshots.
Shared by ``experiments/flows2d.py`` (its ``snapshots.png`` and ``flow.gif`` artifacts),
``experiments/dmmd.py`` (``samples.png`` and ``sampling.gif``: the particles at the end of each
noise level; digits (d = 64) as a grid of 8 x 8 images) and the figure scripts; plain matplotlib
and numpy (:mod:`experiments.flow_pictures`, installed with the experiments).
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
    grid = save_titled(figure, directory / "snapshots.png", title, rect=(0, 0.05, 1, 1))

    def frame(ax, index):
        draw_particles(ax, target, snapshots[index], f"{title}\nstep {steps[index]}", window=window, fontsize=7)

    return [grid, save_animation(directory / "flow.gif", len(steps), frame, fps=5)]


def save_titled(figure, path: Path, title: str, rect: tuple) -> Path:
    """Title ``figure``, lay it out within ``rect`` (figure fractions), save it to ``path`` at 100 dpi
    and close it; ``path``."""
    figure.suptitle(title, fontsize=9)
    figure.tight_layout(rect=rect)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def save_animation(path: Path, frames: int, draw, fps: int) -> Path:
    """A GIF at ``path`` of ``frames`` frames, each drawn by ``draw(ax, index)`` on a cleared 4 x 4.4 inch axis."""
    figure, ax = plt.subplots(figsize=(4, 4.4))

    def frame(index):
        ax.clear()
        draw(ax, index)

    FuncAnimation(figure, frame, frames=frames).save(path, writer=PillowWriter(fps=fps))
    plt.close(figure)
    return path


DIGIT_GRID = 6  # digits drawn per row and column of a panel of digit samples


def digit_grid(samples: np.ndarray, count: int = DIGIT_GRID) -> np.ndarray:
    """The first count^2 samples ``[N, 64]`` as one image ``[9 count - 1, 9 count - 1]``: 8 x 8 digits
    in [-1, 1] (clipped), row by row, with gaps of one pixel (NaN)."""
    cells = np.full((count * count, 9, 9), np.nan)  # (count^2, 9, 9): a digit and its gap
    shown = np.clip(samples[: count * count].reshape(-1, 8, 8), -1.0, 1.0)
    cells[: len(shown), :8, :8] = shown
    return cells.reshape(count, count, 9, 9).transpose(0, 2, 1, 3).reshape(9 * count, 9 * count)[:-1, :-1]


def draw_sample(ax, target: np.ndarray, particles: np.ndarray, title: str, window=None, fontsize: float = 9) -> None:
    """One panel of samples ``particles: [N, d]``: a scatter over ``target`` (:func:`draw_particles`), or
    for the digits (d = 64) a :func:`digit_grid`."""
    if particles.shape[1] != 64:
        draw_particles(ax, target, particles, title, window=window, size=6, fontsize=fontsize)
        return
    ax.imshow(digit_grid(particles), cmap="gray_r", vmin=-1.0, vmax=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=fontsize)


def save_sampling_pictures(directory: Path, target: np.ndarray, snapshots: np.ndarray, levels,
                           title: str) -> list[Path]:  # fmt: skip
    """``samples.png`` (the start and the end of every noise level, up to 12 panels, 6 a row) and
    ``sampling.gif`` (every snapshot, 3 per second) in ``directory``; their paths.
    ``snapshots: [T + 1, N, d]`` (the start, then one per level of ``levels``), ``target: [M, d]``."""
    titles = ["start N(0, I)"] + [f"after t = {level:.2g}" for level in levels]
    picks = pick_snapshots(list(range(len(snapshots))), 12)
    columns = min(6, len(picks))
    rows = -(-len(picks) // columns)
    window = fixed_window(target, snapshots) if snapshots.shape[-1] == 2 else None
    figure, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.4 * rows + 0.8), squeeze=False)
    for ax, index in zip(axes.flat, picks):
        draw_sample(ax, target, snapshots[index], titles[index], window)
    for ax in list(axes.flat)[len(picks):]:
        ax.set_axis_off()
    grid = save_titled(figure, directory / "samples.png", title, rect=(0, 0, 1, 0.95))

    def frame(ax, index):
        draw_sample(ax, target, snapshots[index], f"{title}\n{titles[index]}", window, fontsize=7)

    return [grid, save_animation(directory / "sampling.gif", len(snapshots), frame, fps=3)]
