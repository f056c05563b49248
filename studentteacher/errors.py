"""The errors of the three runners (student-teacher training, the 2-D flows, DMMD), one set for all.

* bad input: :class:`~studentteacher.keys.ConfigError` (a ValueError naming the config key, the
  value and what is allowed), raised before any work;
* a run that diverged: :class:`RunDiverged` (a non-finite loss, particle or metric, or particles
  that ran away; the message names the step or epoch, the quantity and, in a batch, the replica);
* a run stopped on request (a signal): :class:`StoppedOnRequest`, after writing each live
  replica's checkpoint (``checkpoint_paths[r]``, None where none was written).

Each runner raises its own subclass, whose name the stored failure traces of its runs carry (and
the sweep status shows): :class:`TrainingDiverged` and :class:`TrainingInterrupted` (student-teacher),
:class:`FlowDivergedError` and :class:`FlowInterrupted` (2-D flows); DMMD raises :class:`RunDiverged`.
"""
from __future__ import annotations

from .keys import ConfigError

__all__ = ["ConfigError", "RunDiverged", "StoppedOnRequest", "TrainingDiverged", "TrainingInterrupted",
           "FlowDivergedError", "FlowInterrupted"]  # fmt: skip


class RunDiverged(RuntimeError, FloatingPointError):
    """A run went bad: the message says at which step (or epoch), which quantity and, in a batch, which replica."""


class StoppedOnRequest(RuntimeError):
    """The run stopped on request; ``checkpoint_paths[r]``: replica r's checkpoint (None: none written)."""

    def __init__(self, message: str, checkpoint_paths: list[str | None]):
        super().__init__(message)
        self.checkpoint_paths = checkpoint_paths

    @property
    def checkpoint_path(self) -> str | None:
        """The checkpoint of a plain run (replica 0)."""
        return self.checkpoint_paths[0]


class TrainingDiverged(RunDiverged):
    """A student-teacher replica diverged (:mod:`studentteacher.training`: non-finite, or run-away)."""


class TrainingInterrupted(StoppedOnRequest):
    """The student-teacher loop stopped on request after an epoch."""


class FlowDivergedError(RunDiverged):
    """A flow went bad at ``step``: ``quantity`` is "divergence" or "particles" (not finite) or
    "escape" (the particles ran away, :data:`studentteacher.flows.health.RUNAWAY_DIAMETERS`);
    ``trajectory`` holds everything logged before, ``reason`` says what happened."""

    def __init__(self, step: int, quantity: str, trajectory, replica: int | None = None, reason: str | None = None):
        where = "" if replica is None else f" (replica {replica})"
        self.reason = reason or f"{quantity} is not finite"
        super().__init__(f"flow diverged at step {step}{where}: {self.reason}")
        self.step, self.quantity, self.trajectory, self.replica = step, quantity, trajectory, replica


class FlowInterrupted(StoppedOnRequest):
    """A flow stopped on request at the start of ``step``; ``trajectories`` hold what was logged (one per replica)."""

    def __init__(self, step: int, trajectories: list, checkpoint_paths: list[str | None] | None = None):
        super().__init__(f"stopped on request at step {step}", checkpoint_paths or [None] * len(trajectories))
        self.step, self.trajectories = step, trajectories
