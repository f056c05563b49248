"""Look at logged runs from the command line: ``python -m studentteacher.results COMMAND``.

    python -m studentteacher.results table runs/smoke --metric valid_mmd2 --by method [--how at --at 500]
    python -m studentteacher.results plot runs/smoke --metric valid_mmd2 --by method [--out curves.png]
    python -m studentteacher.results overlay runs/smoke/00000-1 runs/smoke/00003-1 --metric valid_mmd2

``table`` prints :func:`studentteacher.results.final_table` (mean, sd, count over seeds per group,
and the group's run names); ``plot`` draws the metric against the step, one line per group of
``--by`` keys (labelled by those values and the group's run name), the mean over seeds with a +- 1
sd band, and prints the table of the values it drew at the last step; ``overlay`` draws named runs
one line each, labelled by the run's name. Attempts of a run are joined (a resumed run is one
curve); runs that did not complete are left out of means and named. matplotlib is imported only
by ``plot`` and ``overlay``, so the package itself never imports it.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from . import results

EXIT_INVALID = 2


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
    """A legend label: the group's ``--by`` values, then its run name when its runs share one."""
    names = list(dict.fromkeys(members["name"].dropna())) if "name" in members else []
    values = ", ".join(f"{key}={members.iloc[0][key]}" for key in by)
    name = names[0] if len(names) == 1 else ""
    return ": ".join(part for part in (values, name) if part) or "all runs"


def _table(df: pd.DataFrame, args) -> pd.DataFrame:
    window = tuple(args.window) if args.window else None
    return results.final_table(df, args.by, args.metric, how=args.how, at=args.at, window=window)


def _print(table: pd.DataFrame, title: str) -> None:
    print(f"# {title}")
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def _axes(title: str, metric: str, logy: bool):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if logy:
        ax.set_yscale("log")
    return fig, ax


def _save(fig, out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def plot(df: pd.DataFrame, args) -> None:
    """Mean +- 1 sd over the completed runs of each ``--by`` group, against the step."""
    rows = results.curves(df, args.metric)
    if rows.empty:
        raise ValueError(f"no completed run logged {args.metric!r}")
    fig, ax = _axes(f"{args.metric}: mean +- 1 sd over seeds, by {', '.join(args.by) or 'nothing'}",
                    args.metric, args.logy)
    groups = rows.groupby(args.by, sort=True, dropna=False) if args.by else [((), rows)]
    for key, members in groups:
        stats = members.groupby("step")["value"].agg(["mean", "std", "count"]).sort_index()
        label = _label(members, args.by) + f" ({members['run_dir'].nunique()} runs)"
        line, = ax.plot(stats.index, stats["mean"], label=label)
        ax.fill_between(stats.index, stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0),
                        color=line.get_color(), alpha=0.2, lw=0)
    ax.legend(fontsize=7)
    _save(fig, args.out)
    _print(_table(df, args), f"{args.metric} ({args.how}) by {', '.join(args.by) or 'nothing'}")


def overlay(df: pd.DataFrame, args) -> None:
    """One line per run (any status), labelled by its folder and id."""
    rows = results.curves(df, args.metric, statuses=None)
    if rows.empty:
        raise ValueError(f"no run logged {args.metric!r}")
    fig, ax = _axes(f"{args.metric} of {rows['run_dir'].nunique()} runs", args.metric, args.logy)
    for run_dir, members in rows.groupby("run_dir", sort=False):
        first = members.iloc[0]
        members = members.sort_values("step")
        label = f"{first.get('name') or first['experiment']} ({first['source']}/{first['run_id']}, {first['status']})"
        ax.plot(members["step"], members["value"], label=label)
    ax.legend(fontsize=7)
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
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return EXIT_INVALID
    return 0
