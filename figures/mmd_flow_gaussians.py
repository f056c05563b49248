"""Figure 6 (Arbel et al. 2019): MMD flow from N(10, 0.5) to N(0, 1) in 1-D (Gaussian kernel
sigma = 2), with and without noise injection: MMD^2 vs steps with the flow's own kernel (the
paper's statement is about it: the logged ``divergence``) and with the toy's reference kernel
(sigma 1, the logged ``mmd2``), W1 vs steps (mean +- 1 sd over seeds, log y), and the final
particles of the first seed (histograms over the whole range the particles reach, nothing cropped);
prints the final values and the fraction of particles stranded far from the target (|x| > 3).

    python figures/mmd_flow_gaussians.py --runs reproduction/runs/mmd_flow_gaussians --out figures/png/full

Runs: experiments/sweeps/figures/mmd_flow_gaussians[_small].yaml.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import common
from common import results

NAME = "mmd_flow_gaussians"
FLOWS = ["mmd", "mmd_noise"]


def label(row) -> str:
    if row["flow"] == "mmd_noise":
        return f"MMD + noise (beta = {row['noise_level']:g} until step {row['noise_until']})"
    return "MMD (no noise)"


#: A particle farther than this from the target's mean 0 (3 target sd) counts as stranded.
STRANDED_BEYOND = 3.0
#: The step at which the fraction stranded is also reported: the length of the runs before 2026-12-03.
EARLIER_STEP = 20_000


def stranded_table(done: pd.DataFrame) -> pd.DataFrame:
    """Per completed run with a trajectory: the fraction of particles with |x| > STRANDED_BEYOND at
    EARLIER_STEP (if snapshotted) and at the last step."""
    rows = []
    for _, run in done.sort_values(["config", "seed"]).iterrows():
        path = Path(run["run_dir"]) / "trajectory.npz"
        if not path.exists():
            continue
        data = np.load(path)
        steps = list(data["snapshot_steps"])
        earlier = (np.abs(data["snapshots"][steps.index(EARLIER_STEP), :, 0]) > STRANDED_BEYOND).mean() \
            if EARLIER_STEP in steps else np.nan
        rows.append({"config": run["config"], "seed": run["seed"], f"stranded at {EARLIER_STEP}": earlier,
                     "stranded at the last step": (np.abs(data["particles"][:, 0]) > STRANDED_BEYOND).mean()})
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    args, df = common.args_and_rows(__doc__, argv, "particle_flow")
    df = common.keep(df, (df["target"] == "gaussian_1d") & df["flow"].isin(FLOWS),
                           "MMD flows (with and without noise) on the 1-D Gaussians")
    runs = results.runs(df)
    labels = runs.set_index("run_dir").apply(label, axis=1)
    df = df.assign(config=df["run_dir"].map(labels))
    order = common.drawn_order(df, "config", list(dict.fromkeys(labels[runs.sort_values("flow")["run_dir"]])))
    common.theme()
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.5))
    flow_sigma = common.values_text(df, "bandwidth")
    for ax, metric, ylabel in zip(axes, ["divergence", "mmd2", "w1"],
                                  [f"MMD^2, the flow's kernel (sigma {flow_sigma})",
                                   "MMD^2, reference kernel (sigma 1)", "W1 (exact OT) to the target"]):
        common.curve(ax, results.curves(df, metric), hue="config", hue_order=order)
        ax.set_xlabel("flow step")
        ax.set_ylabel(ylabel)
        ax.legend(title=None, fontsize=8)
    done = runs[runs["status"] == "COMPLETED"].assign(config=lambda t: t["run_dir"].map(labels))
    shown = {}
    for config in order:
        chosen = done[done["config"] == config].sort_values("seed")
        if not chosen.empty and (Path(chosen.iloc[0]["run_dir"]) / "trajectory.npz").exists():
            shown[config] = (chosen.iloc[0]["seed"], np.load(Path(chosen.iloc[0]["run_dir"]) / "trajectory.npz"))
    if shown:
        target = next(iter(shown.values()))[1]["target"][:, 0]
        everything = np.concatenate([target, *(data["particles"][:, 0] for _, data in shown.values())])
        bins = np.linspace(everything.min(), everything.max(), 120)
        axes[3].hist(target, bins=bins, density=True, color="0.6", alpha=0.6, label="target N(0, 1)")
        for color, (config, (seed, data)) in zip(["tab:blue", "tab:orange"], shown.items()):
            axes[3].hist(data["particles"][:, 0], bins=bins, density=True, color=color, alpha=0.6,
                         label=f"{config}, seed {seed}")
        axes[3].set_yscale("log")
    axes[3].set_xlabel("x (the whole range of the particles)")
    axes[3].set_ylabel("density of the final particles (log)")
    axes[3].set_title("particles at the last step (start: N(10, 0.5))", fontsize=9)
    axes[3].legend(fontsize=7)
    common.finish(
        fig, args.out, NAME,
        "1-D Gaussians N(10, 0.5) -> N(0, 1), MMD flow with and without noise injection: "
        f"{common.flow_setting(df)}, step {common.values_text(df, 'step_size')}\n{common.seeds_text(df, by='config')}",
        notes=[common.not_completed_note(df, "config")],
        tables=[(results.final_table(df, ["config"], metric, how="last"), f"{NAME}: final {metric}")
                for metric in ["divergence", "mmd2", "w1"]]
        + [(stranded_table(done), f"{NAME}: fraction of the particles with |x| > {STRANDED_BEYOND:g}")],
    )  # fmt: skip


if __name__ == "__main__":
    main()
