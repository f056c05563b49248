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
saw (``sample_w1`` ..., studentteacher.held_out). A baseline run from before the runs logged those
metrics is scored here from its logged final particles with the function the runs log them with
(:func:`studentteacher.held_out.final_scores`), never against the target it flowed to. DMMD starts from
N(0, I), each baseline from its toy's source.
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

import common
from common import results
from experiments import flow_pictures
from studentteacher import held_out

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
    df = pd.concat([df, scored_from_particles(df)], ignore_index=True)
    fitted = df["metric"].isin(list(METRICS)) & (df["experiment"] == "particle_flow")  # distances to its own target
    renamed = {f"sample_{key}": key for key in METRICS} | {"sample_w1_floor": "w1_floor"}
    renamed |= {"sample_fd": "fd", "sample_class_coverage": "coverage"}
    return with_ratio(df[~fitted].assign(metric=df["metric"].replace(renamed)))


def scored_from_particles(df: pd.DataFrame) -> pd.DataFrame:
    """Rows ``sample_*`` (held-out scores and floor, at the last step) for the completed particle-flow runs
    on a held-out target that did not log them: :func:`held_out.final_scores` of the final particles in
    their trajectory.npz against the held-out sample of their seed (n_target points), what a run logs today."""
    logged = set(df.loc[df["metric"] == "sample_w1", "run_dir"])
    table = results.runs(df)
    todo = table[(table["experiment"] == "particle_flow") & (table["status"] == "COMPLETED")
                 & table["target"].isin(held_out.TARGETS) & ~table["run_dir"].isin(logged)]
    last_step = df.groupby("run_dir")["step"].max()
    rows = []
    for run in todo.itertuples():
        path = Path(run.run_dir) / "trajectory.npz"
        if not path.exists():
            continue
        particles = torch.from_numpy(np.load(path)["particles"])  # (N, 2)
        scores = held_out.final_scores(run.target, particles, int(run.n_target), int(run.seed))
        base = df[df["run_dir"] == run.run_dir].iloc[0]
        rows += [base.to_dict() | {"metric": metric, "step": last_step[run.run_dir], "value": value}
                 for metric, value in scores.items()]
    return pd.DataFrame(rows, columns=df.columns)


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


def final_particles(run) -> tuple[np.ndarray, np.ndarray] | None:
    """(held-out points, final particles) of a run (a row of the run table): samples.npz (dmmd) or
    trajectory.npz (particle_flow: the held-out sample of its seed; the points it flowed to on a target
    without one); None if absent."""
    samples, trajectory = Path(run["run_dir"]) / "samples.npz", Path(run["run_dir"]) / "trajectory.npz"
    if samples.exists():
        data = np.load(samples)
        return data["held_out"], data["particles"]
    if trajectory.exists():
        data = np.load(trajectory)
        if run["target"] not in held_out.TARGETS:
            return data["target"], data["particles"]
        points = held_out.held_out_sample(run["target"], int(run["n_target"]), int(run["seed"]))
        return points.numpy(), data["particles"]
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
            drawn = None if chosen.empty else final_particles(chosen.iloc[0])
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
