"""The interacting DMMD sampler: f_t(z) = mean_j kappa(phi(z), phi(Z_j)) - mean_m kappa(phi(z), phi(x_m)).

With the linear kappa both means are mean features (:meth:`~studentteacher.dmmd.feature_kernels.LinearKernel.summarise`):
the step is grad f_t(z) = J_phi(z)^T (mean_j phi(Z_j, t) - m_t), with m_t prepared once per level,
O(N) per step. With ``rbf`` the particles' mean goes through their N x N Gram (no finite mean embedding).
With ``record=True`` the particles' side of every step (the mean feature ``[F]`` for the linear kappa)
is kept in :attr:`InteractingSampler.recorded`, for the ``approximate`` sampler to replay
(:meth:`InteractingSampler.particle_sides`).
"""
from __future__ import annotations

import torch

from .base import ParticleSideTrajectory, Sampler


class InteractingSampler(Sampler):
    """Particles interact through their (detached) mean embedding; optionally recorded step by step."""

    name = "interacting"

    def __init__(self, discriminator, kernel, data, record: bool = False):
        super().__init__(discriminator, kernel, data)
        self.recorded: list[torch.Tensor] | None = [] if record else None

    def potential(self, features, prepared, step):
        particles_side = self.kernel.summarise(features.detach())  # (F,) for the linear kernel
        if self.recorded is not None:
            self.recorded.append(particles_side)
        return self.kernel.mean_to(features, particles_side) - self.kernel.mean_to(features, prepared)  # (N,)

    def particle_sides(self, levels, steps_per_level: int) -> ParticleSideTrajectory:
        """The recorded particles' side of a run over ``levels`` x ``steps_per_level`` steps: ``[S, ...]``."""
        if self.recorded is None or len(self.recorded) != len(levels) * steps_per_level:
            raise ValueError(f"no recording of {len(levels)} x {steps_per_level} steps (construct with record=True, "
                             "then run the sampler once)")  # fmt: skip
        return ParticleSideTrajectory(list(levels), steps_per_level, torch.stack(self.recorded))
