"""DMMD (Galashov, De Bortoli, Gretton 2025), figure (c): what the noise-conditional discriminator learned.
Per target (rows): MMD_u^2 under k_{theta,t} between the data and the data noised to level t, against t,
at the last training step (left; mean +- 1 sd over seeds), and over training steps for each t (middle), and
the training loss -MMD^2 + penalties (right).

    python figures/dmmd_discriminator.py --runs reproduction/runs/dmmd --out figures/png/full

Runs: experiments/sweeps/figures/dmmd[_small].yaml (experiment ``dmmd``; runs that loaded a saved
discriminator have no training curve and are left out).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

import common
from common import results

NAME = "dmmd_discriminator"
PREFIX = "disc_mmd2_t"


def level_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The discriminator's MMD^2 rows with the noise level t as a column (from the metric name)."""
    rows = df[df["metric"].fillna("").str.startswith(PREFIX)]
    rows = rows[rows["status"] == "COMPLETED"]
    return rows.assign(t=rows["metric"].str[len(PREFIX):].astype(float))


def main(argv=None) -> None:
    args, df = common.args_and_rows(__doc__, argv, "dmmd")
    trained = set(df.loc[df["metric"] == "loss", "run_dir"])
    df = common.keep(df, df["run_dir"].isin(trained), "dmmd runs that trained their discriminator")
    levels = level_rows(df)
    targets = sorted(set(results.runs(df)["target"]))
    common.theme()
    fig, axes = plt.subplots(len(targets), 3, figsize=(15, 3.4 * len(targets)), squeeze=False)
    for row, target in enumerate(targets):
        mine = levels[levels["target"] == target]
        last = mine[mine["step"] == mine.groupby("run_dir")["step"].transform("max")]
        ax = axes[row, 0]
        ax.errorbar(*_mean_sd(last), marker="o", capsize=3)
        ax.set_xlabel("noise level t")
        ax.set_ylabel("MMD_u^2(data, noised data)")
        ax.set_title(f"{target}: after training", fontsize=9)
        common.curve(axes[row, 1], mine.assign(level=mine["t"].map(lambda t: f"t = {t:.1f}")), hue="level", logy=False)
        axes[row, 1].set_xlabel("training step")
        axes[row, 1].set_ylabel("MMD_u^2 at level t")
        axes[row, 1].legend(fontsize=6)
        common.curve(axes[row, 2], results.curves(df[df["target"] == target], "loss"), hue=None, logy=False)
        axes[row, 2].set_xlabel("training step")
        axes[row, 2].set_ylabel("loss -MMD^2 + l2 + gradient penalty")
    common.finish(
        fig, args.out, NAME,
        f"DMMD discriminator: {common.values_text(df, 'kernel')} kernel on phi(x, t), "
        f"H = {common.values_text(df, 'hidden')}, "
        f"F = {common.values_text(df, 'features')}, {common.values_text(df, 'train_steps')} Adam steps, "
        f"penalties l2 {common.values_text(df, 'l2_weight')}, gp {common.values_text(df, 'gp_weight')}; "
        f"schedule {common.values_text(df, 'schedule')}\n{common.seeds_text(df)}",
        notes=[common.not_completed_note(df, "target")],
    )  # fmt: skip


def _mean_sd(rows: pd.DataFrame):
    """(t, mean, sd) over runs, per level."""
    summary = rows.groupby("t")["value"].agg(["mean", "std"]).reset_index()
    return summary["t"], summary["mean"], summary["std"].fillna(0.0)


if __name__ == "__main__":
    main()
