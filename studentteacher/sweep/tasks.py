"""Validating and running sweep tasks in this process: :func:`run_task`, :func:`run_batch`.

An experiment is reached through :mod:`experiments.registry`: its replica keys, and its
:class:`experiments.runs.ExperimentRuns` (which imports Sacred, on first use), which resolves and validates
its configs.
"""
from __future__ import annotations

import sys
from pathlib import Path

from experiments import registry

from .. import results
from ..progress import progress_seconds
from .runs_folder import record
from .spec import Sweep, SweepError

EXIT_COMPLETED, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 3


def _task_error(sweep: Sweep, index: int, err: Exception) -> SweepError:
    """A SweepError naming the sweep, the index and its varied values, then ``err``."""
    return SweepError(f"sweep {sweep.path}: index {index} ({sweep.describe(index)}): {err}")


def resolved_config(sweep: Sweep, index: int, validated: list[tuple[dict, dict]] | None = None) -> dict:
    """The config Sacred would run for ``index``: defaults, named configs, then the updates.

    Raises :class:`SweepError` naming the index for unknown keys, a named config that does not
    exist or a config the experiment's validator rejects (``validated``: the pairs of
    :meth:`experiments.runs.ExperimentRuns.checked` it adds to).
    """
    try:
        return registry.runs(sweep.experiment).resolve(sweep.config_updates(index), list(sweep.named_configs),
                                                       [] if validated is None else validated)  # fmt: skip
    except ValueError as err:
        raise _task_error(sweep, index, err) from err


def checked_config(sweep: Sweep, index: int) -> dict:
    """The resolved config of ``index`` as the experiment's validator returns it, after the checks its
    script runs before any work (memory, the ``resume_from`` checkpoint); SweepError if invalid."""
    return _validated(sweep, index)[1]


def _validated(sweep: Sweep, index: int) -> tuple[dict, dict]:
    """(resolved config, completed config) of ``index``, checked as :func:`checked_config` says, the config
    validated once; the run of the task takes the pair and does not validate that config again."""
    runs, validated = registry.runs(sweep.experiment), []
    config = resolved_config(sweep, index, validated)
    try:
        checked = runs.checked(config, validated)
        runs.preflight(checked)
    except ValueError as err:
        raise _task_error(sweep, index, err) from err
    return config, checked


def _indices_text(indices: list[int]) -> str:
    """``indices`` (sorted) as 'index 3' or 'indices 0-5, 8'."""
    spans: list[list[int]] = []
    for index in indices:
        if spans and index == spans[-1][1] + 1:
            spans[-1][1] = index
        else:
            spans.append([index, index])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
    return f"{'indices' if len(indices) > 1 else 'index'} {text}"


def validate(sweep: Sweep) -> list[dict]:
    """Validate every config of the sweep; return the complete configs in index order (:func:`_validate_all`)."""
    return [complete for _, complete in _validate_all(sweep)]


def _validate_all(sweep: Sweep) -> list[tuple[dict, dict]]:
    """Validate every config of the sweep; the (resolved, complete) config pairs in index order.

    All invalid indices are reported together in one :class:`SweepError`: each distinct problem once
    (the validator's message, which names the key), with the tasks it affects and the varied values
    of the first. A bad ``$STUDENTTEACHER_PROGRESS``, which every task would refuse, is refused here once.
    """
    try:
        progress_seconds()
    except ValueError as err:
        raise SweepError(f"sweep {sweep.path}: {err}") from None
    configs, problems = [], {}  # problem -> the indices it affects
    for index in range(len(sweep)):
        try:
            configs.append(_validated(sweep, index))
        except SweepError as err:
            problems.setdefault(str(err.__cause__ or err), []).append(index)
    if problems:
        lines = [f"{_indices_text(indices)} ({sweep.describe(indices[0])}{', ...' * (len(indices) > 1)}): {problem}"
                 for problem, indices in problems.items()]  # fmt: skip
        shown = "\n  ".join(lines[:20]) + (f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else "")
        invalid = sum(map(len, problems.values()))
        raise SweepError(f"sweep {sweep.path}: {invalid} of {len(sweep)} configs are invalid:\n  {shown}")
    return configs


def resumable_checkpoint(sweep: Sweep, index: int) -> Path | None:
    """The checkpoint to resume task ``index`` from, or None.

    A task resumes when its latest attempt ended INTERRUPTED (the training experiment writes
    ``checkpoint.pt`` into its run directory on SIGTERM/SIGUSR2, e.g. near the SLURM time limit)
    or was killed while RUNNING (``dead``; a periodic checkpoint of ``checkpoint_every`` may be
    there) and left ``checkpoint.pt``, the experiment has a ``resume_from`` key and the sweep
    does not set it. A FAILED attempt is never resumed.
    """
    if "resume_from" in sweep.config_updates(index):
        return None
    attempts = [(a, path) for i, a, path in results.sweep_attempts(sweep.observer) if i == index]
    if not attempts:
        return None
    latest = max(attempts)[1]
    checkpoint = latest / "checkpoint.pt"
    if results.read_run_json(latest).get("status") not in ("INTERRUPTED", "RUNNING") or not checkpoint.is_file():
        return None
    if "resume_from" not in resolved_config(sweep, index):
        return None
    return checkpoint


def _task(sweep: Sweep, index: int, checkpoint: Path | None) -> dict:
    """What the experiment runs for ``index``: its config updates and the run's ``meta``, resuming
    from ``checkpoint`` when one is given."""
    updates = sweep.config_updates(index)
    meta = {"sweep": {"name": sweep.name, "file": str(sweep.path), "index": index, "config_updates": dict(updates)}}
    if checkpoint is not None:
        updates["resume_from"] = str(checkpoint)
        meta["sweep"]["resumed_from"] = checkpoint.parent.name
        print(f"sweep task {index}: resuming from {checkpoint}", file=sys.stderr)
    return {"index": index, "config_updates": updates, "meta": meta}


def _run(sweep: Sweep, tasks: list[dict], validated: list[tuple[dict, dict]]) -> list[tuple[str, Path | None]]:
    """Run ``tasks`` as the experiment's runs (``validated``: their configs checked already, as pairs of
    :func:`_validated`); (status, run directory) each, the status as stored."""
    try:
        sweep.observer.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SweepError(f"sweep {sweep.path}: observer {sweep.observer}: cannot create it ({err.strerror})") from None
    record(sweep.path, sweep.observer)  # status and collect find the runs from any folder
    try:
        outcomes = registry.runs(sweep.experiment).run_tasks(list(sweep.named_configs), sweep.observer, tasks, validated)
    except ValueError as err:  # refused before any run started (memory, a resume checkpoint, an observer)
        raise SweepError(f"sweep {sweep.path}: {err}") from err
    # The experiment may end a run on its own terms (e.g. a SacredInterrupt subclass): the stored
    # status is the truth.
    return [(results.read_run_json(run_dir).get("status", state) if run_dir else state, run_dir)
            for state, run_dir in outcomes]


def _checked_configs(sweep: Sweep, indices: list[int], validate_all: bool) -> list[tuple[dict, dict]]:
    """The (resolved, complete) configs of ``indices`` (after validating every config when ``validate_all``)."""
    for index in indices:
        sweep.config_updates(index)  # names an index out of range before the (slower) validation
    if validate_all:
        configs = _validate_all(sweep)
        return [configs[index] for index in indices]
    return [_validated(sweep, index) for index in indices]


def run_task(sweep: Sweep, index: int, validate_all: bool = True) -> tuple[str, Path | None]:
    """Run task ``index`` here; return (Sacred status, run directory).

    Validates the sweep first (every config when ``validate_all``, else this task's), then runs
    the experiment with the task's config updates and named configs, stored in
    ``<observer>/<index:05d>-<attempt>``. The status is ``"COMPLETED"``, ``"FAILED"`` or
    ``"INTERRUPTED"`` (SIGTERM, SIGUSR2); the traceback of a failure is printed to stderr. A
    task whose previous attempt was interrupted with a checkpoint resumes from it.
    """
    validated = _checked_configs(sweep, [index], validate_all)
    return _run(sweep, [_task(sweep, index, resumable_checkpoint(sweep, index))], validated)[0]


def run_batch(sweep: Sweep, indices: list[int], validate_all: bool = True) -> list[tuple[int, str, Path | None]]:
    """Run the tasks ``indices`` as one batched computation; (index, status, run directory) each.

    The tasks must share every config key but the experiment's replica keys (student_teacher:
    seed, lr, lmbda, noise schedule and initial scales; particle_flow: seed, step_size, lmbda,
    noise_level, noise_until; dmmd: seed, and its runs go one after the other). Each task is still its own run in its own ``<index>-<attempt>``
    directory, with the metrics of its plain run. When a task would resume from a checkpoint,
    the tasks run one by one instead.
    """
    from ..replicas import check_compatible

    if not indices or len(set(indices)) != len(indices):
        raise SweepError(f"a batch needs one or more distinct task indices, got {indices}")
    validated = _checked_configs(sweep, indices, validate_all)
    configs = [complete for _, complete in validated]
    if len(indices) == 1 or any(resumable_checkpoint(sweep, index) is not None for index in indices):
        return [(index, *run_task(sweep, index, validate_all=False)) for index in indices]
    try:
        check_compatible(configs, registry.replica_keys(sweep.experiment))
    except ValueError as err:
        raise SweepError(f"sweep {sweep.path}: tasks {indices[0]}..{indices[-1]} cannot be batched: {err}") from err
    outcomes = _run(sweep, [_task(sweep, index, None) for index in indices], validated)
    return [(index, *outcome) for index, outcome in zip(indices, outcomes)]


def batch_groups(sweep: Sweep, indices: list[int], size: int) -> list[list[int]]:
    """``indices`` (in order) cut into groups of at most ``size`` tasks that can run as one batch:
    a task joins the open group when the group has room and the task's config differs from the
    group's first only in the experiment's replica keys; otherwise it opens a new group."""
    from ..replicas import check_compatible

    if size < 1:
        raise SweepError(f"--batch must be >= 1, got {size}")
    keys = registry.replica_keys(sweep.experiment)
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


def exit_status(codes: list[int]) -> int:
    """One exit status for several tasks' exit statuses: failed (or invalid) if any failed, else
    interrupted if any was, else completed."""
    if any(code not in (EXIT_COMPLETED, EXIT_INTERRUPTED) for code in codes):
        return EXIT_FAILED
    return EXIT_INTERRUPTED if EXIT_INTERRUPTED in codes else EXIT_COMPLETED
