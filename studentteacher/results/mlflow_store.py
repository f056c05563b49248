"""The MLflow tracking store, reached with retries: :class:`MlflowStore` (MLflow is imported when one is made)."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from .mlflow_mapping import RUN_DIR_TAG, STATUS_TAG

#: MLflow 3's UI opens an experiment of this kind on its runs (training runs), not on GenAI traces.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
MAX_PARAMS, MAX_METRICS = 100, 1000  # MLflow's log_batch limits
RETRIES = (0.5, 2.0, 5.0)  # seconds between tries of a write (SQLite "database is locked", a busy server)


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
    """MLflow's database set-up logs (alembic's migrations) only from WARNING up."""
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
        """The look-up (or creation) behind :meth:`experiment_id`, one try."""
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
