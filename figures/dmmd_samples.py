"""DMMD (Galashov, De Bortoli, Gretton 2025), figure (d): DMMD samples on each target next to the
particle-flow baselines with the same particle budget (MMD, MMD + noise, adaptive DrMMD, KALE, the
adaptive-bandwidth MMD flow), final particles of the first seed (grey: the held-out target, red: the
particles; digits: the first 36 samples), and the table of W1 / W2 / MMD^2 (reference Gaussian kernel
of the toy) at the end, mean +- sd over seeds, with the floor (an exact sample of as many points against
the same held-out points) and each run's W1 / floor (digits: the Frechet distance in the classifier's
features and the class coverage).

    python figures/dmmd_samples.py --runs reproduction/runs/dmmd reproduction/runs/dmmd_baselines \
        reproduction/runs/dmmd_baselines_adaptive --out figures/png/full

Runs: experiments/sweeps/figures/dmmd[_small].yaml (DMMD) and dmmd_baselines[_adaptive][_small].yaml
(particle_flow). Every method is measured against the held-out sample of its seed, points none of them
saw (``sample_w1`` ..., studentteacher.held_out); a baseline run that logged no held-out metrics (runs
from before them) shows its distances to the target it flowed to, below what exact sampling scores.
DMMD starts from N(0, I), each baseline from its toy's source.
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import common
from common import results
from experiments import flow_pictures

NAME = "dmmd_samples"
METRICS = {"w1": "W1", "w2": "W2", "mmd2": "MMD^2"}
#: Beside them: W1's floor and each run's W1 over it (1: as good as an exact sample).
FLOOR_COLUMNS = {"w1_floor": "W1 floor", "w1_ratio": "W1 / floor"}


def method_label(row) -> str:
    if row["experiment"] == "dmmd":
        return f"DMMD ({row['sampler']})"
    return common.FLOW_LABELS.get(row["flow"], row["flow"])


def _tidy(args) -> pd.DataFrame:
    """Both experiments' runs, with ``method`` and one metric naming (w1, w2, mmd2; fd, coverage)."""
    frames = []
    for experiment in ("dmmd", "particle_flow"):
        try:
            frames.append(common.load(args.runs, experiment))
        except SystemExit as missing:
            print(f"note: {missing}", file=sys.stderr)
    df = pd.concat(frames, ignore_index=True)
    table = results.runs(df)
    df = df.assign(method=df["run_dir"].map(table.set_index("run_dir").apply(method_label, axis=1)))
    held_out = set(df.loc[df["metric"] == "sample_w1", "run_dir"])
    fitted = df["metric"].isin(list(METRICS)) & df["run_dir"].isin(held_out)  # a flow's distances to its own target
    renamed = {f"sample_{key}": key for key in METRICS} | {"sample_w1_floor": "w1_floor"}
    renamed |= {"sample_fd": "fd", "sample_class_coverage": "coverage"}
    return with_ratio(df[~fitted].assign(metric=df["metric"].replace(renamed)))


def with_ratio(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` and, for each run with a final ``w1`` and ``w1_floor``, a ``w1_ratio`` row: their quotient
    (at the floor's step)."""
    last = df[df["metric"].isin(["w1", "w1_floor"])].sort_values("step").groupby(["run_dir", "metric"]).tail(1)
    finals = last.pivot(index="run_dir", columns="metric", values="value")
    if "w1_floor" not in finals:
        return df
    floors = last[last["metric"] == "w1_floor"].set_index("run_dir")
    ratios = floors.assign(metric="w1_ratio", value=finals["w1"] / finals["w1_floor"]).reset_index()
    return pd.concat([df, ratios[df.columns]], ignore_index=True)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (target, method): 'mean +- sd (n)' of each final metric."""
    columns = {}
    for metric, header in [*METRICS.items(), *FLOOR_COLUMNS.items(), ("fd", "FD (digits)"),
                           ("coverage", "classes (digits)")]:  # fmt: skip
        if metric not in set(df["metric"].dropna()):
            continue
        table = results.final_table(df[df["metric"] == metric], ["target", "method"], metric)
        columns[header] = table.set_index(["target", "method"]).apply(_cell, axis=1)
    return pd.DataFrame(columns).reset_index()


def _cell(row) -> str:
    """'mean +- sd (n)' of a final_table row ('mean (1)' for one run)."""
    if row["count"] > 1:
        return f"{row['mean']:.3g} +- {row['sd']:.2g} ({row['count']})"
    return f"{row['mean']:.3g} ({row['count']})"


def final_particles(run_dir: str):
    """(target, particles) of a run: samples.npz (dmmd) or trajectory.npz (particle_flow); None if absent."""
    for name, target in (("samples.npz", "held_out"), ("trajectory.npz", "target")):
        path = Path(run_dir) / name
        if path.exists():
            data = np.load(path)
            return data[target], data["particles"]
    return None


def score_text(row) -> str:
    """A panel's score: 'W1 mean +- sd (n)' of a summary row, or for the digits 'FD ...'."""
    for header, short in (("W1", "W1"), ("FD (digits)", "FD")):
        if isinstance(row.get(header), str):
            return f"{short} {row[header]}"
    return ""


def outside(particles: np.ndarray, window) -> int:
    """How many of ``particles: [N, 2]`` lie outside ``window`` ((x_low, y_low), (x_high, y_high))."""
    low, high = window
    return int((~np.all((particles >= low) & (particles <= high), axis=1)).sum())


def main(argv=None) -> None:
    args = common.parser(__doc__.split("\n\n")[0]).parse_args(argv)
    df = _tidy(args)
    runs = results.runs(df)
    done = runs[runs["status"] == "COMPLETED"].sort_values("seed")
    targets = [t for t in ("three_rings", "mog", "swiss_roll", "digits") if t in set(runs["target"])]
    methods = sorted(set(runs["method"]), key=lambda m: (not m.startswith("DMMD"), m))
    table = summary(df).set_index(["target", "method"])
    scores = {key: score_text(row) for key, row in table.iterrows()}
    common.theme()
    fig, axes = plt.subplots(len(targets), len(methods), figsize=(2.6 * len(methods), 2.7 * len(targets)), squeeze=False)
    for row, target in enumerate(targets):
        for column, method in enumerate(methods):
            ax, chosen = axes[row, column], done[(done["target"] == target) & (done["method"] == method)]
            drawn = None if chosen.empty else final_particles(chosen.iloc[0]["run_dir"])
            if drawn is None:
                ax.set_axis_off()
                continue
            title = f"{target}: {method}, seed {chosen.iloc[0]['seed']}\n{scores.get((target, method), '')}"
            window = None
            if drawn[0].shape[1] == 2:
                window = flow_pictures.fixed_window(drawn[0], drawn[0][None], margin=0.15)
                title += f", {outside(drawn[1], window)} outside"
            flow_pictures.draw_sample(ax, *drawn, title, window, fontsize=7)
    common.finish(fig, args.out, NAME, "DMMD against particle-flow baselines: final particles of the first seed "
                  f"(grey: held-out target, red: particles)\nin each title: {common.seeds_text(df)}; "
                  "panels show the target's window, 'outside': particles beyond it",
                  notes=[common.not_completed_note(df, "method")], tables=[(table.reset_index(), f"{NAME}: final metrics")])


if __name__ == "__main__":
    main()
