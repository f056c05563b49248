"""Figure 2 (Chen et al. 2024, student-teacher): MMD, MMD + noise injection, DrMMD (lambda = 0.1)
and DrMMD + noise injection; train and validation error vs epochs, mean +- 1 sd over seeds, log y.

    python figures/drmmd_student_teacher.py --runs runs/figures/drmmd_student_teacher --out figures/png

Runs: experiments/sweeps/figures/drmmd_student_teacher[_small].yaml. The y-axes are half the
logged MMD^2 (the papers' "1/2 MSE"), whatever the rule optimised. Also prints the final
validation 1/2 MSE per configuration.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

import common
from common import results

NAME = "drmmd_student_teacher"
ORDER = ["MMD", "MMD + noise", "DrMMD", "DrMMD + noise"]


def label(row) -> str | None:
    if row["method"] == "sgd":
        return "MMD"
    if row["method"] == "noise_injection":
        return "MMD + noise"
    if row["method"] == "drmmd" and not row["adaptive_lmbda"]:
        return f"DrMMD{' + noise' if row['drmmd_noise'] else ''}"
    return None


def main(argv=None) -> None:
    args = common.parser(__doc__.split("\n\n")[0]).parse_args(argv)
    df = common.load(args.runs, "student_teacher")
    labels = results.runs(df).set_index("run_dir").apply(label, axis=1)
    df = df.assign(config=df["run_dir"].map(labels)).dropna(subset=["config"])
    lambdas = sorted(set(df.loc[df["method"] == "drmmd", "lmbda"]))
    order = [c for c in ORDER if c in set(df["config"])]
    common.theme()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, metric in zip(axes, ["train_mmd2", "valid_mmd2"]):
        rows = common.half(results.curves(df, metric))
        common.curve(ax, rows, hue="config", hue_order=order)
        ax.set_xlabel("epoch")
        ax.set_ylabel(common.HALF_MSE[metric])
        ax.legend(title=None, fontsize=8)
    fig.suptitle(f"Student-teacher, MMD vs DrMMD (lambda = {'/'.join(map(str, lambdas))}; dense readout): "
                 + common.st_setting(df) + f"\n{common.seeds_text(df)}", fontsize=10)
    common.footnote(fig, common.not_completed_note(df, "config"))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    common.save(fig, args.out, NAME)
    table = results.final_table(df, ["config"], "valid_mmd2", how="last")
    table[["mean", "sd"]] = table[["mean", "sd"]] / 2
    common.summary_print(table, f"{NAME}: final validation 1/2 MSE (valid_mmd2 / 2)")


if __name__ == "__main__":
    main()
