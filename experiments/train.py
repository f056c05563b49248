"""The student-teacher Sacred experiment (``student_teacher``).

    python experiments/train.py [with KEY=VALUE ... | NAMED_CONFIG ...] [-F DIR | -m MONGO] [--mlflow URI]

With no observer flag the run is stored by a FileStorageObserver in ``./runs`` (or
``$STUDENTTEACHER_RUNS``). Config keys, metric names and the result are DESIGN §5; named configs
live in ``experiments/configs/*.yaml``. This is the only module of the experiment that imports
Sacred: everything else is plain functions of :mod:`studentteacher`.
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np

# quiet start (experiments/quiet.py) and the MLflow observer (experiments/mlflow_observer.py), both beside this script
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))
from quiet import quiet  # noqa: E402

quiet()
from mlflow_observer import use_mlflow  # noqa: E402
from sacred import SETTINGS, Experiment
from sacred.observers import FileStorageObserver
from sacred.utils import apply_backspaces_and_linefeeds
from tqdm import tqdm

from studentteacher.config import DEFAULTS, resolve_device, validate
from studentteacher.replica_runs import (
    STOP_SIGNALS, ReplicaGroup, RunInterrupted, active_group, replica_run_options,
)
from studentteacher.training import BatchedTrainer, Trainer, TrainingInterrupted, set_threads_from_allocation

SETTINGS.CAPTURE_MODE = "sys"  # keep sys.stderr a terminal for the progress bar
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SQL_FLAGS = ("-s", "--sql")
SQL_UNSUPPORTED = (
    "Sacred 0.8.7's SqlObserver cannot store this experiment: its run table keeps the result as one "
    "float (ours is the dict {valid_mmd2, best_valid_mmd2}) and it has no table for metrics, so every "
    "log_scalar would be lost. Use -F DIR (FileStorageObserver, the default) or -m MONGO_URL instead."
)
OBSERVER_FLAGS = ("-F", "--file_storage", "-s", "--sql", "-m", "--mongo_db", "-t", "--tiny_db", "-S", "--s3", "-u", "--unobserved")

ex = Experiment("student_teacher", save_git_info=False)
use_mlflow(ex)  # --mlflow URI / $STUDENTTEACHER_MLFLOW: an MLflow copy of each run, next to FileStorage
ex.captured_out_filter = apply_backspaces_and_linefeeds
ex.add_config(DEFAULTS)
for named in sorted(CONFIG_DIR.glob("*.yaml")):
    ex.add_named_config(named.stem, str(named))


@ex.config_hook
def validate_before_any_work(config, command_name, logger):
    """Reject a bad config before the run starts (and before any observer writes anything)."""
    validate(dict(config))
    return {}


def default_runs_dir() -> str:
    return os.environ.get("STUDENTTEACHER_RUNS", "runs")


def checkpoint_path_for(run) -> str:
    """``checkpoint.pt`` in the FileStorage run directory, else under the default runs dir."""
    for observer in run.observers:
        if isinstance(observer, FileStorageObserver) and observer.dir:
            return os.path.join(observer.dir, "checkpoint.pt")
    return os.path.join(default_runs_dir(), "checkpoints", f"{run.experiment_info['name']}-{os.getpid()}.pt")


def save_arrays(run, trainer: Trainer) -> None:
    """Final particles and the metric history as the ``result.npz`` artifact."""
    arrays = {f"particles_{key}": value.detach().cpu().numpy() for key, value in trainer.params.items()}
    arrays |= {f"history_{name}": np.asarray(values) for name, values in trainer.history.items()}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "result.npz")
        np.savez_compressed(path, **arrays)
        run.add_artifact(path, name="result.npz")


def progress_bar(total: int, initial: int) -> tqdm:
    """Epoch progress on stderr, throttled, off when stderr is not a terminal."""
    return tqdm(total=total, initial=initial, unit="epoch", file=sys.stderr, disable=not sys.stderr.isatty(),
                mininterval=1.0, dynamic_ncols=True)


def log_metrics(run, metrics) -> None:
    for name, value in metrics.values.items():
        run.log_scalar(name, float(value), metrics.epoch)


@ex.main
def main(_config, _run):
    group = active_group(ex)
    if group is not None:  # a replica of a batched group: the group's thread trains it
        return group.join(dict(_config), _run)
    stop_requested = []
    previous = {sig: signal.signal(sig, lambda signum, frame: stop_requested.append(signum)) for sig in STOP_SIGNALS}
    config = validate(dict(_config))
    _run.info["threads"] = set_threads_from_allocation()
    trainer = Trainer(config)
    _run.info["device"] = str(resolve_device(config["device"]))
    bar = progress_bar(config["epochs"], trainer.epoch)

    def on_metrics(metrics):
        log_metrics(_run, metrics)
        bar.set_postfix(train_mmd2=f"{metrics.values['train_mmd2']:.3e}", refresh=False)

    try:
        result = trainer.run(
            on_metrics=on_metrics,
            on_epoch=lambda epoch: bar.update(1),
            should_stop=lambda: bool(stop_requested),
            checkpoint_path=checkpoint_path_for(_run),
        )
    except TrainingInterrupted as stop:
        _run.info["checkpoint"] = stop.checkpoint_path
        raise RunInterrupted(f"{stop}; checkpoint: {stop.checkpoint_path}") from stop
    finally:
        bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        save_arrays(_run, trainer)
    return result


def _train_replicas(members: list[tuple[dict, object]], finish, stop_requested: list) -> None:
    """Train the replicas of a :class:`~studentteacher.replica_runs.ReplicaGroup` as one
    :class:`BatchedTrainer`: each run gets its metrics, its arrays and its own outcome (a result,
    TrainingDiverged as soon as it diverges, or RunInterrupted after a checkpoint on a stop signal)."""
    configs = [validate(config) for config, _ in members]
    runs = [run for _, run in members]
    threads = set_threads_from_allocation()
    batched = BatchedTrainer(configs)
    for run in runs:
        run.info["device"], run.info["threads"] = str(batched.device), threads
    bar = progress_bar(configs[0]["epochs"], batched.epoch)

    def on_failure(replica, error):
        save_arrays(runs[replica], batched.members[replica])
        finish(replica, error)

    try:
        results = batched.run(
            on_metrics=lambda replica, metrics: log_metrics(runs[replica], metrics),
            on_failure=on_failure,
            on_epoch=lambda epoch: bar.update(1),
            should_stop=lambda: bool(stop_requested),
            checkpoint_paths=[checkpoint_path_for(run) for run in runs],
        )
    except TrainingInterrupted as stop:
        for replica, run in enumerate(runs):
            path = stop.checkpoint_paths[replica]
            run.info["checkpoint"] = path
            save_arrays(run, batched.members[replica])
            finish(replica, RunInterrupted(f"{stop}; checkpoint: {path}"))
        return
    finally:
        bar.close()
    for replica, (run, result) in enumerate(zip(runs, results)):
        if result is not None:
            save_arrays(run, batched.members[replica])
            finish(replica, result)


def run_replicas(run_options: list[dict]) -> list[str]:
    """Run one Sacred run per entry of ``run_options`` (``ex.run`` keyword arguments, plus an optional
    ``observers`` list for that run alone) as one batched computation; each run's final status."""
    return ReplicaGroup(ex, len(run_options), _train_replicas, catch_stop_signals=True).run(run_options)


def wants_default_observer(argv: list[str]) -> bool:
    """True unless an observer flag (or -u) is given or a command other than ``main`` is run."""
    if any(arg.split("=")[0] in OBSERVER_FLAGS for arg in argv):
        return False
    values = {i + 1 for i, arg in enumerate(argv) if arg in ("-M", "--mlflow")}  # `--mlflow URI with`: URI no command
    command = next((arg for i, arg in enumerate(argv) if not arg.startswith("-") and i not in values), None)
    return command in (None, "with", "main")


if __name__ == "__main__":
    if any(arg.split("=")[0] in SQL_FLAGS for arg in sys.argv[1:]):
        sys.exit(f"error: {SQL_UNSUPPORTED}")
    group_options = replica_run_options(ex, sys.argv[1:], default_runs_dir())
    if group_options is not None:
        statuses = run_replicas(group_options)
        print(f"replicas: {', '.join(statuses)}", file=sys.stderr)
        sys.exit(0 if all(status == "COMPLETED" for status in statuses) else 1)
    if wants_default_observer(sys.argv[1:]):
        ex.observers.append(FileStorageObserver(default_runs_dir()))
    ex.run_commandline()
