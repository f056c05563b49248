"""Readout ablation: the papers' dense second layer vs the mean-field particle readout under every
student-teacher rule: final validation error per rule and readout, and the learning curves.

    python figures/readout_ablation.py --runs runs/figures/readout_ablation --out figures/png

Runs: experiments/sweeps/figures/readout_ablation[_small].yaml. Errors are half the logged
valid_mmd2 (the papers' "1/2 MSE"); mean +- 1 sd over seeds.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

import common
from common import results

NAME = "readout_ablation"
METHODS = ["sgd", "noise_injection", "diffusion", "ksd", "drmmd"]


def main(argv=None) -> None:
    args = common.parser(__doc__.split("\n\n")[0]).parse_args(argv)
    df = common.load(args.runs, "student_teacher")
    df = df[df["method"].isin(METHODS) & ~(df["drmmd_noise"].astype(bool)) & ~df["adaptive_lmbda"].astype(bool)]
    df = df.assign(rule=df["method"].map(common.METHOD_LABELS))
    order = [common.METHOD_LABELS[m] for m in METHODS if m in set(df["method"])]
    common.theme()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    table = results.final_table(df, ["readout", "rule"], "valid_mmd2", how="last")
    table[["mean", "sd"]] = table[["mean", "sd"]] / 2
    readouts = [r for r in ["dense", "particle"] if r in set(table["readout"])]
    width = 0.8 / max(1, len(readouts))
    for k, readout in enumerate(readouts):
        rows = table[table["readout"] == readout].set_index("rule").reindex(order)
        x = [i + (k - (len(readouts) - 1) / 2) * width for i in range(len(order))]
        axes[0].bar(x, rows["mean"], width=width, yerr=rows["sd"].fillna(0), capsize=3, label=f"{readout} readout")
    axes[0].set_xticks(range(len(order)))
    axes[0].set_xticklabels(order, rotation=20, ha="right", fontsize=8)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("final " + common.HALF_MSE["valid_mmd2"])
    axes[0].set_title("final validation error", fontsize=9)
    axes[0].legend(fontsize=8)
    rows = common.half(results.curves(df, "valid_mmd2"))
    for ax, readout in zip(axes[1:], readouts):
        common.curve(ax, rows[rows["readout"] == readout], hue="rule", hue_order=order)
        ax.set_xlabel("epoch")
        ax.set_ylabel(common.HALF_MSE["valid_mmd2"])
        ax.set_title(f"{readout} readout", fontsize=9)
        ax.legend(title=None, fontsize=8)
    lambdas = sorted(set(df.loc[df["method"] == "drmmd", "lmbda"]))
    fig.suptitle(f"Student-teacher, dense vs particle readout (DrMMD lambda = {'/'.join(map(str, lambdas))}): "
                 + common.st_setting(df) + f"\n{common.seeds_text(df)}", fontsize=10)
    common.footnote(fig, common.not_completed_note(df, "rule"))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    common.save(fig, args.out, NAME)
    common.summary_print(table, f"{NAME}: final validation 1/2 MSE (valid_mmd2 / 2)")


if __name__ == "__main__":
    main()
