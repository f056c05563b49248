"""The tidy table of :mod:`.reading` reduced: one row per run, attempts joined, final values per config,
curves. No plotting, no Sacred import."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .reading import HOW, RESERVED, TIDY_COLUMNS

def runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: the run and config columns of the tidy table (no metric columns)."""
    return df.drop(columns=list(TIDY_COLUMNS)).drop_duplicates("run_dir").reset_index(drop=True)


def _predecessors(table: pd.DataFrame) -> dict[str, str]:
    """run_dir -> the run_dir of the attempt it resumed from: its ``resume_from`` checkpoint's
    folder, or, when the runs were moved or cloned since (the recorded path is absolute), the
    folder of that name beside the run."""
    if "resume_from" not in table:
        return {}
    known = set(table["run_dir"])
    previous = {}
    for run_dir, checkpoint in zip(table["run_dir"], table["resume_from"]):
        if isinstance(checkpoint, str) and checkpoint:
            recorded = Path(checkpoint).resolve().parent
            moved = Path(run_dir).parent / recorded.name
            found = [str(folder) for folder in (recorded, moved) if str(folder) in known and str(folder) != run_dir]
            if found:
                previous[run_dir] = found[0]
    return previous


def _superseded(table: pd.DataFrame, previous: dict[str, str]) -> set[str]:
    """Attempts that are not the latest of their sweep index, and attempts that a later one resumed."""
    dropped = set(previous.values())
    indexed = table.dropna(subset=["sweep_index", "attempt"]).assign(_folder=lambda t: t["run_dir"].map(
        lambda d: str(Path(d).parent)))
    for _, attempts in indexed.groupby(["_folder", "sweep_index"]):
        latest = attempts["attempt"].astype(float).idxmax()
        dropped |= set(attempts["run_dir"]) - {attempts.at[latest, "run_dir"]}
    return dropped


def _joined_rows(chain: list[str], rows_of: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The metric rows of a chain (latest attempt first): each earlier attempt contributes, per
    metric, only the steps before the first step the later attempts logged."""
    joined = rows_of[chain[0]]
    for earlier in chain[1:]:
        rows = rows_of[earlier]
        rows = rows[rows["metric"].notna()]
        first = joined[joined["metric"].notna()].groupby("metric")["step"].min()
        limit = rows["metric"].map(first)
        keep = rows[limit.isna() | (rows["step"] < limit)]
        if not keep.empty:
            joined = pd.concat([keep, joined[joined["metric"].notna()]], ignore_index=True)
    return joined


def join_attempts(df: pd.DataFrame) -> pd.DataFrame:
    """One run per chain of attempts: the view every table and figure of this module uses.

    A run resumed from a checkpoint (``resume_from``, what a resubmitted sweep task and a plain
    ``with resume_from=...`` run both record) continues the attempt that wrote the checkpoint:
    its curve is the earlier attempt's points before the resume followed by its own, under the
    latest attempt's run columns (status, config, ``run_dir``). Of the attempts of one sweep
    index only the latest chain counts (what ``sweep status`` reports), so each task is one
    sample. Adds ``attempts`` (attempts joined) and ``resumed`` (attempts > 1); ``wall_seconds``
    becomes the sum over the chain. A table that is already joined is returned unchanged.
    """
    if "attempts" in df.columns:
        return df
    table = runs(df)
    previous = _predecessors(table)
    dropped = _superseded(table, previous)
    rows_of = {run_dir: rows for run_dir, rows in df.groupby("run_dir", sort=False)}
    wall = dict(zip(table["run_dir"], table["wall_seconds"]))
    frames = []
    for run_dir in table["run_dir"]:
        if run_dir in dropped:
            continue
        chain = [run_dir]
        while chain[-1] in previous and previous[chain[-1]] not in chain:
            chain.append(previous[chain[-1]])
        rows = rows_of[run_dir]
        if len(chain) > 1:
            joined = _joined_rows(chain, rows_of)[list(TIDY_COLUMNS)].reset_index(drop=True)
            columns = rows.iloc[0].drop(list(TIDY_COLUMNS)).to_dict()
            rows = joined.assign(**{key: [value] * len(joined) for key, value in columns.items()})
        frames.append(rows.assign(attempts=len(chain), resumed=len(chain) > 1,
                                  wall_seconds=float(np.nansum([wall[d] for d in chain]))))
    if not frames:
        return df.assign(attempts=pd.Series(dtype=int), resumed=pd.Series(dtype=bool))
    return pd.concat(frames, ignore_index=True)[[*df.columns, "attempts", "resumed"]]


def check_logged(df: pd.DataFrame, metric: str) -> None:
    """ValueError listing the metrics the runs of ``df`` logged, when none of them logged ``metric``."""
    known = sorted(m for m in df["metric"].dropna().unique())
    if metric not in known:
        raise ValueError(f"metric {metric!r} was not logged by any run; logged metrics: {', '.join(known) or 'none'}")


def per_run(df: pd.DataFrame, metric: str, how: str = "last", at: int | None = None,
            window: tuple[int, int] | None = None) -> pd.DataFrame:
    """One row per run (attempts joined, :func:`join_attempts`) with ``final`` and ``final_step``.

    ``how``: ``"last"`` the value at the largest logged step; ``"best"`` the smallest finite value
    (every metric of this package is lower-is-better) and its step; ``"min"`` the smallest finite
    value over the steps ``window = (first, last)`` (both included); ``"at"`` the value logged at
    step ``at`` exactly (the papers quote values at given epochs). A run without such a value
    gets NaN. Every run of ``df`` is a row.
    """
    if how not in HOW:
        raise ValueError(f"how must be one of {', '.join(HOW)}, got {how!r}")
    if (how == "at") != (at is not None) or (how == "min") != (window is not None):
        raise ValueError(f"how={how!r}: give at=EPOCH exactly with how='at' and window=(FIRST, LAST) exactly "
                         f"with how='min' (got at={at!r}, window={window!r})")
    df = join_attempts(df)
    check_logged(df, metric)
    rows = df[df["metric"] == metric].dropna(subset=["step"])
    if how == "at":
        rows = rows[rows["step"] == at]
    if how == "min":
        rows = rows[(rows["step"] >= window[0]) & (rows["step"] <= window[1])]
    if how in ("last", "at"):
        picked = rows.sort_values("step", kind="stable").groupby("run_dir", sort=False).tail(1)
    else:
        finite = rows[np.isfinite(rows["value"])]
        picked = finite.sort_values(["value", "step"], kind="stable").groupby("run_dir", sort=False).head(1)
    picked = picked.set_index("run_dir")
    table = runs(df)
    table["final"] = table["run_dir"].map(picked["value"]).astype(float)
    table["final_step"] = table["run_dir"].map(picked["step"]).astype("Int64")
    return table


def _hashable(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _excluded(members: pd.DataFrame) -> str:
    """Why runs of a group are left out of its statistics, e.g. "FAILED: 1; non-finite or not logged: 1"."""
    reasons = [f"{status}: {n}" for status, n in members.loc[~members["_ok_status"], "status"]
               .fillna("unknown").value_counts(sort=False).items()]
    non_finite = int((members["_ok_status"] & ~members["_finite"]).sum())
    if non_finite:
        reasons.append(f"non-finite or not logged: {non_finite}")
    return "; ".join(reasons)


def final_table(df: pd.DataFrame, by: Sequence[str], metric: str, how: str = "last",
                statuses: Sequence[str] = ("COMPLETED",), at: int | None = None,
                window: tuple[int, int] | None = None) -> pd.DataFrame:
    """Final value of ``metric`` per run, summarised per config ``by``: mean, sd, count over seeds.

    Parameters
    ----------
    df : the tidy table of :func:`load_runs`.
    by : config (or run) columns to group by, e.g. ``["method", "lmbda"]``; ``[]`` for one group.
        Do not include ``seed``: the seeds are what is averaged over.
    metric : the metric, e.g. ``"valid_mmd2"``.
    how, at, window : which value of each run, as in :func:`per_run` (``"last"``, ``"best"``,
        ``"min"`` over ``window``, ``"at"`` step ``at``).
    statuses : the run statuses that enter the statistics (default: COMPLETED only).

    Runs are counted once: attempts of one run are joined (:func:`join_attempts`), so a resumed
    run is one sample with its whole curve, and of repeated attempts of one sweep index only the
    latest (the one ``sweep status`` reports) counts.

    Returns
    -------
    One row per group (in order of first appearance) with the ``by`` columns and
    ``mean``, ``sd`` (sample standard deviation, ddof = 1; NaN for a single run), ``count`` (runs
    in the statistics), ``n_runs`` (all runs of the group), ``seeds`` (tuple of the seeds in the
    statistics), ``excluded``: the runs left out of the statistics and why, e.g.
    ``"FAILED: 1; INTERRUPTED: 1; non-finite: 1"`` ("" when none), and ``names``: the distinct run
    names of the group, joined by "; ". A group whose runs were all excluded still has its row
    (count 0, mean NaN).
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [key for key in by if key not in df.columns]
    if missing:
        raise KeyError(f"no column {missing[0]!r} to group by; config columns: "
                       f"{', '.join(c for c in df.columns if c not in RESERVED)}")
    table = per_run(df, metric, how, at=at, window=window)
    table["_ok_status"] = table["status"].isin(list(statuses))
    table["_finite"] = np.isfinite(table["final"].to_numpy(dtype=float))
    keys = table[by].map(_hashable) if by else table[[]]
    table["_group"] = list(map(tuple, keys.itertuples(index=False))) if by else [()] * len(table)
    rows = []
    for group, members in table.groupby("_group", sort=False):
        used = members[members["_ok_status"] & members["_finite"]]
        values = used["final"].to_numpy(dtype=float)
        seeds = tuple(used["seed"].tolist()) if "seed" in used else ()
        names = "; ".join(dict.fromkeys(members["name"].dropna())) if "name" in members else ""
        rows.append({
            **dict(zip(by, group)),
            "mean": float(values.mean()) if len(values) else math.nan,
            "sd": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
            "count": len(values),
            "n_runs": len(members),
            "seeds": seeds,
            "excluded": _excluded(members),
            "names": names,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=[*by, "mean", "sd", "count", "n_runs", "seeds", "excluded", "names"])


def curves(df: pd.DataFrame, metric: str, statuses: Sequence[str] | None = ("COMPLETED",)) -> pd.DataFrame:
    """The rows of ``metric`` (finite steps) of the joined runs (:func:`join_attempts`: a resumed
    run is one curve) whose status is in ``statuses`` (None: all runs); for learning curves."""
    df = join_attempts(df)
    rows = df[(df["metric"] == metric) & df["step"].notna()]
    if statuses is not None:
        rows = rows[rows["status"].isin(list(statuses))]
    return rows.reset_index(drop=True)
