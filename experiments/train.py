"""The student-teacher Sacred experiment (``student_teacher``).

    python experiments/train.py [with KEY=VALUE ... | NAMED_CONFIG ...] [-F DIR | -s SQL_URL | -m MONGO]

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
import threading
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
from sacred import SETTINGS, Experiment
from sacred.arg_parser import get_config_updates
from sacred.observers import FileStorageObserver
from sacred.randomness import get_seed
from sacred.utils import SacredInterrupt, apply_backspaces_and_linefeeds
from tqdm import tqdm

from studentteacher.config import DEFAULTS, resolve_device, validate
from studentteacher.replicas import BatchedTrainer
from studentteacher.training import Trainer, TrainingInterrupted, set_threads_from_allocation

SETTINGS.CAPTURE_MODE = "sys"  # keep sys.stderr a terminal for the progress bar
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SQL_FLAGS = ("-s", "--sql")
SQL_UNSUPPORTED = (
    "Sacred 0.8.7's SqlObserver cannot store this experiment: its run table keeps the result as one "
    "float (ours is the dict {valid_mmd2, best_valid_mmd2}) and it has no table for metrics, so every "
    "log_scalar would be lost. Use -F DIR (FileStorageObserver, the default) or -m MONGO_URL instead."
)
OBSERVER_FLAGS = ("-F", "--file_storage", "-s", "--sql", "-m", "--mongo_db", "-t", "--tiny_db", "-S", "--s3", "-u", "--unobserved")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)

ex = Experiment("student_teacher", save_git_info=False)
ex.captured_out_filter = apply_backspaces_and_linefeeds
ex.add_config(DEFAULTS)
for named in sorted(CONFIG_DIR.glob("*.yaml")):
    ex.add_named_config(named.stem, str(named))


class RunInterrupted(SacredInterrupt):
    """Marks the run INTERRUPTED (a stop signal arrived; a checkpoint was written)."""

    STATUS = "INTERRUPTED"


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
    if GROUP is not None:  # a replica of a batched group: the group's thread trains it
        return GROUP.join(dict(_config), _run)
    stop_requested = []
    previous = {sig: signal.signal(sig, lambda signum, frame: stop_requested.append(signum)) for sig in STOP_SIGNALS}
    config = validate(dict(_config))
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


class ReplicaGroup:
    """R Sacred runs trained as one :class:`BatchedTrainer`.

    Each replica is a real Sacred run of this experiment (its own config, seed, observer and run
    directory), started by :meth:`run` in a thread of its own; its main function hands its config
    and run to :meth:`join` and waits. The calling (main) thread trains all of them together,
    logs each replica's metrics into its own run, and hands every run its own outcome: a result,
    TrainingDiverged (that run alone is FAILED, as soon as it diverges) or RunInterrupted.
    """

    def __init__(self, replicas: int):
        self.replicas = replicas
        self.slots: list[tuple[dict, object] | None] = [None] * replicas
        self.outcomes: list[object] = [None] * replicas
        self.registered = threading.Semaphore(0)
        self.done = [threading.Event() for _ in range(replicas)]
        self.thread_replica: dict[int, int] = {}
        # Sacred binds config and run to the (shared) main function when it creates a run, so runs
        # are started one at a time: the lock is held from ex.run() until main() has its own.
        self.entry = threading.Lock()

    def join(self, config: dict, run):
        replica = self.thread_replica[threading.get_ident()]
        run.info["replica"] = {"index": replica, "of": self.replicas}
        self.slots[replica] = (config, run)
        self.entry.release()  # the next replica may now start its run
        self.registered.release()
        self.done[replica].wait()
        outcome = self.outcomes[replica]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _finish(self, replica: int, outcome) -> None:
        if not self.done[replica].is_set():
            self.outcomes[replica] = outcome
            self.done[replica].set()

    def run(self, run_options: list[dict]) -> list[str]:
        """Start one Sacred run per entry of ``run_options`` (keyword arguments of ``ex.run``, plus
        an optional ``observers`` list that replaces ``ex.observers`` for that run alone) and train
        them together; returns each run's final status."""
        global GROUP
        statuses = ["FAILED"] * self.replicas
        own_observers = list(ex.observers)

        def start(replica: int, options: dict) -> None:
            self.thread_replica[threading.get_ident()] = replica
            options = dict(options)
            self.entry.acquire()
            ex.observers[:] = options.pop("observers", own_observers)  # a run copies them when created
            try:
                statuses[replica] = ex.run(**options).status
            except RunInterrupted:
                statuses[replica] = "INTERRUPTED"
            except Exception:  # Sacred has marked the run FAILED and printed why
                statuses[replica] = "FAILED"
            finally:
                if self.slots[replica] is None:  # the run failed before main(): free the entry, wake the trainer
                    self.entry.release()
                self.registered.release()

        stop_requested = []
        previous = {sig: signal.signal(sig, lambda signum, frame: stop_requested.append(signum)) for sig in STOP_SIGNALS}
        GROUP = self
        threads = [threading.Thread(target=start, args=(r, options)) for r, options in enumerate(run_options)]
        try:
            for thread in threads:
                thread.start()
            while sum(slot is not None for slot in self.slots) < self.replicas:
                self.registered.acquire()
                if any(not t.is_alive() and self.slots[r] is None for r, t in enumerate(threads)):
                    raise RuntimeError("a replica stopped before training started; see its error above")
            self._train(stop_requested)
        except BaseException as error:
            for replica in range(self.replicas):
                self._finish(replica, error if isinstance(error, Exception) else RuntimeError(repr(error)))
            if not isinstance(error, Exception):
                raise
        finally:
            for thread in threads:
                thread.join()
            GROUP = None
            ex.observers[:] = own_observers
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return statuses

    def _train(self, stop_requested: list) -> None:
        configs = [validate(config) for config, _ in self.slots]
        runs = [run for _, run in self.slots]
        batched = BatchedTrainer(configs)
        for run in runs:
            run.info["device"] = str(batched.device)
        bar = progress_bar(configs[0]["epochs"], batched.epoch)

        def on_failure(replica, error):
            save_arrays(runs[replica], batched.members[replica])
            self._finish(replica, error)

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
                path = checkpoint_path_for(run)
                run.info["checkpoint"] = path
                save_arrays(run, batched.members[replica])
                self._finish(replica, RunInterrupted(f"{stop}; checkpoint: {path}"))
            return
        finally:
            bar.close()
        for replica, (run, result) in enumerate(zip(runs, results)):
            if result is not None:
                save_arrays(run, batched.members[replica])
                self._finish(replica, result)


GROUP: ReplicaGroup | None = None


OBSERVER_OPTIONS = {"-F": "--file_storage", "--file_storage": "--file_storage", "-m": "--mongo_db", "--mongo_db": "--mongo_db"}


def replica_group_options(argv: list[str]) -> list[dict] | None:
    """``ex.run`` keyword arguments of each replica when ``with ... replicas=R`` (R > 1) is on the
    command line, else None. Replica r gets the seed ``seed + r`` (``seed`` drawn when absent)
    and otherwise the same updates, named configs and observer (-F DIR or -m URL; default
    FileStorage in the runs directory)."""
    if "with" not in argv:
        return None
    updates, options, position = [], {}, 0
    while position < len(argv):
        arg = argv[position]
        flag, _, value = arg.partition("=")
        if flag in OBSERVER_OPTIONS:
            if not value:
                position += 1
                value = argv[position] if position < len(argv) else ""
            options[OBSERVER_OPTIONS[flag]] = value
        elif arg.startswith("-"):
            sys.exit(f"error: {arg} is not supported with replicas > 1; allowed flags: -F DIR, -m URL")
        elif arg != "with":
            updates.append(arg)
        position += 1
    config_updates, named_configs = get_config_updates(updates)
    replicas = config_updates.get("replicas", 1)
    if not isinstance(replicas, int) or replicas <= 1:
        return None
    if updates and updates[0] not in ("main",) and "=" not in updates[0] and updates[0] not in ex.named_configs:
        sys.exit(f"error: command {updates[0]!r} cannot be batched; run it without replicas")
    options = options or {"--file_storage": default_runs_dir()}
    options["--capture"] = "no"  # replicas run in threads: Sacred's global stdout capture would mix them
    seed = config_updates.get("seed", get_seed())
    return [
        dict(config_updates={**config_updates, "seed": seed + r}, named_configs=named_configs, options=dict(options))
        for r in range(replicas)
    ]


def wants_default_observer(argv: list[str]) -> bool:
    """True unless an observer flag (or -u) is given or a command other than ``main`` is run."""
    if any(arg.split("=")[0] in OBSERVER_FLAGS for arg in argv):
        return False
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    return command in (None, "with", "main")


if __name__ == "__main__":
    set_threads_from_allocation()
    if any(arg.split("=")[0] in SQL_FLAGS for arg in sys.argv[1:]):
        sys.exit(f"error: {SQL_UNSUPPORTED}")
    group_options = replica_group_options(sys.argv[1:])
    if group_options is not None:
        statuses = ReplicaGroup(len(group_options)).run(group_options)
        print(f"replicas: {', '.join(statuses)}", file=sys.stderr)
        sys.exit(0 if all(status == "COMPLETED" for status in statuses) else 1)
    if wants_default_observer(sys.argv[1:]):
        ex.observers.append(FileStorageObserver(default_runs_dir()))
    ex.run_commandline()
