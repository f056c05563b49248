"""Shared helpers of the figure scripts: command line, loading, labels, seaborn curves, saving.

Every figure script reads logged runs only (through :mod:`studentteacher.results`), never
trains. Curves are the mean over seeds with a band of +- 1 standard deviation (seaborn's
``errorbar="sd"``); runs that did not complete are left out of the curves and named in the
figure's footnote, never dropped silently.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python figures/x.py` from anywhere without installing
    sys.path.insert(0, str(REPO))

from studentteacher import results  # noqa: E402

# The papers plot half the MMD^2 ("1/2 MSE"); our metrics are the unhalved MMD2_hat (DESIGN §2).
HALF_MSE = {
    "train_mmd2": "train 1/2 MSE = train_mmd2 / 2",
    "valid_mmd2": "validation 1/2 MSE = valid_mmd2 / 2",
}
METHOD_LABELS = {
    "sgd": "MMD flow (sgd)",
    "noise_injection": "MMD + noise injection",
    "diffusion": "MMD + diffusion",
    "ksd": "KSD",
    "drmmd": "DrMMD",
}
FLOW_LABELS = {
    "mmd": "MMD",
    "mmd_noise": "MMD + noise",
    "drmmd": "DrMMD",
    "drmmd_adaptive": "DrMMD adaptive",
    "kale": "KALE",
}
DPI = 110


def parser(description: str) -> argparse.ArgumentParser:
    """``--runs DIR [DIR ...]`` (repeatable) and ``--out DIR``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--runs", nargs="+", action="extend", required=True, metavar="DIR",
                   help="run directories: Sacred FileStorage folders (or folders of them); repeatable")
    p.add_argument("--out", default="figures/png", help="output folder for NAME.png and NAME.pdf")
    return p


def load(dirs: Sequence[str], experiment: str) -> pd.DataFrame:
    """The tidy table of the runs of ``experiment`` under ``dirs`` (warnings are printed)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = results.load_runs(*dirs)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    df = df[df["experiment"] == experiment]
    if df.empty:
        raise SystemExit(f"no {experiment} runs under {', '.join(map(str, dirs))}")
    return df


def theme() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)


def not_completed_note(df: pd.DataFrame, label_column: str | None = None) -> str:
    """A footnote naming the runs left out of the curves (status != COMPLETED)."""
    table = results.runs(df)
    bad = table[table["status"] != "COMPLETED"]
    if bad.empty:
        return ""
    parts = []
    for _, row in bad.iterrows():
        what = row[label_column] if label_column and label_column in row else row["run_id"]
        parts.append(f"{what} seed {row.get('seed')}: {row['status']}")
    return "left out (not completed): " + "; ".join(parts)


def seeds_text(df: pd.DataFrame) -> str:
    table = results.runs(df)
    table = table[table["status"] == "COMPLETED"]
    seeds = sorted(set(table["seed"].tolist()))
    return f"mean +- 1 sd over {len(seeds)} seed{'s' * (len(seeds) != 1)}"


def st_setting(df: pd.DataFrame) -> str:
    """The student-teacher scale of the runs, e.g. 'dense readout, N = 30, 300 epochs, lr 0.1'."""
    table = results.runs(df)

    def values(key):
        found = sorted(set(table[key].tolist())) if key in table else []
        return "/".join(map(str, found))

    return (f"N = {values('n_particles')}, d = {values('d_in')}, n_train = {values('n_train')}, "
            f"B = {values('batch_size')}, {values('epochs')} epochs")


def flow_setting(df: pd.DataFrame) -> str:
    table = results.runs(df)

    def values(key):
        return "/".join(map(str, sorted(set(table[key].tolist()))))

    return (f"N = {values('n_particles')}, M = {values('n_target')}, Gaussian kernel sigma = "
            f"{values('bandwidth')}, {values('steps')} steps")


def curve(ax, rows: pd.DataFrame, hue: str | None, y: str = "value", style: str | None = None,
          hue_order=None, palette=None, logy: bool = True, **kwargs) -> None:
    """Mean over seeds with a +- 1 sd band, one line per ``hue`` value."""
    sns.lineplot(data=rows, x="step", y=y, hue=hue, style=style, hue_order=hue_order, palette=palette,
                 errorbar="sd", estimator="mean", ax=ax, **kwargs)
    if logy:
        ax.set_yscale("log")


def half(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with ``value`` halved (MMD^2 -> the papers' 1/2 MSE)."""
    return rows.assign(value=rows["value"] / 2)


def footnote(fig, *lines: str) -> None:
    text = "\n".join(line for line in lines if line)
    if text:
        fig.text(0.01, 0.005, text, fontsize=7, ha="left", va="bottom", color="0.3", wrap=True)


def save(fig, out: str | Path, name: str) -> list[Path]:
    """``OUT/NAME.png`` (DPI 110) and ``OUT/NAME.pdf``; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=DPI)
    fig.savefig(paths[1])
    plt.close(fig)
    for path in paths:
        print(f"wrote {path}")
    return paths


def summary_print(table: pd.DataFrame, title: str) -> None:
    """Print a final table (for REPRODUCTION.md), with %.4g numbers."""
    print(f"# {title}")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
