"""Shared helpers of the figure scripts: command line, loading, labels, seaborn curves, saving.

Every figure script reads logged runs only (through :mod:`studentteacher.results`), never
trains. Curves are the mean over seeds with a band of +- 1 standard deviation (seaborn's
``errorbar="sd"``); runs that did not complete are left out of the curves and named in the
figure's footnote, never dropped silently.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from studentteacher import results  # noqa: E402  (installed: pip install -e .)

REPO = Path(__file__).resolve().parent.parent

# The papers plot half the MMD^2 ("1/2 MSE"); our metrics are the unhalved MMD2_hat (docs/model.md).
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
    "mmd_adaptive_bandwidth": "MMD adaptive bandwidth",
    "srmmd": "SrMMD",
    "hrmmd": "HrMMD",
}
DPI = 110
TITLE_CHARS_PER_INCH = 11  # a title line wraps beyond this many characters per inch of figure width (10 pt)


def parser(description: str) -> argparse.ArgumentParser:
    """``--runs DIR [DIR ...]`` (repeatable) and ``--out DIR``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--runs", nargs="+", action="extend", required=True, metavar="DIR",
                   help="run directories: Sacred FileStorage folders (or folders of them); repeatable")
    p.add_argument("--out", default="figures/png", help="output folder for NAME.png and NAME.pdf")
    return p


def args_and_rows(doc: str, argv: Sequence[str] | None, experiment: str) -> tuple[argparse.Namespace, pd.DataFrame]:
    """A figure script's parsed command line (described by the first paragraph of its docstring
    ``doc``) and the tidy rows of its ``experiment`` runs under ``--runs``."""
    args = parser(doc.split("\n\n")[0]).parse_args(argv)
    return args, load(args.runs, experiment)


def load(dirs: Sequence[str], experiment: str) -> pd.DataFrame:
    """The tidy table of the runs of ``experiment`` under ``dirs``, attempts joined
    (:func:`results.join_attempts`: a resumed run is one run with its whole curve, under the
    latest attempt's status); warnings are printed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = results.load_runs(*dirs)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    df = df[df["experiment"] == experiment]
    if df.empty:
        raise SystemExit(f"no {experiment} runs under {', '.join(map(str, dirs))}")
    return results.join_attempts(df)


def theme() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)


def not_completed_note(df: pd.DataFrame, label_column: str | None = None) -> str:
    """A footnote naming the runs left out of the curves (status != COMPLETED) of the joined runs
    (:func:`load`: an interrupted attempt that a later one continued is not left out)."""
    table = results.runs(results.join_attempts(df))
    bad = table[table["status"] != "COMPLETED"]
    if bad.empty:
        return ""
    parts = []
    for _, row in bad.iterrows():
        what = row[label_column] if label_column and label_column in row else row["run_id"]
        parts.append(f"{what} seed {row.get('seed')}: {row['status']}")
    return "left out (not completed): " + "; ".join(parts)


def completed(df: pd.DataFrame) -> pd.DataFrame:
    """One row per joined run of ``df`` that COMPLETED (the runs the curves draw)."""
    table = results.runs(results.join_attempts(df))
    return table[table["status"] == "COMPLETED"]


def drawn_order(df: pd.DataFrame, column: str, order: Sequence) -> list:
    """The values of ``order`` that some completed run of ``df`` has in ``column``: a legend
    lists only what is drawn (a config whose runs are all still running has no curve)."""
    present = set(completed(df)[column].tolist())
    return [value for value in order if value in present]


def seeds_text(df: pd.DataFrame, by: str | Sequence[str] = ()) -> str:
    """'mean +- 1 sd over K seeds' of the completed runs; with ``by`` (run columns) the groups
    with fewer seeds are named, e.g. '... over 3 seeds (MMD + diffusion: 1 seed)'."""
    table = completed(df)
    seeds = sorted(set(table["seed"].tolist()))
    text = f"mean +- 1 sd over {len(seeds)} seed{'s' * (len(seeds) != 1)}"
    by = [by] if isinstance(by, str) else list(by)
    if not by or table.empty:
        return text
    counts = table.groupby(by)["seed"].nunique()
    fewer = [f"{' '.join(map(str, group)) if isinstance(group, tuple) else group}: {n} seed{'s' * (n != 1)}"
             for group, n in counts.items() if n < len(seeds)]
    return f"{text} ({', '.join(fewer)})" if fewer else text


def values_text(df: pd.DataFrame, key: str) -> str:
    """The distinct values of config ``key`` over the runs of ``df``, joined by '/' ('' if absent)."""
    table = results.runs(df)
    return "/".join(map(str, sorted(set(table[key].tolist())))) if key in table else ""


def st_setting(df: pd.DataFrame) -> str:
    """The student-teacher setting of the runs, read from their configs, e.g.
    'dense readout, N = 30, d = 50, n_train = 500, B = 100, 300 epochs'."""
    return (f"{values_text(df, 'readout')} readout, N = {values_text(df, 'n_particles')}, d = {values_text(df, 'd_in')}, "
            f"n_train = {values_text(df, 'n_train')}, B = {values_text(df, 'batch_size')}, "
            f"{values_text(df, 'epochs')} epochs")


def flow_setting(df: pd.DataFrame) -> str:
    return (f"N = {values_text(df, 'n_particles')}, M = {values_text(df, 'n_target')}, Gaussian kernel sigma = "
            f"{values_text(df, 'bandwidth')}, {values_text(df, 'steps')} steps")


def keep(df: pd.DataFrame, mask: pd.Series, drawn: str) -> pd.DataFrame:
    """The runs of ``df`` where ``mask`` holds; the runs left out are named on stderr.

    ``drawn`` says what the figure draws (e.g. "methods sgd, ksd"); a figure given runs it cannot
    draw says which and why instead of dropping them silently; no run left at all is an error.
    """
    left_out = results.runs(df[~mask])
    note = ""
    if not left_out.empty:
        shown = ", ".join(sorted({f"{row['source']}/{row['run_id']}" for _, row in left_out.iterrows()})[:6])
        more = f" and {len(left_out) - 6} more" if len(left_out) > 6 else ""
        note = f"left out {len(left_out)} run(s) this figure does not draw ({shown}{more}): it draws {drawn}"
        print(f"note: {note}", file=sys.stderr)
    if not mask.any():
        raise SystemExit(f"no run to draw: this figure draws {drawn}; {note}")
    return df[mask]


def until(df: pd.DataFrame, last_step: int) -> pd.DataFrame:
    """The rows of ``df`` logged at steps <= ``last_step`` (read longer runs at a common length)."""
    return df[df["step"].isna() | (df["step"] <= last_step)]


def curve(ax, rows: pd.DataFrame, hue: str | None, y: str = "value", style: str | None = None,
          hue_order=None, palette=None, logy: bool = True, seeds: bool = False, **kwargs) -> None:
    """Mean over seeds with a +- 1 sd band, one line per ``hue`` value; with ``seeds`` also each
    run's own curve, thin (a mean hides sudden drops that happen at different epochs)."""
    if seeds:
        sns.lineplot(data=rows, x="step", y=y, hue=hue, units="run_dir", estimator=None, hue_order=hue_order,
                     palette=palette, ax=ax, lw=0.6, alpha=0.45, legend=False)
    sns.lineplot(data=rows, x="step", y=y, hue=hue, style=style, hue_order=hue_order, palette=palette,
                 errorbar="sd", estimator="mean", ax=ax, **kwargs)
    if logy:
        ax.set_yscale("log")


def half(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with ``value`` halved (MMD^2 -> the papers' 1/2 MSE)."""
    return rows.assign(value=rows["value"] / 2)


def train_valid_panels(axes, df: pd.DataFrame, hue: str, hue_order: Sequence) -> None:
    """Train and validation 1/2 MSE curves of ``df`` on the first two ``axes``, one line per
    ``hue`` value, each seed's own curve thin."""
    for ax, metric in zip(axes, ["train_mmd2", "valid_mmd2"]):
        curve(ax, half(results.curves(df, metric)), hue=hue, hue_order=hue_order, seeds=True)
        ax.set_xlabel("epoch")
        ax.set_ylabel(HALF_MSE[metric])
        ax.legend(title=None, fontsize=8)


def final_half_mse(df: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """The last logged validation 1/2 MSE (``valid_mmd2 / 2``) per config ``by``: mean and sd over seeds."""
    table = results.final_table(df, by, "valid_mmd2", how="last")
    table[["mean", "sd"]] = table[["mean", "sd"]] / 2
    return table


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


def at_epochs(df: pd.DataFrame, by: Sequence[str], metric: str, epochs: Sequence[int]) -> pd.DataFrame:
    """Half of ``metric`` (the papers' 1/2 MSE) at each of ``epochs`` that the runs logged, per
    config ``by``: one column per epoch, "mean +- sd (n)" over the completed runs."""
    logged = set(results.curves(df, metric)["step"].dropna().astype(int))
    columns = {}
    for epoch in [e for e in epochs if e in logged]:
        table = results.final_table(df, by, metric, how="at", at=epoch)
        columns[f"epoch {epoch}"] = [f"{m / 2:.3g} +- {s / 2:.2g} ({n})" if n > 1 else f"{m / 2:.3g} ({n})"
                                     for m, s, n in zip(table["mean"], table["sd"], table["count"])]
        keys = table[list(by)]
    return pd.concat([keys.reset_index(drop=True), pd.DataFrame(columns)], axis=1) if columns else pd.DataFrame()


def half_mse_tables(name: str, df: pd.DataFrame, by: Sequence[str], epochs: Sequence[int],
                    horizon: int | None = None) -> list[tuple[pd.DataFrame, str]]:
    """A student-teacher figure's printed tables for :func:`finish`: the validation 1/2 MSE of ``df`` per
    config ``by`` at the runs' end (read to epoch ``horizon`` where given), then at ``epochs``."""
    if horizon is None:
        final = (final_half_mse(df, by), f"{name}: final validation 1/2 MSE (valid_mmd2 / 2)")
    else:
        final = (final_half_mse(until(df, horizon), by),
                 f"{name}: validation 1/2 MSE (valid_mmd2 / 2) at epoch {horizon}")
    return [final, (at_epochs(df, by, "valid_mmd2", epochs), f"{name}: validation 1/2 MSE at epochs")]


def finish(fig, out: str | Path, name: str, title: str, notes: Sequence[str] = (),
           tables: Sequence[tuple[pd.DataFrame, str]] = ()) -> list[Path]:
    """The ending every figure shares: title, footnote, layout, ``OUT/NAME.png`` + ``.pdf``, and
    the printed tables (``(table, caption)`` pairs); returns the written paths."""
    width = int(fig.get_figwidth() * TITLE_CHARS_PER_INCH)
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in title.split("\n")), fontsize=10)
    lines = [line for line in notes if line]
    footnote(fig, *lines)
    fig.tight_layout(rect=(0, 0.02 + 0.025 * len(lines), 1, 1))
    paths = save(fig, out, name)
    for table, caption in tables:
        summary_print(table, caption)
    return paths


def summary_print(table: pd.DataFrame, title: str) -> None:
    """Print a final table (for REPRODUCTION.md), with %.4g numbers; an empty one as one line."""
    print(f"# {title}")
    if table.empty:
        print("(none: no run logged these steps)")
        return
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
