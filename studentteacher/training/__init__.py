"""The epoch loop of the student-teacher problem, independent of Sacred.

One loop, :class:`TrainingLoop` (:mod:`~.loop`), trains R >= 1 replicas: runs whose configs differ
at most in :data:`~studentteacher.replicas.REPLICA_KEYS` (seed, lr, lambda, noise schedule, initial
scales). Each replica (:class:`~.state.ReplicaState`) has its own teacher, datasets, student and
random streams, one stream each from its seed, and draws its batch orders and noise with its own
generators in the order its run alone draws them. :class:`Trainer` is the plain run (R = 1) and
:class:`BatchedTrainer` trains R runs at once; both are this loop. How the particles are held is
the one difference (:mod:`~.layouts`: ``[N, ...]`` for one replica, ``[R, N, ...]`` vmapped for R).

Schedules of the noise, lambda and the step size: :mod:`~.schedules`. Metrics every ``log_every``
epochs (and at epoch 0 and the last epoch): ``train_mmd2`` and ``valid_mmd2`` (unhalved MMD2_hat
over the whole sets, clean particles), ``loss`` (the mean batch loss the rule optimised during the
last epoch; at epoch 0 its objective on the training set), ``noise_level``, ``lmbda``,
``epoch_seconds``. The step never reads a value back to the host. When a replica fails (non-finite
or run-away): :mod:`~.failures`. Checkpoints are per replica and have one format, a plain run's:
:mod:`~.resume`.
"""
from __future__ import annotations

from ..errors import TrainingDiverged, TrainingInterrupted
from .failures import MMD2_GROWTH, SCALE_GROWTH
from .layouts import OneReplica, StackedReplicas
from .loop import BatchedTrainer, EpochClock, Trainer, TrainingLoop, compile_step
from .resume import (CHECKPOINT_KEYS, RESUMABLE_CHANGES, check_resume, load_checkpoint, read_checkpoint,
                     start_replica)  # fmt: skip
from .schedules import MIN_ADAPTIVE_LR, log_due, noise_at
from .state import EpochMetrics, ReplicaStart, ReplicaState, ReplicaView

__all__ = [
    "TrainingLoop", "Trainer", "BatchedTrainer", "TrainingDiverged", "TrainingInterrupted", "noise_at", "log_due",
    "MIN_ADAPTIVE_LR", "MMD2_GROWTH", "SCALE_GROWTH", "RESUMABLE_CHANGES", "CHECKPOINT_KEYS", "check_resume",
    "read_checkpoint", "load_checkpoint", "start_replica", "EpochMetrics", "ReplicaState", "ReplicaStart",
    "ReplicaView", "OneReplica", "StackedReplicas", "EpochClock", "compile_step",
]  # fmt: skip
