"""DMMD (Galashov, De Bortoli, Gretton 2025): what each of the paper's choices moves. On each 2-D target,
the final W1 to the held-out sample over its floor (an exact sample of as many points against the same
held-out points; 1: as good as exact sampling), on the digits the Frechet distance in the classifier's
features, for the paper's choices (the VP schedule, the gradient penalty at the noisy samples, levels
down to t_min = 0.01) and for each choice changed alone (the cosine schedule, the penalty at
interpolates, t_min = 0.1); one dot a seed, the bar their mean, on the seeds the changed choices ran.
The table: W1, W1 / floor, FD and the learned features' variance share in their top direction,
mean +- sd.

    python figures/dmmd_choices.py --runs reproduction/runs/dmmd reproduction/runs/dmmd_choices \
        --out figures/png/full

Runs: experiments/sweeps/figures/dmmd[_small].yaml (the paper's choices) and dmmd_choices[_small].yaml
(one choice changed).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import common
from common import results
from studentteacher import held_out

NAME = "dmmd_choices"
#: (schedule, gp_points, t_min) -> label; the first is the paper's.
CHOICES = {
    ("vp_linear", "noised", 0.01): "paper: VP, penalty at noised, t_min 0.01",
    ("cosine", "noised", 0.01): "cosine schedule",
    ("vp_linear", "interpolates", 0.01): "penalty at interpolates",
    ("vp_linear", "noised", 0.1): "t_min 0.1",
}
COLORS = dict(zip(CHOICES.values(), ["tab:blue", "tab:orange", "tab:green", "tab:red"]))
METRICS = {"sample_w1": "W1", "w1_ratio": "W1 / floor", "sample_fd": "FD (digits)",
           "feature_variance_top1": "top-1 feature share"}
TARGETS = (*held_out.TARGETS, "digits")
#: target kind -> (the metric each panel draws, its axis label, the reference line: exact sampling)
PANEL = {"2-D": ("w1_ratio", "final W1 / floor (1: exact sampling)", 1.0),
         "digits": ("sample_fd", "final Frechet distance (classifier features)", None)}


def choice_label(row) -> str | None:
    """The label of a run's choices (:data:`CHOICES`), None for a combination not compared here."""
    return CHOICES.get((row["schedule"], row["gp_points"], float(row["t_min"])))


def compared_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The completed runs of ``df`` with a ``choice`` label, on the seeds and targets the changed choices ran."""
    table = common.completed(df)
    table = table[table["target"].isin(TARGETS)].assign(choice=lambda t: t.apply(choice_label, axis=1))
    table = table[table["choice"].notna()]
    changed = table[table["choice"] != next(iter(CHOICES.values()))]
    if changed.empty:
        return table
    return table[table["seed"].isin(changed["seed"]) & table["target"].isin(changed["target"])]


def finals(df: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run of ``runs``: target, choice, seed and the last value of each of :data:`METRICS`."""
    last = df[df["run_dir"].isin(runs["run_dir"])].sort_values("step").groupby(["run_dir", "metric"]).tail(1)
    values = last.pivot(index="run_dir", columns="metric", values="value")
    values = values.reindex(columns=["sample_w1", "sample_w1_floor", "sample_fd", "feature_variance_top1"])
    values["w1_ratio"] = values["sample_w1"] / values["sample_w1_floor"]  # NaN on the digits
    return runs.set_index("run_dir")[["target", "choice", "seed"]].join(values[list(METRICS)]).reset_index()


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """'mean +- sd (n)' of each metric per (target, choice), in the order of :data:`TARGETS` and :data:`CHOICES`."""
    order = {label: i for i, label in enumerate(CHOICES.values())}
    grouped = rows.groupby(["target", "choice"])
    table = pd.DataFrame({header: grouped[metric].agg(_cell) for metric, header in METRICS.items()}).reset_index()
    order |= {target: i for i, target in enumerate(TARGETS)}
    return table.sort_values(["target", "choice"], key=lambda column: column.map(order))


def _cell(values: pd.Series) -> str:
    """'mean +- sd (n)' of the runs' values ('mean (1)' for one run, '' for none)."""
    values = values.dropna()
    if values.empty:
        return ""
    if len(values) > 1:
        return f"{values.mean():.3g} +- {values.std():.2g} ({len(values)})"
    return f"{values.mean():.3g} (1)"


def seeds_named(rows: pd.DataFrame) -> str:
    """'seed 1' or 'seeds 1, 2, 3': the seeds of ``rows``."""
    seeds = sorted(set(rows["seed"]))
    return f"seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}"


def main(argv=None) -> None:
    args, df = common.args_and_rows(__doc__, argv, "dmmd")
    runs = compared_runs(df)
    if runs.empty:
        raise SystemExit("no completed DMMD run with the compared choices under --runs")
    rows = finals(df, runs)
    targets = [t for t in TARGETS if t in set(rows["target"])]
    labels = [label for label in CHOICES.values() if label in set(rows["choice"])]
    common.theme()
    fig, axes = plt.subplots(1, len(targets), figsize=(4.6 * len(targets), 4.2), squeeze=False)
    for ax, target in zip(axes[0], targets):
        metric, ylabel, reference = PANEL["digits" if target == "digits" else "2-D"]
        for position, label in enumerate(labels):
            values = rows[(rows["target"] == target) & (rows["choice"] == label)][metric].dropna().to_numpy()
            if len(values) == 0:
                continue
            ax.bar(position, values.mean(), color=COLORS[label], alpha=0.35, width=0.7)
            ax.scatter(np.full(len(values), position), values, color=COLORS[label], s=14, zorder=3)
        if reference is not None:
            ax.axhline(reference, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(len(labels)), [label.split(":")[0] if ":" in label else label for label in labels],
                      rotation=20, ha="right", fontsize=8)  # fmt: skip
        ax.set_ylabel(ylabel)
        ax.set_title(target)
    common.finish(fig, args.out, NAME,
                  f"DMMD: each of the paper's choices changed alone ({'; '.join(labels)}); "
                  f"{seeds_named(rows)}, one dot each, bar: mean",
                  notes=[common.not_completed_note(df)], tables=[(summary(rows), f"{NAME}: final values")])  # fmt: skip


if __name__ == "__main__":
    main()
