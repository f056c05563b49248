"""The state of every task of a sweep (:func:`status`) and the final tables of its runs (:func:`collect`).

Run directories are read only through :mod:`studentteacher.results`; what a backend still holds
(a SLURM array, a local submit) comes from :func:`studentteacher.sweep.backends.queued`.

States: ``completed``, ``failed`` (with the last line of the fail trace), ``interrupted``,
``running``, ``dead`` (RUNNING but the heartbeat is stale: killed without a chance to say so),
``queued`` (waiting or starting in a backend) and ``missing``. Each index's latest attempt decides.
Its time is the wall time of all its attempts together (:func:`run_seconds`): the runs' own time, from
Sacred's start to stop, without the process's start-up (imports, checks), so a tiny run reads 0.05 s
where the local backend's log says it took 3 s.

**Stale rule.** A RUNNING run is dead once its last heartbeat (or, before the first one, its start)
is older than :data:`STALE_BEATS` of its own heartbeat intervals (``meta.beat_interval`` in
run.json: 5 s for the experiments' runs, so a killed run reads dead 15-20 s after it died;
Sacred's 10 s for runs that do not record it), or than ``stale_after`` seconds when that is given.
The student-teacher runs also beat right before every checkpoint, so the metrics a killed run
stored reach its latest checkpoint, from which its next attempt resumes.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.registry import EXPERIMENTS

from .. import results
from .backends import queued
from .runs_folder import nothing_found
from .spec import Sweep

#: Heartbeat intervals without a heartbeat after which a RUNNING run is dead (module docstring).
STALE_BEATS = 3
#: Sacred's heartbeat interval, for runs whose run.json does not record theirs.
SACRED_BEAT_SECONDS = 10.0
STATES = ("completed", "failed", "interrupted", "running", "dead", "queued", "missing")
RESUBMIT_STATES = ("failed", "interrupted", "dead", "missing")
RUN_ID = results.SWEEP_RUN_ID


@dataclass
class TaskStatus:
    """The state of one index, from its latest attempt (and the backends' queues)."""

    index: int
    state: str  # one of STATES
    attempts: int  # run directories of this index
    run_id: str | None  # the latest attempt's directory name
    detail: str = ""  # fail reason, heartbeat age, SLURM job
    result: Any = None
    name: str | None = None  # the latest attempt's run name (results.run_name)
    seconds: float | None = None  # wall time of all its attempts (run_seconds), None without a run

    def as_dict(self) -> dict:
        """The fields as a JSON-ready dict."""
        return {"index": self.index, "state": self.state, "attempts": self.attempts, "run_id": self.run_id,
                "name": self.name, "detail": self.detail, "result": self.result, "seconds": self.seconds}


def run_seconds(run: dict, now: dt.datetime) -> float:
    """Wall time of one attempt (its run.json), in seconds: from its start to its stop time, or, before
    it has one, to its last heartbeat (to ``now`` while it runs); 0 without a start time."""
    start = _parse_time(run.get("start_time"))
    if start is None:
        return 0.0
    end = _parse_time(run.get("stop_time"))
    if end is None:
        end = now if run.get("status") == "RUNNING" else _parse_time(run.get("heartbeat")) or start
    return max((end - start).total_seconds(), 0.0)


def _seconds_per_index(sweep: Sweep, now: dt.datetime) -> dict[int, float]:
    """index -> wall time of all its attempts (:func:`run_seconds`)."""
    seconds: dict[int, float] = {}
    for index, _, path in results.sweep_attempts(sweep.observer):
        seconds[index] = seconds.get(index, 0.0) + run_seconds(results.read_run_json(path), now)
    return seconds


def _duration_text(seconds: float | None) -> str:
    """``seconds`` as ``0.34 s``, ``4.2 s``, ``42 s``, ``12.5 min`` or ``2.1 h``; ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2g} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def latest_attempts(sweep: Sweep) -> dict[int, tuple[int, Path]]:
    """index -> (number of attempts, latest attempt's run directory), for indices with a run."""
    counts: dict[int, int] = {}
    latest: dict[int, tuple[int, Path]] = {}
    for index, attempt, path in results.sweep_attempts(sweep.observer):
        counts[index] = counts.get(index, 0) + 1
        if index not in latest or attempt > latest[index][0]:
            latest[index] = (attempt, path)
    return {index: (counts[index], path) for index, (_, path) in latest.items()}


def _parse_time(text: str | None) -> dt.datetime | None:
    """An ISO time from run.json, or None."""
    try:
        return dt.datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def stale_limit(run: dict, stale_after: float | None = None) -> float:
    """Seconds without a heartbeat after which the RUNNING ``run`` (its run.json) is dead: ``stale_after``
    when given, else :data:`STALE_BEATS` of its heartbeat intervals (module docstring)."""
    if stale_after is not None:
        return stale_after
    beat = (run.get("meta") or {}).get("beat_interval")
    return STALE_BEATS * (beat if isinstance(beat, (int, float)) and beat > 0 else SACRED_BEAT_SECONDS)


def _state_of(run: dict, stale_after: float | None, now: dt.datetime) -> tuple[str, str]:
    """(state, detail) of a run from its run.json."""
    status = run.get("status")
    if status == "COMPLETED":
        resumed = ((run.get("meta") or {}).get("sweep") or {}).get("resumed_from")
        return "completed", f"resumed from {resumed}" if resumed else ""
    if status == "FAILED":
        return "failed", results.fail_reason(run) or "no fail_trace recorded"
    if status == "INTERRUPTED":
        return "interrupted", ""
    if status in ("RUNNING", "QUEUED", None):
        beat = _parse_time(run.get("heartbeat")) or _parse_time(run.get("start_time"))
        if beat is None:
            return "running", "no heartbeat yet"
        age = (now - beat).total_seconds()
        if age > stale_limit(run, stale_after):
            return "dead", f"RUNNING but last heartbeat {age:.0f} s ago"
        return "running", f"heartbeat {age:.0f} s ago"
    return "failed", f"unexpected status {status!r}"  # e.g. a custom interrupt status


def status(sweep: Sweep, stale_after: float | None = None) -> list[TaskStatus]:
    """The state of every index of the sweep (see the module docstring), in index order; ``stale_after``
    (seconds) replaces the stale rule's heartbeat intervals."""
    latest = latest_attempts(sweep)
    waiting = queued(sweep)
    now = dt.datetime.utcnow()
    seconds = _seconds_per_index(sweep, now)
    statuses = []
    for index in range(len(sweep)):
        attempts, path = latest.get(index, (0, None))
        state, detail, run_id, result, name = "missing", "", None, None, None
        if path is not None:
            run = results.read_run_json(path)
            state, detail = _state_of(run, stale_after, now)
            run_id, result, name = path.name, run.get("result"), results.run_name(run)
        if index in waiting and state != "running":
            state, detail = "queued", waiting[index]
        statuses.append(TaskStatus(index, state, attempts, run_id, detail, result, name, seconds.get(index)))
    return statuses


def runs_header(sweep: Sweep) -> str:
    """The first line of status and collect: where the runs are read from, and why there."""
    return f"runs: {sweep.observer} ({sweep.observer_origin})"


def format_status(sweep: Sweep, statuses: list[TaskStatus]) -> str:
    """A plain-text table of :func:`status` under :func:`runs_header`, one line per index, and a count
    per state; when the sweep has no run and nothing queued, where it looked and how to look elsewhere."""
    width = max([4, *(len(s.name or "-") for s in statuses)])
    lines = [runs_header(sweep),
             f"{'index':>5}  {'state':<11}  {'attempts':>8}  {'time':>9}  {'run':<9}  {'name':<{width}}  "
             f"config / detail"]
    for s in statuses:
        detail = sweep.describe(s.index) + (f"  | {s.detail}" if s.detail else "")
        lines.append(f"{s.index:>5}  {s.state:<11}  {s.attempts:>8}  {_duration_text(s.seconds):>9}  "
                     f"{s.run_id or '-':<9}  {s.name or '-':<{width}}  {detail}")
    counts = {state: sum(s.state == state for s in statuses) for state in STATES}
    lines.append(f"{len(statuses)} tasks: " + ", ".join(f"{n} {state}" for state, n in counts.items() if n)
                 + f"; wall time of all attempts {_duration_text(sum(s.seconds or 0.0 for s in statuses))}")
    if counts["missing"] == len(statuses):
        lines.append(nothing_found(sweep.observer, sweep.name))
    return "\n".join(lines)


def _plain(value):
    """A value usable as a group key: plain scalars as they are, anything else as its repr."""
    return value if isinstance(value, (str, int, float, bool)) or value is None else repr(value)


def collect(sweep: Sweep, metrics: list[str] | None = None, how: str = "last"):
    """(per-run table, summary table) of the latest attempt of every index that has a run.

    ``metrics`` default to the experiment's (student_teacher: valid_mmd2, train_mmd2;
    particle_flow: divergence, mmd2, w1, w2; dmmd: sample_w1, sample_w2, sample_mmd2, sample_fd,
    sample_class_coverage), those no run logged left out; ``how`` is
    ``"last"`` or ``"best"`` (:func:`studentteacher.results.per_run`). The per-run table has the
    index, the varied keys, ``run_id``, ``status`` and the final value of each metric. The
    summary is :func:`studentteacher.results.final_table` of each metric over the seeds (mean,
    sd, count, n_runs, seeds, excluded: only COMPLETED runs enter the statistics), one row per
    config (the varied keys but the seed), columns ``(metric, statistic)``. Both are pandas
    DataFrames, empty without runs; the summary is also empty when no run logged any of the metrics.
    """
    import pandas as pd

    index_of = {str(path.resolve()): index for index, (_, path) in latest_attempts(sweep).items()}
    if not index_of:
        return pd.DataFrame(), pd.DataFrame()
    df = results.load_runs(list(index_of))
    index = df["run_dir"].map(index_of)
    df = df.assign(**{key: index.map(lambda i, key=key: _plain(sweep.varied(i)[key])) for key in sweep.varied_keys})
    logged = set(df["metric"].dropna())
    metrics = [m for m in (metrics or EXPERIMENTS[sweep.experiment].metrics) if m in logged]
    runs = results.runs(df).assign(index=lambda table: table["run_dir"].map(index_of))
    by = [key for key in sweep.varied_keys if key != "seed"]
    tables = {}
    for metric in metrics:
        runs[metric] = runs["run_dir"].map(results.per_run(df, metric, how).set_index("run_dir")["final"])
        table = results.final_table(df, by, metric, how)
        tables[metric] = table.set_index(by) if by else table
    runs = runs.sort_values("index", kind="stable")[["index", *sweep.varied_keys, "run_id", "status", *metrics]]
    return runs.reset_index(drop=True), pd.concat(tables, axis=1) if tables else pd.DataFrame()
