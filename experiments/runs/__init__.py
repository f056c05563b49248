"""Sacred at the edge: how the experiment scripts' runs are checked, started, trained and stored.

``train.py`` (``student_teacher``), ``flows2d.py`` (``particle_flow``) and ``dmmd.py`` (``dmmd``) define a
config, named configs and a function that trains a :class:`Batch` of R >= 1 runs together; they hand it
to :class:`ExperimentRuns` and call :meth:`ExperimentRuns.run_as_script`. The rest lives here, once:

* :mod:`.storage`: the default :class:`RunStore` (a FileStorageObserver) in
  :func:`studentteacher.results.default_runs_dir` (``$STUDENTTEACHER_RUNS`` or ``./runs``), ``-F DIR``,
  the observers from the environment; a write that fails (a full disk) fails the run with the reason;
  metrics are stored right before every checkpoint;
* :mod:`.stop_signals`: SIGTERM and SIGUSR2 set :data:`STOP`, which the loops poll, from before the
  first run is created until the process ends;
* :mod:`.command_line`: Sacred's flags act as in Sacred, with one run and with ``replicas > 1`` alike,
  but those refused with the reason (``-s`` always; ``-i``, ``-q``, ``-D`` and ``-C sys|fd`` with
  replicas > 1); ``-n NAME`` names the run in run.json's ``meta.name``;
* :mod:`.replica_groups`: R Sacred runs trained as one batched computation;
* :mod:`.experiment_runs`: every run's config is resolved, validated and checked against the machine
  (memory, the ``resume_from`` checkpoint) before any run starts; a refusal is one line ``error: ...``
  on stderr, exit status 2, and no run directory; ``resume_from`` takes the seed and the config from
  the checkpoint (a replica's checkpoint resumes alone; replica 0's resumes the whole batch);
* :mod:`.sweep_entry`: a sweep task runs the same steps as a command line (what
  :mod:`studentteacher.sweep` calls through :mod:`experiments.registry`).

Exit statuses, as ``python -m studentteacher.sweep run``: 0 completed, 1 failed, 2 bad input, 3 interrupted.
"""
from experiments.quiet import quiet

quiet()  # before Sacred is imported
from .experiment_runs import BEAT_SECONDS, ExperimentRuns  # noqa: E402
from .replica_groups import Batch, RunInterrupted  # noqa: E402
from .stop_signals import STOP, stop_signals  # noqa: E402
from .storage import RunStorageError, RunStore  # noqa: E402

__all__ = ["BEAT_SECONDS", "STOP", "Batch", "ExperimentRuns", "RunInterrupted", "RunStorageError", "RunStore",
           "stop_signals"]
