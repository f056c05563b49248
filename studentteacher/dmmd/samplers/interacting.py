"""The interacting DMMD sampler: f_t(z) = mean_j kappa(phi(z), phi(Z_j)) - mean_m kappa(phi(z), phi(x_m)).

With the linear kappa both means are mean features (:meth:`~studentteacher.dmmd.feature_kernels.LinearKernel.summarise`):
the step is grad f_t(z) = J_phi(z)^T (mean_j phi(Z_j, t) - m_t), with m_t prepared once per level,
O(N) per step. With ``rbf`` the particles' mean goes through their N x N Gram (no finite mean embedding).
"""
from __future__ import annotations

from .base import Sampler


class InteractingSampler(Sampler):
    """Particles interact through their (detached) mean embedding."""

    name = "interacting"

    def potential(self, features, prepared):
        particles_side = self.kernel.summarise(features.detach())  # (F,) for the linear kernel
        return self.kernel.mean_to(features, particles_side) - self.kernel.mean_to(features, prepared)  # (N,)
