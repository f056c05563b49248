"""Sacred runs in an MLflow tracking store (a queryable database with a web UI), next to FileStorage.

    python experiments/train.py with epochs=2000 --mlflow sqlite:///mlruns.db
    STUDENTTEACHER_MLFLOW=sqlite:///mlruns.db python -m studentteacher.sweep run SWEEP --index 3
    mlflow ui --backend-store-uri sqlite:///mlruns.db          # then open http://127.0.0.1:5000
    python experiments/mlflow_observer.py import runs/ --uri sqlite:///mlruns.db   # back-fill

:class:`MlflowObserver` is a Sacred observer that writes one Sacred run as one MLflow run:

=====================  ==================================================================
params                 the flattened config (``seed`` included; nested keys ``outer.inner``;
                       lists as JSON), exactly as :func:`studentteacher.results.load_runs`
                       flattens ``config.json``
metrics                every ``log_scalar`` (same name, step and time); buffered and written
                       with ``MlflowClient.log_batch`` at Sacred's heartbeats (every
                       ``sacred_runs.BEAT_SECONDS`` = 5 s, and before every checkpoint)
                       and at the end, never per epoch
status                 COMPLETED -> FINISHED, FAILED -> FAILED, INTERRUPTED -> KILLED; the
                       Sacred status itself in the tag ``sacred.status``, a failure's last
                       line in ``sacred.fail_reason`` (and the run's description)
tags                   ``sacred.*`` (experiment, command, id), ``host.*`` (hostname, os, python,
                       cpu, gpus), ``version.*`` (the packages Sacred lists), ``sweep.*`` (name,
                       index, attempt, file), ``studentteacher.run_dir`` (the FileStorage run
                       directory), ``result.*`` (the run's result)
artifacts              every ``add_artifact`` file (``result.npz``, ``trajectory.npz``,
                       ``snapshots.png``, ``flow.gif``), ``cout.txt``, ``info.json``,
                       ``fail_trace.txt``
=====================  ==================================================================

MLflow experiment: the sweep's name for sweep runs (``meta_info["sweep"]["name"]``), else the
Sacred experiment's name (``student_teacher``, ``particle_flow``, ``dmmd``). MLflow run name: the
run's readable name (run.json's ``meta.name``, as in the tables and plots; the Sacred id where
there is none). Each batched replica is its own
Sacred run, so its own MLflow run. With a ``sqlite:///PATH`` store, artifacts go beside the database
in ``<PATH stem>_artifacts/<experiment>/`` (created on first use).

FileStorage stays the default and the source of truth (status, resume, :mod:`studentteacher.results`):
the flag ``--mlflow URI`` (``-M``) and the variable ``STUDENTTEACHER_MLFLOW=URI`` *add* this observer.
The store is reached when a run starts (a bad URI or a missing ``mlflow`` fails the run there, loudly);
a write that fails later keeps its metrics for the next heartbeat and, at the end, says with a warning
that the MLflow copy is incomplete: ``import`` (below) then replaces it from the run directory.

``python experiments/mlflow_observer.py import PATH... [--uri URI]`` copies FileStorage runs (a run
directory, a sweep's folder, or a folder of those such as ``reproduction/runs``), read with
:mod:`studentteacher.results`, into the store. It is idempotent: runs are matched by the tag
``studentteacher.run_dir``; one already there with the same Sacred status is skipped, one whose
status changed (it was running, or its live copy is incomplete) is replaced.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import getpass
import importlib.metadata
import json
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # quiet.py lies beside this module
    sys.path.append(str(HERE))
from quiet import quiet  # noqa: E402

quiet()
from sacred.commandline_options import cli_option  # noqa: E402
from sacred.observers import FileStorageObserver, RunObserver  # noqa: E402

ENV = "STUDENTTEACHER_MLFLOW"
RUN_DIR_TAG = "studentteacher.run_dir"
STATUS_TAG = "sacred.status"
MLFLOW_STATUS = {"COMPLETED": "FINISHED", "FAILED": "FAILED", "INTERRUPTED": "KILLED", "RUNNING": "RUNNING"}
#: MLflow 3's UI opens an experiment of this kind on its runs (training runs), not on GenAI traces.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
PRIORITY = 10  # below FileStorage (20) and Mongo (30): their run id and directory exist when this one starts
MAX_PARAMS, MAX_METRICS = 100, 1000  # MLflow's log_batch limits
MAX_PARAM_LENGTH, MAX_TAG_LENGTH = 6000, 8000
VERSIONED = ("torch", "numpy", "sacred", "mlflow", "studentteacher")  # tagged version.<name>
RETRIES = (0.5, 2.0, 5.0)  # seconds between tries of a write (SQLite "database is locked", a busy server)


# ---------------------------------------------------------------------------------------------------
# What a Sacred run becomes in MLflow (shared by the live observer and the import)


def param_value(value) -> str:
    """A config value as an MLflow param: lists and tuples as JSON, everything else as ``str``."""
    if isinstance(value, (list, tuple)):
        text = json.dumps(list(value), default=str)
    else:
        text = str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def flatten_config(config: dict, prefix: str = "") -> dict[str, str]:
    """``{"outer.inner": "value"}``: nested dicts flattened as :mod:`studentteacher.results` does."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, name + "."))
        else:
            flat[name] = param_value(value)
    return flat


def experiment_name(sacred_experiment: str, meta: dict | None) -> str:
    """The MLflow experiment of a run: its sweep's name, else the Sacred experiment's name."""
    sweep = (meta or {}).get("sweep") or {}
    return str(sweep.get("name") or sacred_experiment)


def _tag(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= MAX_TAG_LENGTH else text[: MAX_TAG_LENGTH - 3] + "..."


def run_tags(ex_info: dict, host_info: dict, meta: dict, command: str | None, run_id, run_dir: str | None,
             live: bool = True) -> dict[str, str]:
    """The tags that describe where and how a run ran (module docstring); ``live``: also the versions of
    :data:`VERSIONED` installed here (an imported run keeps only what Sacred recorded then)."""
    tags = {
        "sacred.experiment": ex_info.get("name"),
        "sacred.command": command,
        "sacred.id": None if run_id is None else str(run_id),
        "mlflow.source.name": ex_info.get("mainfile"),
        "mlflow.source.type": "LOCAL",
        "mlflow.user": os.environ.get("USER") or _user(),
        RUN_DIR_TAG: run_dir,
        "host.hostname": host_info.get("hostname"),
        "host.os": " ".join(map(str, host_info.get("os") or [])) or None,
        "host.python_version": host_info.get("python_version"),
        "host.cpu": host_info.get("cpu"),
        "host.gpus": host_info.get("gpus"),
    }
    for dependency in ex_info.get("dependencies") or []:
        package, _, version = str(dependency).partition("==")
        tags[f"version.{package}"] = version or "unknown"
    if live:  # what Sacred does not list (it sees only the modules the script imports itself)
        for package in VERSIONED:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                tags.setdefault(f"version.{package}", importlib.metadata.version(package))
    for repository in ex_info.get("repositories") or []:
        tags["git.commit"], tags["git.dirty"] = repository.get("commit"), repository.get("dirty")
    sweep = (meta or {}).get("sweep") or {}
    for key in ("name", "index", "attempt", "file", "resumed_from"):
        if sweep.get(key) is not None:
            tags[f"sweep.{key}"] = sweep[key]
    return {key: _tag(value) for key, value in tags.items() if value is not None}


def result_tags(result) -> dict[str, str]:
    if isinstance(result, dict):
        return {f"result.{key}": _tag(value) for key, value in result.items()}
    return {} if result is None else {"result": _tag(result)}


def fail_reason(fail_trace) -> str | None:
    """The last non-empty line of a Sacred fail trace (as :func:`studentteacher.results.fail_reason`)."""
    lines = [line.strip() for chunk in fail_trace or [] for line in str(chunk).splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else None


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers)
        return None


def millis(moment) -> int:
    """Milliseconds since the epoch of a Sacred time (a naive UTC datetime, an ISO string or a Timestamp)."""
    if isinstance(moment, str):
        moment = datetime.datetime.fromisoformat(moment)
    if hasattr(moment, "to_pydatetime"):
        moment = moment.to_pydatetime()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp() * 1000)


def _float(value) -> float:
    return math.nan if value is None else float(value)


# ---------------------------------------------------------------------------------------------------
# The store


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URI (relative to the working directory with three
    slashes, absolute with four); None for other stores."""
    if not uri.startswith("sqlite:///") or ":memory:" in uri:
        return None
    return Path(uri[len("sqlite:///"):].split("?")[0])


def artifact_location(uri: str, experiment: str) -> str | None:
    """Where an experiment's artifacts go: beside a SQLite database, else the server's default."""
    database = sqlite_path(uri)
    if database is None:
        return None
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._") or "experiment"
    return (database.resolve().parent / f"{database.stem}_artifacts" / safe).as_uri()


@contextlib.contextmanager
def _initialisation_lock(uri: str):
    """Serialise first contact with a SQLite store across processes (MLflow creates its tables on
    first use, and two processes doing that at once collide). Other stores: no lock."""
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    import fcntl

    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:  # a file system without flock: go on unlocked
            pass
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(handle, fcntl.LOCK_UN)


def _quiet_mlflow_logs() -> None:
    import logging

    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.db.db_types"):
        logging.getLogger(name).setLevel(logging.WARNING)


def retried(action, *args, **kwargs):
    """``action(*args, **kwargs)``, tried again after each pause of :data:`RETRIES` when it raises."""
    for pause in RETRIES:
        try:
            return action(*args, **kwargs)
        except Exception:
            time.sleep(pause)
    return action(*args, **kwargs)


class MlflowStore:
    """An :class:`mlflow.MlflowClient` on ``uri`` with the experiment look-ups both writers need."""

    def __init__(self, uri: str):
        try:
            from mlflow import MlflowClient
        except ImportError as err:
            raise ImportError(f"storing runs in MLflow ({uri}) needs the package mlflow: pip install mlflow "
                              f"(or pip install -e '.[mlflow]')") from err
        _quiet_mlflow_logs()
        self.uri = uri
        with _initialisation_lock(uri):
            self.client = MlflowClient(tracking_uri=uri)
            retried(self.client.search_experiments, max_results=1)  # creates the tables of a new database
        self._experiments: dict[str, str] = {}

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created (or restored, if deleted) when needed."""
        if name not in self._experiments:
            self._experiments[name] = retried(self._experiment_id, name)
        return self._experiments[name]

    def _experiment_id(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return self.client.create_experiment(name, artifact_location=artifact_location(self.uri, name),
                                                     tags=EXPERIMENT_TAGS)
            except Exception:  # another process created it first
                experiment = self.client.get_experiment_by_name(name)
                if experiment is None:
                    raise
        if experiment.lifecycle_stage == "deleted":
            self.client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    def log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        """Everything in as few ``log_batch`` calls as MLflow's limits allow."""
        from mlflow.entities import Param, RunTag

        params = [Param(key, value) for key, value in params.items()] if isinstance(params, dict) else list(params)
        tags = [RunTag(key, value) for key, value in tags.items()] if isinstance(tags, dict) else list(tags)
        for start in range(0, len(params), MAX_PARAMS):
            self.client.log_batch(run_id, params=params[start:start + MAX_PARAMS], synchronous=True)
        for start in range(0, len(tags), MAX_PARAMS):
            self.client.log_batch(run_id, tags=tags[start:start + MAX_PARAMS], synchronous=True)
        for start in range(0, len(metrics), MAX_METRICS):
            self.client.log_batch(run_id, metrics=metrics[start:start + MAX_METRICS], synchronous=True)

    def log_file(self, run_id: str, path: str | os.PathLike, name: str | None = None) -> None:
        """The file ``path`` as the run's artifact ``name`` (default: its own name)."""
        path = Path(path)
        name = name or path.name
        if Path(name).name == path.name and "/" not in name:
            self.client.log_artifact(run_id, str(path))
            return
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / Path(name).name
            shutil.copyfile(path, target)
            parent = str(Path(name).parent)
            self.client.log_artifact(run_id, str(target), artifact_path=None if parent == "." else parent)

    def runs_by_directory(self, experiment_id: str) -> dict[str, tuple[str, str | None]]:
        """``{run directory: (MLflow run id, Sacred status tag)}`` of the experiment's active runs."""
        found, token = {}, None
        while True:
            page = retried(self.client.search_runs, [experiment_id], max_results=1000, page_token=token)
            for run in page:
                directory = run.data.tags.get(RUN_DIR_TAG)
                if directory:
                    found[directory] = (run.info.run_id, run.data.tags.get(STATUS_TAG))
            token = page.token
            if not token:
                return found


# ---------------------------------------------------------------------------------------------------
# The live observer


def _file_storage_dir(run) -> str | None:
    """The run directory of the run's FileStorage observer (started before this one), if any."""
    for observer in getattr(run, "observers", None) or []:
        if isinstance(observer, FileStorageObserver) and getattr(observer, "dir", None):
            return str(Path(observer.dir).resolve())
    return None


class MlflowObserver(RunObserver):
    """Writes one Sacred run to the MLflow store at ``uri`` (module docstring).

    ``run`` (the Sacred run it observes, given by the ``--mlflow`` option) lets it tag the MLflow run
    with the FileStorage run directory, which the import uses to recognise runs already stored.
    ``write_seconds`` adds up the time spent writing (in the heartbeat thread, mostly).
    """

    priority = PRIORITY

    def __init__(self, uri: str, run=None):
        self.uri, self.sacred_run = uri, run
        self.store: MlflowStore | None = None
        self.run_id: str | None = None
        self.pending: list = []  # mlflow Metric objects not yet written
        self.lock = threading.RLock()
        self.captured_out, self.info = "", {}
        self.write_seconds = 0.0
        self.finished = False
        self._warned = False

    def __repr__(self) -> str:
        return f"MlflowObserver({self.uri!r})"

    # -- Sacred events --------------------------------------------------------------------------

    def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):
        self.store = MlflowStore(self.uri)
        experiment = self.store.experiment_id(experiment_name(ex_info["name"], meta_info))
        tags = run_tags(ex_info, host_info, meta_info, command, _id, _file_storage_dir(self.sacred_run))
        tags[STATUS_TAG] = "RUNNING"
        name = (meta_info or {}).get("name") or (None if _id is None else str(_id))  # the tables' readable name
        run = retried(self.store.client.create_run, experiment, start_time=millis(start_time), tags=tags,
                      run_name=None if name is None else _tag(name))
        self.run_id = run.info.run_id
        retried(self.store.log_batch, self.run_id, params=flatten_config(dict(config)))
        return None if _id is not None else self.run_id

    def log_metrics(self, metrics_by_name, info):
        from mlflow.entities import Metric

        points = [
            Metric(name, _float(value), millis(moment), int(step))
            for name, record in metrics_by_name.items()
            for step, value, moment in zip(record["steps"], record["values"], record["timestamps"])
        ]  # fmt: skip
        with self.lock:
            self.pending.extend(points)

    def heartbeat_event(self, info, captured_out, beat_time, result):
        self.info, self.captured_out = info, captured_out
        self._flush(final=False)

    def artifact_event(self, name, filename, metadata=None, content_type=None):
        if self.run_id is None:
            return
        started = time.perf_counter()
        try:
            with self.lock:
                retried(self.store.log_file, self.run_id, filename, name)
        except Exception as err:
            self._warn(f"artifact {name!r} could not be stored ({err})")
        self.write_seconds += time.perf_counter() - started

    def completed_event(self, stop_time, result):
        self._finish("COMPLETED", stop_time, result=result)

    def interrupted_event(self, interrupt_time, status):
        self._finish(status, interrupt_time)

    def failed_event(self, fail_time, fail_trace):
        self._finish("FAILED", fail_time, fail_trace=fail_trace)

    # -- writing --------------------------------------------------------------------------------

    def _flush(self, final: bool) -> bool:
        """Write the buffered metrics (``final``: with retries); True when nothing is left."""
        if self.run_id is None:
            return not self.pending
        started = time.perf_counter()
        with self.lock:
            try:
                while self.pending:
                    chunk = self.pending[:MAX_METRICS]
                    if final:
                        retried(self.store.log_batch, self.run_id, metrics=chunk)
                    else:
                        self.store.log_batch(self.run_id, metrics=chunk)
                    del self.pending[:len(chunk)]
            except Exception as err:
                if final:
                    self._warn(f"{len(self.pending)} metric points could not be written ({err})")
                else:
                    self._warn(f"writing metrics failed ({err}); they are kept and tried again at the next heartbeat",
                               once=True)
            finally:
                self.write_seconds += time.perf_counter() - started
        return not self.pending

    def _finish(self, status: str, end_time, result=None, fail_trace=None) -> None:
        if self.run_id is None:
            return
        complete = self._flush(final=True)
        started = time.perf_counter()
        tags = {STATUS_TAG: status, **result_tags(result)}
        reason = fail_reason(fail_trace)
        if reason:
            tags["sacred.fail_reason"] = _tag(reason)
            tags["mlflow.note.content"] = _tag(f"FAILED: {reason}")
        try:
            with self.lock:
                client = self.store.client
                if self.captured_out:
                    retried(client.log_text, self.run_id, self.captured_out, "cout.txt")
                if self.info:
                    retried(client.log_text, self.run_id, json.dumps(self.info, default=str, indent=2, sort_keys=True),
                            "info.json")
                if fail_trace:
                    retried(client.log_text, self.run_id, "".join(fail_trace), "fail_trace.txt")
                if result is not None:
                    retried(client.log_text, self.run_id, json.dumps(result, default=str, indent=2), "result.json")
                self.write_seconds += time.perf_counter() - started
                tags["studentteacher.mlflow_write_seconds"] = f"{self.write_seconds:.4f}"
                if not complete:
                    tags[STATUS_TAG] = f"{status} (incomplete copy)"
                retried(self.store.log_batch, self.run_id, tags=tags)
                retried(client.set_terminated, self.run_id, MLFLOW_STATUS.get(status, "KILLED"), end_time=millis(end_time))
        except Exception as err:
            self._warn(f"the run's end could not be recorded ({err})")
        self.finished = True

    def _warn(self, message: str, once: bool = False) -> None:
        if once and self._warned:
            return
        self._warned = True
        warnings.warn(f"MLflow store {self.uri}, run {self.run_id}: {message}. The FileStorage run directory has "
                      f"everything; `python experiments/mlflow_observer.py import RUNS_DIR --uri {self.uri}` "
                      f"replaces the incomplete copy.", RuntimeWarning, stacklevel=2)


# ---------------------------------------------------------------------------------------------------
# Wiring: the flag and the environment variable


@cli_option("-M", "--mlflow")
def mlflow_option(args, run):
    """Also store the run in the MLflow tracking store URI (e.g. sqlite:///mlruns.db), next to FileStorage;
    default: $STUDENTTEACHER_MLFLOW."""
    run.observers.append(MlflowObserver(args, run=run))


def _uri_from_environment(options):
    if not options.get("--mlflow") and os.environ.get(ENV):
        options["--mlflow"] = os.environ[ENV]


def use_mlflow(ex) -> None:
    """Give the Sacred experiment ``ex`` the flag ``--mlflow URI`` (``-M``) and make every run it
    creates (command line, ``ex.run`` of a sweep task, each batched replica) add an
    :class:`MlflowObserver` when the flag or ``$STUDENTTEACHER_MLFLOW`` names a store."""
    if mlflow_option in ex.additional_cli_options:
        return
    ex.additional_cli_options.append(mlflow_option)
    ex.all_cli_options.append(mlflow_option)
    ex.option_hook(_uri_from_environment)


# ---------------------------------------------------------------------------------------------------
# Back-fill: FileStorage run directories -> the store


@dataclass
class ImportSummary:
    imported: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"imported {len(self.imported)} runs ({len(self.replaced)} of them replacing an outdated copy), "
                f"skipped {len(self.skipped)} already present, {len(self.unreadable)} unreadable")


def _config_params(columns: dict) -> dict[str, str]:
    """The config keys of a :func:`studentteacher.results.read_run` row, as params."""
    from studentteacher import results

    params = {}
    for key, value in columns.items():
        if key in results.RUN_COLUMNS:
            continue
        if key.startswith("config.") and key[len("config."):] in results.RESERVED:
            key = key[len("config."):]
        params[key] = param_value(value)
    return params


def import_run(store: MlflowStore, run_dir: Path, columns: dict, metrics: dict, run: dict) -> str:
    """One FileStorage run directory as a new MLflow run; its id."""
    from mlflow.entities import Metric

    status = columns["status"] or "RUNNING"
    experiment = store.experiment_id(experiment_name(columns["experiment"] or "unknown", run.get("meta")))
    tags = run_tags(run.get("experiment") or {}, run.get("host") or {}, run.get("meta") or {}, run.get("command"),
                    run_dir.name, columns["run_dir"], live=False)
    tags[STATUS_TAG] = "IMPORTING"  # until the end: an interrupted import is replaced by the next one
    tags["studentteacher.imported"] = "true"
    start = columns["start_time"]
    created = retried(store.client.create_run, experiment, start_time=None if start is None else millis(start),
                      tags=tags, run_name=_tag((run.get("meta") or {}).get("name") or run_dir.name))
    run_id = created.info.run_id
    points = []
    for name, record in metrics.items():
        try:
            points += [Metric(name, _float(value), millis(moment), int(step))
                       for step, value, moment in zip(record["steps"], record["values"], record["timestamps"])]
        except (KeyError, TypeError, ValueError):  # results.load_runs warns about a malformed metric too
            continue
    retried(store.log_batch, run_id, metrics=points, params=_config_params(columns))
    for name in run.get("artifacts") or []:
        if (run_dir / name).is_file():
            retried(store.log_file, run_id, run_dir / name, name)
    for name in ("cout.txt", "info.json"):
        if (run_dir / name).is_file():
            retried(store.log_file, run_id, run_dir / name)
    if run.get("fail_trace"):
        retried(store.client.log_text, run_id, "".join(run["fail_trace"]), "fail_trace.txt")
    if run.get("result") is not None:
        retried(store.client.log_text, run_id, json.dumps(run["result"], default=str, indent=2), "result.json")
    final = {STATUS_TAG: status, **result_tags(run.get("result"))}
    if columns.get("fail_reason"):
        final["sacred.fail_reason"] = _tag(columns["fail_reason"])
        final["mlflow.note.content"] = _tag(f"FAILED: {columns['fail_reason']}")
    retried(store.log_batch, run_id, tags=final)
    if status != "RUNNING":
        stop = columns["stop_time"]
        retried(store.client.set_terminated, run_id, MLFLOW_STATUS.get(status, "KILLED"),
                end_time=None if stop is None else millis(stop))
    return run_id


def import_runs(paths, uri: str, echo=None) -> ImportSummary:
    """Import every FileStorage run under ``paths`` into the store ``uri`` (module docstring);
    ``echo(line)`` is told about each run."""
    from studentteacher import results

    echo = echo or (lambda line: None)
    store = MlflowStore(uri)
    known: dict[str, dict] = {}  # experiment id -> runs_by_directory
    summary = ImportSummary()
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        for run_dir in results.find_run_dirs(path):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                loaded = results.read_run(run_dir)
            for warning in caught:
                echo(f"warning: {warning.message}")
            if loaded is None:
                summary.unreadable.append(str(run_dir))
                continue
            columns, metrics = loaded
            run = results.read_run_json(run_dir)
            experiment = store.experiment_id(experiment_name(columns["experiment"] or "unknown", run.get("meta")))
            if experiment not in known:
                known[experiment] = store.runs_by_directory(experiment)
            present = known[experiment].get(columns["run_dir"])
            if present is not None and present[1] == columns["status"]:
                summary.skipped.append(columns["run_dir"])
                continue
            if present is not None:
                retried(store.client.delete_run, present[0])
                summary.replaced.append(columns["run_dir"])
            run_id = import_run(store, Path(columns["run_dir"]), columns, metrics, run)
            known[experiment][columns["run_dir"]] = (run_id, columns["status"])
            summary.imported.append(columns["run_dir"])
            echo(f"{columns['run_dir']}: {columns['status']} -> run {run_id}")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python experiments/mlflow_observer.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    importer = commands.add_parser("import", help="copy FileStorage runs into an MLflow store (idempotent)")
    importer.add_argument("paths", nargs="+", help="run directories, observer folders or folders of those")
    importer.add_argument("--uri", default=os.environ.get(ENV), help=f"the tracking store (default: ${ENV})")
    importer.add_argument("--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(argv)
    if not args.uri:
        parser.error(f"no store: give --uri URI or set {ENV}")
    try:
        summary = import_runs(args.paths, args.uri, echo=None if args.quiet else print)
    except FileNotFoundError as err:
        parser.error(str(err))
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
