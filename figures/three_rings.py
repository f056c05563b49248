"""Figure 4 (Chen et al. 2024, three rings): MMD^2 and W1 vs flow steps for the MMD, DrMMD,
adaptive DrMMD and KALE flows (mean +- 1 sd over seeds, log y), and a grid of particle snapshots
(first seed) at a few times, from each run's ``trajectory.npz`` artifact.

    python figures/three_rings.py --runs runs/figures/three_rings --out figures/png

Runs: experiments/sweeps/figures/three_rings[_small].yaml. Writes three_rings.png (curves) and
three_rings_snapshots.png (grey: target, red: particles). MMD^2 is the V-statistic with the
reference Gaussian kernel of the toy (sigma 0.15, exp(-|x-y|^2 / (2 sigma^2))); W1 is exact OT.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import common
from experiments import flow_pictures
from common import results

NAME = "three_rings"
FLOWS = ["mmd", "drmmd", "drmmd_adaptive", "kale"]
SNAPSHOTS = 5


def label(row) -> str:
    name = common.FLOW_LABELS[row["flow"]]
    if row["flow"] in ("drmmd", "kale"):
        return f"{name} (lambda = {row['lmbda']:g})"
    if row["flow"] == "drmmd_adaptive":
        return f"{name} (lambda_0 = {row['lmbda']:g})"
    return f"{name} (step {row['step_size']:g})"


def main(argv=None) -> None:
    args, df = common.args_and_rows(__doc__, argv, "particle_flow")
    df = common.keep(df, (df["target"] == "three_rings") & df["flow"].isin(FLOWS), f"flows {', '.join(FLOWS)} on three rings")
    runs = results.runs(df)
    labels = runs.set_index("run_dir").apply(label, axis=1)
    df = df.assign(config=df["run_dir"].map(labels))
    order = list(dict.fromkeys(labels[runs.sort_values("flow", key=lambda s: s.map(FLOWS.index))["run_dir"]]))
    common.theme()

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, metric, ylabel in zip(axes, ["mmd2", "w1"], ["MMD^2 (reference Gaussian kernel, sigma 0.15)",
                                                       "W1 (exact OT) to the target"]):
        common.curve(ax, results.curves(df, metric), hue="config", hue_order=order)
        ax.set_xlabel("flow step")
        ax.set_ylabel(ylabel)
        ax.legend(title=None, fontsize=8)
    common.finish(fig, args.out, NAME, f"Three rings: {common.flow_setting(df)}\n{common.seeds_text(df)}",
                  notes=[common.not_completed_note(df, "config")])

    # snapshot grid: one row per flow (its first completed seed), columns = times
    done = runs[runs["status"] == "COMPLETED"].assign(config=lambda t: t["run_dir"].map(labels))
    chosen = [done[done["config"] == c].sort_values("seed").iloc[0] for c in order if (done["config"] == c).any()]
    fig, axes = plt.subplots(len(chosen), SNAPSHOTS, figsize=(2.3 * SNAPSHOTS, 2.5 * len(chosen)), squeeze=False)
    paths = [Path(run["run_dir"]) / "trajectory.npz" for run in chosen]
    shown = [np.load(path)["snapshots"] for path in paths if path.exists()]
    # one window for every panel, large enough for the particles that leave the rings
    points = np.concatenate([snaps.reshape(-1, 2) for snaps in shown] + [np.array([[-1.0, -2.0], [1.0, 0.5]])])
    low, high = points.min(0) - 0.1, points.max(0) + 0.1
    for row_axes, run, path in zip(axes, chosen, paths):
        if not path.exists():
            row_axes[0].text(0.5, 0.5, f"no trajectory.npz in\n{run['run_id']}", ha="center", transform=row_axes[0].transAxes)
            continue
        data = np.load(path)
        flow_pictures.draw_snapshots(row_axes, data["target"], data["snapshots"], data["snapshot_steps"],
                                     window=(low, high), size=5, fontsize=8)  # fmt: skip
        row_axes[0].set_ylabel(f"{run['config']}\nseed {run['seed']}", fontsize=8)
    common.finish(fig, args.out, NAME + "_snapshots",
                  f"Three rings: particles (red) and target (grey) at a few flow steps; {common.flow_setting(df)}",
                  tables=[(results.final_table(df, ["config"], metric, how="last"), f"{NAME}: final {metric}")
                          for metric in ["w1", "mmd2"]])


if __name__ == "__main__":
    main()
