"""Figure 3 (Chen et al. 2024): DrMMD on the student-teacher problem over lambda, without and with
noise injection: final validation error vs lambda, and the validation learning curves per lambda,
with the MMD flow of the same noise setting beside them (the paper's Figure 3 draws it too).

    python figures/drmmd_lambda_ablation.py --runs reproduction/runs/drmmd_lambda_ablation \
        reproduction/runs/drmmd_student_teacher --out figures/png/full

Runs: experiments/sweeps/figures/drmmd_lambda_ablation[_small].yaml (the step lr paired with
lambda as in the paper's code, see the sweep file) and Figure 2's runs: its DrMMD arms (lambda 0.1,
lr 0.1) and its MMD arms (sgd without noise, noise injection with it), drawn as lambda = inf, the
limit in which DrMMD is MMD. The legend gives each lambda's lr. Errors are half the logged
valid_mmd2 (the papers' "1/2 MSE"); mean +- 1 sd over the seeds each lambda has (the count is printed).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

import common
from common import results

NAME = "drmmd_lambda_ablation"
EPOCHS = (1000, 5000, 10000, 15000)
MMD_ARMS = {"sgd": False, "noise_injection": True}  # method -> drmmd_noise of the DrMMD runs it is drawn beside
NOISE = {False: "without noise", True: "with noise injection"}


def in_order(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a table by ``noise`` and ``lmbda``: without noise first, then by lambda (MMD, inf, last)."""
    if table.empty:
        return table
    rank = {noise: position for position, noise in enumerate(NOISE.values())}
    return table.sort_values(["noise", "lmbda"], key=lambda column: column.map(rank) if column.name == "noise" else column)


def main(argv=None) -> None:
    args, df = common.args_and_rows(__doc__, argv, "student_teacher")
    fixed_drmmd = (df["method"] == "drmmd") & ~df["adaptive_lmbda"].astype(bool)
    df = common.keep(df, fixed_drmmd | df["method"].isin(MMD_ARMS.keys()),
                     "fixed-lambda drmmd runs and the MMD arms (sgd, noise_injection)")
    mmd = df["method"].isin(MMD_ARMS.keys())
    df = df.assign(noise=df["drmmd_noise"].where(~mmd, df["method"].map(MMD_ARMS)).astype(bool).map(NOISE),
                   lmbda=df["lmbda"].where(~mmd, float("inf")))
    df = df.assign(setting=df["lmbda"].map(lambda value: "MMD" if value == float("inf") else f"{value:g}")
                   + " (lr " + df["lr"].map("{:g}".format) + ")")
    settings = results.runs(df).sort_values("lmbda").drop_duplicates("setting")["setting"].tolist()
    common.theme()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.5))
    table = in_order(common.final_half_mse(df, ["noise", "lmbda", "lr"]))
    for noise, rows in table.groupby("noise", sort=False):
        finite = rows[rows["lmbda"] < float("inf")]
        line = axes[0].errorbar(finite["lmbda"], finite["mean"], yerr=finite["sd"].fillna(0), marker="o", capsize=3,
                                label=f"DrMMD {noise}")
        for _, row in rows[rows["lmbda"] == float("inf")].iterrows():
            axes[0].axhline(row["mean"], ls="--", lw=1, color=line[0].get_color(), label=f"MMD {noise}")
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("lambda")
    axes[0].set_ylabel("final " + common.HALF_MSE["valid_mmd2"])
    axes[0].set_title("final validation error vs lambda", fontsize=9)
    axes[0].legend(fontsize=8)
    palette = dict(zip(settings, sns.color_palette("viridis", len(settings))))
    palette.update({setting: "black" for setting in settings if setting.startswith("MMD")})
    rows = common.half(results.curves(df, "valid_mmd2"))
    for ax, noise in zip(axes[1:], NOISE.values()):
        common.curve(ax, rows[rows["noise"] == noise], hue="setting", palette=palette, seeds=True,
                     hue_order=[s for s in settings if s in set(rows.loc[rows["noise"] == noise, "setting"])])
        ax.set_xlabel("epoch")
        ax.set_ylabel(common.HALF_MSE["valid_mmd2"])
        ax.set_title(f"DrMMD and MMD {noise}", fontsize=9)
        ax.legend(title="lambda (lr)", fontsize=7)
    common.finish(
        fig, args.out, NAME,
        f"Student-teacher, DrMMD lambda ablation: {common.st_setting(df)}\n{common.seeds_text(df, by=['noise', 'setting'])} (thin: each seed)",
        notes=[common.not_completed_note(df, "setting")],
        tables=[(table, f"{NAME}: final validation 1/2 MSE (valid_mmd2 / 2); lambda inf: MMD"),
                (in_order(common.at_epochs(df, ["noise", "lmbda"], "valid_mmd2", EPOCHS)),
                 f"{NAME}: validation 1/2 MSE at epochs")],
    )  # fmt: skip


if __name__ == "__main__":
    main()
