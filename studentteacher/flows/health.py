"""The failure rule of a flow run and the bookkeeping that applies it on the device.

Failure rule. The step runs on the device without host synchronisation: bad replicas are flagged
there and read at log, snapshot and checkpoint steps, where a replica that went bad stops alone
(:class:`FlowDivergedError`, naming the step and the measure). A replica is bad when its value or
a particle is not finite, or when its particles ran away: their mean distance (max norm) outside
the box B around the target and the source exceeds :data:`RUNAWAY_DIAMETERS` (1) diameters D of B
(D its Euclidean diagonal), i.e. they left, on average, a box three diameters wide. Particles far
from every kernel centre feel no force and freeze, so a run-away flow keeps a finite, even falling,
value (MMD^2 of a bounded kernel is at most 2 sup k; a legitimate DrMMD flow at lambda 1e-4 raises
its value 2x), and only the positions tell. The mean, not the farthest particle, because the MMD
flow between 1-D Gaussians legitimately pushes a few stragglers outwards, slowly and for ever.
Measured (max over the run of the mean; of the farthest particle in brackets): small sweeps
(experiments/sweeps/figures/*_small.yaml, every task completes under the rule) at most 0.26 D
(0.26) on the three rings and 0.14 D (0.96) for the 1-D Gaussians; full scale, seed 1: the
three-ring flows (N = M = 300, 10^5 steps: mmd at step 0.1, drmmd at lambda 1e-4, 1e-3 and 1,
drmmd_adaptive; kale 2 10^4 steps) at most (0.67); the 1-D Gaussians (N = M = 1000,
mmd_flow_gaussians.yaml) 0.18 D (1.95) for the MMD flow after 3 10^4 steps and slowing (+0.02 D a
doubling of the steps), (0.47) with noise injection after 10^4. Run-away: the three-ring KALE
flow at step 0.1, lambda 1e-3 (the old default) 3.6 D at N = 60 by step 150 and 2.1 D at N = 300
by step 600 (1.5 D at step 0.01); MMD at step 1e300 (N = 24) about 1e299 D after one step.
"""
from __future__ import annotations

import torch

from ..errors import FlowDivergedError
from .metrics import FlowTrajectory

#: A replica whose particles lie on average farther outside the box around its target and source than
#: this many diameters of that box has run away (module docstring).
RUNAWAY_DIAMETERS = 1.0
BAD_VALUE, BAD_PARTICLES, RAN_AWAY = 0, 1, 2  # what went bad (ReplicaHealth.kind)


class ReplicaHealth:
    """Which of the R replicas still run. The first bad step of each, what went bad (value or
    particles not finite, particles run away) and how far out they were stay on the device
    (``[R]``) until :meth:`report` reads them. The box is that of the target and the source
    (``[..., M, d]``, ``[..., N, d]``): centre, half widths ``[..., 1, d]``, diameter D ``[...]``."""

    def __init__(self, target: torch.Tensor, source: torch.Tensor, batched: bool):
        self.replicas, self.batched = (source.shape[0] if batched else 1), batched
        self.alive = [True] * self.replicas
        both = torch.cat([target, source.to(target.dtype)], dim=-2)  # (..., M + N, d)
        low, high = both.amin(-2, keepdim=True), both.amax(-2, keepdim=True)  # (..., 1, d)
        self.centre, self.half = (low + high) / 2, (high - low) / 2
        self.diameter = (high - low)[..., 0, :].norm(dim=-1).clamp_min(torch.finfo(both.dtype).tiny)  # (...)
        self.first_bad = torch.full((self.replicas,), -1, dtype=torch.long, device=source.device)  # (R,)
        self.kind = torch.zeros(self.replicas, dtype=torch.long, device=source.device)  # (R,)
        self.distance = torch.zeros(self.replicas, dtype=torch.float64, device=source.device)  # (R,)

    def mark(self, good: torch.Tensor, step: int, kind: int, distance: torch.Tensor | None = None) -> None:
        """Flag the replicas whose ``good`` (``[...]``) is false at ``step``, unless flagged before."""
        new = (self.first_bad < 0) & ~good.reshape(self.replicas)
        self.first_bad = torch.where(new, step, self.first_bad)
        self.kind = torch.where(new, kind, self.kind)
        if distance is not None:
            self.distance = torch.where(new, distance.reshape(self.replicas).double(), self.distance)

    def advance(self, particles: torch.Tensor, moved: torch.Tensor, step: int) -> torch.Tensor:
        """``moved: [..., N, d]``, but a flagged replica (not finite, run away) keeps its last ``particles``."""
        self.mark(torch.isfinite(moved).reshape(self.replicas, -1).all(1), step, BAD_PARTICLES)
        outside = ((moved - self.centre).abs() - self.half).amax(-1).clamp_min(0.0)  # (..., N) distance to the box
        distance = outside.mean(-1) / self.diameter.to(outside.dtype)  # (...) their mean, in diameters
        self.mark(distance <= RUNAWAY_DIAMETERS, step, RAN_AWAY, distance)
        stopped = (self.first_bad >= 0).reshape(particles.shape[:-2])[..., None, None]  # (..., 1, 1)
        return torch.where(stopped, particles, moved)

    def report(self, trajectories: list[FlowTrajectory], on_failure) -> None:
        """Stop each newly flagged replica: its :class:`FlowDivergedError` goes to ``on_failure``, or
        is raised when there is none."""
        flags = zip(self.first_bad.tolist(), self.kind.tolist(), self.distance.tolist())
        for replica, (step, kind, distance) in enumerate(flags):
            if step < 0 or not self.alive[replica]:
                continue
            self.alive[replica] = False
            quantity, reason = ("divergence", "particles", "escape")[kind], None
            if kind == RAN_AWAY:
                reason = (f"the particles ran away: their mean distance outside the box around the target and "
                          f"the source is {distance:.3g} diameters of that box (the limit is {RUNAWAY_DIAMETERS:g})")
            error = FlowDivergedError(step, quantity, trajectories[replica], replica if self.batched else None, reason)
            if on_failure is None:
                raise error
            on_failure(error)
