"""Figure 5a (Chen et al. 2024): W1 at the end of the DrMMD flow on three rings over lambda
(mean +- 1 sd over seeds), and the W1 curves per lambda.

    python figures/three_rings_lambda.py --runs reproduction/runs/three_rings_lambda --out figures/png/full

Runs: experiments/sweeps/figures/three_rings_lambda[_small].yaml (step 0.1, so the flow's rate is
gamma = lambda * 0.1: a smaller lambda also moves more slowly).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

import common
from common import results

NAME = "three_rings_lambda"


def main(argv=None) -> None:
    args, df = common.args_and_rows(__doc__, argv, "particle_flow")
    df = common.keep(df, (df["target"] == "three_rings") & (df["flow"] == "drmmd"),
                           "DrMMD flows on three rings")
    lambdas = sorted(set(df["lmbda"]))
    common.theme()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    table = results.final_table(df, ["lmbda"], "w1", how="last").sort_values("lmbda")
    axes[0].errorbar(table["lmbda"], table["mean"], yerr=table["sd"].fillna(0), marker="o", capsize=3)
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("lambda")
    axes[0].set_ylabel("W1 (exact OT) at the last step")
    axes[0].set_title("final W1 vs lambda", fontsize=9)
    palette = dict(zip(lambdas, sns.color_palette("viridis", len(lambdas))))
    common.curve(axes[1], results.curves(df, "w1"), hue="lmbda", hue_order=lambdas, palette=palette)
    axes[1].set_xlabel("flow step")
    axes[1].set_ylabel("W1 (exact OT) to the target")
    axes[1].legend(title="lambda", fontsize=8)
    common.finish(
        fig, args.out, NAME,
        f"Three rings, DrMMD flow over lambda (rate = lambda * {common.values_text(df, 'step_size')}): "
        f"{common.flow_setting(df)}\n{common.seeds_text(df, by='lmbda')}",
        notes=[common.not_completed_note(df, "lmbda")],
        tables=[(table, f"{NAME}: final w1")],
    )  # fmt: skip

if __name__ == "__main__":
    main()
