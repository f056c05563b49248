"""What a Sacred run becomes in MLflow: params, tags, status, times (the live observer and the back-fill
share it).

=====================  ==================================================================
params                 the flattened config (:func:`studentteacher.results.flatten`: nested keys
                       ``outer.inner``; lists as JSON), as the tidy table's config columns
metrics                every ``log_scalar`` (same name, step and time)
status                 COMPLETED -> FINISHED, FAILED -> FAILED, INTERRUPTED -> KILLED; the
                       Sacred status itself in the tag ``sacred.status``, a failure's last
                       line in ``sacred.fail_reason`` (and the run's description)
tags                   ``sacred.*`` (experiment, command, id), ``host.*`` (hostname, os, python,
                       cpu, gpus), ``version.*`` (the packages Sacred lists), ``sweep.*`` (name,
                       index, attempt, file), ``studentteacher.run_dir`` (the FileStorage run
                       directory), ``result.*`` (the run's result)
=====================  ==================================================================

MLflow experiment: the sweep's name for sweep runs (``meta.sweep.name``), else the Sacred experiment's
name. MLflow run name: the run's readable name (run.json's ``meta.name``; the Sacred id where there is none).
"""
from __future__ import annotations

import contextlib
import datetime
import getpass
import importlib.metadata
import json
import math
import os

from .reading import fail_reason as run_fail_reason
from .reading import flatten

#: The variable that names the store (as ``--mlflow URI``; the back-fill's default ``--uri``).
ENV = "STUDENTTEACHER_MLFLOW"
RUN_DIR_TAG = "studentteacher.run_dir"
STATUS_TAG = "sacred.status"
MLFLOW_STATUS = {"COMPLETED": "FINISHED", "FAILED": "FAILED", "INTERRUPTED": "KILLED", "RUNNING": "RUNNING"}
MAX_PARAM_LENGTH, MAX_TAG_LENGTH = 6000, 8000
VERSIONED = ("torch", "numpy", "sacred", "mlflow", "studentteacher")  # tagged version.<name>


def param_value(value) -> str:
    """A config value as an MLflow param: lists and tuples as JSON, everything else as ``str``."""
    if isinstance(value, (list, tuple)):
        text = json.dumps(list(value), default=str)
    else:
        text = str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."


def config_params(config: dict) -> dict[str, str]:
    """``{"outer.inner": "value"}``: a config as MLflow params (:func:`studentteacher.results.flatten`)."""
    return {key: param_value(value) for key, value in flatten(config).items()}


def experiment_name(sacred_experiment: str, meta: dict | None) -> str:
    """The MLflow experiment of a run: its sweep's name, else the Sacred experiment's name."""
    sweep = (meta or {}).get("sweep") or {}
    return str(sweep.get("name") or sacred_experiment)


def tag_text(value) -> str:
    """A tag's value as text (JSON for what is not a string), cut to MLflow's length limit."""
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
    return {key: tag_text(value) for key, value in tags.items() if value is not None}


def result_tags(result) -> dict[str, str]:
    """A run's result as ``result.<key>`` tags (one ``result`` tag for a result that is not a dict)."""
    if isinstance(result, dict):
        return {f"result.{key}": tag_text(value) for key, value in result.items()}
    return {} if result is None else {"result": tag_text(result)}


def fail_reason(fail_trace) -> str | None:
    """The last non-empty line of a Sacred fail trace (:func:`studentteacher.results.fail_reason`)."""
    return run_fail_reason({"fail_trace": fail_trace})


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


def metric_value(value) -> float:
    """A logged value as MLflow's float (None, as Sacred stores NaN, back to NaN)."""
    return math.nan if value is None else float(value)


# ---------------------------------------------------------------------------------------------------
# The store
