"""Adaptive bandwidth of the MMD flow (Galashov, De Bortoli, Gretton 2025, Prop. 3.1): (a) the optimal
bandwidth alpha* against |mu| between N(mu, I) and N(0, I) for several d, the formula
ReLU(|mu|^2 / (d + 2) - 2 sigma^2)^(1/2) (lines) against the numerical argmax of the closed-form gradient
norm |grad_mu MMD^2_alpha| over a grid of alpha (markers); (b) the flows of the sweep, per dimension d
(rows): the distance of the particles' mean from the target's (the logged ``mean_gap``),
W2 (exact OT) and MMD^2 (reference Gaussian kernel of bandwidth sqrt(d)) over flow steps, the adaptive
flow against fixed bandwidths of the scaled kernel (colour), one line style per |mu_0| (mean +- 1 sd over seeds).

    python figures/adaptive_bandwidth.py --runs reproduction/runs/adaptive_bandwidth --out figures/png/full

Runs: experiments/sweeps/figures/adaptive_bandwidth[_small].yaml.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import common
from common import results
from studentteacher import bandwidth

NAME = "adaptive_bandwidth"
DIMENSIONS = (2, 10, 50)
SIGMA = 1.0


def panel_optimal_bandwidth(ax) -> None:
    """(a): alpha*(|mu|) from the formula and from a numerical argmax, for each d of :data:`DIMENSIONS`."""
    alphas = torch.linspace(1e-3, 12.0, 24_001, dtype=torch.float64)
    for d, color in zip(DIMENSIONS, ["tab:blue", "tab:orange", "tab:green"]):
        distances = np.linspace(0.0, 4.0 * np.sqrt(2 * (d + 2)) * SIGMA, 200)
        mus = torch.zeros(len(distances), d, dtype=torch.float64)
        mus[:, 0] = torch.as_tensor(distances)
        ax.plot(distances, bandwidth.optimal_bandwidth(mus, SIGMA).numpy(), color=color, label=f"d = {d}: formula")
        coarse = mus[::12]
        norms = bandwidth.mmd2_gradient_norm(coarse[:, None, :], SIGMA, alphas[None, :])  # (P, A)
        argmax = alphas[norms.argmax(1)].numpy()
        argmax[argmax <= float(alphas[0])] = 0.0  # the sup at alpha -> 0 (below the critical distance)
        ax.plot(distances[::12], argmax, "o", color=color, ms=3, label=f"d = {d}: argmax of |grad MMD^2|")
    ax.set_xlabel("|mu| (distance of the means)")
    ax.set_ylabel("optimal bandwidth alpha*")
    ax.set_title("(a) alpha* = ReLU(|mu|^2 / (d + 2) - 2 sigma^2)^(1/2), sigma = 1", fontsize=9)
    ax.legend(fontsize=6)


def label(row) -> str:
    if row["flow"] == "mmd_adaptive_bandwidth":
        return f"adaptive (floor {row['bandwidth']:g})"
    return f"fixed alpha = {row['bandwidth']:g}"


def main(argv=None) -> None:
    args, df = common.args_and_rows(__doc__, argv, "particle_flow")
    df = common.keep(df, (df["target"] == "gaussian_nd") & (df["kernel"] == "gaussian_scaled"),
                     "MMD flows with the scaled Gaussian kernel on gaussian_nd")  # fmt: skip
    runs = results.runs(df)
    labels = runs.set_index("run_dir").apply(label, axis=1)
    distance = runs.set_index("run_dir")["source_distance"].map(lambda v: f"|mu_0| = {v:g}")
    df = df.assign(config=df["run_dir"].map(labels), start=df["run_dir"].map(distance))
    order = sorted(set(labels), key=lambda name: (not name.startswith("adaptive"), float(name.split()[-1].strip(")"))))
    dims = sorted(set(runs["dim"]))
    common.theme()
    fig, axes = plt.subplots(len(dims), 4, figsize=(19, 3.6 * len(dims)), squeeze=False)
    panel_optimal_bandwidth(axes[0, 0])
    for row, d in enumerate(dims):
        in_d = set(runs.loc[runs["dim"] == d, "run_dir"])
        panels = [(results.curves(df[df["run_dir"].isin(in_d)], "mean_gap"), "|mean(Y) - mean(X)|"),
                  (results.curves(df[df["run_dir"].isin(in_d)], "w2"), "W2 (exact OT)"),
                  (results.curves(df[df["run_dir"].isin(in_d)], "mmd2"), f"MMD^2 (reference sigma sqrt({d}))")]
        for ax, (rows, ylabel) in zip(axes[row, 1:], panels):
            if not rows.empty:
                common.curve(ax, rows, hue="config", style="start", hue_order=order)
                ax.legend(fontsize=6)
            ax.set_xlabel("flow step")
            ax.set_ylabel(ylabel)
            ax.set_title(f"(b) d = {d}", fontsize=9)
        if row:
            axes[row, 0].set_axis_off()
    table = results.final_table(df.assign(dim_start=df["dim"].astype(str) + ", " + df["start"]), ["dim_start", "config"],
                                "w2")  # fmt: skip
    gap_table = results.final_table(df.assign(dim_start=df["dim"].astype(str) + ", " + df["start"]),
                                    ["dim_start", "config"], "mean_gap")  # fmt: skip
    common.finish(
        fig, args.out, NAME,
        f"MMD flow N(mu_0, I) -> N(0, I) with the scaled Gaussian kernel: adaptive alpha_n = max(alpha*(mean gap), floor) "
        f"against fixed bandwidths; N = {common.values_text(df, 'n_particles')}, {common.values_text(df, 'steps')} steps, "
        f"step {common.values_text(df, 'step_size')} (per d)\n{common.seeds_text(df)}",
        notes=[common.not_completed_note(df, "config")],
        tables=[(gap_table, f"{NAME}: final distance of the means"),
                (table, f"{NAME}: final W2")],
    )  # fmt: skip


if __name__ == "__main__":
    main()
