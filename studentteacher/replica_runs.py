"""Sacred runs of batched replicas: R runs of one experiment, trained as one computation.

Experiment plumbing, shared by ``experiments/train.py`` and ``experiments/flows2d.py`` (the math
of the batches lives in :mod:`studentteacher.training` and :mod:`studentteacher.flows`).

Each replica is a real Sacred run of the experiment (its own config, seed, observer and run
directory), started by :meth:`ReplicaGroup.run` in a thread of its own; the experiment's main
function sees :func:`active_group` and hands its config and run to :meth:`ReplicaGroup.join`,
which waits. The calling (main) thread trains all replicas together through the experiment's
``train`` callback, which logs each replica into its own run and gives each run its outcome with
``finish(replica, outcome)``: a result, or an exception that marks that run alone FAILED (or
INTERRUPTED, for a :class:`sacred.utils.SacredInterrupt`).
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

from sacred import Experiment
from sacred.arg_parser import get_config_updates
from sacred.randomness import get_seed
from sacred.utils import SacredInterrupt

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)

#: The replica group now training, per experiment (``id(ex)``).
_ACTIVE: dict[int, ReplicaGroup] = {}

#: ``train(members, finish, stop_requested)``: members are the (config, run) pairs of the replicas.
Train = Callable[[list[tuple[dict, object]], Callable[[int, object], None], list], None]


class RunInterrupted(SacredInterrupt):
    """Marks a run INTERRUPTED: a stop signal arrived (and what the run had was saved)."""

    STATUS = "INTERRUPTED"


def active_group(experiment: Experiment) -> ReplicaGroup | None:
    """The group whose replicas ``experiment``'s main function is running now, if any."""
    return _ACTIVE.get(id(experiment))


class ReplicaGroup:
    """R Sacred runs of ``experiment`` trained together by ``train`` (module docstring).

    With ``catch_stop_signals`` the group turns SIGTERM/SIGUSR2 into a request (the list passed to
    ``train`` gets the signal number) instead of ending the process.
    """

    def __init__(self, experiment: Experiment, replicas: int, train: Train, catch_stop_signals: bool = False):
        self.experiment, self.replicas, self.train = experiment, replicas, train
        self.catch_stop_signals = catch_stop_signals
        self.slots: list[tuple[dict, object] | None] = [None] * replicas
        self.outcomes: list[object] = [None] * replicas
        self.registered = threading.Semaphore(0)
        self.done = [threading.Event() for _ in range(replicas)]
        self.thread_replica: dict[int, int] = {}
        # Sacred binds config and run to the (shared) main function when it creates a run, so runs
        # are started one at a time: the lock is held from ex.run() until main() has its own.
        self.entry = threading.Lock()

    def join(self, config: dict, run):
        """Called by the experiment's main function in a replica's thread: wait for its outcome."""
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

    def finish(self, replica: int, outcome) -> None:
        """Give replica ``replica`` its outcome (a result or an exception); later calls are ignored."""
        if not self.done[replica].is_set():
            self.outcomes[replica] = outcome
            self.done[replica].set()

    def run(self, run_options: list[dict]) -> list[str]:
        """Start one Sacred run per entry of ``run_options`` (keyword arguments of ``ex.run``, plus
        an optional ``observers`` list that replaces ``ex.observers`` for that run alone) and train
        them together; returns each run's final status."""
        ex = self.experiment
        statuses = ["FAILED"] * self.replicas
        own_observers = list(ex.observers)

        def start(replica: int, options: dict) -> None:
            self.thread_replica[threading.get_ident()] = replica
            options = dict(options)
            self.entry.acquire()
            ex.observers[:] = options.pop("observers", own_observers)  # a run copies them when created
            try:
                statuses[replica] = ex.run(**options).status
            except SacredInterrupt as interrupt:
                statuses[replica] = interrupt.STATUS
            except Exception:  # Sacred has marked the run FAILED and printed why
                statuses[replica] = "FAILED"
            finally:
                if self.slots[replica] is None:  # the run failed before main(): free the entry, wake the trainer
                    self.entry.release()
                self.registered.release()

        stop_requested: list[int] = []
        handlers = {}
        if self.catch_stop_signals:
            handlers = {sig: signal.signal(sig, lambda signum, frame: stop_requested.append(signum)) for sig in STOP_SIGNALS}
        _ACTIVE[id(ex)] = self
        threads = [threading.Thread(target=start, args=(r, options)) for r, options in enumerate(run_options)]
        try:
            for thread in threads:
                thread.start()
            while sum(slot is not None for slot in self.slots) < self.replicas:
                self.registered.acquire()
                if any(not t.is_alive() and self.slots[r] is None for r, t in enumerate(threads)):
                    raise RuntimeError("a replica stopped before training started; see its error above")
            self.train(list(self.slots), self.finish, stop_requested)
        except BaseException as error:
            for replica in range(self.replicas):
                self.finish(replica, error if isinstance(error, Exception) else RuntimeError(repr(error)))
            if not isinstance(error, Exception):
                raise
        finally:
            for thread in threads:
                thread.join()
            del _ACTIVE[id(ex)]
            ex.observers[:] = own_observers
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        return statuses


OBSERVER_OPTIONS = {"-F": "--file_storage", "--file_storage": "--file_storage", "-m": "--mongo_db", "--mongo_db": "--mongo_db"}
#: Passed on to each replica as well, next to the observer above (experiments/mlflow_observer.py).
EXTRA_OBSERVER_OPTIONS = {"-M": "--mlflow", "--mlflow": "--mlflow"}


def replica_run_options(experiment: Experiment, argv: list[str], default_runs_dir: str) -> list[dict] | None:
    """``ex.run`` keyword arguments of each replica when ``with ... replicas=R`` (R > 1) is on the
    command line, else None. Replica r gets the seed ``seed + r`` (``seed`` drawn when absent)
    and otherwise the same updates, named configs and observer (-F DIR or -m URL; default
    FileStorage in ``default_runs_dir``; ``--mlflow URI`` adds to either). Exits with a message for flags it
    cannot pass on."""
    if "with" not in argv:
        return None
    updates, options, position = [], {}, 0
    while position < len(argv):
        arg = argv[position]
        flag, _, value = arg.partition("=")
        if flag in OBSERVER_OPTIONS or flag in EXTRA_OBSERVER_OPTIONS:
            if not value:
                position += 1
                value = argv[position] if position < len(argv) else ""
            options[{**OBSERVER_OPTIONS, **EXTRA_OBSERVER_OPTIONS}[flag]] = value
        elif arg.startswith("-"):
            sys.exit(f"error: {arg} is not supported with replicas > 1; allowed flags: -F DIR, -m URL, --mlflow URI")
        elif arg != "with":
            updates.append(arg)
        position += 1
    config_updates, named_configs = get_config_updates(updates)
    replicas = config_updates.get("replicas", 1)
    if not isinstance(replicas, int) or replicas <= 1:
        return None
    if updates and updates[0] != "main" and "=" not in updates[0] and updates[0] not in experiment.named_configs:
        sys.exit(f"error: command {updates[0]!r} cannot be batched; run it without replicas")
    if not options.keys() & set(OBSERVER_OPTIONS.values()):
        options["--file_storage"] = default_runs_dir
    options["--capture"] = "no"  # replicas run in threads: Sacred's global stdout capture would mix them
    seed = config_updates.get("seed", get_seed())
    return [
        dict(config_updates={**config_updates, "seed": seed + r}, named_configs=named_configs, options=dict(options))
        for r in range(replicas)
    ]
