"""Logged runs -> one tidy pandas table; final values per config (mean, sd, count over seeds).

Reads what Sacred's **FileStorageObserver** writes (one subdirectory per run, holding
``run.json``, ``config.json`` and ``metrics.json``), for both the experiments of this package
(``student_teacher``, ``particle_flow``) and both kinds of run ids:

* plain Sacred ids ``1``, ``2``, ... (``python experiments/train.py -F DIR``);
* sweep ids ``<index:05d>-<attempt>`` (``00007-1``, ``00007-2`` for a resubmission), written by
  ``python -m studentteacher.sweep run`` (:mod:`studentteacher.sweep`); the run's ``meta.sweep``
  gives the sweep name, index and attempt, which become columns.

A path may also be a folder of such observer folders (e.g. ``runs/figures-small`` holding one
folder per sweep file): folders that are neither runs nor Sacred's ``_sources`` / the sweep's
``slurm`` are searched for runs, a few levels deep.

**Nothing is dropped silently.** Runs that FAILED (a diverged run: the metrics logged before the
divergence stay), were INTERRUPTED or are still RUNNING are kept, with their ``status`` (and the
last line of the fail trace in ``fail_reason``). A run directory that cannot be read completely
(bad JSON, a missing file: a half-written or corrupt run) gives a :func:`warnings.warn` naming the
directory and the file, never an exception: without a readable ``run.json`` and ``config.json``
it is skipped (nothing in it can be placed); without a readable ``metrics.json`` it is kept with
its status and config, and no metric rows.

**SQL observers are unsupported**: Sacred 0.8.7's ``SqlObserver`` stores no metrics at all (it has
no metrics table; every ``log_scalar`` is lost) and keeps the result as one float, so both
experiments refuse ``-s``. Use the FileStorageObserver (the default) for anything
this module should read.

The tidy table (:func:`load_runs`) has one row per (run, metric, step):

=================  =================================================================
``run_dir``        absolute path of the run directory (unique per run; artifacts such
                   as ``trajectory.npz`` or ``result.npz`` lie inside)
``source``         the observer directory's name (a sweep file's stem for sweeps)
``run_id``         the directory name (``"3"``, ``"00007-2"``)
``experiment``     ``student_teacher`` or ``particle_flow``
``name``           the run's readable name (``meta.name`` in run.json: ``-n NAME``, or the
                   experiment, its named configs and the config values that differ from
                   them, e.g. ``student_teacher method=drmmd lr=0.05``); the experiment's
                   name for runs stored before names existed
``status``         Sacred's status: COMPLETED, FAILED, INTERRUPTED, RUNNING, ...
``fail_reason``    last line of ``fail_trace`` (None unless FAILED)
``start_time``,    from run.json (pandas Timestamps, UTC as Sacred writes them);
``stop_time``,     ``wall_seconds`` = stop - start (NaN while running)
``wall_seconds``
``host``           the host name Sacred recorded
``sweep``,         from ``meta.sweep`` (None / NaN for runs outside a sweep)
``sweep_index``,
``attempt``
<config keys>      every key of config.json (``seed`` included); nested dicts become
                   ``outer.inner``; lists become tuples; a key that clashes with a
                   column above is prefixed ``config.``
``metric``         the logged name (``train_mmd2``, ``valid_mmd2``, ``w1``, ...); None for a
                   run without any metric row (one such row keeps the run in the table)
``step``           the step Sacred logged (epoch, or flow step)
``value``          the value (float; NaN/inf as logged)
=================  =================================================================

:func:`final_table` reduces it to the last (or best) value per run, grouped by config keys.
This module reads the files and builds the tidy table; :mod:`.tables` reduces it. No plotting, no Sacred import.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

RUN_ID = re.compile(r"^(\d+|\d{5,}-\d+)$")  # Sacred ids and sweep ids
SWEEP_RUN_ID = re.compile(r"^(\d{5,})-(\d+)$")  # <index:05d>-<attempt>
SKIP_DIRS = {"_sources", "slurm", "checkpoints"}
RUN_COLUMNS = (
    "run_dir", "source", "run_id", "experiment", "name", "status", "fail_reason", "start_time", "stop_time",
    "wall_seconds", "host", "sweep", "sweep_index", "attempt",
)  # fmt: skip
TIDY_COLUMNS = ("metric", "step", "value")
RESERVED = set(RUN_COLUMNS) | set(TIDY_COLUMNS)
HOW = ("last", "best", "min", "at")
MAX_DEPTH = 4


#: The environment variable that moves the default runs folder (``./runs``) elsewhere.
RUNS_ENV = "STUDENTTEACHER_RUNS"


def default_runs_dir() -> Path:
    """Where runs go when no observer is named: ``$STUDENTTEACHER_RUNS``, else ``./runs`` (relative to
    the working directory). The one place that reads the variable (experiments and sweeps ask here)."""
    return Path(os.environ.get(RUNS_ENV) or "runs")


def runs_dir_problem(path: str | os.PathLike, writing: bool = True) -> str | None:
    """Why ``path`` cannot be a runs folder (a file on the way; with ``writing``, no write permission), or None.

    Looks at ``path`` or, when it does not exist yet, its nearest existing ancestor; creates nothing.
    """
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        where = "is a file" if existing == path else f"lies under the file {existing}"
        return f"{path} {where}, not a directory"
    if writing and not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


class UnreadableRun(Exception):
    """Internal: a run directory file that is missing or not valid JSON."""


def _read_json(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError as err:
        raise UnreadableRun(f"{path.name} is missing") from err
    except OSError as err:
        raise UnreadableRun(f"{path.name} cannot be read ({err})") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UnreadableRun(f"{path.name} is not valid JSON (half-written or corrupt?): {err}") from err
    if not isinstance(data, dict):
        raise UnreadableRun(f"{path.name} does not hold a JSON object")
    return data


def flatten(config: dict, prefix: str = "") -> dict:
    """``{"outer.inner": value}``: nested dicts of a config flattened, lists as tuples (the table's config
    columns; MLflow's params are these values as text)."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = tuple(value) if isinstance(value, list) else value
    return flat


def read_run_json(run_dir: str | os.PathLike, tries: int = 5) -> dict:
    """The ``run.json`` of a run directory; {} when it is missing, or still unreadable after
    ``tries`` reads 0.1 s apart (Sacred's own observer rewrites it in place)."""
    for _ in range(tries):
        try:
            return _read_json(Path(run_dir) / "run.json")
        except UnreadableRun as err:
            if isinstance(err.__cause__, FileNotFoundError):
                return {}
            time.sleep(0.1)
    return {}


def read_info_json(run_dir: str | os.PathLike) -> dict:
    """The ``info.json`` of a run directory (written at Sacred's heartbeats); {} when missing or unreadable."""
    try:
        return _read_json(Path(run_dir) / "info.json")
    except UnreadableRun:
        return {}


def run_name(run: dict) -> str | None:
    """The readable name of a run from its run.json (``meta.name``), else its experiment's name."""
    return (run.get("meta") or {}).get("name") or (run.get("experiment") or {}).get("name")


def sweep_attempts(observer: str | os.PathLike) -> list[tuple[int, int, Path]]:
    """(index, attempt, directory) of every sweep run directory ``<index:05d>-<attempt>`` in
    ``observer`` (unordered; [] when the directory does not exist)."""
    observer = Path(observer)
    if not observer.is_dir():
        return []
    found = []
    for entry in observer.iterdir():
        match = SWEEP_RUN_ID.match(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), int(match.group(2)), entry))
    return found


def fail_reason(run: dict) -> str | None:
    """The last non-empty line of a run.json's ``fail_trace``; None without one."""
    lines = [line.strip() for chunk in run.get("fail_trace") or [] for line in str(chunk).splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else None


def _time(text) -> pd.Timestamp | None:
    try:
        return pd.Timestamp(text) if text else None
    except (ValueError, TypeError):
        return None


def _is_run_dir(path: Path) -> bool:
    return bool(RUN_ID.match(path.name)) or any((path / name).exists() for name in ("run.json", "config.json"))


def find_run_dirs(path: str | os.PathLike) -> list[Path]:
    """Run directories under ``path`` (itself a run, an observer folder, or a folder of those)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no such runs directory: {path}")
    if _is_run_dir(path) and (path / "run.json").exists():
        return [path]
    found: list[Path] = []

    def visit(folder: Path, depth: int) -> None:
        for entry in sorted(folder.iterdir()):
            if not entry.is_dir() or entry.name in SKIP_DIRS or entry.name.startswith("."):
                continue
            if _is_run_dir(entry):
                found.append(entry)
            elif depth < MAX_DEPTH:
                visit(entry, depth + 1)

    visit(path, 0)
    return found


def _run_key(path: Path):
    match = re.match(r"^(\d+)(?:-(\d+))?$", path.name)
    if match:
        return (str(path.parent), 0, int(match.group(1)), int(match.group(2) or 0), "")
    return (str(path.parent), 1, 0, 0, path.name)


def read_run(run_dir: str | os.PathLike) -> tuple[dict, dict] | None:
    """(run columns incl. config, metrics dict) of one run directory; None (with a warning) if
    ``run.json`` or ``config.json`` is unreadable. An unreadable ``metrics.json`` warns and gives {}."""
    run_dir = Path(run_dir).resolve()
    try:
        run = _read_json(run_dir / "run.json")
        config = _read_json(run_dir / "config.json")
    except UnreadableRun as err:
        warnings.warn(f"skipping run directory {run_dir}: {err}", stacklevel=3)
        return None
    try:
        metrics = _read_json(run_dir / "metrics.json")
    except UnreadableRun as err:
        warnings.warn(f"run directory {run_dir}: {err}; the run is kept (status {run.get('status')!r}) "
                      f"without metrics", stacklevel=3)
        metrics = {}
    sweep = (run.get("meta") or {}).get("sweep") or {}
    start, stop = _time(run.get("start_time")), _time(run.get("stop_time"))
    status = run.get("status")
    columns = {
        "run_dir": str(run_dir),
        "source": run_dir.parent.name,
        "run_id": run_dir.name,
        "experiment": (run.get("experiment") or {}).get("name"),
        "name": run_name(run),
        "status": status,
        "fail_reason": fail_reason(run) if status == "FAILED" else None,
        "start_time": start,
        "stop_time": stop,
        "wall_seconds": (stop - start).total_seconds() if start is not None and stop is not None else math.nan,
        "host": (run.get("host") or {}).get("hostname"),
        "sweep": sweep.get("name"),
        "sweep_index": sweep.get("index", math.nan),
        "attempt": sweep.get("attempt", math.nan),
    }
    for key, value in flatten(config).items():
        columns[f"config.{key}" if key in RESERVED else key] = value
    return columns, metrics


def _metric_frame(run_dir: Path, metrics: dict) -> pd.DataFrame:
    frames = []
    for name, record in metrics.items():
        try:
            steps, values = list(record["steps"]), list(record["values"])
            if len(steps) != len(values):
                raise ValueError(f"{len(steps)} steps but {len(values)} values")
        except (KeyError, TypeError, ValueError) as err:
            warnings.warn(f"run directory {run_dir}: metric {name!r} in metrics.json is malformed ({err}); "
                          f"it is left out", stacklevel=4)
            continue
        frames.append(pd.DataFrame({
            "metric": name,
            "step": pd.array(steps, dtype="Int64") if steps else pd.array([], dtype="Int64"),
            "value": np.asarray([math.nan if v is None else v for v in values], dtype=float),
        }))  # fmt: skip
    if not frames:
        return pd.DataFrame({"metric": [None], "step": pd.array([pd.NA], dtype="Int64"), "value": [math.nan]})
    return pd.concat(frames, ignore_index=True)


def load_runs(*paths: str | os.PathLike | Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Every run under ``paths`` as one tidy DataFrame: one row per (run, metric, step).

    Parameters
    ----------
    paths : one or more directories (or one list of them). Each is a run directory, a Sacred
        FileStorage observer directory (numeric or sweep run ids), or a folder of observer
        directories.

    Returns
    -------
    DataFrame with the columns of the module docstring: run columns, config keys, ``metric``,
    ``step``, ``value``. Runs keep their status (FAILED/INTERRUPTED/RUNNING are not dropped); a run
    without any metric has one row with ``metric`` None. Unreadable run directories warn.
    """
    if len(paths) == 1 and not isinstance(paths[0], (str, os.PathLike)):
        paths = tuple(paths[0])
    if not paths:
        raise ValueError("load_runs needs at least one directory")
    run_dirs: list[Path] = []
    for path in paths:
        run_dirs.extend(find_run_dirs(path))
    seen, frames = set(), []
    for run_dir in sorted(run_dirs, key=_run_key):
        if run_dir.resolve() in seen:
            continue
        seen.add(run_dir.resolve())
        loaded = read_run(run_dir)
        if loaded is None:
            continue
        columns, metrics = loaded
        tidy = _metric_frame(run_dir, metrics)
        frames.append(tidy.assign(**{key: [value] * len(tidy) for key, value in columns.items()}))
    if not frames:
        return pd.DataFrame(columns=[*RUN_COLUMNS, *TIDY_COLUMNS])
    table = pd.concat(frames, ignore_index=True)
    config_columns = [c for c in table.columns if c not in RESERVED]
    table = table[[*RUN_COLUMNS, *config_columns, *TIDY_COLUMNS]]
    table["step"] = table["step"].astype("Int64")
    table["value"] = table["value"].astype(float)
    return table


