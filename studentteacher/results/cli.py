"""Look at logged runs from the command line: ``python -m studentteacher.results COMMAND``.

    python -m studentteacher.results table runs/smoke --metric valid_mmd2 --by method [--how at --at 500]
    python -m studentteacher.results plot runs/smoke --metric valid_mmd2 --by method [--out curves.png]
    python -m studentteacher.results overlay runs/smoke/00000-1 runs/smoke/00003-1 --metric valid_mmd2

``table`` prints :func:`studentteacher.results.final_table` (mean, sd, count over seeds per group,
how many of the group's runs were resumed, and its run names); ``plot`` draws the metric against
the step, one line per group of ``--by`` keys (labelled by those values, its number of runs and
how many of them were resumed; the legend sits below the axes), the mean over seeds with a
+- 1 sd band, and prints the table of the values it drew at the last step; ``overlay`` draws named
runs one line each, labelled by the run's name (and "resumed, K attempts" for a resumed run).
Attempts of a run are joined (a resumed run is one curve); runs that did not complete are left out
of means and named. When runs of one group differ in a config key other than the seed and the
``--by`` keys, a warning names the keys. matplotlib is imported only by ``plot`` and ``overlay``,
so the package itself never imports it.
"""
from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import pandas as pd

from studentteacher import results

EXIT_INVALID = 2
# Config keys that do not change what a run computes: runs may differ in them within a group.
NOT_SETTINGS = ("seed", "resume_from", "checkpoint_every", "threads", "attempts", "resumed")


def _load(paths: list[str]) -> pd.DataFrame:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = results.load_runs(*paths)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    if df.empty:
        raise ValueError(f"no runs under {', '.join(paths)}")
    return results.join_attempts(df)


def _label(members: pd.DataFrame, by: list[str]) -> str:
    """A group's label: its ``--by`` values (its run names are in the printed table)."""
    return ", ".join(f"{key}={members.iloc[0][key]}" for key in by) or "all runs"


def _table(df: pd.DataFrame, args) -> pd.DataFrame:
    """:func:`results.final_table` with a ``resumed`` column (runs of the group that were resumed)."""
    window = tuple(args.window) if args.window else None
    table = results.final_table(df, args.by, args.metric, how=args.how, at=args.at, window=window)
    if "resumed" not in table:
        table.insert(table.columns.get_loc("n_runs") + 1, "resumed", _resumed_counts(df, args.by, table))
    return table


def _resumed_counts(df: pd.DataFrame, by: list[str], table: pd.DataFrame) -> list[int]:
    """The number of resumed runs of each group (row) of ``table``."""
    counts: dict[tuple, int] = {}
    for _, run in results.runs(df).iterrows():
        counts[_group_key(run, by)] = counts.get(_group_key(run, by), 0) + int(run["resumed"])
    return [counts.get(_group_key(row, by), 0) for _, row in table.iterrows()]


def _group_key(row: pd.Series, by: list[str]) -> tuple:
    """The ``by`` values of a row, a missing value (NaN or None) as None."""
    return tuple(None if value is None or (isinstance(value, float) and math.isnan(value)) else value
                 for value in row[by])


def _warn_mixed(df: pd.DataFrame, by: list[str]) -> None:
    """One warning line when runs of one ``--by`` group differ in a config key other than the seed
    (and :data:`NOT_SETTINGS`)."""
    runs = results.runs(df)
    keys = [key for key in runs.columns if key not in results.RESERVED and key not in (*by, *NOT_SETTINGS)]
    groups = runs.groupby(by, dropna=False, sort=False) if by else [((), runs)]
    mixed = {}
    for _, members in groups:
        differ = [key for key in keys if members[key].astype(str).nunique() > 1]
        if differ:
            mixed[_label(members, by)] = differ
    if mixed:
        differing = list(dict.fromkeys(key for differ in mixed.values() for key in differ))
        where = "; ".join(f"{', '.join(differ)} ({label})" for label, differ in mixed.items())
        print(f"warning: runs of one group differ in {where}; add {', '.join(differing)} to --by to draw them apart",
              file=sys.stderr)


def _print(table: pd.DataFrame, title: str) -> None:
    print(f"# {title}")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def _axes(title: str, metric: str, logy: bool, lines: int):
    """A figure with room for a legend of ``lines`` entries below the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.0 + 0.16 * lines))
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if logy:
        ax.set_yscale("log")
    return fig, ax


def _legend(ax) -> None:
    """The legend below the axes, one entry a line (many groups would cover the curves)."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.13), frameon=False)


def _save(fig, out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(f"wrote {out}")


def plot(df: pd.DataFrame, args) -> None:
    """Mean +- 1 sd over the completed runs of each ``--by`` group, against the step."""
    results.check_logged(df, args.metric)
    rows = results.curves(df, args.metric)
    if rows.empty:
        raise ValueError(f"no completed run logged {args.metric!r}")
    groups = list(rows.groupby(args.by, sort=True, dropna=False)) if args.by else [((), rows)]
    fig, ax = _axes(f"{args.metric}: mean +- 1 sd over seeds, by {', '.join(args.by) or 'nothing'}",
                    args.metric, args.logy, len(groups))
    for key, members in groups:
        stats = members.groupby("step")["value"].agg(["mean", "std", "count"]).sort_index()
        line, = ax.plot(stats.index, stats["mean"], label=_label(members, args.by) + f" ({_runs_text(members)})")
        ax.fill_between(stats.index, stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0),
                        color=line.get_color(), alpha=0.2, lw=0)
    _legend(ax)
    _save(fig, args.out)
    _print(_table(df, args), f"{args.metric} ({args.how}) by {', '.join(args.by) or 'nothing'}")


def _runs_text(members: pd.DataFrame) -> str:
    """'3 runs', or '3 runs, 1 resumed' when some of the runs of ``members`` were resumed."""
    runs = members.drop_duplicates("run_dir")
    resumed = int(runs["resumed"].sum())
    return f"{len(runs)} run{'s' * (len(runs) != 1)}" + (f", {resumed} resumed" if resumed else "")


def overlay(df: pd.DataFrame, args) -> None:
    """One line per run (any status), labelled by its folder and id."""
    results.check_logged(df, args.metric)
    rows = results.curves(df, args.metric, statuses=None)
    count = rows["run_dir"].nunique()
    fig, ax = _axes(f"{args.metric} of {count} runs", args.metric, args.logy, count)
    for run_dir, members in rows.groupby("run_dir", sort=False):
        first = members.iloc[0]
        members = members.sort_values("step")
        label = f"{first.get('name') or first['experiment']} ({first['source']}/{first['run_id']}, {first['status']})"
        if first["resumed"]:
            label += f" (resumed, {first['attempts']} attempts)"
        ax.plot(members["step"], members["value"], label=label)
    _legend(ax)
    _save(fig, args.out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m studentteacher.results", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in [("table", "print final values per group"), ("plot", "draw a metric per group"),
                            ("overlay", "draw a metric of named runs")]:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("runs", nargs="+", help="run directories, observer folders, or folders of them")
        sub.add_argument("--metric", required=True, help="a logged metric, e.g. valid_mmd2 or w1")
        if name != "overlay":
            sub.add_argument("--by", nargs="*", default=[], help="config keys to group by (the seeds are averaged)")
            sub.add_argument("--how", choices=results.HOW, default="last", help="which value of each run (last)")
            sub.add_argument("--at", type=int, help="with --how at: the step")
            sub.add_argument("--window", type=int, nargs=2, metavar=("FIRST", "LAST"), help="with --how min")
        if name != "table":
            sub.add_argument("--out", default=f"{name}.png", help=f"the PNG to write ({name}.png)")
            sub.add_argument("--linear", dest="logy", action="store_false", help="linear y axis (default: log)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        df = _load(args.runs)
        if args.command == "table":
            _print(_table(df, args), f"{args.metric} ({args.how}) by {', '.join(args.by) or 'nothing'}")
        else:
            {"plot": plot, "overlay": overlay}[args.command](df, args)
        if args.command != "overlay":
            _warn_mixed(df, args.by)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return EXIT_INVALID
    return 0
