"""The backend interface: a way to run a sweep's tasks somewhere (a SLURM array, this machine).

A backend is built from the keyword options it declares in ``OPTIONS`` (unknown names and
malformed values raise :class:`~studentteacher.sweep.spec.SweepError` listing the valid ones),
submits chosen indices (:meth:`Backend.submit`) and says which indices it still holds
(:meth:`Backend.queued`), so that ``status`` shows them ``queued`` and ``submit`` leaves them be.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from ..spec import Sweep, SweepError


class SubmitError(RuntimeError):
    """The backend could not submit (sbatch or scontrol failed, ...); the message says why."""


@dataclass(frozen=True)
class Option:
    """A submit option: the pattern its value must match (None: a true/false flag) and what it means."""

    pattern: str | None
    description: str


def check_options(options: dict, valid: dict[str, Option], backend: str) -> dict:
    """``options`` without the None values, each checked against ``valid``; SweepError otherwise."""
    clean = {}
    for name, value in options.items():
        if name not in valid:
            raise SweepError(f"unknown submit option {name!r}; valid options: {', '.join(valid)} "
                             f"(backend {backend})")
        if value is None:
            continue
        option = valid[name]
        if option.pattern is None and not isinstance(value, bool):
            raise SweepError(f"submit option {name!r}: got {value!r}; allowed: true or false")
        if option.pattern is not None and not re.fullmatch(option.pattern, str(value)):
            raise SweepError(f"submit option {name!r}: got {value!r}; allowed: {option.description}")
        clean[name] = value
    return clean


class Backend(ABC):
    """Runs sweep tasks somewhere. Subclasses set ``name`` and ``OPTIONS``."""

    name: ClassVar[str]
    OPTIONS: ClassVar[dict[str, Option]] = {}

    def __init__(self, **options):
        """Keep the checked ``options`` (None values dropped) as ``self.options``."""
        self.options = check_options(options, self.OPTIONS, self.name)

    @abstractmethod
    def submit(self, sweep: Sweep, indices: list[int], batch: int = 1, dry_run: bool = False) -> list:
        """Submit the (sorted, distinct, valid) ``indices``; with ``batch`` > 1 compatible ones
        run in groups of up to ``batch`` as one batched computation. Returns the backend's records
        of what it did (each with ``indices``); a dry run does nothing and returns what it would do."""

    @abstractmethod
    def report(self, submissions: list, dry_run: bool = False) -> str:
        """What the command line prints once :meth:`submit` returned ``submissions``."""

    def exit_status(self, submissions: list) -> int:
        """The command line's exit status after :meth:`submit` (0: the tasks were handed over)."""
        return 0

    @classmethod
    @abstractmethod
    def queued(cls, sweep: Sweep) -> dict[int, str]:
        """Indices of ``sweep`` this backend still holds (waiting or starting): index -> detail."""
