"""Pictures of DMMD sampling: the particles at the end of each noise level. Used by
``experiments/dmmd.py`` (its ``samples.png`` and ``sampling.gif`` artifacts) and the DMMD figure
scripts; plain matplotlib and numpy.

2-D targets: the held-out target (grey) and the particles (red) in one fixed window per run
(:mod:`flow_pictures`). Digits (d = 64): a grid of the first 36 particles as 8 x 8 images
(values in [-1, 1], clipped).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import flow_pictures  # noqa: E402

GRID = 6  # digits drawn per row and column


def digit_grid(samples: np.ndarray, count: int = GRID) -> np.ndarray:
    """The first count^2 samples ``[N, 64]`` as one image ``[9 count - 1, 9 count - 1]`` (1-pixel gaps, NaN)."""
    side = 9 * count - 1
    image = np.full((side, side), np.nan)
    for index, sample in enumerate(samples[: count * count]):
        row, column = divmod(index, count)
        image[9 * row:9 * row + 8, 9 * column:9 * column + 8] = np.clip(sample.reshape(8, 8), -1.0, 1.0)
    return image


def draw_level(ax, target: np.ndarray, particles: np.ndarray, title: str, window=None, fontsize: float = 9) -> None:
    """One panel: a scatter (2-D, :func:`flow_pictures.draw_particles`) or a digit grid (d = 64)."""
    if particles.shape[1] == 64:
        ax.imshow(digit_grid(particles), cmap="gray_r", vmin=-1.0, vmax=1.0)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=fontsize)
    else:
        flow_pictures.draw_particles(ax, target, particles, title, window=window, size=6, fontsize=fontsize)


def level_titles(levels) -> list[str]:
    """'start (t = 1)' then 't = 0.9 done', ... for the snapshots after each level."""
    return ["start N(0, I)"] + [f"after t = {level:.2g}" for level in levels]


def save_pictures(directory: Path, target: np.ndarray, snapshots: np.ndarray, levels, title: str) -> list[Path]:
    """``samples.png`` (the start and the end of every level, up to 12 panels, 6 a row) and
    ``sampling.gif`` (every snapshot, 3 per second) in ``directory``; their paths.
    ``snapshots: [T + 1, N, d]``, ``target: [M, d]`` (the held-out data)."""
    titles = level_titles(levels)
    picks = flow_pictures.pick_snapshots(list(range(len(snapshots))), 12)
    columns = min(6, len(picks))
    rows = -(-len(picks) // columns)
    window = flow_pictures.fixed_window(target, snapshots) if snapshots.shape[-1] == 2 else None
    figure, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.4 * rows + 0.8), squeeze=False)
    for ax, index in zip(axes.flat, picks):
        draw_level(ax, target, snapshots[index], titles[index], window)
    for ax in list(axes.flat)[len(picks):]:
        ax.set_axis_off()
    figure.suptitle(title, fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    grid = directory / "samples.png"
    figure.savefig(grid, dpi=100)
    plt.close(figure)
    def frame(ax, index):
        draw_level(ax, target, snapshots[index], f"{title}\n{titles[index]}", window, fontsize=7)

    return [grid, flow_pictures.save_animation(directory / "sampling.gif", len(snapshots), frame, fps=3)]
