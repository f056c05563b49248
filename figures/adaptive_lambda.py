"""Figure 5b (Chen et al. 2024): lambda_n and the step size gamma_n along the adaptive DrMMD flow on
three rings (lambda_{n+1} = lambda_0 sqrt(D_{n+1} / D_0), gamma_n = max(lambda_n * step, 1e-4)),
mean +- 1 sd over seeds, log y.

    python figures/adaptive_lambda.py --runs reproduction/runs/three_rings --out figures/png/full

Runs: the drmmd_adaptive runs of experiments/sweeps/figures/three_rings[_small].yaml.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

import common
from common import results

NAME = "adaptive_lambda"


def main(argv=None) -> None:
    args, df = common.args_and_rows(__doc__, argv, "particle_flow")
    df = common.keep(df, df["flow"] == "drmmd_adaptive", "drmmd_adaptive runs")
    df = df.assign(config=df["lmbda"].map(lambda v: f"lambda_0 = {v:g}"))
    common.theme()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, metric, ylabel in zip(axes, ["lmbda", "step_size", "w1"],
                                  ["lambda_n", "step size gamma_n", "W1 (exact OT) to the target"]):
        common.curve(ax, results.curves(df, metric), hue="config")
        ax.set_xlabel("flow step")
        ax.set_ylabel(ylabel)
        ax.legend(title=None, fontsize=8)
    common.finish(
        fig, args.out, NAME,
        f"Adaptive DrMMD on {common.values_text(df, 'target')}: {common.flow_setting(df)}, "
        f"gamma_n = max(lambda_n * {common.values_text(df, 'step_size')}, 1e-4)\n{common.seeds_text(df)}",
        notes=[common.not_completed_note(df, "config")],
        tables=[(results.final_table(df, ["config"], "lmbda", how="last"), f"{NAME}: final lambda_n")],
    )  # fmt: skip

if __name__ == "__main__":
    main()
