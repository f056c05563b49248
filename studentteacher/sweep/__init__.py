"""Sweeps: a YAML file -> an ordered list of configs; run one by index; status; SLURM or local backends.

A sweep file (its keys: docs/contract.md, "Command lines")::

    experiment: student_teacher      # or particle_flow, dmmd
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
command takes ``--observer DIR`` to override it; ``submit`` hands the absolute directory to its
tasks, so they write where ``status`` looks. ``submit`` and ``run`` record the directory for the
sweep file, and a command started elsewhere, whose rule names a directory without runs of the
sweep, reads the recorded one (:mod:`.runs_folder`); ``status`` and ``collect`` name the directory
they read in their first line.

**Run ids.** Task ``I`` stores its run in ``<observer>/<I:05d>-<attempt>`` (``00007-1``, then
``00007-2`` for a resubmission): the directory name is reserved with an atomic ``mkdir``, so
concurrent tasks never race for Sacred's next numeric id, and a rerun never overwrites the
evidence of an earlier attempt. ``status`` uses the latest attempt. The run's ``meta`` in
``run.json`` holds ``sweep = {name, file, index, attempt, config_updates}``.

Command line (``python -m studentteacher.sweep COMMAND FILE ...``)::

    count FILE                    number of tasks
    list FILE [--json]            index -> varied keys (the full config updates with --json)
    check FILE                    validate every config and run the scripts' checks before
                                  work (memory, resume_from), as run and submit do first
    run FILE --index I            run task I here; exit 0 completed, 1 failed, 3 interrupted
                                  (--validate task: check only this task's config, as array
                                  tasks do after submit checked them all); --batch R runs
                                  I .. I+R-1, --indices I,J,K those, as one batched computation
    status FILE [--json]          state of every index (completed, failed, interrupted, running,
                                  dead, queued, missing: :mod:`.status`)
    submit FILE [options]         hand the missing/failed/interrupted/dead indices (--all: every
                                  index) to a backend: --backend slurm (default; an sbatch
                                  array, :mod:`.backends.slurm`) or local (N processes here,
                                  blocking, :mod:`.backends.local`); --dry-run prints what would
                                  run; --batch R: each task runs up to R compatible indices batched
    collect FILE [--runs]         final metrics per config (mean, sd over seeds; --metric, --how)

Exit status 2 for an invalid sweep file, config or submit option (the message names the index
and the key).

Modules: :mod:`.spec` (file -> configs), :mod:`.runs_folder` (where the runs are), :mod:`.tasks`
(validate, run here), :mod:`.status` (states, final tables), :mod:`.submit`, :mod:`.backends`,
:mod:`.cli`. The experiments are those of :mod:`experiments.registry`; Sacred is reached only through
it (an experiment's :class:`experiments.runs.ExperimentRuns`), imported when a config is resolved or
a task runs.
"""
from .backends import BACKENDS, Backend, SubmitError, make_backend
from .backends.slurm import (
    SUBMIT_OPTIONS, Submission, array_spec, check_options, job_name, log_dir, max_array_size,
    render_script, sbatch_lines, slurm_queue, split_array,
)
from .cli import main
from experiments.registry import EXPERIMENTS, ExperimentSpec

from .spec import SWEEP_KEYS, Sweep, SweepError, expand, load
from .status import RESUBMIT_STATES, RUN_ID, STATES, TaskStatus, collect, format_status, status
from .submit import submit
from .tasks import (
    EXIT_COMPLETED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, batch_groups, checked_config, resolved_config,
    resumable_checkpoint, run_batch, run_task, validate,
)

__all__ = [
    "BACKENDS", "Backend", "EXIT_COMPLETED", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_INVALID", "EXPERIMENTS",
    "ExperimentSpec", "RESUBMIT_STATES", "RUN_ID", "STATES", "SUBMIT_OPTIONS", "SWEEP_KEYS", "Submission",
    "SubmitError", "Sweep", "SweepError", "TaskStatus", "array_spec", "batch_groups", "check_options",
    "checked_config", "collect", "expand", "format_status", "job_name", "load", "log_dir", "main", "make_backend",
    "max_array_size", "render_script", "resolved_config", "resumable_checkpoint", "run_batch", "run_task",
    "sbatch_lines", "slurm_queue", "split_array", "status", "submit", "validate",
]
