"""Figure 2 (Chen et al. 2024, student-teacher): MMD, MMD + noise injection, DrMMD (lambda = 0.1)
and DrMMD + noise injection; train and validation error vs epochs, mean +- 1 sd over seeds (each
seed thin), log y.

    python figures/drmmd_student_teacher.py --runs reproduction/runs/drmmd_student_teacher --out figures/png/full

Runs: experiments/sweeps/figures/drmmd_student_teacher[_small].yaml. The y-axes are half the
logged MMD^2 (the papers' "1/2 MSE"), whatever the rule optimised. Prints the validation 1/2 MSE
at the epochs the papers discuss and at the end, per configuration.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

import common
from common import results

NAME = "drmmd_student_teacher"
ORDER = ["MMD", "MMD + noise", "DrMMD", "DrMMD + noise"]
EPOCHS = (500, 1000, 2000, 3000, 5000, 7500, 10000, 15000)


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
    df = df.assign(config=df["run_dir"].map(labels))
    df = common.keep(df, df["config"].notna(), "sgd, noise_injection and fixed-lambda drmmd runs")
    lambdas = common.values_text(df[df["method"] == "drmmd"], "lmbda")
    order = common.drawn_order(df, "config", ORDER)
    common.theme()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, metric in zip(axes, ["train_mmd2", "valid_mmd2"]):
        common.curve(ax, common.half(results.curves(df, metric)), hue="config", hue_order=order, seeds=True)
        ax.set_xlabel("epoch")
        ax.set_ylabel(common.HALF_MSE[metric])
        ax.legend(title=None, fontsize=8)
    table = results.final_table(df, ["config"], "valid_mmd2", how="last")
    table[["mean", "sd"]] = table[["mean", "sd"]] / 2
    common.finish(
        fig, args.out, NAME,
        f"Student-teacher, MMD vs DrMMD (lambda = {lambdas}, lr {common.values_text(df, 'lr')}): "
        f"{common.st_setting(df)}\n{common.seeds_text(df, by='config')} (thin: each seed)",
        notes=[common.not_completed_note(df, "config")],
        tables=[(table, f"{NAME}: final validation 1/2 MSE (valid_mmd2 / 2)"),
                (common.at_epochs(df, ["config"], "valid_mmd2", EPOCHS), f"{NAME}: validation 1/2 MSE at epochs")],
    )  # fmt: skip


if __name__ == "__main__":
    main()
