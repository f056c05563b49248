"""Figure 6 (Arbel et al. 2019): MMD flow from N(10, 0.5) to N(0, 1) in 1-D (Gaussian kernel
sigma = 2), with and without noise injection: MMD^2 vs steps (mean +- 1 sd over seeds, log y), W1
vs steps, and the final particles of the first seed (histograms).

    python figures/mmd_flow_gaussians.py --runs runs/figures/mmd_flow_gaussians --out figures/png

Runs: experiments/sweeps/figures/mmd_flow_gaussians[_small].yaml.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import common
from common import results

NAME = "mmd_flow_gaussians"
FLOWS = ["mmd", "mmd_noise"]


def label(row) -> str:
    if row["flow"] == "mmd_noise":
        return f"MMD + noise (beta = {row['noise_level']:g} until step {row['noise_until']})"
    return "MMD (no noise)"


def main(argv=None) -> None:
    args = common.parser(__doc__.split("\n\n")[0]).parse_args(argv)
    df = common.load(args.runs, "particle_flow")
    df = df[(df["target"] == "gaussian_1d") & df["flow"].isin(FLOWS)]
    runs = results.runs(df)
    labels = runs.set_index("run_dir").apply(label, axis=1)
    df = df.assign(config=df["run_dir"].map(labels))
    order = list(dict.fromkeys(labels[runs.sort_values("flow")["run_dir"]]))
    common.theme()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    for ax, metric, ylabel in zip(axes, ["mmd2", "w1"], ["MMD^2 (reference Gaussian kernel, sigma 1)",
                                                       "W1 (exact OT) to the target"]):
        common.curve(ax, results.curves(df, metric), hue="config", hue_order=order)
        ax.set_xlabel("flow step")
        ax.set_ylabel(ylabel)
        ax.legend(title=None, fontsize=8)
    done = runs[runs["status"] == "COMPLETED"].assign(config=lambda t: t["run_dir"].map(labels))
    target_drawn = False
    for color, config in zip(["tab:blue", "tab:orange"], order):
        chosen = done[done["config"] == config].sort_values("seed")
        if chosen.empty or not (Path(chosen.iloc[0]["run_dir"]) / "trajectory.npz").exists():
            continue
        data = np.load(Path(chosen.iloc[0]["run_dir"]) / "trajectory.npz")
        bins = np.linspace(-4, 13, 70)
        if not target_drawn:
            axes[2].hist(data["target"][:, 0], bins=bins, density=True, color="0.6", alpha=0.6, label="target N(0, 1)")
            target_drawn = True
        axes[2].hist(data["particles"][:, 0], bins=bins, density=True, color=color, alpha=0.6,
                     label=f"{config}, seed {chosen.iloc[0]['seed']}")
    axes[2].set_xlabel("x")
    axes[2].set_ylabel("density of the final particles")
    axes[2].set_title("particles at the last step (start: N(10, 0.5))", fontsize=9)
    axes[2].legend(fontsize=7)
    fig.suptitle("1-D Gaussians N(10, 0.5) -> N(0, 1), MMD flow with and without noise injection: "
                 + common.flow_setting(df) + f"\n{common.seeds_text(df)}", fontsize=10)
    common.footnote(fig, common.not_completed_note(df, "config"))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    common.save(fig, args.out, NAME)
    for metric in ["mmd2", "w1"]:
        common.summary_print(results.final_table(df, ["config"], metric, how="last"), f"{NAME}: final {metric}")


if __name__ == "__main__":
    main()
