"""What a flow logs: its records and trajectory, and besides its own value, distances between the
particles and the target.

MMD^2 (V-statistic) under a reference Gaussian kernel exp(-|x-y|^2 / (2 sigma_ref^2)) (sigma_ref
fixed per toy, see :mod:`studentteacher.toys`), so that flows with different kernels compare, and
exact optimal-transport W1 and W2 between uniform measures on the particles ``[N, d]`` and the
target ``[M, d]`` (the papers' "W2" is this W1). Beside them the flow's own ``divergence``, its
``lmbda``, its ``step_size`` and the kernel ``bandwidth`` in force (fixed, or re-chosen every
step by ``mmd_adaptive_bandwidth``), and ``mean_gap`` = |mean_i Y_i - mean_j X_j|, the distance of the
particles' mean from the target's (what the adaptive bandwidth is chosen from).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import ot
import torch

from .. import divergences
from ..kernels import get_kernel

#: The metrics logged at each log step (fields of :class:`FlowRecord`).
METRICS = ("divergence", "mmd2", "w1", "w2", "lmbda", "step_size", "bandwidth", "mean_gap")


def wasserstein(particles: torch.Tensor, target: torch.Tensor, power: int) -> float:
    """Exact OT W_p (p = 1 or 2) between uniform measures on ``[N, d]`` and ``[M, d]``: ``ot.emd2``
    (network simplex) in 2-D, ``ot.wasserstein_1d`` (sorted quantile functions, exact and ~70x
    faster at N = M = 1000) in 1-D."""
    y = particles.detach().cpu().double().numpy()
    x = target.detach().cpu().double().numpy()
    if y.shape[1] == 1:
        return float(ot.wasserstein_1d(y[:, 0], x[:, 0], p=power)) ** (1.0 / power)
    cost = ot.dist(y, x, metric="euclidean") if power == 1 else ot.dist(y, x, metric="sqeuclidean")  # (N, M)
    weights_y = np.full(y.shape[0], 1.0 / y.shape[0])
    weights_x = np.full(x.shape[0], 1.0 / x.shape[0])
    value = float(ot.emd2(weights_y, weights_x, cost, numItermax=10_000_000))
    return value if power == 1 else math.sqrt(max(value, 0.0))


def mean_gap(particles: torch.Tensor, target: torch.Tensor) -> float:
    """|mean_i Y_i - mean_j X_j| for ``particles: [N, d]`` and ``target: [M, d]``, as a plain float."""
    return float(torch.linalg.vector_norm(particles.mean(0) - target.mean(0)))


def sample_distances(particles: torch.Tensor, target: torch.Tensor, reference_bandwidth: float) -> dict[str, float]:
    """``{"mmd2", "w1", "w2"}`` between ``particles: [N, d]`` and ``target: [M, d]``, as plain floats;
    mmd2 under the reference Gaussian kernel of bandwidth ``reference_bandwidth``."""
    reference = get_kernel("gaussian", reference_bandwidth)
    return {
        "mmd2": float(divergences.mmd2(particles, target, reference)),
        "w1": wasserstein(particles, target, 1),
        "w2": wasserstein(particles, target, 2),
    }


@dataclass(frozen=True)
class FlowRecord:
    """The metrics of one logged step of one replica (0 for a plain flow), as plain floats (names as
    in :data:`~studentteacher.flows.metrics.METRICS`)."""

    step: int
    divergence: float
    mmd2: float
    w1: float
    w2: float
    lmbda: float
    step_size: float
    bandwidth: float = 0.0
    mean_gap: float = math.nan  # nan in the records of checkpoints written before it was logged
    replica: int = 0


@dataclass
class FlowTrajectory:
    """What a flow produced: logged ``records``, ``snapshot_steps: [S]``, ``snapshots: [S, N, d]``
    (on the CPU), the final ``particles: [N, d]``."""

    records: list[FlowRecord] = field(default_factory=list)
    snapshot_steps: list[int] = field(default_factory=list)
    snapshots: list[torch.Tensor] = field(default_factory=list)
    particles: torch.Tensor | None = None

    def metrics(self) -> dict[str, torch.Tensor]:
        """``{"step": [L], name: [L] for name in METRICS}`` as float64 tensors."""
        columns = {"step": [r.step for r in self.records]}
        columns.update({name: [getattr(r, name) for r in self.records] for name in METRICS})
        return {name: torch.tensor(values, dtype=torch.float64) for name, values in columns.items()}

    def snapshot_tensor(self) -> torch.Tensor:
        """Snapshots stacked: ``[S, N, d]``."""
        return torch.stack(self.snapshots)
