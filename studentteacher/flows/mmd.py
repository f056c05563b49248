"""MMD flow (Arbel et al., NeurIPS 2019), with and without noise injection.

phi = f, the MMD witness f(z) = mean_j k(z, y_j) - mean_m k(z, x_m) (weights 1/N on the particles,
-1/M on the target); the value is MMD^2 (V-statistic) and gamma_n = ``step``. With
d MMD^2/dy_i = (2/N) grad f(y_i) the move is y_i -= (N/2) step grad_i MMD^2 (mean-field scaling).

Noise injection (``mmd_noise``): the velocity is grad f at y_i + beta_n u_i, u_i ~ N(0, I) fresh every
step, with beta_n = ``noise_level`` for n < ``noise_until``, then 0; the value (and every logged
metric) uses the clean particles.
"""
from __future__ import annotations

import torch

from .base import FirstVariation, KernelFlow


class MMDFlow(KernelFlow):
    """MMD flow, phi = f (the MMD witness)."""

    name = "mmd"

    def first_variation(self, particles: torch.Tensor) -> FirstVariation:
        a, k_yy_mean = self.moments(particles)  # (..., M), (...)
        n, m = particles.shape[-2], self.target.shape[-2]
        weights_y = torch.full(particles.shape[:-1], 1.0 / n, dtype=a.dtype, device=a.device)  # (..., N)
        weights_x = torch.full(a.shape, -1.0 / m, dtype=a.dtype, device=a.device)  # (..., M)
        return FirstVariation(self.mmd2(a, k_yy_mean), weights_y, weights_x, self.lmbda, self.step)


class MMDNoiseFlow(MMDFlow):
    """MMD flow with noise injection: beta_n = ``noise_level`` while n < ``noise_until``, then 0
    (a number, or one per replica)."""

    name = "mmd_noise"
    options = ("noise_level", "noise_until")

    def __init__(self, target, kernel, step_size, noise_level=0.0, noise_until=0, budget_bytes=None):
        super().__init__(target, kernel, step_size, budget_bytes)
        replicas = target.shape[:-2]
        self.noise_level = torch.as_tensor(noise_level, dtype=torch.float64).expand(replicas)  # (...) on the CPU
        self.noise_until = torch.as_tensor(noise_until).expand(replicas)  # (...)

    def noise(self, step: int) -> torch.Tensor:
        return torch.where(step < self.noise_until, self.noise_level, 0.0)
