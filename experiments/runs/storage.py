"""Where a run is stored: :class:`RunStore` (Sacred's FileStorageObserver, safe for readers and honest about
failed writes), the observers from the environment, a run's checkpoint path, and :func:`flush` (a heartbeat
that raises :class:`RunStorageError` when a write failed)."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import threading

from sacred.dependencies import get_digest
from sacred.observers import FileStorageObserver
from sacred.serializer import flatten

from studentteacher import results


class RunStorageError(RuntimeError):
    """A write of the run's record failed (e.g. no space left on device): what it stored is incomplete."""


def _serialised(method):
    """Run an observer method under the observer's lock: Sacred calls it from the run's thread and from
    its heartbeat thread, which would otherwise write one file, or read a dict the other changes, at once."""

    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    return locked


class RunStore(FileStorageObserver):
    """Sacred's FileStorageObserver, safe for readers and honest about failed writes.

    * JSON files are written whole (temporary file + rename): ``status`` never reads half a file;
      every event is handled under one lock, as Sacred sends them from two threads;
    * a write that fails (no space left, ...) is recorded in :attr:`errors` (``"<reason> while
      writing <file>"``) and what it left half-written is removed; later writes still go on (Sacred
      would drop an observer that raised); the run's end turns COMPLETED (or INTERRUPTED) into FAILED
      with that reason, and :func:`final_status` and :func:`flush` say so;
    * a small reserve file held during the run is released before the final status is written, so
      that status fits on a disk the run filled;
    * sources that cannot all be copied into ``_sources`` (a nearly full disk) are a failed write too, and
      the copies made for them are removed: run.json then names them where they are, and the run fails
      at its start (:meth:`ExperimentRuns.start_batch`);
    * with ``index`` (a sweep task) the run directory is ``<index:05d>-<attempt>``, the next free
      attempt reserved with an atomic ``mkdir``, so tasks never share or overwrite a directory.
    """

    RESERVE = ".status-reserve"
    RESERVE_BYTES = 32 * 1024

    def __init__(self, basedir, index: int | None = None):
        super().__init__(basedir)
        self.index = index
        self.errors: list[str] = []
        self.lock = threading.RLock()
        self.copied_sources: list[str] | None = None  # while save_sources runs: the copies it made

    def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):
        event = (ex_info, command, host_info, start_time, config, meta_info)
        run_id = super().started_event(*event, _id) if self.index is None else self._start_attempt(event)
        with contextlib.suppress(OSError):  # a disk too full for the reserve will fail the run's own writes
            with open(os.path.join(self.dir, self.RESERVE), "wb") as reserve:
                reserve.write(bytes(self.RESERVE_BYTES))
        return run_id

    def _start_attempt(self, event: tuple) -> str:
        attempt = 1 + max((a for i, a, _ in results.sweep_attempts(self.basedir) if i == self.index), default=0)
        while True:
            event[5].setdefault("sweep", {})["attempt"] = attempt  # meta_info
            try:
                return super().started_event(*event, f"{self.index:05d}-{attempt}")
            except FileExistsError:
                attempt += 1

    def save_sources(self, ex_info):
        self.copied_sources = []
        try:
            return super().save_sources(ex_info)
        except OSError as error:
            self._write_failed("_sources", error)
            for copy in self.copied_sources:  # run.json names the sources where they are, not these copies
                with contextlib.suppress(OSError):
                    os.remove(copy)
            return [[source, os.path.relpath(os.path.join(ex_info["base_dir"], source), self.basedir)]
                    for source, _ in ex_info["sources"]]  # fmt: skip
        finally:
            self.copied_sources = None

    def find_or_save(self, filename, store_dir):
        name, extension = os.path.splitext(os.path.basename(filename))
        target = os.path.join(store_dir, f"{name}_{get_digest(filename)}{extension}")
        new = not os.path.exists(target)
        try:
            stored = super().find_or_save(filename, store_dir)
        except OSError:  # no truncated copy may stay under the name later runs take for a complete one
            with contextlib.suppress(OSError):
                os.remove(target)
            raise
        if new and self.copied_sources is not None:
            self.copied_sources.append(target)
        return stored

    def _write_failed(self, filename: str, error: OSError, partial: str | None = None) -> None:
        self.errors.append(f"{error.strerror or error} while writing {filename}")
        if partial:
            with contextlib.suppress(OSError):
                os.remove(partial)

    @_serialised
    def save_json(self, obj, filename):
        target = os.path.join(self.dir, filename)
        temporary = f"{target}.{os.getpid()}.tmp"
        try:
            with open(temporary, "w") as handle:
                json.dump(flatten(obj), handle, sort_keys=True, indent=2)
            os.replace(temporary, target)
        except OSError as error:
            self._write_failed(filename, error, temporary)
            raise

    def save_file(self, filename, target_name=None):
        target_name = target_name or os.path.basename(filename)
        try:
            super().save_file(filename, target_name)
        except FileExistsError:  # Sacred's refusal to overwrite its own files: not a storage failure
            raise
        except OSError as error:
            self._write_failed(target_name, error, os.path.join(self.dir, target_name))
            raise

    def save_cout(self):
        try:
            super().save_cout()
        except OSError as error:
            self._write_failed("cout.txt", error)
            raise

    # Sacred stops calling an observer after one of these raises: a failed write is recorded instead
    # (above), so that later heartbeats still store what they can, and the run's end reports it.
    @_serialised
    def heartbeat_event(self, *args, **kwargs):
        with contextlib.suppress(OSError):
            super().heartbeat_event(*args, **kwargs)

    @_serialised
    def log_metrics(self, *args, **kwargs):
        with contextlib.suppress(OSError):
            super().log_metrics(*args, **kwargs)

    @_serialised
    def artifact_event(self, *args, **kwargs):
        with contextlib.suppress(OSError):
            super().artifact_event(*args, **kwargs)

    def _release_reserve(self) -> None:
        with contextlib.suppress(OSError):
            os.remove(os.path.join(self.dir, self.RESERVE))

    def _end(self, end_event, stop_time, *args):
        """A run's end that is not a failure (``end_event``: Sacred's completed or interrupted event), after
        the reserve is released; stored as FAILED instead where a write failed."""
        self._release_reserve()
        if not self.errors:
            return end_event(stop_time, *args)
        self.run_entry.update(stop_time=stop_time.isoformat(), status="FAILED", fail_trace=[
            f"RunStorageError: {self.errors[0]}; the run's stored record is incomplete\n"])  # fmt: skip
        self.save_json(self.run_entry, "run.json")

    @_serialised
    def completed_event(self, stop_time, result):
        return self._end(super().completed_event, stop_time, result)

    @_serialised
    def interrupted_event(self, interrupt_time, status):
        return self._end(super().interrupted_event, interrupt_time, status)

    @_serialised
    def failed_event(self, fail_time, fail_trace):
        self._release_reserve()
        if self.errors and self.errors[0] not in "".join(fail_trace):
            fail_trace = [*fail_trace, f"RunStorageError: {self.errors[0]}; the run's stored record is incomplete\n"]
        with contextlib.suppress(OSError):  # a disk too full for run.json: save_json recorded it, the exit says it
            super().failed_event(fail_time, fail_trace)


def environment_observers() -> list:
    """Observers that every observed run gets from the environment, beside the default or the flags':
    none today (``STUDENTTEACHER_MLFLOW`` is read by :func:`use_mlflow`'s option, as ``--mlflow``).

    The one place to add such an observer (tests add a recorder here). Each call returns new
    objects: an observer belongs to one run.
    """
    return []


def storage_errors(run) -> list[str]:
    """The failed writes of ``run``'s RunStores."""
    return [error for observer in run.observers if isinstance(observer, RunStore) for error in observer.errors]


def final_status(run) -> str:
    """The status ``run`` stored: FAILED when a write failed, else Sacred's."""
    return "FAILED" if storage_errors(run) else run.status


def checkpoint_path(run, replica: int = 0) -> str:
    """``checkpoint.pt`` in the run's FileStorage directory (absolute), else under the default runs folder."""
    for observer in run.observers:
        if isinstance(observer, FileStorageObserver) and observer.dir:
            return os.path.abspath(os.path.join(observer.dir, "checkpoint.pt"))
    name = f"{run.experiment_info['name']}-{os.getpid()}-{replica}.pt"
    return os.path.abspath(results.default_runs_dir() / "checkpoints" / name)


def flush(run) -> None:
    """Store what ``run`` logged now (a Sacred heartbeat, serialised with its timer's); RunStorageError
    naming the file when one of its writes failed."""
    beat = getattr(run, "_locked_heartbeat", None)
    if beat is None:  # the first call, at the run's start: the timer thread beats through the same lock
        lock, unlocked = threading.Lock(), run._emit_heartbeat

        def beat():
            with lock:
                unlocked()

        run._locked_heartbeat = beat
        if run._heartbeat is not None:
            run._heartbeat.func = beat
    beat()
    errors = storage_errors(run)
    if errors:
        raise RunStorageError(f"{errors[0]}; the run's stored record is incomplete")
