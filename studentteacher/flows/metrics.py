"""What a flow logs besides its own value: distances between the particles and the target.

MMD^2 (V-statistic) under a reference Gaussian kernel exp(-|x-y|^2 / (2 sigma_ref^2)) (sigma_ref
fixed per toy, see :mod:`studentteacher.toys`), so that flows with different kernels compare, and
exact optimal-transport W1 and W2 between uniform measures on the particles ``[N, d]`` and the
target ``[M, d]`` (the papers' "W2" is this W1). Beside them the flow's own ``divergence``, its
``lmbda``, its ``step_size`` and the kernel ``bandwidth`` in force (fixed, or re-chosen every
step by ``mmd_adaptive_bandwidth``).
"""
from __future__ import annotations

import math

import numpy as np
import ot
import torch

from .. import divergences
from ..kernels import get_kernel

#: The metrics logged at each log step (names of :class:`~studentteacher.flows.run.FlowRecord`).
METRICS = ("divergence", "mmd2", "w1", "w2", "lmbda", "step_size", "bandwidth")


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


def sample_distances(particles: torch.Tensor, target: torch.Tensor, reference_bandwidth: float) -> dict[str, float]:
    """``{"mmd2", "w1", "w2"}`` between ``particles: [N, d]`` and ``target: [M, d]``, as plain floats;
    mmd2 under the reference Gaussian kernel of bandwidth ``reference_bandwidth``."""
    reference = get_kernel("gaussian", reference_bandwidth)
    return {
        "mmd2": float(divergences.mmd2(particles, target, reference)),
        "w1": wasserstein(particles, target, 1),
        "w2": wasserstein(particles, target, 2),
    }
