"""What a student-teacher replica owns besides how the loop holds its particles.

:class:`ReplicaState`: its config, random streams, teacher, datasets, best value and logged history;
:class:`ReplicaStart`: where it starts (epoch, particles, lambda_n, D_0), drawn or from a checkpoint;
:class:`ReplicaView`: replica r as a plain run shows it; :class:`EpochMetrics`: one log epoch's values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..data import Dataset
from ..networks import Params


@dataclass
class EpochMetrics:
    """The values logged at ``epoch`` (metric name -> float)."""

    epoch: int
    values: dict[str, float]


@dataclass
class ReplicaState:
    """What one run owns beside its particles: config, random streams, teacher, datasets, log."""

    config: dict
    generators: dict[str, torch.Generator]
    teacher: Params
    train_set: Dataset
    valid_set: Dataset
    best_valid: float = math.inf
    history: dict[str, list[float]] = field(default_factory=dict)
    failed: bool = False
    runaway_baseline: tuple[float, float] | None = None  # epoch-0 train_mmd2 and weight scale (the run-away rule)

    def record(self, epoch: int, values: dict[str, float]) -> EpochMetrics:
        """Append ``values`` (and the epoch) to the history."""
        for name, value in values.items():
            self.history.setdefault(name, []).append(value)
        self.history.setdefault("epoch", []).append(float(epoch))
        return EpochMetrics(epoch, values)


@dataclass
class ReplicaStart:
    """What a checkpoint restores besides the random streams: epoch, particles, lambda_n, D_0."""

    epoch: int
    params: Params
    lmbda: torch.Tensor  # lambda_n (0-dim); the config's lmbda unless lambda adapts
    drmmd_start: torch.Tensor | None = None  # D_0 of the adaptive schedule



@dataclass
class ReplicaView:
    """Replica r as a plain run shows it: its config, particles ``[N, ...]`` (now) and history."""

    config: dict
    params: Params
    history: dict[str, list[float]]
