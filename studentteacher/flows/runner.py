"""The Euler loop of a flow run: steps, logging, snapshots, checkpoints and the failure rule's stops.

:func:`run_flow` advances a flow (one, or R batched replicas) for ``steps`` Euler steps; at every
``log_every``-th step (and the last) it logs the flow's value, the reference MMD^2, W1, W2
(:mod:`~studentteacher.flows.metrics`), lambda, the step size and the kernel bandwidth, and keeps
snapshots of the particles every ``snapshot_every``-th step (and the last). It writes checkpoints
and resumes from them (:mod:`~studentteacher.flows.resume`). Replicas that go bad stop alone
(:mod:`~studentteacher.flows.health`).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import FlowDivergedError, FlowInterrupted
from .base import FirstVariation, KernelFlow, euler_step, flow_velocity
from .health import BAD_VALUE, ReplicaHealth
from .metrics import FlowRecord, FlowTrajectory, mean_gap, sample_distances
from .resume import Checkpoints, FlowCheckpoint, restore


class _Recorder:
    """The R trajectories: a :class:`FlowRecord` per replica at log steps, snapshots at snapshot steps."""

    def __init__(self, flow: KernelFlow, replicas: int, reference_bandwidth: float, on_log):
        self.targets = flow.target.reshape(replicas, *flow.target.shape[-2:])  # (R, M, d)
        self.fixed_bandwidth = flow.bandwidth  # (...)
        self.reference_bandwidth, self.on_log = reference_bandwidth, on_log
        self.trajectories = [FlowTrajectory() for _ in range(replicas)]

    def record(self, step: int, first: FirstVariation, particles: torch.Tensor, alive: list[bool], logging: bool,
               snapshot: bool) -> None:  # fmt: skip
        views = particles.reshape(len(alive), *particles.shape[-2:])  # (R, N, d)
        bandwidth = self.fixed_bandwidth if first.bandwidth is None else first.bandwidth
        columns = [first.value, first.lmbda, first.step_size, bandwidth]
        values, lmbdas, step_sizes, bandwidths = (column.expand(particles.shape[:-2]).reshape(-1).tolist()
                                                  for column in columns)  # fmt: skip
        for replica in (r for r in range(len(alive)) if alive[r]):
            trajectory, view = self.trajectories[replica], views[replica]
            if logging:
                distances = sample_distances(view, self.targets[replica], self.reference_bandwidth)
                record = FlowRecord(step, values[replica], **distances, lmbda=lmbdas[replica],
                                    step_size=step_sizes[replica], bandwidth=bandwidths[replica],
                                    mean_gap=mean_gap(view, self.targets[replica]), replica=replica)  # fmt: skip
                trajectory.records.append(record)
                if self.on_log is not None:
                    self.on_log(record)
            if snapshot:
                trajectory.snapshot_steps.append(step)
                trajectory.snapshots.append(view.detach().cpu().clone())
            trajectory.particles = view

    def finish(self, particles: torch.Tensor) -> list[FlowTrajectory]:
        """The trajectories, each with its replica's final ``particles: [N, d]``."""
        for trajectory, view in zip(self.trajectories, particles.reshape(len(self.trajectories), *particles.shape[-2:])):
            trajectory.particles = view
        return self.trajectories


def _settle_failures_and_checkpoint(step: int, stop: bool, checkpoints: Checkpoints | None, health: ReplicaHealth, recorder: _Recorder, on_failure,
           state: tuple) -> bool:  # fmt: skip
    """At the start of ``step``: fail newly flagged replicas, write the live ones' checkpoints
    (``state`` = particles, flow, generator) and raise :class:`FlowInterrupted` on ``stop``;
    False when no replica is left."""
    health.report(recorder.trajectories, on_failure)
    if not any(health.alive):
        return False
    written = None
    if checkpoints is not None:
        written = checkpoints.write(step, *state, recorder.trajectories, health.alive)
    if stop:
        raise FlowInterrupted(step, recorder.trajectories, written)
    return True


def run_flow(flow: KernelFlow, source: torch.Tensor, steps: int, *, reference_bandwidth: float, log_every: int = 100,
             snapshot_every: int = 1000, generator=None, on_log: Callable[[FlowRecord], None] | None = None,
             on_failure: Callable[[FlowDivergedError], None] | None = None,
             should_stop: Callable[[], bool] | None = None, on_step: Callable[[int], None] | None = None,
             checkpoints: Checkpoints | None = None,
             resume: FlowCheckpoint | list[FlowCheckpoint] | None = None):  # fmt: skip
    """Run ``steps`` Euler steps of ``flow`` from ``source: [N, d]`` (:mod:`~studentteacher.flows.base`);
    returns a :class:`FlowTrajectory`. For a batched flow (target ``[R, M, d]``), ``source: [R, N, d]``
    runs its R replicas together and returns R trajectories; ``generator`` is then a list of R streams.

    ``generator`` draws the injected noise (needed only when the flow has noise). ``on_log`` gets
    each :class:`FlowRecord` as soon as it is measured, ``on_step(step)`` every step once it is measured
    (the progress of :mod:`studentteacher.progress`). A replica that goes bad (module docstring)
    stops, its particles at their last good positions, and its :class:`FlowDivergedError` (step,
    quantity, replica) goes to ``on_failure`` when given (the other replicas go on), else is raised.

    ``checkpoints`` (:class:`~studentteacher.flows.resume.Checkpoints`) writes each live replica's
    checkpoint at the start of every ``checkpoints.every``-th step and when ``should_stop()``, polled
    before every step, is true; then :class:`FlowInterrupted` is raised with every replica's
    trajectory so far and the checkpoints' paths. ``resume`` (one checkpoint, or R of one step)
    continues from there: particles, noise streams, the flow's carried state and the trajectory.
    """
    batched = source.dim() == 3
    health = ReplicaHealth(flow.target, source, batched)
    recorder = _Recorder(flow, health.replicas, reference_bandwidth, on_log)
    particles, start = source.detach().clone(), 0  # (..., N, d)
    if resume is not None:
        particles, start, recorder.trajectories = restore(resume if isinstance(resume, list) else [resume], flow,
                                                          generator, source)  # fmt: skip
    for step in range(start, steps + 1):
        stop = step > start and should_stop is not None and should_stop()
        due = step > start and checkpoints is not None and checkpoints.due(step)
        state = (particles, flow, generator)
        if (stop or due) and not _settle_failures_and_checkpoint(step, stop, checkpoints, health, recorder, on_failure, state):
            break
        first, velocity = flow_velocity(flow, particles, step, generator)  # (..., N, d)
        health.mark(torch.isfinite(first.value), step, BAD_VALUE)
        last = step == steps
        logging, snapshot = step % log_every == 0 or last, step % snapshot_every == 0 or last
        if logging or snapshot:
            health.report(recorder.trajectories, on_failure)
            if not any(health.alive):
                break
            recorder.record(step, first, particles, health.alive, logging, snapshot)
        if on_step is not None:
            on_step(step)
        if last:
            break
        particles = health.advance(particles, euler_step(particles, first, velocity), step + 1)
    trajectories = recorder.finish(particles)
    return trajectories if batched else trajectories[0]
