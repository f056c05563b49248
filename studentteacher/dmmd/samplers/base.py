"""The DMMD sampler: the noise-adaptive MMD gradient flow (Galashov et al., 2025; docs/model.md).

Particles Z ``[N, d]`` start from N(0, I); for each noise level t = t_T > ... > t_0
(:func:`~studentteacher.dmmd.forward.sampling_levels`) they take N_s explicit Euler steps

.. math::

    Z_i \\leftarrow Z_i - \\eta \\, \\nabla f_t(Z_i), \\qquad
    f_t(z) = \\frac1N \\sum_j k_{\\theta,t}(z, Z_j) - \\frac1M \\sum_m k_{\\theta,t}(z, x_m),

on the witness between the particles and the data x ``[M, d]`` under the trained kernel
k_{theta,t}(x, y) = kappa(phi(x; t), phi(y; t)) (the particles' own term is differentiated in its
first argument only, as in the MMD flow's first variation). The data side is prepared once per
level (:meth:`Sampler.prepare`); a sampler says what the particles' side is (:meth:`Sampler.potential`,
a sum over particles whose gradient in Z is the velocity; ``step`` counts the Euler steps of the
whole run from 0). One module per sampler, the registry :data:`studentteacher.dmmd.samplers.SAMPLERS`:

================== ====================================================== ==============================
``interacting``    the flow above; linear kappa: grad f_t(z) =             O(N) per step (O(N^2) for
                   J_phi(z)^T (mean_j phi(Z_j, t) - m_t), m_t = mean_m      ``rbf``: no finite mean
                   phi(x_m, t) precomputed once per level; it can record    embedding)
                   the particles' side of every step (a
                   :class:`ParticleSideTrajectory`)
``approximate``    replays a recorded trajectory of the particles' side:   O(1) per particle and step
                   grad f_t(z) = J_phi(z)^T (mu_s - m_t), mu_s the          (linear), each particle alone
                   recorded mean feature of step s
``pairwise``       the interacting step from the Gram matrices             O(N^2 + N M): the reference
``self_potential`` each particle's own (detached) phi in place of the       O(N); no interaction: the
                   particles' mean (it collapses the particles)             particles collapse
================== ====================================================== ==============================
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ...errors import RunDiverged
from ..discriminator import Discriminator, features_by_blocks
from ..feature_kernels import FeatureKernel


class Sampler:
    """One Euler step of a DMMD sampler at a noise level (module docstring)."""

    name: str = ""

    def __init__(self, discriminator: Discriminator, kernel: FeatureKernel, data: torch.Tensor):
        self.discriminator, self.kernel, self.data = discriminator, kernel, data  # data: (M, d)

    def prepare(self, level: float):
        """The data side at level t, computed once per level: the kernel's summary of phi(x, t) over the data."""
        return self.kernel.summarise(features_by_blocks(self.discriminator, self.data, level))

    def potential(self, features: torch.Tensor, prepared, step: int) -> torch.Tensor:
        """f_t at each particle ``[N]`` from its features ``[N, F]`` (with a graph), the data side and
        the index of the Euler step in the run."""
        raise NotImplementedError

    def velocity(self, particles: torch.Tensor, level: float, prepared, step: int) -> torch.Tensor:
        """grad f_t(Z_i) ``[N, d]``: the gradient in Z of sum_i f_t(Z_i) (one backward pass)."""
        with torch.enable_grad():
            points = particles.detach().requires_grad_()
            features = self.discriminator(points, level)  # (N, F)
            (gradient,) = torch.autograd.grad(self.potential(features, prepared, step).sum(), points)
        return gradient

    def step(self, particles: torch.Tensor, level: float, prepared, step_size: float, step: int) -> torch.Tensor:
        """Z - eta grad f_t(Z) ``[N, d]``."""
        return particles - step_size * self.velocity(particles, level, prepared, step)


@dataclass
class ParticleSideTrajectory:
    """What an interacting run's particles contributed at each Euler step: ``sides: [S, F]`` (S = T N_s
    steps; the linear kernel's mean feature mean_j phi(Z_j, t), any leading summary of another kernel),
    with the ``levels`` and ``steps_per_level`` they were taken at."""

    levels: list[float]
    steps_per_level: int
    sides: torch.Tensor


@dataclass
class SamplingTrajectory:
    """``levels`` (t of each level, noisiest first), ``snapshots: [T + 1, N, d]`` (the start, then the
    particles at the end of each level), ``seconds`` spent stepping, the final ``particles: [N, d]``;
    ``recording_seconds``: the stepping time of the interacting run a replaying sampler replays (else 0)."""

    levels: list[float] = field(default_factory=list)
    snapshots: list[torch.Tensor] = field(default_factory=list)
    seconds: float = 0.0
    particles: torch.Tensor | None = None
    recording_seconds: float = 0.0


def run_sampler(sampler: Sampler, start: torch.Tensor, levels, steps_per_level: int, step_size: float,
                on_level: Callable[[int, float, torch.Tensor], None] | None = None) -> SamplingTrajectory:  # fmt: skip
    """Run the sampler from ``start: [N, d]`` over ``levels`` (N_s = ``steps_per_level`` Euler steps of
    size eta = ``step_size`` each); ``on_level(k, t, particles)`` after level k (1-based; k = 0: the start).
    A non-finite particle raises :class:`~studentteacher.errors.RunDiverged` (a FloatingPointError) naming
    the level."""
    trajectory = SamplingTrajectory(levels=list(levels), snapshots=[start.detach().cpu().clone()])
    particles = start.detach().clone()
    if on_level is not None:
        on_level(0, float("nan") if not levels else float(levels[0]), particles)
    for k, level in enumerate(levels, start=1):
        begin = time.perf_counter()
        prepared = sampler.prepare(level)
        for s in range(steps_per_level):
            particles = sampler.step(particles, level, prepared, step_size, (k - 1) * steps_per_level + s).detach()
        trajectory.seconds += time.perf_counter() - begin
        if not bool(torch.isfinite(particles).all()):
            raise RunDiverged(f"sampling diverged at noise level {k} (t = {level:g}): particles are not finite")
        trajectory.snapshots.append(particles.cpu().clone())
        if on_level is not None:
            on_level(k, float(level), particles)
    trajectory.particles = particles
    return trajectory
