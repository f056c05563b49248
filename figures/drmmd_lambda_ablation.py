"""Figure 3 (Chen et al. 2024): DrMMD on the student-teacher problem over lambda, without and with
noise injection: final validation error vs lambda, and the validation learning curves per lambda.

    python figures/drmmd_lambda_ablation.py --runs runs/figures/drmmd_lambda_ablation --out figures/png

Runs: experiments/sweeps/figures/drmmd_lambda_ablation[_small].yaml (lr tied to lambda, see the
sweep file). Errors are half the logged valid_mmd2 (the papers' "1/2 MSE"); mean +- 1 sd over seeds.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

import common
from common import results

NAME = "drmmd_lambda_ablation"


def main(argv=None) -> None:
    args = common.parser(__doc__.split("\n\n")[0]).parse_args(argv)
    df = common.load(args.runs, "student_teacher")
    df = df[(df["method"] == "drmmd") & ~df["adaptive_lmbda"].astype(bool)]
    df = df.assign(noise=df["drmmd_noise"].map({False: "without noise", True: "with noise injection"}))
    lambdas = sorted(set(df["lmbda"]))
    common.theme()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.3))
    table = results.final_table(df, ["noise", "lmbda"], "valid_mmd2", how="last")
    table[["mean", "sd"]] = table[["mean", "sd"]] / 2
    for noise, rows in table.groupby("noise", sort=False):
        rows = rows.sort_values("lmbda")
        axes[0].errorbar(rows["lmbda"], rows["mean"], yerr=rows["sd"].fillna(0), marker="o", capsize=3, label=noise)
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("lambda")
    axes[0].set_ylabel("final " + common.HALF_MSE["valid_mmd2"])
    axes[0].set_title("final validation error vs lambda", fontsize=9)
    axes[0].legend(fontsize=8)
    palette = dict(zip(lambdas, sns.color_palette("viridis", len(lambdas))))
    rows = common.half(results.curves(df, "valid_mmd2"))
    for ax, noise in zip(axes[1:], ["without noise", "with noise injection"]):
        common.curve(ax, rows[rows["noise"] == noise], hue="lmbda", palette=palette, hue_order=lambdas)
        ax.set_xlabel("epoch")
        ax.set_ylabel(common.HALF_MSE["valid_mmd2"])
        ax.set_title(f"DrMMD {noise}", fontsize=9)
        ax.legend(title="lambda", fontsize=8)
    fig.suptitle("Student-teacher, DrMMD lambda ablation (dense readout, lr = 1.1 lambda / (1 + lambda)): "
                 + common.st_setting(df) + f"\n{common.seeds_text(df)}", fontsize=10)
    common.footnote(fig, common.not_completed_note(df, "lmbda"))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    common.save(fig, args.out, NAME)
    common.summary_print(table, f"{NAME}: final validation 1/2 MSE (valid_mmd2 / 2)")


if __name__ == "__main__":
    main()
