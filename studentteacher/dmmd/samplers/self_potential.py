"""The self-potential DMMD sampler: the particles do not interact, and collapse.

Each particle flows alone, its own features replacing the particles' mean:
f_t(z) = kappa(phi(z), phi(z)) - mean_m kappa(phi(z), phi(x_m)) with the second phi(z) held fixed;
for the linear kappa grad f_t(z) = J_phi(z)^T (phi(z, t) - m_t), O(N) per step and parallel over
particles. Every particle follows the same potential with nothing linking the particles, so they
gather where phi(z, t) = m_t (W1 ~1.5 on every 2-D target): kept as the counter-example to the
``approximate`` sampler, which replays the interacting run's mean feature instead. (With ``rbf`` the
own term has zero gradient: the particle only climbs the data's mean kernel.)
"""
from __future__ import annotations

from .base import Sampler


class SelfPotentialSampler(Sampler):
    """Each particle's own (detached) features in place of the particle mean."""

    name = "self_potential"

    def potential(self, features, prepared, step):
        return self.kernel.pair(features, features.detach()) - self.kernel.mean_to(features, prepared)  # (N,)
