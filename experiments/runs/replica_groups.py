"""R Sacred runs trained as one batched computation: the :class:`Batch` an experiment's train function
advances, and the :class:`ReplicaGroup` that starts its runs in threads and hands them over."""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import Callable

from sacred.utils import SacredInterrupt

from .stop_signals import STOP
from .storage import RunStorageError, checkpoint_path, final_status, flush


class RunInterrupted(SacredInterrupt):
    """Marks a run INTERRUPTED: a stop signal arrived (and what the run had was saved)."""

    STATUS = "INTERRUPTED"



#: The replica group now running, per experiment (``id(ex)``).
ACTIVE_GROUPS: dict[int, ReplicaGroup] = {}


@dataclass
class Batch:
    """R >= 1 Sacred runs that one call of an experiment's train function advances together.

    ``finish(r, outcome)`` gives run r its outcome: a result, or an exception that marks it alone
    FAILED (INTERRUPTED for a :class:`RunInterrupted`); later calls for r are ignored.
    """

    configs: list[dict]
    runs: list
    finish_run: Callable[[int, object], None]
    finished: set = field(default_factory=set)

    def finish(self, replica: int, outcome) -> None:
        self.finished.add(replica)
        self.finish_run(replica, outcome)

    def should_stop(self) -> bool:
        """True once a stop signal arrived (:data:`STOP`)."""
        return STOP()

    @property
    def checkpoint_paths(self) -> list[str]:
        return [checkpoint_path(run, r) for r, run in enumerate(self.runs)]

    def flush(self) -> None:
        """Store what the unfinished runs logged now (:func:`flush`); the training loop calls it before
        each checkpoint, so that the stored metrics reach at least the latest checkpoint."""
        for replica, run in enumerate(self.runs):
            if replica not in self.finished:
                flush(run)


class ReplicaGroup:
    """R Sacred runs of one experiment trained together (:meth:`run`).

    Each replica is a real Sacred run (its config, seed, observers, run directory), started in a
    thread of its own; the experiment's main function sees the active group and hands its config
    and run to :meth:`join`, which waits. The calling (main) thread trains all of them at once with
    the experiment's train function, which gives each run its outcome. ``runs``: the experiment's
    :class:`.experiment_runs.ExperimentRuns`.
    """

    def __init__(self, runs, replicas: int):
        self.runs, self.replicas = runs, replicas
        self.slots: list[tuple[dict, object] | None] = [None] * replicas
        self.outcomes: list[object] = [None] * replicas
        self.errors: list[BaseException | None] = [None] * replicas
        self.registered = threading.Semaphore(0)
        self.done = [threading.Event() for _ in range(replicas)]
        self.thread_replica: dict[int, int] = {}
        # Sacred binds config and run to the (shared) main function when it creates a run, so runs
        # are created one at a time: the lock is held from run creation until main() has its own.
        self.entry = threading.Lock()

    def join(self, config: dict, run):
        """Called by the experiment's main function in a replica's thread: wait for its outcome."""
        replica = self.thread_replica[threading.get_ident()]
        run.info["replica"] = {"index": replica, "of": self.replicas}
        self.slots[replica] = (config, run)
        self.entry.release()  # the next replica may now start its run
        self.registered.release()
        self.done[replica].wait()
        return deliver(run, self.outcomes[replica])

    def finish(self, replica: int, outcome) -> None:
        """Give replica ``replica`` its outcome (a result or an exception); later calls are ignored."""
        if not self.done[replica].is_set():
            self.outcomes[replica] = outcome
            self.done[replica].set()

    def _start(self, replica: int, plan: dict, statuses: list[str]) -> None:
        """Thread body: create and run replica ``replica``'s Sacred run; its final status."""
        self.thread_replica[threading.get_ident()] = replica
        self.entry.acquire()
        run = None
        try:
            run = self.runs.create(plan)
            run()
        except SacredInterrupt:
            pass
        except Exception as error:  # the run is FAILED (or was never created): say why here, in one line
            self.errors[replica] = error
            print(f"replica {replica}: {type(error).__name__}: {error}", file=sys.stderr)
        finally:
            if self.slots[replica] is None:  # the run ended before main(): free the entry, wake the trainer
                self.entry.release()
            self.registered.release()
        statuses[replica] = final_status(run) if run is not None and run.status else "FAILED"

    def run(self, plans: list[dict]) -> list[str]:
        """Start one Sacred run per plan (keyword arguments of :meth:`ExperimentRuns.create`) and train them
        together; each run's final status."""
        statuses = ["FAILED"] * self.replicas
        ex = self.runs.ex
        ACTIVE_GROUPS[id(ex)] = self
        threads = [threading.Thread(target=self._start, args=(r, plan, statuses)) for r, plan in enumerate(plans)]
        try:
            for thread in threads:
                thread.start()
            while sum(slot is not None for slot in self.slots) < self.replicas:
                self.registered.acquire()
                stopped = [r for r, t in enumerate(threads) if not t.is_alive() and self.slots[r] is None]
                if stopped:
                    raise RuntimeError(f"replica {stopped[0]} ended before training started: {self.errors[stopped[0]]}")
            configs, runs = zip(*self.slots)
            if self.runs.checkpoints:  # how replica 0's checkpoint finds the others
                paths = [checkpoint_path(run, r) for r, run in enumerate(runs)]
                for run in runs:
                    run.info["batch_checkpoints"] = paths
            self.runs.start_batch(Batch(list(configs), list(runs), self.finish))
        except BaseException as error:  # Ctrl-C interrupts every replica; any other error fails them
            for replica in range(self.replicas):
                self.finish(replica, error if isinstance(error, Exception) else RunInterrupted(repr(error)))
            if not isinstance(error, Exception):
                raise
        finally:
            for thread in threads:
                thread.join()
            del ACTIVE_GROUPS[id(ex)]
        return statuses


def deliver(run, outcome):
    """Store what ``run`` logged, then return its result or raise its exception (RunStorageError for a
    result that could not be stored)."""
    try:
        flush(run)
    except RunStorageError:
        if not isinstance(outcome, BaseException):
            raise
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
