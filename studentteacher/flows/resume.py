"""Flow checkpoints: where a flow run stopped, so that it continues exactly as if it had not.

A checkpoint is one replica as a plain run (a batched run writes one per replica; R checkpoints
of one step resume together or each alone), taken at the start of step n, before its first
variation:

========================  =====================================================================
``step``                  n, the next step to take
``particles``             ``[N, d]`` at step n (CPU, the run's dtype)
``noise``                 the state of the noise stream (``torch.Generator.get_state``), or None
``flow_state``            :meth:`~studentteacher.flows.base.KernelFlow.state`: lambda_n and D_0 of
                          the adaptive DrMMD flow, KALE's warm-start dual alpha ``[M]``; {} else
``records``, ``snapshot_steps``, ``snapshots``
                          the trajectory recorded so far (the logged series continues from it,
                          and the finished run's trajectory is the whole flow)
``config``                the run's ``particle_flow`` config (or None)
========================  =====================================================================

Written atomically (:func:`~studentteacher.checkpoints.save_atomically`). A run resumes from one
with the same config up to :data:`RESUMABLE_CHANGES` (:func:`checked_checkpoint`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from ..checkpoints import check_resumable, read_checkpoint, save_atomically
from ..config import ConfigError
from .base import KernelFlow
from .config import DEFAULTS
from .metrics import FlowRecord, FlowTrajectory

#: Keys of a ``particle_flow`` config that may differ between a checkpoint's run and the run resuming it.
RESUMABLE_CHANGES = ("steps", "log_every", "snapshot_every", "checkpoint_every", "resume_from", "device", "replicas",
                     "threads")


@dataclass
class FlowCheckpoint:
    """One replica at the start of step ``step`` (module docstring); ``save`` writes it, :func:`load` reads it."""

    step: int
    particles: torch.Tensor
    noise: torch.Tensor | None
    flow_state: dict[str, torch.Tensor | None]
    trajectory: FlowTrajectory = field(default_factory=FlowTrajectory)
    config: dict | None = None

    def save(self, path: str) -> None:
        records = [{k: v for k, v in asdict(record).items() if k != "replica"} for record in self.trajectory.records]
        snapshots = torch.stack(self.trajectory.snapshots) if self.trajectory.snapshots else None  # (S, N, d)
        save_atomically({
            "step": self.step, "particles": self.particles, "noise": self.noise, "flow_state": self.flow_state,
            "records": records, "snapshot_steps": list(self.trajectory.snapshot_steps), "snapshots": snapshots,
            "config": self.config,
        }, path)  # fmt: skip


def read(path: str) -> dict:
    """The entries of the flow checkpoint at ``path``; ConfigError naming ``resume_from`` and what is wrong
    with the file (missing, empty, truncated or corrupt, another experiment's checkpoint)."""
    return read_checkpoint(path, "particle_flow")


def load(path: str) -> FlowCheckpoint:
    """The :class:`FlowCheckpoint` at ``path`` (ConfigError naming ``resume_from`` if there is none)."""
    state = read(path)
    snapshots = [] if state["snapshots"] is None else list(state["snapshots"])
    records = [FlowRecord(**record) for record in state["records"]]
    trajectory = FlowTrajectory(records, state["snapshot_steps"], snapshots)
    return FlowCheckpoint(state["step"], state["particles"], state["noise"], state["flow_state"], trajectory,
                          state["config"])


def checked_checkpoint(config: dict) -> FlowCheckpoint | None:
    """The checkpoint ``config["resume_from"]`` names (None when it is unset or the key absent), once
    checked against ``config``: ConfigError naming the first key outside :data:`RESUMABLE_CHANGES`
    that differs, or ``steps`` when the checkpoint is past them."""
    path = config.get("resume_from")
    if path is None:
        return None
    checkpoint = load(path)
    if checkpoint.config is not None:  # a checkpoint older than an optional key was written with its default
        check_resumable(path, {**DEFAULTS, **checkpoint.config}, config, RESUMABLE_CHANGES)
    if config["steps"] < checkpoint.step:
        raise ConfigError(f"config key 'steps': got {config['steps']!r} but the checkpoint {path!r} is at step "
                          f"{checkpoint.step}; allowed: an integer >= {checkpoint.step}")  # fmt: skip
    return checkpoint


def streams_of(generator, replicas: int) -> list:
    """The R noise streams of ``generator`` (one ``torch.Generator``, a list of R, or None)."""
    return list(generator) if isinstance(generator, (list, tuple)) else [generator] * replicas


@dataclass(frozen=True)
class Checkpoints:
    """Where and when :func:`~studentteacher.flows.run_flow` writes checkpoints: replica r to
    ``paths[r]`` (None: not that one) every ``every`` steps (0: only on a stop request), each with
    ``configs[r]`` (None: no config). ``before_write()`` runs first (the experiment flushes the
    metrics it logged, so that a checkpoint never holds steps its logged metrics lack)."""

    paths: list[str | None]
    every: int = 0
    configs: list[dict | None] | None = None
    before_write: Callable[[], None] | None = None

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def write(self, step: int, particles: torch.Tensor, flow: KernelFlow, generator, trajectories: list[FlowTrajectory],
              alive: list[bool]) -> list[str | None]:  # fmt: skip
        """Each live replica's checkpoint at the start of ``step``; the paths written (None where none)."""
        if self.before_write is not None:
            self.before_write()
        replicas = len(trajectories)
        views = particles.reshape(replicas, *particles.shape[-2:])  # (R, N, d)
        streams, state = streams_of(generator, replicas), flow.state()
        configs = self.configs or [None] * replicas
        written = []
        for r, path in enumerate(self.paths):
            if path is None or not alive[r]:
                written.append(None)
                continue
            own = {k: None if v is None else (v[r] if particles.dim() == 3 else v).detach().cpu()
                   for k, v in state.items()}  # fmt: skip
            noise = None if streams[r] is None else streams[r].get_state()
            FlowCheckpoint(step, views[r].detach().cpu().clone(), noise, own, trajectories[r], configs[r]).save(path)
            written.append(path)
        return written


def restore(checkpoints: list[FlowCheckpoint], flow: KernelFlow, generator, like: torch.Tensor):
    """Set ``flow`` and the noise streams of ``generator`` to R checkpoints of one step (R = 1 for a
    plain flow, ``like: [N, d]``); returns (particles like ``like``, the step, the R trajectories)."""
    steps = sorted({checkpoint.step for checkpoint in checkpoints})
    if len(steps) != 1:
        raise ValueError(f"replicas must resume from the same step, got checkpoints at steps {steps}")
    batched = like.dim() == 3
    if len(checkpoints) != (like.shape[0] if batched else 1):
        raise ValueError(f"{len(checkpoints)} checkpoints for {like.shape[0] if batched else 1} replicas")
    particles = torch.stack([c.particles for c in checkpoints]) if batched else checkpoints[0].particles
    for stream, checkpoint in zip(streams_of(generator, len(checkpoints)), checkpoints):
        if stream is not None and checkpoint.noise is not None:
            stream.set_state(checkpoint.noise)
    states = [checkpoint.flow_state for checkpoint in checkpoints]
    if batched:
        states = [{k: None if any(s[k] is None for s in states) else torch.stack([s[k] for s in states])
                   for k in states[0]}]  # fmt: skip
    flow.load_state(states[0])
    trajectories = []
    for r, checkpoint in enumerate(checkpoints):
        kept = checkpoint.trajectory
        records = [FlowRecord(**{**asdict(record), "replica": r}) for record in kept.records]
        trajectories.append(FlowTrajectory(records, list(kept.snapshot_steps), list(kept.snapshots)))
    return particles.to(device=like.device, dtype=like.dtype), steps[0], trajectories
