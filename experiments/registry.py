"""The experiments, by name: each one's script module (its runs and validator), replica keys, metrics and key spec.

The one list of experiments. :mod:`studentteacher.sweep` reads it (sweep files name an experiment;
``collect`` summarises its metrics; ``--batch`` groups tasks that differ only in its replica keys) and
runs sweep tasks through :func:`runs`. Nothing is imported until asked for: this module imports
neither Sacred nor torch. A new experiment is a script beside ``train.py`` that defines ``runs``
(an :class:`experiments.runs.ExperimentRuns`) and one entry here.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class ExperimentSpec:
    """A sweepable experiment: its script's module (which defines ``runs``, an ExperimentRuns holding its
    config validator), the tuple of config keys in which the replicas of one batched run may differ
    ("module:name"), the metrics that ``collect`` summarises, and its key spec ("module:name" of a dict
    of :class:`studentteacher.keys.Key`, from which its Sacred config takes the defaults)."""

    script: str
    replica_keys: str
    metrics: tuple[str, ...]
    spec: str


EXPERIMENTS: dict[str, ExperimentSpec] = {
    "student_teacher": ExperimentSpec("experiments.train", "studentteacher.replicas:REPLICA_KEYS",
                                      ("valid_mmd2", "train_mmd2"), spec="studentteacher.config:SPEC"),
    "particle_flow": ExperimentSpec("experiments.flows2d", "studentteacher.flows:REPLICA_KEYS",
                                    ("divergence", "mmd2", "w1", "w2"), spec="studentteacher.flows:SPEC"),
    "dmmd": ExperimentSpec("experiments.dmmd", "studentteacher.dmmd:REPLICA_KEYS",
                           ("sample_w1", "sample_w2", "sample_mmd2", "sample_fd", "sample_class_coverage"),
                           spec="studentteacher.dmmd:SPEC"),
}


def _attribute(reference: str):
    """The object named by ``"module:name"``."""
    module, name = reference.split(":")
    return getattr(importlib.import_module(module), name)


def replica_keys(name: str) -> tuple[str, ...]:
    """The config keys in which the batched replicas of experiment ``name`` may differ."""
    return _attribute(EXPERIMENTS[name].replica_keys)


def runs(name: str):
    """The :class:`experiments.runs.ExperimentRuns` of experiment ``name`` (its script imported once; Sacred too)."""
    return importlib.import_module(EXPERIMENTS[name].script).runs
