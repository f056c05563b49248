"""The approximate DMMD sampler of Galashov et al. (2025): an interacting run's particles' side, replayed.

With the linear kappa the particles interact only through their mean feature mu = mean_j phi(Z_j, t).
An interacting run of some reference particles records mu_s at each Euler step s
(:class:`~studentteacher.dmmd.samplers.base.ParticleSideTrajectory`); this sampler moves any number
of new particles, each alone, along

.. math::

    \\nabla f_t(z) = J_\\varphi(z)^\\top (\\mu_s - m_t), \\qquad
    f_t(z) = \\kappa(\\varphi(z), \\mu_s) - \\mathrm{mean}_m \\kappa(\\varphi(z), \\varphi(x_m)),

O(1) per particle and step (no particle sees another). Replayed from the reference particles' own
start it is the interacting run (to rounding). The levels and steps must be the recorded ones.
"""
from __future__ import annotations

from .base import ParticleSideTrajectory, Sampler


class ApproximateSampler(Sampler):
    """The recorded particles' side of step s in place of the particles' own (module docstring)."""

    name = "approximate"

    def __init__(self, discriminator, kernel, data, recording: ParticleSideTrajectory):
        super().__init__(discriminator, kernel, data)
        self.recording = recording

    def potential(self, features, prepared, step):
        if step >= len(self.recording.sides):
            raise ValueError(f"step {step} is past the recording's {len(self.recording.sides)} steps")
        recorded = self.recording.sides[step]  # (F,) for the linear kernel
        return self.kernel.mean_to(features, recorded) - self.kernel.mean_to(features, prepared)  # (N,)
