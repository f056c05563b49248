"""The student-teacher Sacred experiment (``student_teacher``).

    python experiments/train.py [with KEY=VALUE ... | NAMED_CONFIG ...] [-F DIR | -m MONGO | -n NAME | ...]

Config keys, metric names and the result are in docs/contract.md; named configs live in
``experiments/configs/*.yaml``. :func:`train` trains R >= 1 runs (a plain run, or ``replicas``) with
the package's loop; observers, flags, checks before work, stop signals, replica groups and resume
are the helper's (:mod:`experiments.runs`).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from experiments.runs import Batch, ExperimentRuns, RunInterrupted  # first: it quiets Sacred's import warning

import numpy as np
from sacred import Experiment

from studentteacher import preflight
from studentteacher.config import DEFAULTS, has_tiny_tensors, validate
from studentteacher.progress import RunProgress
from studentteacher.training import BatchedTrainer, TrainingInterrupted, check_resume, read_checkpoint

HERE = Path(__file__).resolve().parent
ex = Experiment("student_teacher")
ex.add_config(DEFAULTS)
for named in sorted((HERE / "configs").glob("*.yaml")):
    ex.add_named_config(named.stem, str(named))


def check_before_work(config: dict) -> None:
    """What a validated config may still fail on here: the ``resume_from`` checkpoint, the memory."""
    check_resume(config)
    preflight.check_training(config)


def save_arrays(run, replica) -> None:
    """Final particles and the metric history of ``replica`` (a trainer's view of one) as ``result.npz``."""
    arrays = {f"particles_{key}": value.detach().cpu().numpy() for key, value in replica.params.items()}
    arrays |= {f"history_{name}": np.asarray(values) for name, values in replica.history.items()}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "result.npz"
        np.savez_compressed(path, **arrays)
        run.add_artifact(str(path), name="result.npz")


#: The metrics a progress line shows.
PROGRESS_METRICS = ("train_mmd2", "valid_mmd2")


def log_metrics(run, metrics) -> None:
    for name, value in metrics.values.items():
        run.log_scalar(name, float(value), metrics.epoch)


def start_progress(trainer, runs: list) -> RunProgress:
    """The epochs' progress (:mod:`studentteacher.progress`), after saying what a resumed run resumes."""
    progress = RunProgress("epoch", trainer.config["epochs"], trainer.epoch)
    if trainer.epoch > 0:
        progress.resuming([run._id for run in runs], trainer.config["resume_from"])
    return progress


def train(batch: Batch) -> None:
    """Train the runs of ``batch`` as one :class:`BatchedTrainer` (R = 1: a plain run); each run gets its
    metrics, its ``result.npz`` and its own outcome: a result, TrainingDiverged as soon as it
    diverges, or RunInterrupted after a checkpoint on a stop signal."""
    trainer = BatchedTrainer(batch.configs)
    runs = batch.runs
    for run in runs:
        run.info["device"] = str(trainer.device)
    progress = start_progress(trainer, runs)

    def on_metrics(replica, metrics):
        log_metrics(runs[replica], metrics)
        progress.note({name: metrics.values[name] for name in PROGRESS_METRICS}, replica)

    def on_failure(replica, error):
        save_arrays(runs[replica], trainer.replica_views[replica])
        batch.finish(replica, error)

    try:
        results = trainer.run(
            on_metrics=on_metrics,
            on_failure=on_failure,
            on_epoch=progress.update,
            should_stop=batch.should_stop,
            checkpoint_paths=batch.checkpoint_paths,
            before_checkpoint=batch.flush,
        )
    except TrainingInterrupted as stop:
        for replica, run in enumerate(runs):
            run.info["checkpoint"] = path = stop.checkpoint_paths[replica]
            save_arrays(run, trainer.replica_views[replica])
            batch.finish(replica, RunInterrupted(f"{stop}; checkpoint: {path}"))
        return
    finally:
        progress.close()
    for replica, (run, result) in enumerate(zip(runs, results)):
        if result is not None:
            save_arrays(run, trainer.replica_views[replica])
            batch.finish(replica, result)


runs = ExperimentRuns(ex, train, validate, check_before_work,
                     checkpoint_config=lambda path: read_checkpoint(path)["config"], one_thread=has_tiny_tensors)
run_replicas = runs.run_replicas

if __name__ == "__main__":
    runs.run_as_script()
