"""Figure 2 (Chen et al. 2024, student-teacher): MMD, MMD + noise injection, DrMMD (lambda = 0.1)
and DrMMD + noise injection, and SrMMD (lambda = 0.1; Tian et al. 2026) where its runs are given; train and validation error vs epochs, mean +- 1 sd over seeds (each
seed thin), log y; a third panel draws each DrMMD seed without noise alone, the runs to 30 000
epochs and runs still going (INTERRUPTED, resumed by a later session) included, with the drop
threshold.

    python figures/drmmd_student_teacher.py --runs reproduction/runs/drmmd_student_teacher \\
        reproduction/runs/drmmd_student_teacher_seeds reproduction/runs/drmmd_student_teacher_30k \\
        reproduction/runs/srmmd_student_teacher --out figures/png/full

Runs: experiments/sweeps/figures/drmmd_student_teacher[_small].yaml (seeds 1-3),
drmmd_student_teacher_seeds.yaml (seeds 4-6) and drmmd_student_teacher_30k.yaml (DrMMD to 30 000
epochs, seeds 1 and 2; their first 15 000 epochs repeat the 15 000-epoch runs of the same seeds, so
they are drawn only in the third panel and enter only the drop table), srmmd_student_teacher.yaml (SrMMD,
the ``ksd`` step with ksd_reg = lambda, docs/srmmd_student_teacher.md). The y-axes are half the
logged MMD^2 (the papers' "1/2 MSE"), whatever the rule optimised. Prints, per configuration, the
validation 1/2 MSE at the epochs the papers discuss and at the end (mean +- sd, then median and
min-max), and for every seed the first logged epoch at which it falls below DROP (the drop), with
the fraction of seeds that dropped by 10 000, 15 000 and 30 000 epochs.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

import common
from common import results

NAME = "drmmd_student_teacher"
ORDER = ["MMD", "MMD + noise", "DrMMD", "DrMMD + noise", "SrMMD"]
LONG = "DrMMD, 30 000 epochs"
EPOCHS = (500, 1000, 2000, 3000, 5000, 7500, 10000, 15000)
SPREAD_EPOCHS = (5000, 10000)
DROP = 0.01  # validation 1/2 MSE below which a run has dropped
DROP_BY = (10000, 15000, 30000)


def label(row) -> str | None:
    if row["method"] == "sgd":
        return "MMD"
    if row["method"] == "noise_injection":
        return "MMD + noise"
    if row["method"] == "drmmd" and not row["adaptive_lmbda"]:
        if row["epochs"] > 15000:
            return LONG
        return f"DrMMD{' + noise' if row['drmmd_noise'] else ''}"
    if row["method"] == "srmmd":
        return "SrMMD"
    return None


def spread_table(df: pd.DataFrame, order: list[str], epochs: tuple[int, ...]) -> pd.DataFrame:
    """Validation 1/2 MSE per configuration at ``epochs`` and at the end: mean, sd, median, min, max, n."""
    rows = []
    for point in [*epochs, None]:
        how = dict(how="last") if point is None else dict(how="at", at=point)
        values = results.per_run(df, "valid_mmd2", **how)
        values = values[values["status"] == "COMPLETED"]
        for config in order:
            half = values.loc[values["config"] == config, "final"].dropna() / 2
            if half.empty:
                continue
            rows.append({"config": config, "epoch": "end" if point is None else point, "mean": half.mean(),
                         "sd": half.std(ddof=1), "median": half.median(), "min": half.min(), "max": half.max(),
                         "n": len(half)})  # fmt: skip
    return pd.DataFrame(rows)


def drop_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per run, a run still going (INTERRUPTED, resumed by a later session) included: its configuration,
    seed, status, the last logged epoch and the first logged epoch with validation 1/2 MSE < DROP
    (None: none by its last epoch); ``drop`` says the same as text."""
    rows = common.half(results.curves(df, "valid_mmd2", statuses=None))
    table = []
    for run_dir, curve in rows.groupby("run_dir", sort=False):
        below = curve.loc[curve["value"] < DROP, "step"]
        first = curve.iloc[0]
        table.append({"config": first["config"], "seed": int(first["seed"]), "status": first["status"],
                      "epochs": int(curve["step"].max()), "drop_epoch": int(below.min()) if not below.empty else None})  # fmt: skip
    table = pd.DataFrame(table).sort_values(["config", "seed", "epochs"]).reset_index(drop=True)
    return table.assign(drop=[f"none by {n}" if pd.isna(e) else str(int(e)) for e, n in zip(table["drop_epoch"], table["epochs"])])


def drop_fractions(drops: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (the 30 000-epoch runs counted with their 15 000-epoch configuration), 'k of n'
    seeds dropped by each epoch of DROP_BY, from each seed's longest run: n counts the seeds whose run
    dropped by then or reached that epoch, and '(m open)' those whose run has neither (yet)."""
    drops = drops.assign(config=drops["config"].replace({LONG: "DrMMD"}))
    longest = drops.sort_values("epochs").groupby(["config", "seed"]).tail(1)
    rows = []
    for config, runs in longest.groupby("config", sort=False):
        row = {"config": config}
        for epoch in DROP_BY:
            dropped = runs["drop_epoch"].notna() & (runs["drop_epoch"] <= epoch)
            known = dropped | (runs["epochs"] >= epoch)
            open_seeds = int((~known).sum())
            row[f"by {epoch}"] = f"{int(dropped.sum())} of {int(known.sum())}" + (f" ({open_seeds} open)" if open_seeds else "")
        rows.append(row)
    return pd.DataFrame(rows)


def long_panel(ax, df: pd.DataFrame) -> None:
    """Each DrMMD seed without noise alone (15 000 and 30 000 epochs, runs still going included, to
    their last logged epoch), validation 1/2 MSE, log y."""
    rows = common.half(results.curves(df[df["config"].isin(["DrMMD", LONG])], "valid_mmd2", statuses=None))
    if rows.empty:
        ax.text(0.5, 0.5, "no DrMMD run", ha="center", va="center", transform=ax.transAxes)
        return
    for (config, seed), curve in rows.groupby(["config", "seed"], sort=True):
        style = dict(lw=1.4, ls="-") if config == LONG else dict(lw=0.8, ls="--")
        style["color"] = f"C{(seed - 1) % 10}"  # one colour per seed, whatever the length
        going = "" if curve["status"].iloc[-1] == "COMPLETED" else f" (to {int(curve['step'].max())}, going on)"
        ax.plot(curve["step"], curve["value"], label=f"seed {seed}{', 30 000' if config == LONG else ''}{going}", **style)
    ax.axhline(DROP, color="0.4", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(common.HALF_MSE["valid_mmd2"])
    ax.set_title(f"DrMMD (no noise), each seed; dotted: {DROP}", fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="lower left")


def main(argv=None) -> None:
    args, df = common.args_and_rows(__doc__, argv, "student_teacher")
    labels = results.runs(df).set_index("run_dir").apply(label, axis=1)
    df = df.assign(config=df["run_dir"].map(labels))
    df = common.keep(df, df["config"].notna(), "sgd, noise_injection, fixed-lambda drmmd and srmmd runs")
    main_runs = df[df["config"] != LONG]
    lambdas = common.values_text(df[df["method"] == "drmmd"], "lmbda")
    order = common.drawn_order(main_runs, "config", ORDER)
    common.theme()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    common.train_valid_panels(axes, main_runs, "config", order)
    long_panel(axes[2], df)
    drops = drop_table(df)
    common.finish(
        fig, args.out, NAME,
        f"Student-teacher, MMD vs DrMMD (lambda = {lambdas}, lr {common.values_text(df, 'lr')}): "
        f"{common.st_setting(main_runs)}\n{common.seeds_text(main_runs, by='config')} (thin: each seed)",
        notes=[common.not_completed_note(df, "config")],
        tables=[*common.half_mse_tables(NAME, main_runs, ["config"], EPOCHS),
                (spread_table(main_runs, order, SPREAD_EPOCHS), f"{NAME}: validation 1/2 MSE over seeds"),
                (drops.drop(columns="drop_epoch"), f"{NAME}: first logged epoch with validation 1/2 MSE < {DROP}"),
                (drop_fractions(drops), f"{NAME}: seeds dropped below {DROP} by epoch (each seed's longest run)")],
    )  # fmt: skip


if __name__ == "__main__":
    main()
