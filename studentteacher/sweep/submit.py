"""``submit``: hand what did not complete to a backend (SLURM by default, or this machine)."""
from __future__ import annotations

from .backends import Backend, make_backend
from .runs_folder import record
from .spec import Sweep, SweepError
from .status import RESUBMIT_STATES, status
from .tasks import validate


def submit(sweep: Sweep, options: dict | None = None, *, backend: str | Backend = "slurm", all_indices: bool = False,
           indices: list[int] | None = None, dry_run: bool = False, stale_after: float | None = None,
           batch: int = 1) -> list:
    """Submit the sweep's open tasks to ``backend``; return its records (nothing to do: []).

    ``backend`` is a name (built with ``options``) or a built backend. Checks the backend's
    options and every config first. Submits the indices whose state is
    failed, interrupted, dead or missing (``all_indices``: every index; ``indices``: exactly
    those); with ``batch`` > 1 each backend task runs up to ``batch`` compatible indices as one
    batched computation. The ``slurm`` backend returns one
    :class:`~studentteacher.sweep.backends.slurm.Submission` per array job; ``local`` runs the
    tasks before it returns (:mod:`studentteacher.sweep.backends.local`).
    """
    runner = backend if isinstance(backend, Backend) else make_backend(backend, options)
    if batch < 1:
        raise SweepError(f"--batch must be >= 1, got {batch}")
    validate(sweep)
    if indices is not None:
        chosen = sorted(set(indices))
        for index in chosen:
            sweep.config_updates(index)  # names an index out of range
    elif all_indices:
        chosen = list(range(len(sweep)))
    else:
        chosen = [s.index for s in status(sweep, stale_after) if s.state in RESUBMIT_STATES]
    if chosen and not dry_run:
        record(sweep.path, sweep.observer)  # status and collect find the runs from any folder
    return runner.submit(sweep, chosen, batch=batch, dry_run=dry_run) if chosen else []
