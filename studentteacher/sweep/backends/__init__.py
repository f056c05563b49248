"""Where a sweep's tasks run: one module per backend, one interface (:mod:`.base`), a registry.

``BACKENDS`` maps a name to its class; :func:`make_backend` builds one from the options it
declares. ``slurm`` (the default of ``submit``) renders and submits array jobs; ``local`` runs
the tasks on this machine, N at a time.
"""
from __future__ import annotations

from ..spec import Sweep, SweepError
from .base import Backend, Option, SubmitError
from .local import LocalBackend
from .slurm import SlurmBackend

BACKENDS: dict[str, type[Backend]] = {"slurm": SlurmBackend, "local": LocalBackend}


def make_backend(name: str, options: dict | None = None) -> Backend:
    """The backend ``name`` built from ``options``; SweepError for an unknown name or option."""
    if name not in BACKENDS:
        raise SweepError(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")
    return BACKENDS[name](**(options or {}))


def queued(sweep: Sweep) -> dict[int, str]:
    """Indices of ``sweep`` that some backend still holds (waiting or starting): index -> detail."""
    held: dict[int, str] = {}
    for backend in BACKENDS.values():
        held.update(backend.queued(sweep))
    return held


__all__ = ["BACKENDS", "Backend", "LocalBackend", "Option", "SlurmBackend", "SubmitError", "make_backend", "queued"]
