"""Sacred runs in an MLflow tracking store (a queryable database with a web UI), next to FileStorage.

    python experiments/train.py with epochs=2000 --mlflow sqlite:///mlruns.db
    STUDENTTEACHER_MLFLOW=sqlite:///mlruns.db python -m studentteacher.sweep run SWEEP --index 3
    mlflow ui --backend-store-uri sqlite:///mlruns.db          # then open http://127.0.0.1:5000
    python experiments/mlflow_observer.py import runs/ --uri sqlite:///mlruns.db   # back-fill

:class:`MlflowObserver` is a Sacred observer that writes one Sacred run as one MLflow run, mapped as
:mod:`studentteacher.results.mlflow_mapping` says: the flattened config as params, every
``log_scalar`` as a metric (buffered and written with ``log_batch`` at Sacred's heartbeats, every
``experiments.runs.BEAT_SECONDS`` = 5 s and before every checkpoint, and at the end, never per
epoch), the status, tags, and as artifacts every ``add_artifact`` file, ``cout.txt``,
``info.json`` and ``fail_trace.txt``. Each batched replica is its own Sacred run, so its own MLflow
run. With a ``sqlite:///PATH`` store, artifacts go beside the database in
``<PATH stem>_artifacts/<experiment>/`` (:mod:`studentteacher.results.mlflow_store`).

FileStorage stays the default and the source of truth (status, resume, :mod:`studentteacher.results`):
the flag ``--mlflow URI`` (``-M``) and the variable ``STUDENTTEACHER_MLFLOW=URI`` *add* this observer
(:func:`use_mlflow`, which :class:`experiments.runs.ExperimentRuns` calls for every experiment).
The store is reached when a run starts (a bad URI or a missing ``mlflow`` fails the run there, loudly);
a write that fails later keeps its metrics for the next heartbeat and, at the end, says with a warning
that the MLflow copy is incomplete: ``import`` then replaces it from the run directory
(:mod:`studentteacher.results.mlflow_import`, which this script runs as its command line).
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import warnings
from pathlib import Path

from experiments.quiet import quiet

quiet()  # before Sacred is imported
from sacred.commandline_options import cli_option  # noqa: E402
from sacred.observers import FileStorageObserver, RunObserver  # noqa: E402

from studentteacher.results import mlflow_import  # noqa: E402
from studentteacher.results.mlflow_mapping import (  # noqa: E402
    ENV, MLFLOW_STATUS, STATUS_TAG, config_params, experiment_name, fail_reason, metric_value, millis, result_tags,
    run_tags, tag_text,
)
from studentteacher.results.mlflow_store import MAX_METRICS, MlflowStore, retried  # noqa: E402

PRIORITY = 10  # below FileStorage (20) and Mongo (30): their run id and directory exist when this one starts


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
                      run_name=None if name is None else tag_text(name))
        self.run_id = run.info.run_id
        retried(self.store.log_batch, self.run_id, params=config_params(dict(config)))
        return None if _id is not None else self.run_id

    def log_metrics(self, metrics_by_name, info):
        from mlflow.entities import Metric

        points = [
            Metric(name, metric_value(value), millis(moment), int(step))
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
            tags["sacred.fail_reason"] = tag_text(reason)
            tags["mlflow.note.content"] = tag_text(f"FAILED: {reason}")
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


if __name__ == "__main__":  # the back-fill: python experiments/mlflow_observer.py import PATH... [--uri URI]
    sys.exit(mlflow_import.main())
