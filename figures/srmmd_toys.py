"""SrMMD paper figure 1 toys (Tian et al. 2026): W1 and MMD^2 against flow steps (mean +- 1 sd over
seeds, log y) and wall time per run for the MMD, DrMMD, SrMMD (witness and gradient velocity) and
HrMMD flows on the mixture of Gaussians, the spiral (the paper's Swiss roll) and the three rings, and
the final particles of each flow (first completed seed).

    python figures/srmmd_toys.py --runs runs/figures/srmmd_toys --out figures/png

Runs: experiments/sweeps/figures/srmmd_toys[_small].yaml. Writes srmmd_toys.png (one row per target:
W1, MMD^2, wall seconds) and srmmd_toys_particles.png (one row per target, one panel per flow; grey:
target, red: final particles, in the target's window widened by a quarter of its extent on each side;
the particles outside it are counted in the panel's title). The curves' W1 is exact OT to the target
sample the flow moves towards; MMD^2 is the V-statistic under the toy's reference Gaussian kernel
(sigma 1 for mog, 0.5 for spiral, 0.15 for three_rings). The printed tables add the final W1 and W2 to
a held-out exact sample of the target that no flow saw, and their floor, what an exact sample of N
points scores against the same points (``sample_*``, studentteacher.held_out; runs from before these
metrics have none).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

import common
from common import results

NAME = "srmmd_toys"
TARGETS = {"mog": "mixture of 4 Gaussians", "spiral": "spiral (Swiss roll)", "three_rings": "three rings"}
FLOWS = ["mmd", "drmmd", "srmmd", "hrmmd"]
#: The final scores against the held-out sample, and the floor of W1 (studentteacher.held_out).
HELD_OUT = ["sample_w1", "sample_w2", "sample_w1_floor"]


def label(row) -> str:
    """e.g. 'SrMMD gradient', 'HrMMD alpha 0.8', 'MMD (energy)'."""
    name = common.FLOW_LABELS[row["flow"]]
    if row["flow"] == "srmmd":
        name += f" {row['velocity']}"
    if row["flow"] == "hrmmd":
        name += f" alpha {row['hrmmd_alpha']:g}"
    return name if row["kernel"] == "gaussian" else f"{name} ({row['kernel']})"


def _order(runs) -> list[str]:
    """Arm labels in the order: flow (FLOWS), then kernel, then velocity (witness first)."""
    ranked = runs.assign(rank=runs["flow"].map(FLOWS.index)).sort_values(["rank", "kernel", "velocity"],
                                                                          ascending=[True, True, False])
    return list(dict.fromkeys(ranked["config"]))


def draw_curves(df, runs, out) -> None:
    targets = [t for t in TARGETS if (runs["target"] == t).any()]
    labels = _order(runs)
    palette = dict(zip(labels, sns.color_palette("tab10", len(labels))))  # one colour per arm in every row
    fig, axes = plt.subplots(len(targets), 3, figsize=(15, 3.8 * len(targets)), squeeze=False)
    for row_axes, target in zip(axes, targets):
        mine, arms = df[df["target"] == target], runs[runs["target"] == target]
        order = common.drawn_order(mine, "config", _order(arms))
        for ax, metric, ylabel in zip(row_axes, ["w1", "mmd2"], ["W1 (exact OT) to the target sample",
                                                                 "MMD^2 (reference Gaussian kernel)"]):
            if order:
                common.curve(ax, results.curves(mine, metric), hue="config", hue_order=order, palette=palette)
                ax.legend(title=None, fontsize=7)
            ax.set_xlabel("flow step")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{TARGETS[target]}: {common.flow_setting(mine).replace('Gaussian kernel ', '')}", fontsize=8)
        done = arms[arms["status"] == "COMPLETED"]
        seconds = done.groupby("config")["wall_seconds"].median().reindex(order)
        row_axes[2].barh(range(len(seconds)), seconds.to_numpy(), color=[palette[label] for label in seconds.index])
        row_axes[2].set_yticks(range(len(seconds)), seconds.index, fontsize=7)
        row_axes[2].invert_yaxis()
        row_axes[2].set_xlabel("wall seconds per run (median over seeds; metrics included)")
    metrics = ["w1", "mmd2"] + (HELD_OUT if HELD_OUT[0] in set(df["metric"]) else [])
    tables = [(results.final_table(df, ["target", "config"], metric, how="last"), f"{NAME}: final {metric}")
              for metric in metrics]
    if HELD_OUT[0] in set(df["metric"]):
        tables.append((held_out_summary(df, order=_order(runs)),
                       f"{NAME}: held-out W1 and its ratio to the seed's floor, W2, MMD^2, wall seconds (completed runs)"))
    common.finish(fig, out, NAME, f"SrMMD figure 1 toys: lambda {common.values_text(df, 'lmbda')}, "
                  f"{common.values_text(df, 'steps')} steps; {common.seeds_text(df)}",
                  notes=[common.not_completed_note(df, "config")], tables=tables)


def held_out_summary(df, order) -> pd.DataFrame:
    """One row per (target, arm) over its completed runs: n, held-out W1 mean +- sd, W1 / floor
    (each run against its own seed's floor, which varies more between seeds than the arms do):
    mean and min-max, held-out W2 mean, final MMD^2 mean, median wall seconds."""
    final = {metric: results.per_run(df, metric).set_index("run_dir")["final"]
             for metric in ["sample_w1", "sample_w1_floor", "sample_w2", "mmd2"]}
    done = results.runs(df)
    done = done[done["status"] == "COMPLETED"].copy()
    for metric, values in final.items():
        done[metric] = done["run_dir"].map(values)
    done["ratio"] = done["sample_w1"] / done["sample_w1_floor"]
    rows = []
    for target in [t for t in TARGETS if (done["target"] == t).any()]:
        for arm in [a for a in order if ((done["target"] == target) & (done["config"] == a)).any()]:
            runs = done[(done["target"] == target) & (done["config"] == arm)]
            rows.append({"target": target, "arm": arm, "n": len(runs),
                         "W1 held-out": f"{runs['sample_w1'].mean():.3f} +- {runs['sample_w1'].std(ddof=1):.3f}",
                         "W1 / floor": f"{runs['ratio'].mean():.2f} ({runs['ratio'].min():.2f}-{runs['ratio'].max():.2f})",
                         "W2 held-out": runs["sample_w2"].mean(), "MMD^2": runs["mmd2"].mean(),
                         "wall s": runs["wall_seconds"].median()})  # fmt: skip
    return pd.DataFrame(rows)


def draw_particles(df, runs, out) -> None:
    done = runs[runs["status"] == "COMPLETED"]
    targets = [t for t in TARGETS if (done["target"] == t).any()]
    rows = {t: [done[(done["target"] == t) & (done["config"] == c)].sort_values("seed").iloc[0]
                for c in _order(done[done["target"] == t])] for t in targets}  # fmt: skip
    columns = max(len(chosen) for chosen in rows.values())
    fig, axes = plt.subplots(len(targets), columns, figsize=(2.3 * columns, 2.5 * len(targets)), squeeze=False)
    for row_axes, target in zip(axes, targets):
        for ax in row_axes[len(rows[target]):]:
            ax.axis("off")
        paths = [Path(run["run_dir"]) / "trajectory.npz" for run in rows[target]]
        for ax, run, path in zip(row_axes, rows[target], paths):
            if not path.exists():
                ax.text(0.5, 0.5, f"no trajectory.npz in\n{run['run_id']}", ha="center", transform=ax.transAxes)
                continue
            data = np.load(path)
            target_points, particles = data["target"][:, :2], data["particles"][:, :2]  # (M, 2), (N, 2)
            # the window of the target, a quarter of its extent wider on each side; particles outside are counted
            margin = 0.25 * (target_points.max(0) - target_points.min(0))
            low, high = target_points.min(0) - margin, target_points.max(0) + margin
            outside = int((~((particles >= low) & (particles <= high)).all(1)).sum())
            ax.scatter(*target_points.T, s=3, c="0.6", lw=0)
            ax.scatter(*particles.T, s=3, c="tab:red", lw=0)
            ax.set_xlim(low[0], high[0])
            ax.set_ylim(low[1], high[1])
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{run['config']}\nseed {run['seed']}, step {int(data['snapshot_steps'][-1])}"
                         f"{f', {outside} outside' if outside else ''}", fontsize=7)  # fmt: skip
        row_axes[0].set_ylabel(TARGETS[target], fontsize=8)
    common.finish(fig, out, NAME + "_particles", "Final particles (red) and target (grey), first completed seed",
                  notes=[common.not_completed_note(df, "config")])


def main(argv=None) -> None:
    args, df = common.args_and_rows(__doc__, argv, "particle_flow")
    df = common.keep(df, df["target"].isin(list(TARGETS)) & df["flow"].isin(FLOWS),
                     f"flows {', '.join(FLOWS)} on {', '.join(TARGETS)}")  # fmt: skip
    runs = results.runs(df)
    labels = runs.set_index("run_dir").apply(label, axis=1)
    df, runs = df.assign(config=df["run_dir"].map(labels)), runs.assign(config=runs["run_dir"].map(labels))
    common.theme()
    draw_curves(df, runs, args.out)
    draw_particles(df, runs, args.out)


if __name__ == "__main__":
    main()
