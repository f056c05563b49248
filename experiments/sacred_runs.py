"""Sacred at the edge: the one module, beside the experiment definitions, that runs Sacred.

``train.py`` (``student_teacher``), ``flows2d.py`` (``particle_flow``) and ``dmmd.py`` (``dmmd``)
define a config, named configs and a function that trains a :class:`Batch` of R >= 1 runs together;
they hand it to :class:`ExperimentRuns` and call :meth:`ExperimentRuns.run_as_script`. The rest
lives here, once:

* **observers** (:meth:`ExperimentRuns.observers`): the default :class:`RunStore` (a Sacred
  FileStorageObserver) in :func:`studentteacher.results.default_runs_dir` (``$STUDENTTEACHER_RUNS``
  or ``./runs``, read there and only there), ``-F DIR`` (a RunStore too), Sacred's ``-m``, ``-t``,
  ``-S``, ``-u``, and :func:`environment_observers`, the one place for observers from the environment;
* **flags**: Sacred's flags act as in Sacred, with one run and with ``replicas > 1`` alike, but those
  of :data:`REFUSED` (``-s`` always; ``-i``, ``-q``, ``-D`` and ``-C sys|fd`` with replicas > 1),
  refused with the reason; ``-n NAME`` names the run in run.json's ``meta.name`` and leaves the
  experiment's name alone (results and sweeps select runs by it);
* **bad input**: every run's config is resolved, validated and checked against the machine (memory,
  the ``resume_from`` checkpoint) before any run starts; a refusal is one line ``error: ...`` on
  stderr, exit status 2, and no run directory; an integral float given to an integer key
  (``epochs=1e3``) is the integer, in the run and in what it stores (:meth:`ExperimentRuns.whole_numbers`);
* **stop signals** (:func:`stop_signals`): SIGTERM and SIGUSR2 set :data:`STOP`, which the loops poll,
  from before the first run is created until the process ends, so a late signal cannot kill a run
  while it is being stored;
* **replica groups** (:class:`ReplicaGroup`): R Sacred runs trained as one batched computation;
* **resume**: ``resume_from`` takes the seed and the config from the checkpoint (only the resumable
  keys may be given other values); a replica's checkpoint resumes alone, and ``replicas=R`` with
  replica 0's checkpoint resumes the whole batch (its run's ``info.json`` lists the others under
  ``batch_checkpoints``);
* **storage**: metrics are stored right before every checkpoint (a heartbeat), and a write that fails
  (a full disk) fails the run with the reason, in run.json and in the exit status;
* **sweeps**: :func:`resolve_config` and :func:`run_tasks` are what :mod:`studentteacher.sweep` calls.

Why the sweeps' side (formerly ``sweep_runs.py``) is merged in: a sweep task and a command-line run
take the same steps (checks before work, observers, stop signals, replica groups, final status),
and the state they share, the stop request and the running groups, must exist once; two helper
modules, reached by two import routes (a script's folder, the sweep's import by path), made two
copies of it. The sweep imports this module by its plain name from its folder, as the scripts do.

Exit statuses, as ``python -m studentteacher.sweep run``: 0 completed, 1 failed, 2 bad input, 3 interrupted.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import pdb
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from quiet import quiet  # noqa: E402  (beside this module: the one place that hides library noise)

quiet()
from docopt import DocoptExit, docopt  # noqa: E402
from sacred import SETTINGS, Experiment  # noqa: E402
from sacred.arg_parser import get_config_updates  # noqa: E402
from sacred.dependencies import get_digest  # noqa: E402
from sacred.initialize import create_run  # noqa: E402
from sacred.observers import FileStorageObserver  # noqa: E402
from sacred.serializer import flatten  # noqa: E402
from sacred.utils import SacredInterrupt, apply_backspaces_and_linefeeds, print_filtered_stacktrace  # noqa: E402

from studentteacher import results  # noqa: E402
from studentteacher.progress import progress_seconds  # noqa: E402
from studentteacher.sweep.tasks import (  # noqa: E402
    EXIT_COMPLETED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, exit_status,
)
from studentteacher.threads import apply_threads, flush_denormals  # noqa: E402

SETTINGS.CAPTURE_MODE = "sys"  # keep sys.stderr a terminal for the progress bars
#: Denormals flushed before torch starts its OpenMP workers, so that they inherit it (3-4x faster
#: dense epochs; :func:`studentteacher.threads.flush_denormals`); recorded in each run's info.json.
FLUSHED_DENORMALS = flush_denormals()
HERE = Path(__file__).resolve().parent
SCRIPTS = {"student_teacher": "train.py", "particle_flow": "flows2d.py", "dmmd": "dmmd.py"}
#: Seconds between Sacred heartbeats (metrics reach metrics.json, run.json gets a heartbeat time);
#: recorded in run.json as ``meta.beat_interval``, which ``sweep status`` reads to call a run dead.
BEAT_SECONDS = 5.0
#: Keys left out of a run's default name: they change how a run is carried out, not what it computes.
UNNAMED_KEYS = ("seed", "replicas", "resume_from", "threads")
#: Keys that hold integers though their defaults are not ints (None, "auto"): :meth:`ExperimentRuns.whole_numbers`.
INTEGER_KEYS = ("seed", "threads")
STATUS_EXIT = {"COMPLETED": EXIT_COMPLETED, "QUEUED": EXIT_COMPLETED, "INTERRUPTED": EXIT_INTERRUPTED}


class UsageError(ValueError):
    """A command line, observer or flag that cannot work; the message says why."""


class RunInterrupted(SacredInterrupt):
    """Marks a run INTERRUPTED: a stop signal arrived (and what the run had was saved)."""

    STATUS = "INTERRUPTED"


class RunStorageError(RuntimeError):
    """A write of the run's record failed (e.g. no space left on device): what it stored is incomplete."""


# ================================================================================== observers
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
    * sources that cannot be copied into ``_sources`` (a nearly full disk) are a failed write too: run.json
      then names them where they are, and the run fails at its start (:meth:`ExperimentRuns.start_batch`);
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
        try:
            return super().save_sources(ex_info)
        except OSError as error:
            self._write_failed("_sources", error)
            return [[source, os.path.relpath(os.path.join(ex_info["base_dir"], source), self.basedir)]
                    for source, _ in ex_info["sources"]]  # fmt: skip

    def find_or_save(self, filename, store_dir):
        try:
            return super().find_or_save(filename, store_dir)
        except OSError:  # no truncated copy may stay under the name later runs take for a complete one
            name, extension = os.path.splitext(os.path.basename(filename))
            with contextlib.suppress(OSError):
                os.remove(os.path.join(store_dir, f"{name}_{get_digest(filename)}{extension}"))
            raise

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

    def _store_failure(self, stop_time) -> None:
        self.run_entry.update(stop_time=stop_time.isoformat(), status="FAILED", fail_trace=[
            f"RunStorageError: {self.errors[0]}; the run's stored record is incomplete\n"])  # fmt: skip
        self.save_json(self.run_entry, "run.json")

    @_serialised
    def completed_event(self, stop_time, result):
        self._release_reserve()
        if self.errors:
            return self._store_failure(stop_time)
        return super().completed_event(stop_time, result)

    @_serialised
    def interrupted_event(self, interrupt_time, status):
        self._release_reserve()
        if self.errors:
            return self._store_failure(interrupt_time)
        return super().interrupted_event(interrupt_time, status)

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


# ================================================================================== stop signals
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


class StopRequest:
    """The stop signals received while :func:`stop_signals` is active; true once one arrived."""

    def __init__(self):
        self.received: list[int] = []
        self.depth = 0

    def __call__(self) -> bool:
        return bool(self.received)

    def note(self, signum, frame) -> None:
        self.received.append(signum)


STOP = StopRequest()


@contextlib.contextmanager
def stop_signals(restore: bool = True):
    """SIGTERM and SIGUSR2 set :data:`STOP` (instead of ending the process) while the block runs.

    Re-entrant: an inner block shares the outer one's request. Outside the main thread no handler can
    be set, and the block only yields the request. ``restore=False`` keeps the handlers when the block
    ends, for a process that ends with it: a signal during its last writes must not kill a run that
    is already stored as COMPLETED.
    """
    owner = STOP.depth == 0 and threading.current_thread() is threading.main_thread()
    if STOP.depth == 0:
        STOP.received.clear()
    saved = {sig: signal.signal(sig, STOP.note) for sig in STOP_SIGNALS} if owner else {}
    STOP.depth += 1
    try:
        yield STOP
    finally:
        STOP.depth -= 1
        for sig, handler in saved.items() if restore else ():
            signal.signal(sig, handler)


# ================================================================================== command line
SQL_REASON = ("Sacred 0.8.7's SqlObserver cannot store this experiment: its run table keeps the result as one "
              "float (ours is a dict) and it has no table for metrics, so every logged value would be lost; use "
              "-F DIR (FileStorage, the default) or -m MONGO_URL")
#: Sacred's flags that cannot work with ``replicas > 1`` (R runs in one process, in threads), and why.
REFUSED = {
    "-i/--id": "one run id cannot name the R runs of a batch",
    "-q/--queue": "a queued run never starts, and replicas train only once all of them have started",
    "-D/--pdb": "post-mortem debugging needs the failing run in the main thread, and replicas end in threads "
                "(debug one replica with replicas=1 seed=SEED+r)",
    "-C/--capture": "Sacred's sys and fd capture of stdout is process-wide: the R runs share one process and "
                    "their outputs would mix (only -C no)",
}  # fmt: skip
OBSERVER_OPTIONS = ("--mongo_db", "--tiny_db", "--s3", "--unobserved")


@dataclass
class CommandLine:
    """A parsed command line: the command, config updates, named configs, Sacred's options (those the
    helper passes on), and what the helper handles itself: ``-n NAME``, ``-F DIR``, help."""

    command: str
    updates: dict
    named_configs: list[str]
    options: dict
    name: str | None = None
    file_storage: str | None = None
    help: bool = False


def _unknown_flag(ex: Experiment, argv: list[str]) -> str | None:
    """The first argument that looks like a flag Sacred does not have (``--name`` or ``-x``), if any."""
    flags = {flag for option in ex.all_cli_options for flag in option.get_flags() if flag}
    for arg in map(str, argv):
        name = arg.split("=")[0]
        if (name.startswith("--") or (len(name) == 2 and name[0] == "-")) and name not in flags:
            return name
    return None


def parse_command_line(ex: Experiment, argv: list[str]) -> CommandLine:
    """Sacred's own parser (docopt) on ``argv`` (no program name); UsageError for what cannot work."""
    unknown = _unknown_flag(ex, argv)
    if unknown:
        flags = sorted("/".join(flag for flag in option.get_flags() if flag) for option in ex.all_cli_options)
        raise UsageError(f"unknown flag {unknown}; Sacred's flags: {', '.join(flags)}")
    try:
        args = docopt(ex.get_usage()[2], [str(arg) for arg in argv], default_help=False)
    except DocoptExit as error:
        problem = str(error).strip().splitlines()[0]
        raise UsageError(f"cannot read the command line {' '.join(argv)!r}: {problem} (see --help)") from None
    options = {key: value for key, value in args.items() if key.startswith("--")}
    for key, value in options.items():  # docopt keeps the '=' of '-F=DIR'
        if isinstance(value, str) and value.startswith("="):
            options[key] = value[1:]
    if options.pop("--sql", None):
        raise UsageError(f"-s: {SQL_REASON}")
    updates, named = get_config_updates(args["UPDATE"])
    return CommandLine(command=args["COMMAND"] or ex.default_command, updates=updates, named_configs=named,
                       name=options.pop("--name", None), file_storage=options.pop("--file_storage", None),
                       options=options, help=bool(args["help"] or args["--help"]))  # fmt: skip


def refuse_flags(options: dict, replicas: int) -> None:
    """UsageError for a flag of :data:`REFUSED` given with ``replicas`` > 1."""
    for flags, reason in REFUSED.items() if replicas > 1 else ():
        value = options.get(flags.split("/")[1])
        if value and not (flags == "-C/--capture" and value == "no"):
            raise UsageError(f"{flags} cannot be used with replicas = {replicas}: {reason}")


def _refuse(error: Exception) -> int:
    print(f"error: {error}", file=sys.stderr)
    return EXIT_INVALID


# ================================================================================== replica groups
#: The replica group now running, per experiment (``id(ex)``).
_ACTIVE: dict[int, ReplicaGroup] = {}


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
    the experiment's train function, which gives each run its outcome.
    """

    def __init__(self, runs: ExperimentRuns, replicas: int):
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
        return _deliver(run, self.outcomes[replica])

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
        _ACTIVE[id(ex)] = self
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
            del _ACTIVE[id(ex)]
        return statuses


def _deliver(run, outcome):
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


# ================================================================================== an experiment's runs
class ExperimentRuns:
    """How an experiment script's runs are checked, started, trained and stored (module docstring).

    ``train(batch)`` trains the runs of a :class:`Batch` (one run, or R replicas) and gives each its
    outcome with ``batch.finish``. ``validate(config)`` checks a resolved config (also Sacred's config
    hook, for the ``main`` command); ``preflight(config)`` checks what depends on the machine and on
    files (memory, the ``resume_from`` checkpoint); both raise ValueError naming the key.
    ``checkpoint_config(path)`` reads the config a checkpoint was written with (None: ``resume_from``
    takes nothing from the checkpoint); ``preflight`` refuses the keys that may not differ from it.
    ``checkpoints``: whether ``train`` writes checkpoints (False: a batch's runs list none in info.json).
    ``light(config)``: whether the run's tensors are too small to share between threads (``threads``
    "auto" then takes one, :mod:`studentteacher.threads`).
    """

    def __init__(self, ex: Experiment, train: Callable[[Batch], None], validate: Callable[[dict], object],
                 preflight: Callable[[dict], object] = lambda config: None,
                 checkpoint_config: Callable[[str], dict] | None = None,
                 light: Callable[[dict], bool] = lambda config: False, checkpoints: bool = True):
        self.ex, self.train, self.validate, self.preflight = ex, train, validate, preflight
        self.checkpoint_config, self.checkpoints, self.light = checkpoint_config, checkpoints, light
        ex.captured_out_filter = apply_backspaces_and_linefeeds

        def check_config(config, command_name, logger):
            """Reject a bad config before the run starts (Sacred adds the seed after the hooks)."""
            if command_name == "main":
                validate({"seed": 0, **config})
            return {}

        def main(_config, _run):
            return self.main(dict(_config), _run)

        ex.config_hook(check_config)
        ex.main(main)

    # ------------------------------------------------------------------ inside a run
    def main(self, config: dict, run):
        """The experiment's main function: join the active replica group, or train this run alone."""
        group = _ACTIVE.get(id(self.ex))
        if group is not None:
            return group.join(config, run)
        outcomes: dict[int, object] = {}
        self.start_batch(Batch([config], [run], lambda replica, outcome: outcomes.setdefault(replica, outcome)))
        return _deliver(run, outcomes.get(0, RuntimeError("the experiment's train function gave no outcome")))

    def start_batch(self, batch: Batch) -> None:
        """Threads (the config's ``threads``) and denormals flushed, both recorded in info.json,
        heartbeats, then ``train(batch)``."""
        failed_writes = [error for run in batch.runs for error in storage_errors(run)]
        if failed_writes:  # its sources could not be stored: nothing it would compute could be either
            for replica in range(len(batch.runs)):
                batch.finish(replica, RunStorageError(f"{failed_writes[0]}; the run did not start"))
            return
        flushed = flush_denormals() and FLUSHED_DENORMALS  # this thread, and the workers started after import
        threads = apply_threads(batch.configs[0].get("threads", "auto"), light=self.light(batch.configs[0]))
        for run in batch.runs:
            run.info["threads"] = threads
            run.info["flush_denormals"] = flushed
            flush(run)  # serialises the heartbeat timer with the flushes after checkpoints
        self.train(batch)

    def create(self, plan: dict):
        """A Sacred run of ``plan`` (``ex.run`` keyword arguments and ``observers``), not started yet."""
        plan = dict(plan)
        saved = list(self.ex.observers)
        self.ex.observers[:] = plan.pop("observers", saved)  # a run copies them when it is created
        try:
            return self.ex._create_run(**plan)  # ex.run = _create_run + run(); split to tell creation errors apart
        finally:
            self.ex.observers[:] = saved

    # ------------------------------------------------------------------ before any run
    def whole_numbers(self, updates: dict, named_configs: list[str]) -> dict:
        """``updates`` with each integral float (``epochs=1e3``) made an int where the key holds integers
        (its default is an int, or it is one of :data:`INTEGER_KEYS`): the run stores and uses 1000, as
        if it had been given so, in every experiment and in sweeps; any other float is left to the
        validation (``epochs=1.5`` is refused)."""
        integral = [key for key, value in updates.items() if isinstance(value, float) and value.is_integer()]
        if not integral:
            return updates
        defaults = self.resolve({}, named_configs)
        holds_int = [key for key in integral if key in INTEGER_KEYS
                     or (isinstance(defaults.get(key), int) and not isinstance(defaults.get(key), bool))]  # fmt: skip
        return {**updates, **{key: int(updates[key]) for key in holds_int}}

    def resolve(self, updates: dict, named_configs: list[str]) -> dict:
        """The config Sacred would run (defaults < named configs < updates, hooks run; integral floats of
        integer keys made ints, :meth:`whole_numbers`); ValueError with Sacred's or the validator's
        message, or naming a key the experiment does not know."""
        updates = self.whole_numbers(updates, named_configs)
        try:
            run = create_run(self.ex, self.ex.default_command, config_updates=updates,
                             named_configs=list(named_configs))  # fmt: skip
        except Exception as error:  # Sacred's errors (an unknown named config, config scope errors), the hooks'
            raise ValueError(str(error)) from error
        added = sorted(run.config_modifications.added)
        if added:
            known = ", ".join(sorted(key for key in run.config if key not in added))
            raise ValueError(f"unknown config key {added[0]!r} for experiment {self.ex.path!r}; known keys: {known}")
        return dict(run.config)

    def run_name(self, named_configs: list[str], config: dict) -> str:
        """The experiment, its named configs and the config values that differ from them (but
        :data:`UNNAMED_KEYS`), e.g. ``student_teacher drmmd_paper lr=0.05``; a resumed run keeps the
        name of the run it resumes."""
        if config.get("resume_from"):
            run = results.read_run_json(Path(config["resume_from"]).parent)
            if (run.get("meta") or {}).get("name"):
                return run["meta"]["name"]
        base = self.resolve({}, named_configs)
        changed = [f"{key}={value}" for key, value in config.items()
                   if key not in UNNAMED_KEYS and value != base.get(key)]  # fmt: skip
        return " ".join([self.ex.path, *named_configs, *changed])

    def replica_updates(self, updates: dict, named_configs: list[str], config: dict) -> list[dict]:
        """The config updates of each run a command line starts: ``replicas`` runs with the seeds
        seed .. seed+R-1, or, with ``resume_from``, the seeds and configs of the checkpoints."""
        if config.get("resume_from") and self.checkpoint_config is not None:
            return self.resumed_updates(updates, named_configs, config)
        return [{**updates, "seed": config["seed"] + r} for r in range(config["replicas"])]

    def resumed_updates(self, updates: dict, named_configs: list[str], config: dict) -> list[dict]:
        """Each run's updates when resuming: the checkpoint's config and seed, then the keys the command
        line sets (itself or through named configs; :meth:`preflight` refuses those that may not change)."""
        replicas, path = config["replicas"], config["resume_from"]
        paths = [path] if replicas == 1 else batch_checkpoints(path, replicas)
        given = set(updates)
        for name in named_configs:
            given |= set(self.ex.named_configs[name]()) if name in self.ex.named_configs else set()
        plans = []
        for replica, checkpoint in enumerate(paths):
            stored = self.checkpoint_config(checkpoint)
            kept = {key: value for key, value in stored.items() if key not in ("replicas", "resume_from")}
            chosen = {key: config[key] for key in given if key != "seed"}
            seed = config["seed"] + replica if "seed" in given else stored["seed"]
            plans.append({**kept, **chosen, "seed": seed, "replicas": replicas, "resume_from": checkpoint})
        return plans

    def prepare(self, plans: list[dict]) -> list[dict]:
        """Check every run of ``plans`` before any starts: its resolved config (:meth:`validate`,
        :meth:`preflight`) and its FileStorage folder; name it and set its heartbeat. ValueError naming
        the key (or the flag, or the environment variable) of the first problem; the plans, completed."""
        progress_seconds()  # $STUDENTTEACHER_PROGRESS, read by every run's progress
        for plan in plans:
            plan["config_updates"] = self.whole_numbers(plan["config_updates"], plan.get("named_configs", []))
            config = self.resolve(plan["config_updates"], plan.get("named_configs", []))
            self.validate(config)
            self.preflight(config)
            for observer in plan.get("observers", []):
                problem = isinstance(observer, FileStorageObserver) and results.runs_dir_problem(observer.basedir)
                if problem:
                    raise UsageError(f"observer folder: {problem}")
            options = plan.setdefault("options", {})
            options["--beat-interval"] = float(options.get("--beat-interval") or BEAT_SECONDS)
            meta = plan.setdefault("meta_info", {})
            meta["beat_interval"] = options["--beat-interval"]
            meta.setdefault("name", self.run_name(plan.get("named_configs", []), config))
        return plans

    def observers(self, cli: CommandLine) -> list:
        """New observers for one run of ``cli``: ``-F DIR``'s RunStore, or the default RunStore unless
        another observer flag is given, and :func:`environment_observers`."""
        if cli.file_storage:
            stores = [RunStore(cli.file_storage)]
        elif any(cli.options.get(flag) for flag in OBSERVER_OPTIONS):
            stores = []
        else:
            stores = [RunStore(results.default_runs_dir())]
        return stores + ([] if cli.options.get("--unobserved") else environment_observers())

    def plans(self, cli: CommandLine) -> list[dict]:
        """Every run a ``main`` command line starts, checked (:meth:`prepare`); ValueError if one cannot run."""
        config = self.resolve(cli.updates, cli.named_configs)
        refuse_flags(cli.options, config["replicas"])
        if config["replicas"] > 1:
            cli.options["--capture"] = "no"  # replicas run in threads: Sacred's stdout capture is process-wide
        plans = [dict(config_updates=updates, named_configs=list(cli.named_configs), options=dict(cli.options),
                      meta_info={"name": cli.name} if cli.name else {}, observers=self.observers(cli))
                 for updates in self.replica_updates(cli.updates, cli.named_configs, config)]  # fmt: skip
        return self.prepare(plans)

    # ------------------------------------------------------------------ running
    def execute(self, plans: list[dict]) -> list[str]:
        """Run the prepared plans: one in this thread, several as a :class:`ReplicaGroup`; final statuses."""
        if len(plans) > 1:
            return ReplicaGroup(self, len(plans)).run(plans)
        try:
            run = self.create(plans[0])
        except Exception as error:  # Sacred refused to create the run (-e on a dirty tree, a missing driver)
            raise UsageError(str(error)) from error
        try:
            run()
        except (SacredInterrupt, KeyboardInterrupt) as interrupt:
            print(f"interrupted: {interrupt or type(interrupt).__name__}", file=sys.stderr)
        except Exception:
            if run.debug:
                raise
            if run.pdb:
                pdb.post_mortem(sys.exc_info()[2])
            if storage_errors(run):  # a full disk: the reason, not a traceback
                print(f"error: the run could not be stored: {'; '.join(dict.fromkeys(storage_errors(run)))}",
                      file=sys.stderr)
            else:
                print_filtered_stacktrace()
        return [final_status(run)]

    def run_replicas(self, run_options: list[dict]) -> list[str]:
        """Run one Sacred run per entry of ``run_options`` (``ex.run`` keyword arguments; ``observers`` or
        an ``--file_storage`` option for that run alone) as one batch; each run's final status."""
        plans = []
        for options in run_options:
            plan = {**options, "options": dict(options.get("options", {}))}
            folder = plan["options"].pop("--file_storage", None)
            plan.setdefault("observers", [RunStore(folder)] if folder else [])
            plans.append(plan)
        with stop_signals():
            return self.execute(self.prepare(plans))

    def command_line(self, argv: list[str], until_exit: bool = False) -> int:
        """Run the script's command line (``argv`` without the program name); the exit status.
        ``until_exit``: the process ends with it, so the stop handlers stay (:func:`stop_signals`)."""
        try:
            cli = parse_command_line(self.ex, argv)
        except UsageError as error:
            return _refuse(error)
        if cli.help or cli.command != self.ex.default_command:  # Sacred's own commands and help
            self.ex.run_commandline([self.ex.path, *map(str, argv)])
            return EXIT_COMPLETED
        with stop_signals(restore=not until_exit):
            try:
                statuses = self.execute(self.plans(cli))
            except ValueError as error:
                return _refuse(error)
            if STOP() and all(status == "COMPLETED" for status in statuses):
                print("note: a stop signal arrived after the work was done; the run completed", file=sys.stderr)
        return report(statuses)

    def run_as_script(self) -> None:
        """``sys.exit`` with the exit status of this process's command line. The stop signals are
        ignored from then on: Python's shutdown puts back their default handlers, which would end a
        process whose runs are already stored (exit 143 with the run COMPLETED)."""
        status = self.command_line(sys.argv[1:], until_exit=True)
        ignore_stop_signals()
        sys.exit(status)


def ignore_stop_signals() -> None:
    """Ignore SIGTERM and SIGUSR2 until the process ends (called once its work is stored)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def batch_checkpoints(path: str, replicas: int) -> list[str]:
    """The checkpoints of the batch whose replica 0 wrote ``path`` (its run's info.json lists them)."""
    info = results.read_info_json(Path(path).parent)
    replica, paths = info.get("replica") or {}, info.get("batch_checkpoints") or []
    if replica.get("index") != 0 or replica.get("of") != replicas or len(paths) != replicas:
        written = (f"replica {replica['index']} of {replica['of']}" if "of" in replica else
                   "a plain run (or a run whose info.json does not list its batch)")
        raise UsageError(
            f"config key 'resume_from': got {path!r} with replicas = {replicas}; allowed: replica 0's checkpoint of "
            f"a batch of {replicas} (this one was written by {written}); a replica's checkpoint also resumes alone, "
            f"with replicas=1"
        )
    return paths


def report(statuses: list[str]) -> int:
    """Print the statuses of a batch (one run reports itself); the exit status."""
    if len(statuses) > 1:
        print(f"replicas: {', '.join(statuses)}", file=sys.stderr)
    return exit_status([STATUS_EXIT.get(status, EXIT_FAILED) for status in statuses])


# ================================================================================== sweeps
_SCRIPT_RUNS: dict[str, ExperimentRuns] = {}


def experiment_runs(name: str) -> ExperimentRuns:
    """The :class:`ExperimentRuns` of experiment ``name``, its script imported once per process."""
    if name not in _SCRIPT_RUNS:
        script = HERE / SCRIPTS[name]
        module_name = f"studentteacher_experiment_{script.stem}"
        spec = importlib.util.spec_from_file_location(module_name, script)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        _SCRIPT_RUNS[name] = module.runs
    return _SCRIPT_RUNS[name]


def resolve_config(name: str, config_updates: dict, named_configs: list[str]) -> dict:
    """The full config Sacred would run for experiment ``name``; ValueError naming the problem."""
    return experiment_runs(name).resolve(config_updates, named_configs)


def check_before_work(name: str, config: dict) -> None:
    """The checks of experiment ``name``'s script against the machine and files (memory, the
    ``resume_from`` checkpoint) on a resolved, valid ``config``; ValueError naming the key."""
    experiment_runs(name).preflight(config)


def run_tasks(name: str, named_configs: list[str], observer_dir: Path,
              tasks: list[dict]) -> list[tuple[str, Path | None]]:
    """Run sweep tasks of experiment ``name`` as Sacred runs; (status, run directory) per task.

    Each task is a dict with ``index``, ``config_updates`` and ``meta`` (the run's ``meta_info``),
    stored by a :class:`RunStore` in ``<observer_dir>/<index:05d>-<attempt>``. Every task is checked
    before any starts (ValueError naming the index and the key); one task runs in this thread,
    several as one batch. The status is the one the run stored (COMPLETED, FAILED, INTERRUPTED).
    """
    runs = experiment_runs(name)
    stores = [RunStore(observer_dir, task["index"]) for task in tasks]
    capture = "sys" if len(tasks) == 1 else "no"
    plans = [dict(config_updates=task["config_updates"], named_configs=list(named_configs), meta_info=task["meta"],
                  options={"--capture": capture}, observers=[store, *environment_observers()])
             for task, store in zip(tasks, stores)]  # fmt: skip
    with stop_signals():
        for task, plan in zip(tasks, plans):
            try:
                runs.prepare([plan])
            except ValueError as error:
                raise ValueError(f"index {task['index']}: {error}") from error
        statuses = runs.execute(plans)
    return [(status, Path(store.dir) if store.dir else None) for status, store in zip(statuses, stores)]
