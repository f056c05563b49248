"""The approximate DMMD sampler of Galashov et al. (2025): the particles no longer interact.

Each particle flows alone, its own features replacing the particles' mean:
f_t(z) = kappa(phi(z), phi(z)) - mean_m kappa(phi(z), phi(x_m)) with the second phi(z) held fixed;
for the linear kappa grad f_t(z) = J_phi(z)^T (phi(z, t) - m_t), O(N) per step and parallel over
particles. (With ``rbf`` the own term has zero gradient: the particle only climbs the data's mean
kernel.)
"""
from __future__ import annotations

from .base import Sampler


class ApproximateSampler(Sampler):
    """Each particle's own (detached) features in place of the particle mean."""

    name = "approximate"

    def potential(self, features, prepared):
        return self.kernel.pair(features, features.detach()) - self.kernel.mean_to(features, prepared)  # (N,)
