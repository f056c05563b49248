"""Figure 1's diffusion arm with a fixed noise level (the camera-ready MMD-flow paper's grid): validation
error vs epochs for each fixed beta and lr, beside the MMD flow without noise and the committed
diffusion arm with the decaying schedule, and the error at the horizon against beta.

    python figures/diffusion_fixed_noise.py --runs reproduction/runs/diffusion_fixed_noise \
        reproduction/runs/drmmd_student_teacher reproduction/runs/mmd_flow_student_teacher --out figures/png/full

Runs: experiments/sweeps/figures/diffusion_fixed_noise[_small].yaml (method diffusion, noise_decay 1: beta_t
= noise_level at every epoch); the references are the sgd arm of drmmd_student_teacher[_small].yaml and the
diffusion arm of mmd_flow_student_teacher[_small].yaml (beta_0 = 1 halved on a schedule), read for the seeds
of the fixed-beta runs only, so that every curve starts from the same teacher, data and particles. Every
curve is read up to the fixed-beta runs' length (10^4 epochs at full scale). Errors are half the logged
valid_mmd2 (the papers' "1/2 MSE"). Prints the table and, per seed, the best fixed setting's error at the
horizon against the MMD flow's (the claim "diffusion helps slightly over no noise"). At one lr the diffusion
step is twice the sgd step (updates/diffusion.py, as in the reference code), so the lr 0.1 diffusion runs
move twice as far per epoch as sgd at lr 0.1.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

import common
from common import results

NAME = "diffusion_fixed_noise"
EPOCHS = (1000, 2000, 5000, 10000)
NO_NOISE = "no noise (sgd)"
SCHEDULED = "diffusion, beta_0 = 1 decaying"


def arm(row: pd.Series) -> str:
    """The label of a run: its rule, and for a fixed-beta diffusion run its beta."""
    if row["method"] == "sgd":
        return NO_NOISE
    if float(row["noise_decay"]) == 1.0:
        return f"diffusion, beta = {row['noise_level']:g}"
    return SCHEDULED


def verdict(table: pd.DataFrame) -> pd.DataFrame:
    """Per seed: the best fixed-beta setting (lowest error at the horizon) against the MMD flow without
    noise and the scheduled diffusion arm of the same seed; ``table`` has one row per run."""
    rows = []
    for seed, members in table.groupby("seed"):
        fixed = members[members["arm"].str.startswith("diffusion, beta = ")]
        if fixed.empty:
            continue
        best = fixed.loc[fixed["final"].idxmin()]
        row = {"seed": seed, "best fixed setting": f"{best['arm']}, lr {best['lr']:g}", "its 1/2 MSE": best["final"]}
        for label in (NO_NOISE, SCHEDULED):
            ref = members[members["arm"] == label]
            for _, r in ref.iterrows():
                row[f"{label}, lr {r['lr']:g}"] = r["final"]
                row[f"best / ({label}, lr {r['lr']:g})"] = best["final"] / r["final"]
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    args, df = common.args_and_rows(__doc__, argv, "student_teacher")
    fixed = (df["method"] == "diffusion") & (df["noise_decay"].astype(float) == 1.0)
    if not fixed.any():
        raise SystemExit("no fixed-beta diffusion run (method diffusion, noise_decay 1) under --runs")
    seeds = set(df.loc[fixed, "seed"])
    drawn = (fixed | df["method"].isin(["sgd", "diffusion"])) & df["seed"].isin(seeds)
    df = common.keep(df, drawn, f"fixed-beta diffusion, sgd and scheduled diffusion, seed(s) {sorted(seeds)}")
    horizon = int(results.runs(df[fixed.loc[df.index]])["epochs"].max())
    df = common.until(df, horizon)
    df = df.assign(arm=df.apply(arm, axis=1), **{"learning rate": df["lr"].map(lambda lr: f"lr {lr:g}")})
    betas = sorted(set(df.loc[df["arm"].str.startswith("diffusion, beta = "), "noise_level"]))
    order = common.drawn_order(df, "arm", [NO_NOISE, SCHEDULED] + [f"diffusion, beta = {b:g}" for b in betas])
    lrs = common.drawn_order(df, "learning rate", [f"lr {lr:g}" for lr in sorted(set(df["lr"]))])
    palette = dict(zip(order, ["0.2", "0.55"] + sns.color_palette("viridis", n_colors=len(betas))))

    common.theme()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    rows = common.half(results.curves(df, "valid_mmd2"))
    sns.lineplot(data=rows, x="step", y="value", hue="arm", style="learning rate", hue_order=order, style_order=lrs,
                 palette=palette, units="run_dir", estimator=None, lw=1.0, ax=axes[0])
    axes[0].set_yscale("log")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel(common.HALF_MSE["valid_mmd2"])
    axes[0].legend(title=None, fontsize=7)

    per_run = results.per_run(df, "valid_mmd2")
    per_run = per_run[per_run["status"] == "COMPLETED"].assign(final=lambda t: t["final"] / 2)  # keeps df's arm
    fixed_runs = per_run[per_run["arm"].str.startswith("diffusion, beta = ")]
    for lr, members in fixed_runs.groupby("lr"):
        members = members.sort_values("noise_level")
        axes[1].plot(members["noise_level"], members["final"], "o-", label=f"fixed beta, lr {lr:g}")
    for label, line in ((NO_NOISE, "--"), (SCHEDULED, ":")):
        for _, ref in per_run[per_run["arm"] == label].iterrows():
            axes[1].axhline(ref["final"], ls=line, color=palette.get(label, "0.4"),
                            label=f"{label}, lr {ref['lr']:g}, seed {ref['seed']}")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("fixed noise level beta")
    axes[1].set_ylabel(f"validation 1/2 MSE at epoch {horizon}")
    axes[1].legend(title=None, fontsize=7)

    table = common.final_half_mse(df, ["arm", "lr"])[["arm", "lr", "mean", "count", "excluded"]]
    common.finish(
        fig, args.out, NAME,
        f"Student-teacher, MMD flow + diffusion with a fixed noise level, read to epoch {horizon}: "
        f"{common.st_setting(df)}\nseed(s) {', '.join(map(str, sorted(seeds)))}: one curve per run",
        notes=[common.not_completed_note(df, "arm")],
        tables=[(table, f"{NAME}: validation 1/2 MSE (valid_mmd2 / 2) at epoch {horizon}"),
                (common.at_epochs(df, ["arm", "lr"], "valid_mmd2", EPOCHS), f"{NAME}: validation 1/2 MSE at epochs"),
                (verdict(per_run), f"{NAME}: the best fixed beta against no noise, per seed (1/2 MSE at {horizon})")],
    )  # fmt: skip


if __name__ == "__main__":
    main()
