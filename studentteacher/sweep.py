"""Sweeps: a YAML file -> an ordered list of configs; run one by index; status; SLURM arrays.

A sweep file (DESIGN §5)::

    experiment: student_teacher      # or particle_flow
    named_config: drmmd_paper        # optional (a name, or a list of names applied in order)
    base: {epochs: 15000, readout: dense}                    # fixed keys
    grid: {method: [sgd, drmmd], noise_level: [0.0, 1.0]}    # cartesian product
    zip: [{lmbda: [0.01, 0.1, 1.0], lr: [0.08, 0.1, 0.1]}]   # optional: lists that vary together
    seeds: [1, 2, 3, 4, 5]
    observer: runs/drmmd-noise       # optional; default runs/<file stem>

**Order (contract).** Task ``index = (grid_position * n_zip + zip_position) * n_seeds +
seed_position``: the grid is the cartesian product of its lists with the *last* key varying
fastest; several zip groups are crossed with each other the same way (first group slowest), and
``n_zip`` is the product of their lengths (1 without ``zip``); the seed varies fastest of all.
An index always means the same config: append new values to a sweep in a new file.

**Observer directory.** A relative ``observer`` path is relative to the *current working
directory*, like ``experiments/train.py``'s ``./runs``; the default is ``runs/<file stem>``, or
``$STUDENTTEACHER_RUNS/<file stem>`` when that variable is set (as for the experiments). Every
command takes ``--observer DIR`` to override it; ``submit`` writes the absolute directory into
the array script, so tasks write where ``status`` looks.

**Run ids.** Task ``I`` stores its run in ``<observer>/<I:05d>-<attempt>`` (``00007-1``, then
``00007-2`` for a resubmission): the directory name is reserved with an atomic ``mkdir``, so
concurrent tasks never race for Sacred's next numeric id, and a rerun never overwrites the
evidence of an earlier attempt. ``status`` uses the latest attempt. The run's ``meta`` in
``run.json`` holds ``sweep = {name, file, index, attempt, config_updates}``.

**States** (``status``): ``completed``, ``failed`` (with the last line of the fail trace),
``interrupted``, ``running`` (heartbeat younger than ``--stale-after`` seconds), ``dead``
(RUNNING but the heartbeat is stale: killed without a chance to say so), ``queued`` (pending or
starting in SLURM, from this sweep's submission records and ``squeue``) and ``missing``.

Command line (``python -m studentteacher.sweep COMMAND FILE ...``)::

    count FILE                    number of tasks
    list FILE [--json]            index -> varied keys (the full config updates with --json)
    check FILE                    validate every config (as run and submit do first)
    run FILE --index I            run task I here; exit 0 completed, 1 failed, 3 interrupted
                                  (--validate task: check only this task's config, as array
                                  tasks do after submit checked them all); --batch R runs
                                  I .. I+R-1, --indices I,J,K those, as one batched computation
    status FILE [--json]          state of every index
    submit FILE [options]         sbatch an array over the missing/failed/interrupted/dead
                                  indices (--all: every index); --dry-run prints it; --batch R:
                                  each array task runs up to R compatible indices batched
    collect FILE [--runs]         table of the final metrics per config (mean, std over seeds)

Exit status 2 for an invalid sweep file, config or submit option (the message names the index
and the key).
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.util
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "slurm" / "array.sbatch"
BATCH_TEMPLATE = REPO / "slurm" / "array_batch.sbatch"


@dataclass(frozen=True)
class ExperimentSpec:
    """Where a sweepable experiment lives: its Sacred script, its config validator and the config
    keys in which the replicas of one batched run may differ."""

    script: Path  # a file defining the Sacred experiment `ex` and `run_replicas(run_options)`
    validator: str  # "module:function": config dict -> config dict (or None), or ValueError
    replica_keys: str  # "module:NAME" of a tuple of config keys


EXPERIMENTS: dict[str, ExperimentSpec] = {
    "student_teacher": ExperimentSpec(REPO / "experiments" / "train.py", "studentteacher.config:validate",
                                      "studentteacher.replicas:REPLICA_KEYS"),
    "particle_flow": ExperimentSpec(REPO / "experiments" / "flows2d.py", "studentteacher.flows:validate_flow_config",
                                    "studentteacher.flows:REPLICA_KEYS"),
    "dmmd": ExperimentSpec(REPO / "experiments" / "dmmd.py", "studentteacher.dmmd:validate_dmmd_config",
                           "studentteacher.dmmd:REPLICA_KEYS"),
}
SWEEP_KEYS = ("experiment", "named_config", "base", "grid", "zip", "seeds", "observer")
STATES = ("completed", "failed", "interrupted", "running", "dead", "queued", "missing")
RESUBMIT_STATES = ("failed", "interrupted", "dead", "missing")
EXIT_COMPLETED, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 3
RUN_ID = re.compile(r"^(\d{5,})-(\d+)$")


class SweepError(ValueError):
    """An invalid sweep file, config or submit option; the message names the index and key."""


class SubmitError(RuntimeError):
    """sbatch or scontrol failed; the message carries their output."""


# ---------------------------------------------------------------------------------------------
# Sweep files -> ordered configs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file. ``tasks[i]`` is the config update of index ``i`` (seed included)."""

    path: Path  # absolute path of the sweep file
    experiment: str
    named_configs: tuple[str, ...]
    base: dict
    grid: dict
    zips: tuple[dict, ...]
    seeds: tuple[int, ...]
    observer: Path  # absolute
    tasks: tuple[dict, ...] = field(repr=False)

    @property
    def name(self) -> str:
        """The file stem: default observer directory and SLURM job name."""
        return self.path.stem

    @property
    def varied_keys(self) -> list[str]:
        """Keys that change between tasks, in index order (slowest first), seed last."""
        return [*self.grid, *(key for group in self.zips for key in group), "seed"]

    def __len__(self) -> int:
        return len(self.tasks)

    def config_updates(self, index: int) -> dict:
        """The config updates (base + grid + zip values + seed) of task ``index``."""
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(self.tasks):
            raise SweepError(f"index {index!r} is out of range: the sweep {self.path} has indices 0 .. {len(self) - 1}")
        return dict(self.tasks[index])

    def varied(self, index: int) -> dict:
        """The values of the varied keys of task ``index``."""
        updates = self.tasks[index]
        return {key: updates[key] for key in self.varied_keys}


def _fail(path: Path, message: str) -> None:
    raise SweepError(f"sweep file {path}: {message}")


def _value_lists(path: Path, where: str, mapping: Any) -> dict[str, list]:
    if not isinstance(mapping, dict):
        _fail(path, f"{where} must be a mapping of key -> list of values, got {mapping!r}")
    for key, values in mapping.items():
        if not isinstance(values, list) or not values:
            _fail(path, f"{where} key {key!r} must be a non-empty list of values, got {values!r}")
    return dict(mapping)


def load(path: str | os.PathLike, observer: str | os.PathLike | None = None) -> Sweep:
    """Read and expand a sweep file (see the module docstring); ``observer`` overrides the file's.

    Raises :class:`SweepError` naming the file and the offending key. Configs are not validated
    against the experiment here (see :func:`validate`), so this is cheap.
    """
    path = Path(path).resolve()
    try:
        spec = yaml.safe_load(path.read_text())
    except OSError as err:
        raise SweepError(f"cannot read sweep file {path}: {err}") from err
    except yaml.YAMLError as err:
        raise SweepError(f"sweep file {path} is not valid YAML: {err}") from err
    if not isinstance(spec, dict):
        _fail(path, f"must be a YAML mapping with keys {', '.join(SWEEP_KEYS)}")
    unknown = sorted(set(spec) - set(SWEEP_KEYS))
    if unknown:
        _fail(path, f"unknown key {unknown[0]!r}; allowed keys: {', '.join(SWEEP_KEYS)}")

    experiment = spec.get("experiment")
    if experiment not in EXPERIMENTS:
        _fail(path, f"'experiment' must be one of {', '.join(EXPERIMENTS)}, got {experiment!r}")
    named = spec.get("named_config")
    named = [] if named is None else [named] if isinstance(named, str) else named
    if not isinstance(named, list) or not all(isinstance(n, str) and n for n in named):
        _fail(path, f"'named_config' must be a name or a list of names, got {spec.get('named_config')!r}")
    base = spec.get("base") or {}
    if not isinstance(base, dict):
        _fail(path, f"'base' must be a mapping of fixed config keys, got {base!r}")
    grid = _value_lists(path, "grid", spec.get("grid") or {})
    zip_spec = spec.get("zip") or []
    if isinstance(zip_spec, dict):
        zip_spec = [zip_spec]
    if not isinstance(zip_spec, list):
        _fail(path, f"'zip' must be a list of groups (mappings of key -> list), got {zip_spec!r}")
    zips = []
    for number, group in enumerate(zip_spec):
        group = _value_lists(path, f"zip group {number}", group)
        if not group:
            _fail(path, f"zip group {number} is empty")
        lengths = {key: len(values) for key, values in group.items()}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{key}: {n}" for key, n in lengths.items())
            _fail(path, f"zip group {number}: all lists must have the same length, got {detail}")
        zips.append(group)
    seeds = spec.get("seeds")
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        _fail(path, f"'seeds' must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        _fail(path, f"'seeds' has repeated values: {seeds}")

    seen: dict[str, str] = {}
    for where, keys in [("base", base), ("grid", grid), *((f"zip group {n}", g) for n, g in enumerate(zips))]:
        for key in keys:
            if not isinstance(key, str):
                _fail(path, f"{where}: config keys must be strings, got {key!r}")
            if key == "seed":
                _fail(path, f"{where}: set the seed with the top-level 'seeds' list, not a 'seed' key")
            if key in seen:
                _fail(path, f"key {key!r} appears in both {seen[key]} and {where}")
            seen[key] = where

    if observer is None:
        observer = spec.get("observer")
    if observer is None:
        observer = Path(os.environ.get("STUDENTTEACHER_RUNS", "runs")) / path.stem
    if not isinstance(observer, (str, os.PathLike)) or not str(observer):
        _fail(path, f"'observer' must be a directory path, got {observer!r}")

    tasks = tuple(expand(base, grid, zips, seeds))
    return Sweep(path, experiment, tuple(named), dict(base), grid, tuple(zips), tuple(seeds),
                 Path(observer).resolve(), tasks)


def expand(base: dict, grid: dict[str, list], zips: list[dict[str, list]], seeds: list[int]) -> list[dict]:
    """All config updates in index order: grid (last key fastest), then zip groups, then seeds."""
    grid_points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    group_points = [[{key: values[i] for key, values in group.items()} for i in range(len(next(iter(group.values()))))]
                    for group in zips]
    zip_points = [dict(item for point in combo for item in point.items())
                  for combo in itertools.product(*group_points)]
    return [{**base, **g, **z, "seed": seed} for g in grid_points for z in zip_points for seed in seeds]


# ---------------------------------------------------------------------------------------------
# The experiment: import, validate
# ---------------------------------------------------------------------------------------------

_MODULES: dict[str, Any] = {}


def experiment(name: str):
    """Import the Sacred experiment ``name`` (see :data:`EXPERIMENTS`) and return its ``ex``."""
    if name not in _MODULES:
        spec = EXPERIMENTS[name]
        if not spec.script.exists():
            raise SweepError(f"experiment {name!r}: its script {spec.script} does not exist")
        module_name = f"studentteacher_experiment_{spec.script.stem}"
        loader = importlib.util.spec_from_file_location(module_name, spec.script)
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module
        loader.loader.exec_module(module)
        if getattr(module, "ex", None) is None:
            raise SweepError(f"experiment {name!r}: {spec.script} defines no Sacred experiment `ex`")
        _MODULES[name] = module
    return _MODULES[name].ex


def _attribute(reference: str):
    module, name = reference.split(":")
    return getattr(importlib.import_module(module), name)


def validator(name: str) -> Callable[[dict], dict]:
    """The config validator of experiment ``name``: config -> config (or None) or ValueError."""
    return _attribute(EXPERIMENTS[name].validator)


def resolved_config(sweep: Sweep, index: int) -> dict:
    """The config Sacred would run for ``index``: defaults, named configs, then the updates.

    Raises :class:`SweepError` naming the index for unknown keys or a named config that does
    not exist.
    """
    from sacred.initialize import create_run

    ex = experiment(sweep.experiment)
    updates = sweep.config_updates(index)
    try:
        run = create_run(ex, ex.default_command, config_updates=updates, named_configs=list(sweep.named_configs))
    except Exception as err:  # Sacred's own errors (unknown named config, config scope errors)
        raise SweepError(f"sweep {sweep.path}: index {index} ({_short(sweep.varied(index))}): {err}") from err
    added = sorted(run.config_modifications.added)
    if added:
        known = ", ".join(sorted(k for k in run.config if k not in added))
        raise SweepError(f"sweep {sweep.path}: index {index}: unknown config key {added[0]!r} for experiment "
                         f"{sweep.experiment!r}; known keys: {known}")
    return dict(run.config)


def validate(sweep: Sweep) -> list[dict]:
    """Validate every config of the sweep; return the complete configs in index order.

    Each task's config is resolved as Sacred would (defaults < named configs < updates) and
    passed to the experiment's validator. All invalid indices are reported together in one
    :class:`SweepError`, each with its index, its varied values and the validator's message
    (which names the key).
    """
    check = validator(sweep.experiment)
    configs, problems = [], []
    for index in range(len(sweep)):
        try:
            config = resolved_config(sweep, index)
            checked = check(config)  # some validators return the completed config, others None
            configs.append(config if checked is None else checked)
        except SweepError as err:
            problems.append(str(err))
        except ValueError as err:
            problems.append(f"index {index} ({_short(sweep.varied(index))}): {err}")
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise SweepError(f"sweep {sweep.path}: {len(problems)} of {len(sweep)} configs are invalid:\n  {shown}")
    return configs


def _short(values: dict) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in values.items())


# ---------------------------------------------------------------------------------------------
# Running one task
# ---------------------------------------------------------------------------------------------


def _sweep_observer_class():
    from sacred.observers import FileStorageObserver
    from sacred.serializer import flatten

    class SweepObserver(FileStorageObserver):
        """A FileStorageObserver that stores task ``index`` in ``<basedir>/<index:05d>-<attempt>``.

        The attempt number is the next free one; the directory is reserved with ``mkdir`` (atomic),
        so concurrent tasks and resubmissions never share or overwrite a run directory. JSON files
        are written atomically (temporary file + rename) so ``status`` never reads half a file.
        """

        def __init__(self, basedir: Path, index: int):
            super().__init__(basedir)
            self.index = index
            self.attempt: int | None = None

        def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):
            attempt = 1 + max((a for i, a, _ in _attempt_dirs(Path(self.basedir)) if i == self.index), default=0)
            while True:
                meta_info.setdefault("sweep", {})["attempt"] = attempt
                try:
                    run_id = f"{self.index:05d}-{attempt}"
                    result = super().started_event(ex_info, command, host_info, start_time, config, meta_info, run_id)
                    self.attempt = attempt
                    return result
                except FileExistsError:
                    attempt += 1

        def save_json(self, obj, filename):
            target = os.path.join(self.dir, filename)
            temporary = target + ".tmp"
            with open(temporary, "w") as f:
                json.dump(flatten(obj), f, sort_keys=True, indent=2)
                f.flush()
            os.replace(temporary, target)

    return SweepObserver


def resumable_checkpoint(sweep: Sweep, index: int) -> Path | None:
    """The checkpoint to resume task ``index`` from, or None.

    A task resumes when its latest attempt ended INTERRUPTED (the training experiment writes
    ``checkpoint.pt`` into its run directory on SIGTERM/SIGUSR2, e.g. near the SLURM time limit)
    or was killed while RUNNING (``dead``; a periodic checkpoint of ``checkpoint_every`` may be
    there) and left ``checkpoint.pt``, the experiment has a ``resume_from`` key and the sweep
    does not set it. The new attempt continues from that epoch with the same config and seed.
    A FAILED attempt is never resumed.
    """
    if "resume_from" in sweep.config_updates(index):
        return None
    attempts = [(a, path) for i, a, path in _attempt_dirs(sweep.observer) if i == index]
    if not attempts:
        return None
    latest = max(attempts)[1]
    checkpoint = latest / "checkpoint.pt"
    if _read_json(latest / "run.json").get("status") not in ("INTERRUPTED", "RUNNING") or not checkpoint.is_file():
        return None
    if "resume_from" not in resolved_config(sweep, index):
        return None
    return checkpoint


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")


def run_task(sweep: Sweep, index: int, validate_all: bool = True) -> tuple[str, Path | None]:
    """Run task ``index`` of the sweep in this process; return (Sacred status, run directory).

    Validates the sweep first (every config when ``validate_all``), then calls the experiment's
    ``ex.run`` with the task's config updates and named configs, observed only by a
    :class:`SweepObserver` on the sweep's observer directory. SIGTERM and SIGUSR2 raise
    KeyboardInterrupt (-> INTERRUPTED) unless the experiment installs its own handlers (the
    training experiment checkpoints first). Returns ``"COMPLETED"``, ``"FAILED"`` or
    ``"INTERRUPTED"``; the traceback of a failure is printed to stderr. A task whose previous
    attempt was interrupted with a checkpoint resumes from it (:func:`resumable_checkpoint`).
    """
    from sacred.utils import SacredInterrupt

    sweep.config_updates(index)  # range check before the (slower) validation
    if validate_all:
        validate(sweep)
    else:
        try:
            validator(sweep.experiment)(resolved_config(sweep, index))
        except SweepError:
            raise
        except ValueError as err:
            raise SweepError(f"sweep {sweep.path}: index {index} ({_short(sweep.varied(index))}): {err}") from err
    ex = experiment(sweep.experiment)
    sweep.observer.mkdir(parents=True, exist_ok=True)
    observer = _sweep_observer_class()(sweep.observer, index)
    updates = sweep.config_updates(index)
    meta = {"sweep": {"name": sweep.name, "file": str(sweep.path), "index": index, "config_updates": dict(updates)}}
    checkpoint = resumable_checkpoint(sweep, index)
    if checkpoint is not None:
        updates["resume_from"] = str(checkpoint)
        meta["sweep"]["resumed_from"] = checkpoint.parent.name
        print(f"sweep task {index}: resuming from {checkpoint}", file=sys.stderr)
    saved_observers = list(ex.observers)
    saved_handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR2)}
    for signum, handler in saved_handlers.items():
        if handler in (signal.SIG_DFL, None):
            signal.signal(signum, _raise_interrupt)
    ex.observers[:] = [observer]
    status = "COMPLETED"
    try:
        ex.run(config_updates=updates, named_configs=list(sweep.named_configs),
               meta_info=meta, options={"--capture": "sys"})
    except (KeyboardInterrupt, SacredInterrupt):
        status = "INTERRUPTED"
        traceback.print_exc()
    except Exception:
        status = "FAILED"
        traceback.print_exc()
    finally:
        ex.observers[:] = saved_observers
        for signum, handler in saved_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    run_dir = Path(observer.dir) if observer.dir else None
    if run_dir is not None:
        # The experiment may end a run on its own terms (e.g. a SacredInterrupt subclass); the
        # stored status is the truth.
        status = _read_json(run_dir / "run.json").get("status", status)
    return status, run_dir


def run_batch(sweep: Sweep, indices: list[int], validate_all: bool = True) -> list[tuple[int, str, Path | None]]:
    """Run the tasks ``indices`` as one batched computation.

    The tasks must share every config key but the experiment's replica keys (student_teacher:
    seed, lr, lmbda, noise schedule and initial scales, :data:`studentteacher.replicas.REPLICA_KEYS`;
    particle_flow: seed, step_size, lmbda, noise_level, noise_until, :data:`studentteacher.flows.REPLICA_KEYS`).
    Each task is still its own Sacred run in its own ``<index>-<attempt>`` directory, with the
    metrics of its plain run. When a task would resume from a checkpoint, the tasks run one by
    one instead. Returns (index, status, run directory) per task.
    """
    from .replicas import check_compatible

    if not indices or len(set(indices)) != len(indices):
        raise SweepError(f"a batch needs one or more distinct task indices, got {indices}")
    for index in indices:
        sweep.config_updates(index)  # names an index out of range
    if validate_all:
        validate(sweep)
    configs = []
    for index in indices:
        try:
            config = resolved_config(sweep, index)
            checked = validator(sweep.experiment)(config)  # the validated config, or None
            configs.append(config if checked is None else checked)
        except ValueError as err:
            raise SweepError(f"sweep {sweep.path}: index {index} ({_short(sweep.varied(index))}): {err}") from err
    if len(indices) == 1 or any(resumable_checkpoint(sweep, index) is not None for index in indices):
        return [(index, *run_task(sweep, index, validate_all=False)) for index in indices]
    try:
        check_compatible(configs, _attribute(EXPERIMENTS[sweep.experiment].replica_keys))
    except ValueError as err:
        raise SweepError(f"sweep {sweep.path}: tasks {indices[0]}..{indices[-1]} cannot be batched: {err}") from err
    experiment(sweep.experiment)
    module = _MODULES[sweep.experiment]
    sweep.observer.mkdir(parents=True, exist_ok=True)
    observers = [_sweep_observer_class()(sweep.observer, index) for index in indices]
    options = [
        dict(config_updates=sweep.config_updates(index), named_configs=list(sweep.named_configs),
             meta_info={"sweep": {"name": sweep.name, "file": str(sweep.path), "index": index,
                                  "config_updates": dict(sweep.config_updates(index))}},
             options={"--capture": "no"}, observers=[observer])
        for index, observer in zip(indices, observers)
    ]
    statuses = module.run_replicas(options)
    results = []
    for index, state, observer in zip(indices, statuses, observers):
        run_dir = Path(observer.dir) if observer.dir else None
        if run_dir is not None:
            state = _read_json(run_dir / "run.json").get("status", state)
        results.append((index, state, run_dir))
    return results


# ---------------------------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------------------------


@dataclass
class TaskStatus:
    """The state of one index, from its latest attempt (and SLURM's queue when available)."""

    index: int
    state: str  # one of STATES
    attempts: int  # run directories of this index
    run_id: str | None  # the latest attempt's directory name
    detail: str = ""  # fail reason, heartbeat age, SLURM job
    result: Any = None

    def as_dict(self) -> dict:
        return {"index": self.index, "state": self.state, "attempts": self.attempts,
                "run_id": self.run_id, "detail": self.detail, "result": self.result}


def _attempt_dirs(observer: Path) -> list[tuple[int, int, Path]]:
    """(index, attempt, directory) of every sweep run directory under ``observer``."""
    if not observer.is_dir():
        return []
    found = []
    for entry in observer.iterdir():
        match = RUN_ID.match(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), int(match.group(2)), entry))
    return found


def _read_json(path: Path) -> dict:
    """A JSON file, retried briefly (Sacred's own observer writes in place); {} if unreadable."""
    for _ in range(5):
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, OSError):
            time.sleep(0.1)
    return {}


def _parse_time(text: str | None) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _fail_reason(run: dict) -> str:
    lines = [line.strip() for chunk in run.get("fail_trace") or [] for line in str(chunk).splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else "no fail_trace recorded"


def _state_of(run: dict, stale_after: float, now: dt.datetime) -> tuple[str, str]:
    status = run.get("status")
    if status == "COMPLETED":
        resumed = ((run.get("meta") or {}).get("sweep") or {}).get("resumed_from")
        return "completed", f"resumed from {resumed}" if resumed else ""
    if status == "FAILED":
        return "failed", _fail_reason(run)
    if status == "INTERRUPTED":
        return "interrupted", ""
    if status in ("RUNNING", "QUEUED", None):
        beat = _parse_time(run.get("heartbeat")) or _parse_time(run.get("start_time"))
        if beat is None:
            return "running", "no heartbeat yet"
        age = (now - beat).total_seconds()
        if age > stale_after:
            return "dead", f"RUNNING but last heartbeat {age:.0f} s ago"
        return "running", f"heartbeat {age:.0f} s ago"
    return "failed", f"unexpected status {status!r}"  # e.g. a custom interrupt status


def slurm_queue(sweep: Sweep) -> dict[int, str]:
    """Indices of this sweep that SLURM still has (pending or running): index -> 'JOB_TASK STATE'.

    Read from this sweep's submission records and ``squeue``; empty without SLURM.
    """
    records = _submissions(sweep)
    if not records or shutil.which("squeue") is None:
        return {}
    tasks = {str(r["job_id"]): r for r in records}
    done = subprocess.run(["squeue", "--me", "--noheader", "--array", "--format=%F %K %T"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return {}
    queued = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in tasks and parts[1].isdigit():
            record, task = tasks[parts[0]], int(parts[1])
            covered = record["groups"][task] if "groups" in record else [int(record["offset"]) + task]
            for index in covered:
                queued[index] = f"SLURM job {parts[0]}_{parts[1]} {parts[2]}"
    return queued


def status(sweep: Sweep, stale_after: float = 120.0) -> list[TaskStatus]:
    """The state of every index of the sweep (see the module docstring), in index order."""
    latest: dict[int, tuple[int, Path]] = {}
    counts: dict[int, int] = {}
    for index, attempt, path in _attempt_dirs(sweep.observer):
        counts[index] = counts.get(index, 0) + 1
        if index not in latest or attempt > latest[index][0]:
            latest[index] = (attempt, path)
    queued = slurm_queue(sweep)
    now = dt.datetime.utcnow()
    statuses = []
    for index in range(len(sweep)):
        if index not in latest:
            state, detail, run_id, result = "missing", "", None, None
        else:
            path = latest[index][1]
            run = _read_json(path / "run.json")
            state, detail = _state_of(run, stale_after, now)
            run_id, result = path.name, run.get("result")
        if index in queued and state != "running":
            state, detail = "queued", queued[index]
        statuses.append(TaskStatus(index, state, counts.get(index, 0), run_id, detail, result))
    return statuses


def format_status(sweep: Sweep, statuses: list[TaskStatus]) -> str:
    """A plain-text table of :func:`status`, one line per index, and a count per state."""
    lines = [f"{'index':>5}  {'state':<11}  {'attempts':>8}  {'run':<9}  config / detail"]
    for s in statuses:
        detail = _short(sweep.varied(s.index)) + (f"  | {s.detail}" if s.detail else "")
        lines.append(f"{s.index:>5}  {s.state:<11}  {s.attempts:>8}  {s.run_id or '-':<9}  {detail}")
    counts = {state: sum(s.state == state for s in statuses) for state in STATES}
    lines.append(f"{len(statuses)} tasks: " + ", ".join(f"{n} {state}" for state, n in counts.items() if n))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# SLURM submission
# ---------------------------------------------------------------------------------------------

SUBMIT_OPTIONS: dict[str, tuple[str, str]] = {
    # name: (pattern of allowed values, description)
    "partition": (r"[A-Za-z0-9_.,-]+", "a partition name (or comma-separated names)"),
    "time": (r"(\d+-)?\d+(:\d+){0,2}|UNLIMITED|INFINITE", "a SLURM time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS"),
    "mem": (r"\d+[KMGT]?", "memory per node, e.g. 4000, 8G"),
    "gpus": (r"([A-Za-z0-9_-]+:)?\d+", "a GPU count, optionally typed (a100:1)"),
    "cpus_per_task": (r"[1-9]\d*", "a positive integer"),
    "requeue": (r"True|False", "true to let SLURM requeue a task after a node failure or preemption"),
}


def check_options(options: dict) -> dict:
    """Validate submit options; unknown names and malformed values raise :class:`SweepError`."""
    clean = {}
    for name, value in options.items():
        if name not in SUBMIT_OPTIONS:
            raise SweepError(f"unknown submit option {name!r}; valid options: {', '.join(SUBMIT_OPTIONS)}")
        if value is None:
            continue
        pattern, description = SUBMIT_OPTIONS[name]
        if name == "requeue" and not isinstance(value, bool):
            raise SweepError(f"submit option 'requeue': got {value!r}; allowed: true or false")
        if not re.fullmatch(pattern, str(value)):
            raise SweepError(f"submit option {name!r}: got {value!r}; allowed: {description}")
        clean[name] = value
    return clean


def sbatch_lines(options: dict) -> list[str]:
    """``#SBATCH`` lines for validated submit options, in :data:`SUBMIT_OPTIONS` order."""
    lines = []
    for name in SUBMIT_OPTIONS:
        value = options.get(name)
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        lines.append(f"#SBATCH {flag}" if value is True else f"#SBATCH {flag}={value}")
    return lines


def array_spec(task_ids: list[int]) -> str:
    """SLURM ``--array`` value for sorted task ids: runs become ranges (``0-3,7,9-10``)."""
    parts, start = [], None
    for position, task in enumerate(task_ids):
        if start is None:
            start = task
        if position + 1 == len(task_ids) or task_ids[position + 1] != task + 1:
            parts.append(str(start) if start == task else f"{start}-{task}")
            start = None
    return ",".join(parts)


def split_array(indices: list[int], max_array_size: int) -> list[tuple[int, list[int]]]:
    """Split sweep indices into (offset, task ids) chunks whose task ids are < ``max_array_size``.

    SLURM rejects array task ids >= MaxArraySize; each chunk is one submission whose task
    ``t`` runs sweep index ``offset + t``. Offsets are multiples of ``max_array_size``, so in
    the usual case (every index < MaxArraySize) the SLURM task id *is* the sweep index.
    """
    chunks: dict[int, list[int]] = {}
    for index in sorted(set(indices)):
        offset = index // max_array_size * max_array_size
        chunks.setdefault(offset, []).append(index - offset)
    return list(chunks.items())


def batch_groups(sweep: Sweep, indices: list[int], size: int) -> list[list[int]]:
    """``indices`` (in order) cut into groups of at most ``size`` tasks that can run as one batch:
    a task joins the open group when the group has room and the task's config differs from the
    group's first only in the experiment's replica keys; otherwise it opens a new group."""
    from .replicas import check_compatible

    if size < 1:
        raise SweepError(f"--batch must be >= 1, got {size}")
    keys = _attribute(EXPERIMENTS[sweep.experiment].replica_keys)
    groups: list[list[int]] = []
    first_config: dict = {}
    for index in sorted(set(indices)):
        config = resolved_config(sweep, index)
        if groups and len(groups[-1]) < size:
            try:
                check_compatible([first_config, config], keys)
                groups[-1].append(index)
                continue
            except ValueError:
                pass
        groups.append([index])
        first_config = config
    return groups


def job_name(sweep: Sweep) -> str:
    """The SLURM job name: ``sweep-<file stem>`` with anything unusual replaced by ``_``."""
    return "sweep-" + re.sub(r"[^A-Za-z0-9_.-]", "_", sweep.name)


def render_script(*, sweep_name: str, job_name: str, array: str, options: dict, python: str, workdir: str,
                  sweep_file: str, observer: str, offset: int | None = None, groups: list[list[int]] | None = None,
                  template: Path | None = None) -> str:
    """Fill ``slurm/array.sbatch`` (task t runs index ``offset + t``) or, with ``groups``,
    ``slurm/array_batch.sbatch`` (task t runs the indices ``groups[t]`` as one batch): paths are
    shell-quoted, options become ``#SBATCH`` lines.

    Values that end up outside shell quoting (the job name, the array, the options) are checked
    to contain no whitespace or quotes; the sweep name appears only in a comment, so it may not
    contain a newline.
    """
    for name, value in [("job_name", job_name), ("array", array)]:
        if not re.fullmatch(r"[A-Za-z0-9_.,%-]+", value):
            raise SweepError(f"{name} {value!r} may contain only letters, digits and _ . , % -")
    if "\n" in sweep_name or "\r" in sweep_name:
        raise SweepError(f"sweep name {sweep_name!r} may not contain a line break")
    values = {
        "sweep_name": sweep_name,
        "job_name": job_name,
        "array": array,
        "sbatch_options": "\n".join(sbatch_lines(check_options(options))),
        "python": shlex.quote(python),
        "workdir": shlex.quote(workdir),
        "sweep_file": shlex.quote(sweep_file),
        "observer": shlex.quote(observer),
    }
    if groups is None:
        values["offset"] = str(int(offset))
    else:
        values["groups"] = " ".join(",".join(str(int(index)) for index in group) for group in groups)
    template = template or (TEMPLATE if groups is None else BATCH_TEMPLATE)
    text = template.read_text()
    placeholders = set(re.findall(r"\{\{(\w+)\}\}", text))
    if placeholders != set(values):
        raise SweepError(f"template {template}: placeholders {sorted(placeholders)} != {sorted(values)}")
    if not values["sbatch_options"]:
        text = text.replace("{{sbatch_options}}\n", "")
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)


def max_array_size() -> int:
    """The cluster's MaxArraySize, from ``scontrol show config``."""
    if shutil.which("scontrol") is None:
        raise SubmitError("scontrol is not on PATH: is SLURM installed? (scripts/slurm_up.sh sets up a local one)")
    done = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SubmitError(f"`scontrol show config` failed (exit {done.returncode}): {done.stderr.strip()}")
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", done.stdout, re.MULTILINE)
    if not match:
        raise SubmitError("`scontrol show config` does not list MaxArraySize")
    return int(match.group(1))


def log_dir(sweep: Sweep) -> Path:
    """Where array scripts, SLURM logs (``%A_%a.out``) and submission records go."""
    return sweep.observer / "slurm"


def _submissions(sweep: Sweep) -> list[dict]:
    path = log_dir(sweep) / "submissions.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Submission:
    """One sbatch call: its job id (None in a dry run), index offset, sweep indices and script;
    for a batched submission, the indices of each array task (``groups[t]``)."""

    job_id: str | None
    offset: int
    indices: list[int]
    script: Path
    text: str
    command: list[str]
    groups: list[list[int]] | None = None


def submit(sweep: Sweep, options: dict | None = None, *, all_indices: bool = False,
           indices: list[int] | None = None, dry_run: bool = False, stale_after: float = 120.0,
           max_size: int | None = None, batch: int = 1) -> list[Submission]:
    """Submit the sweep as SLURM array job(s); return the submissions (nothing to do: []).

    Validates the options and every config first. Submits the indices whose state is failed,
    interrupted, dead or missing (``all_indices``: every index; ``indices``: exactly those),
    split at the cluster's MaxArraySize (``max_size`` overrides it, only to a smaller value).
    With ``batch`` > 1 each array task runs a group of up to ``batch`` compatible indices as one
    batched computation (:func:`batch_groups`, ``slurm/array_batch.sbatch``).
    Each rendered script is written to ``<observer>/slurm/`` and submitted with ``sbatch
    --parsable``; a non-zero exit or an unparsable job id raises :class:`SubmitError`. A dry run
    writes and submits nothing.
    """
    options = check_options(options or {})
    validate(sweep)
    if indices is not None:
        chosen = sorted(set(indices))
        for index in chosen:
            sweep.config_updates(index)
    elif all_indices:
        chosen = list(range(len(sweep)))
    else:
        chosen = [s.index for s in status(sweep, stale_after) if s.state in RESUBMIT_STATES]
    if not chosen:
        return []
    if not dry_run and shutil.which("sbatch") is None:
        raise SubmitError("sbatch is not on PATH: is SLURM installed? (scripts/slurm_up.sh sets up a local one)")
    limit = max_array_size() if shutil.which("scontrol") or not dry_run else 1001
    if max_size is not None:
        limit = min(limit, max_size)
    logs = log_dir(sweep)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    submissions = []
    common = dict(sweep_name=sweep.name, job_name=job_name(sweep), options=options, python=sys.executable,
                  workdir=os.getcwd(), sweep_file=str(sweep.path), observer=str(sweep.observer))
    if batch > 1:
        groups = batch_groups(sweep, chosen, batch)
        chunks = [(0, list(range(len(part))), part) for part in (groups[i:i + limit] for i in range(0, len(groups), limit))]
    else:
        chunks = [(offset, task_ids, None) for offset, task_ids in split_array(chosen, limit)]
    for number, (offset, task_ids, task_groups) in enumerate(chunks):
        text = render_script(array=array_spec(task_ids), offset=offset, groups=task_groups, **common)
        script = logs / f"array-{stamp}-{number}.sbatch"
        # Paths go to sbatch as arguments (no quoting rules of #SBATCH lines); % is SLURM's escape.
        output = str(logs).replace("%", "%%") + "/%A_%a.out"
        command = ["sbatch", "--parsable", f"--output={output}", str(script)]
        covered = [offset + t for t in task_ids] if task_groups is None else [i for group in task_groups for i in group]
        submission = Submission(None, offset, covered, script, text, command, task_groups)
        submissions.append(submission)
        if dry_run:
            continue
        logs.mkdir(parents=True, exist_ok=True)
        script.write_text(text)
        done = subprocess.run(command, capture_output=True, text=True)
        match = re.fullmatch(r"(\d+)(;\S+)?", done.stdout.strip())
        if done.returncode != 0 or not match:
            raise SubmitError(f"sbatch failed (exit {done.returncode}) for {script}:\n"
                              f"stdout: {done.stdout.strip()}\nstderr: {done.stderr.strip()}")
        submission.job_id = match.group(1)
        record = {"job_id": submission.job_id, "offset": offset, "indices": submission.indices,
                  "script": str(script), "time": dt.datetime.now().isoformat(timespec="seconds")}
        if task_groups is not None:
            record["groups"] = task_groups
        with open(logs / "submissions.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
    return submissions


# ---------------------------------------------------------------------------------------------
# Collect
# ---------------------------------------------------------------------------------------------


def collect(sweep: Sweep):
    """(per-run table, summary table) of the final results of the completed tasks.

    The per-run table has the index, the varied keys (seed included), the run id and every
    scalar of the run's result; the summary groups by the varied keys except the seed and gives
    mean, std and count of each result over the seeds. Both are pandas DataFrames.
    """
    import pandas as pd

    rows = []
    for s in status(sweep):
        if s.state != "completed":
            continue
        result = s.result if isinstance(s.result, dict) else {"result": s.result}
        scalars = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        rows.append({"index": s.index, **sweep.varied(s.index), "run_id": s.run_id, **scalars})
    runs = pd.DataFrame(rows)
    if runs.empty:
        return runs, runs
    metrics = [c for c in runs.columns if c not in ("index", "run_id", *sweep.varied_keys)]
    keys = [k for k in sweep.varied_keys if k != "seed"]
    plain = (str, int, float, bool)
    table = runs.assign(**{k: runs[k].map(lambda v: v if isinstance(v, plain) else repr(v)) for k in keys})
    if keys:
        summary = table.groupby(keys, sort=False)[metrics].agg(["mean", "std", "count"])
    else:
        summary = table[metrics].agg(["mean", "std", "count"])
    return runs, summary


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but an unknown option is reported with the full list of valid ones."""

    def error(self, message):
        valid = sorted({s for a in self._actions for s in a.option_strings})
        if "unrecognized arguments" in message and valid:
            message += "; valid options: " + ", ".join(valid)
        super().error(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m studentteacher.sweep",
                     description="Sweeps from YAML files; one task per index; SLURM array jobs.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    parser.commands = {}

    def command(name, help):
        sub = commands.add_parser(name, help=help, description=help)
        parser.commands[name] = sub
        sub.add_argument("file", help="the sweep file (YAML)")
        sub.add_argument("--observer", help="observer directory (default: the file's, or runs/<file stem>)")
        return sub

    command("count", "print the number of tasks")
    sub = command("list", "print index -> varied keys")
    sub.add_argument("--json", action="store_true", help="the full config updates per index, as JSON")
    command("check", "validate every config of the sweep")
    sub = command("run", "run one task in this process")
    which = sub.add_mutually_exclusive_group(required=True)
    which.add_argument("--index", type=int, help="the task index")
    which.add_argument("--indices", help="comma-separated task indices, run as one batched computation")
    sub.add_argument("--batch", type=int, default=1,
                     help="with --index: run tasks INDEX .. INDEX+BATCH-1 as one batched computation (each "
                          "task stays its own run)")
    sub.add_argument("--validate", choices=("all", "task"), default="all",
                     help="validate every config of the sweep first (all, the default) or only this task's "
                          "(task: what array tasks do, since submit validated them all)")
    sub = command("status", "print the state of every index")
    sub.add_argument("--json", action="store_true", help="as JSON")
    sub.add_argument("--stale-after", type=float, default=120.0, help="seconds without heartbeat -> dead (120)")
    sub = command("submit", "submit the missing/failed/interrupted/dead indices as SLURM array job(s)")
    sub.add_argument("--all", action="store_true", help="submit every index")
    sub.add_argument("--batch", type=int, default=1,
                     help="each array task runs up to BATCH compatible indices as one batched computation")
    sub.add_argument("--dry-run", action="store_true", help="print the scripts and sbatch commands only")
    sub.add_argument("--stale-after", type=float, default=120.0, help="seconds without heartbeat -> dead (120)")
    for name, (_, description) in SUBMIT_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        if name == "requeue":
            sub.add_argument(flag, action="store_true", default=None, help=description)
        else:
            sub.add_argument(flag, dest=name, help=description)
    sub = command("collect", "print a table of the final metrics per config")
    sub.add_argument("--runs", action="store_true", help="also print one row per run")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the command's parser, which lists its own valid options
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        sweep = load(args.file, observer=args.observer)
        if args.command == "count":
            print(len(sweep))
        elif args.command == "list":
            if args.json:
                print(json.dumps([sweep.config_updates(i) for i in range(len(sweep))], indent=1))
            else:
                for index in range(len(sweep)):
                    print(f"{index:>5}  {_short(sweep.varied(index))}")
        elif args.command == "check":
            validate(sweep)
            print(f"{sweep.path}: all {len(sweep)} configs are valid")
        elif args.command == "run":
            if args.indices is not None:
                try:
                    indices = [int(part) for part in args.indices.split(",")]
                except ValueError:
                    raise SweepError(f"--indices must be comma-separated integers, got {args.indices!r}") from None
            elif args.batch < 1:
                raise SweepError(f"--batch must be >= 1, got {args.batch}")
            else:
                indices = [i for i in range(args.index, args.index + args.batch) if i < len(sweep)] or [args.index]
            outcomes = run_batch(sweep, indices, validate_all=args.validate == "all")
            for index, state, run_dir in outcomes:
                print(f"sweep task {index}: {state} ({run_dir})", file=sys.stderr)
            codes = [{"COMPLETED": EXIT_COMPLETED, "INTERRUPTED": EXIT_INTERRUPTED}.get(state, EXIT_FAILED)
                     for _, state, _ in outcomes]
            return EXIT_FAILED if EXIT_FAILED in codes else max(codes)
        elif args.command == "status":
            statuses = status(sweep, args.stale_after)
            if args.json:
                print(json.dumps([s.as_dict() for s in statuses], indent=1))
            else:
                print(format_status(sweep, statuses))
        elif args.command == "submit":
            options = {name: getattr(args, name) for name in SUBMIT_OPTIONS}
            submissions = submit(sweep, options, all_indices=args.all, dry_run=args.dry_run,
                                 stale_after=args.stale_after, batch=args.batch)
            if not submissions:
                print("nothing to submit: every index is completed, running or queued")
            for s in submissions:
                if args.dry_run:
                    print(f"# would run: {shlex.join(s.command)}\n{s.text}")
                else:
                    batches = "" if s.groups is None else f" in {len(s.groups)} batched tasks"
                    print(f"submitted job {s.job_id}: indices {array_spec(sorted(s.indices))}{batches} ({s.script})")
        elif args.command == "collect":
            # studentteacher.results (runs -> one tidy table) takes over once it offers collect_sweep
            results = _results_module()
            if results is not None and hasattr(results, "collect_sweep"):
                print(results.collect_sweep(sweep))
            else:
                runs, summary = collect(sweep)
                if runs.empty:
                    print("no completed runs yet")
                else:
                    if args.runs:
                        print(runs.to_string(index=False), end="\n\n")
                    print(summary.to_string())
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    except SubmitError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _results_module():
    try:
        return importlib.import_module("studentteacher.results")
    except ImportError:
        return None


if __name__ == "__main__":
    sys.exit(main())
