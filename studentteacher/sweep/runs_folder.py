"""Where a sweep's runs are, found again from any folder.

The rule (:func:`choose`): ``--observer DIR``, else the file's ``observer`` key, else
``$STUDENTTEACHER_RUNS/<file stem>``, else ``runs/<file stem>``; a relative path is taken from the
current folder. Started from another folder, the rule names another folder. So ``submit`` and ``run``
record the absolute folder they store the runs in (:func:`record`), one small file per sweep file in
:func:`records_dir` (``$XDG_STATE_HOME/studentteacher/sweeps``, by default
``~/.local/state/studentteacher/sweeps``). Without ``--observer``, when the rule names a folder that
holds no run of the sweep, every command takes the recorded folder instead (if it holds runs of it)
and says so: ``status`` and ``collect`` show the runs of the last ``submit`` wherever they are started,
and a ``submit`` from elsewhere continues the sweep instead of starting it again.

Why a record rather than paths relative to the sweep file: runs often live apart from the code (a
scratch disk, ``$STUDENTTEACHER_RUNS`` set for one command), and resolving relative paths anew
would move the runs of existing sweeps, also of those running now; the record changes no folder in
which a command already finds the sweep's runs.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..results import RUNS_ENV, default_runs_dir, runs_dir_problem, sweep_attempts


class RunsFolderError(ValueError):
    """An observer that cannot be a runs folder; the message says why."""


@dataclass(frozen=True)
class RunsFolder:
    """A sweep's runs folder (absolute) and how it was chosen, as the headers of status and collect show it."""

    path: Path
    origin: str


def records_dir() -> Path:
    """Where the folders of the sweeps are recorded: ``$XDG_STATE_HOME/studentteacher/sweeps``."""
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "studentteacher" / "sweeps"


def _record_file(sweep_file: Path) -> Path:
    return records_dir() / f"{hashlib.sha1(str(sweep_file).encode()).hexdigest()[:16]}.json"


def recorded(sweep_file: Path) -> Path | None:
    """The runs folder last recorded for the sweep file ``sweep_file`` (absolute), or None."""
    try:
        record = json.loads(_record_file(sweep_file).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("file") != str(sweep_file) or not record.get("runs"):
        return None
    return Path(record["runs"])


def record(sweep_file: Path, folder: Path) -> None:
    """Record ``folder`` as the runs folder of ``sweep_file`` (both absolute). Best effort: a home
    that cannot be written (a compute node's) only loses the record."""
    if recorded(sweep_file) == folder:
        return
    path = _record_file(sweep_file)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps({"file": str(sweep_file), "runs": str(folder)}))
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)


def holds_runs(folder: Path) -> bool:
    """Whether ``folder`` holds a sweep run directory (``<index>-<attempt>``)."""
    return bool(sweep_attempts(folder))


def choose(sweep_file: Path, file_observer, observer=None) -> RunsFolder:
    """The runs folder of the sweep file ``sweep_file`` (absolute): ``observer`` (``--observer``), else the
    file's ``file_observer``, else the default; without ``observer``, the recorded folder instead when the
    chosen one holds no run of the sweep and the recorded one does (module docstring). RunsFolderError
    when the chosen path cannot be a folder."""
    if observer is not None:
        path, origin = observer, "--observer"
    elif file_observer is not None:
        path, origin = file_observer, "the sweep file's observer key"
    else:
        path = default_runs_dir() / sweep_file.stem
        origin = f"${RUNS_ENV}/<file stem>" if os.environ.get(RUNS_ENV) else "runs/<file stem> of the current folder"
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise RunsFolderError(f"'observer' must be a directory path, got {path!r}")
    problem = runs_dir_problem(path, writing=False)  # status and collect only read it
    if problem:
        raise RunsFolderError(f"observer: {problem}")
    folder = RunsFolder(Path(path).resolve(), origin)
    earlier = recorded(sweep_file)
    if observer is None and earlier not in (None, folder.path) and not holds_runs(folder.path) and holds_runs(earlier):
        return RunsFolder(earlier, f"recorded by the last submit or run of this file; {folder.path} holds none "
                                   f"of its runs")  # fmt: skip
    return folder


def nothing_found(folder: Path, stem: str) -> str:
    """What to say when ``folder`` holds no run of the sweep whose file stem is ``stem``."""
    return (f"no runs of this sweep in {folder}; if its runs are elsewhere, point there with --observer DIR (or "
            f"with {RUNS_ENV}=DIR when DIR holds {stem}/)")
