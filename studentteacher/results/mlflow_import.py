"""The back-fill: finished FileStorage runs (read with :mod:`studentteacher.results`) copied into an MLflow store.

    python experiments/mlflow_observer.py import PATH... [--uri URI]

copies FileStorage runs (a run directory, a sweep's folder, or a folder of those such as
``reproduction/runs``) into the store. It is idempotent: runs are matched by the tag
``studentteacher.run_dir``; one already there with the same Sacred status is skipped, one whose
status changed (it was running, or its live copy is incomplete) is replaced. No Sacred import.
"""
from __future__ import annotations

import argparse
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from . import reading
from .mlflow_mapping import (ENV, MLFLOW_STATUS, STATUS_TAG, experiment_name, metric_value, millis, param_value,
                             result_tags, run_tags, tag_text)
from .mlflow_store import MlflowStore, retried


@dataclass
class ImportSummary:
    """The run directories a back-fill imported, replaced (a subset of imported), skipped and could not read."""

    imported: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"imported {len(self.imported)} runs ({len(self.replaced)} of them replacing an outdated copy), "
                f"skipped {len(self.skipped)} already present, {len(self.unreadable)} unreadable")


def _config_params(columns: dict) -> dict[str, str]:
    """The config keys of a :func:`studentteacher.results.read_run` row, as params."""
    params = {}
    for key, value in columns.items():
        if key in reading.RUN_COLUMNS:
            continue
        if key.startswith("config.") and key[len("config."):] in reading.RESERVED:
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
                      tags=tags, run_name=tag_text((run.get("meta") or {}).get("name") or run_dir.name))
    run_id = created.info.run_id
    points = []
    for name, record in metrics.items():
        try:
            points += [Metric(name, metric_value(value), millis(moment), int(step))
                       for step, value, moment in zip(record["steps"], record["values"], record["timestamps"])]
        except (KeyError, TypeError, ValueError):  # load_runs warns about a malformed metric too
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
        final["sacred.fail_reason"] = tag_text(columns["fail_reason"])
        final["mlflow.note.content"] = tag_text(f"FAILED: {columns['fail_reason']}")
    retried(store.log_batch, run_id, tags=final)
    if status != "RUNNING":
        stop = columns["stop_time"]
        retried(store.client.set_terminated, run_id, MLFLOW_STATUS.get(status, "KILLED"),
                end_time=None if stop is None else millis(stop))
    return run_id


def import_runs(paths, uri: str, echo=None) -> ImportSummary:
    """Import every FileStorage run under ``paths`` into the store ``uri`` (module docstring);
    ``echo(line)`` is told about each run."""
    echo = echo or (lambda line: None)
    store = MlflowStore(uri)
    known: dict[str, dict] = {}  # experiment id -> runs_by_directory
    summary = ImportSummary()
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        for run_dir in reading.find_run_dirs(path):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                loaded = reading.read_run(run_dir)
            for warning in caught:
                echo(f"warning: {warning.message}")
            if loaded is None:
                summary.unreadable.append(str(run_dir))
                continue
            columns, metrics = loaded
            run = reading.read_run_json(run_dir)
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
    """The back-fill's command line (module docstring); the exit status."""
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
