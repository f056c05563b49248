"""Figure 1 (Arbel et al. 2019, student-teacher): train and validation error vs epochs for the MMD
flow (sgd), noise injection, diffusion and KSD, mean +- 1 sd over seeds, log y.

    python figures/mmd_flow_student_teacher.py --runs runs/figures/mmd_flow_student_teacher --out figures/png

Runs: experiments/sweeps/figures/mmd_flow_student_teacher[_small].yaml. The y-axes are half the
logged MMD^2 (the papers' "1/2 MSE"). Also prints the final validation 1/2 MSE per method.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

import common
from common import results

NAME = "mmd_flow_student_teacher"
METHODS = ["sgd", "noise_injection", "diffusion", "ksd"]


def main(argv=None) -> None:
    args = common.parser(__doc__.split("\n\n")[0]).parse_args(argv)
    df = common.load(args.runs, "student_teacher")
    df = df[df["method"].isin(METHODS)]
    df = df.assign(rule=df["method"].map(common.METHOD_LABELS))
    order = [common.METHOD_LABELS[m] for m in METHODS if m in set(df["method"])]
    common.theme()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, metric in zip(axes, ["train_mmd2", "valid_mmd2"]):
        rows = common.half(results.curves(df, metric))
        common.curve(ax, rows, hue="rule", hue_order=order)
        ax.set_xlabel("epoch")
        ax.set_ylabel(common.HALF_MSE[metric])
        ax.legend(title=None, fontsize=8)
    fig.suptitle("Student-teacher, MMD flow variants (dense readout): " + common.st_setting(df)
                 + f"\n{common.seeds_text(df)}", fontsize=10)
    common.footnote(fig, common.not_completed_note(df, "method"))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    common.save(fig, args.out, NAME)
    table = results.final_table(df, ["method"], "valid_mmd2", how="last")
    table[["mean", "sd"]] = table[["mean", "sd"]] / 2
    common.summary_print(table, f"{NAME}: final validation 1/2 MSE (valid_mmd2 / 2)")


if __name__ == "__main__":
    main()
