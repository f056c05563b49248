"""Figure 7 (readout ablation): the papers' dense second layer vs the mean-field particle readout
under every student-teacher rule: validation error per rule and readout at a common epoch, and the
learning curves of each readout.

    python figures/readout_ablation.py --runs reproduction/runs/readout_ablation \
        reproduction/runs/drmmd_student_teacher reproduction/runs/mmd_flow_student_teacher --out figures/png/full

Runs: experiments/sweeps/figures/readout_ablation[_small].yaml (particle readout); the dense runs
are Figures 1 and 2's (DrMMD: lambda 0.1 without noise). The bars compare the readouts at the
shortest run's length (10^4 epochs at full scale), the curves run to each run's end. Errors are
half the logged valid_mmd2 (the papers' "1/2 MSE"); mean +- 1 sd over seeds.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

import common
from common import results

NAME = "readout_ablation"
METHODS = ["sgd", "noise_injection", "diffusion", "ksd", "drmmd"]
EPOCHS = (1000, 5000, 10000, 15000)


def main(argv=None) -> None:
    args, df = common.args_and_rows(__doc__, argv, "student_teacher")
    drawn = df["method"].isin(METHODS) & ~df["drmmd_noise"].astype(bool) & ~df["adaptive_lmbda"].astype(bool)
    df = common.keep(df, drawn, f"methods {', '.join(METHODS)} (drmmd without noise, fixed lambda)")
    df = df.assign(rule=df["method"].map(common.METHOD_LABELS))
    order = common.drawn_order(df, "rule", [common.METHOD_LABELS[m] for m in METHODS])
    readouts = common.drawn_order(df, "readout", ["dense", "particle"])
    horizon = int(results.runs(df)["epochs"].min())
    common.theme()
    fig, axes = plt.subplots(1, 1 + len(readouts), figsize=(max(12, 5 * (1 + len(readouts))), 4.6), squeeze=False)
    axes = axes[0]
    table = common.final_half_mse(common.until(df, horizon), ["readout", "rule"])
    width = 0.8 / max(1, len(readouts))
    for k, readout in enumerate(readouts):
        rows = table[table["readout"] == readout].set_index("rule").reindex(order)
        x = [i + (k - (len(readouts) - 1) / 2) * width for i in range(len(order))]
        axes[0].bar(x, rows["mean"], width=width, yerr=rows["sd"].fillna(0), capsize=3, label=f"{readout} readout")
    axes[0].set_xticks(range(len(order)))
    axes[0].set_xticklabels(order, rotation=20, ha="right", fontsize=8)
    axes[0].set_yscale("log")
    axes[0].set_ylabel(f"{common.HALF_MSE['valid_mmd2']} at epoch {horizon}")
    axes[0].set_title(f"validation error at epoch {horizon}", fontsize=9)
    axes[0].legend(fontsize=8)
    rows = common.half(results.curves(df, "valid_mmd2"))
    palette = dict(zip(order, sns.color_palette(n_colors=len(order))))  # one colour per rule in every panel
    for ax, readout in zip(axes[1:], readouts):
        common.curve(ax, rows[rows["readout"] == readout], hue="rule", palette=palette,
                     hue_order=common.drawn_order(df[df["readout"] == readout], "rule", order))
        ax.set_xlabel("epoch")
        ax.set_ylabel(common.HALF_MSE["valid_mmd2"])
        ax.set_title(f"{readout} readout ({common.values_text(df[df['readout'] == readout], 'epochs')} epochs)",
                     fontsize=9)
        ax.legend(title=None, fontsize=8)
    lambdas = common.values_text(df[df["method"] == "drmmd"], "lmbda")
    common.finish(
        fig, args.out, NAME,
        f"Student-teacher, dense vs particle readout (DrMMD lambda = {lambdas}): {common.st_setting(df)}\n"
        f"{common.seeds_text(df, by=['readout', 'rule'])}",
        notes=[common.not_completed_note(df, "rule")],
        tables=common.half_mse_tables(NAME, df, ["readout", "rule"], EPOCHS, horizon),
    )  # fmt: skip


if __name__ == "__main__":
    main()
