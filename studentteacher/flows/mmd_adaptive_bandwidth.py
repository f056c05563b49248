"""MMD flow with a bandwidth re-chosen at every step (Galashov, De Bortoli, Gretton, ICLR 2025, Prop. 3.1).

The kernel is the scaled Gaussian k_alpha(x, y) = alpha^(-d) exp(-|x - y|^2 / (2 alpha^2))
(``gaussian_scaled`` of :mod:`studentteacher.kernels`, d = the data dimension). At step n, with the
difference of the means mu_n = mean_i y_i - mean_m x_m ``[..., d]``,

.. math::

    \\alpha_n = \\max\\big(\\mathrm{ReLU}(|\\mu_n|^2 / (d + 2) - 2 \\sigma^2)^{1/2},\\ \\text{floor}\\big)

(:func:`studentteacher.bandwidth.optimal_bandwidth`: the bandwidth that maximises the MMD gradient
norm between N(mu_n, sigma^2 I) and N(0, sigma^2 I)), and the step is the MMD flow's under
k_{alpha_n}: phi = f, the MMD witness f(z) = mean_j k_{alpha_n}(z, y_j) - mean_m k_{alpha_n}(z, x_m),
gamma_n = ``step``, the value MMD^2_{alpha_n} (V-statistic) and the logged ``bandwidth`` alpha_n.
The particles' mean moves by -gamma mean_i grad f(y_i) = -(gamma / 2) grad_mu MMD^2_{alpha_n} (the
particle-particle terms cancel by antisymmetry), which on two Gaussians is
-(gamma / 2) :func:`~studentteacher.bandwidth.mmd2_gradient`.

sigma: the option ``sigma`` when given; otherwise (what the ``particle_flow`` experiment does) it is
*estimated from the target sample* once, sigma_hat^2 = tr Cov(X) / d (the mean over coordinates of
the unbiased sample variances): for the toy ``gaussian_nd`` it tends to the toy's sigma as M grows,
and for any other target it is the target's pooled scale. floor: the option ``floor``; by default
the bandwidth of the kernel the flow is given (the experiment's ``bandwidth``, with ``kernel =
gaussian_scaled``). Batched replicas each get their own alpha_n (``[R]``).

alpha* only maximises the speed of the *mean*: below |mu|^2 = 2 (d + 2) sigma^2 it is 0 and the flow
runs at its floor, where a small bandwidth also makes nearby particles repel strongly (alpha^-(d+2));
experiments/sweeps/figures/adaptive_bandwidth.yaml records where the adaptive choice wins (far from
the target) and where a larger fixed bandwidth does better.
"""
from __future__ import annotations

import dataclasses

import torch

from ..bandwidth import optimal_bandwidth
from ..kernels import get_kernel
from .base import FirstVariation
from .mmd import MMDFlow


class AdaptiveBandwidthMMDFlow(MMDFlow):
    """MMD flow with the scaled Gaussian kernel and alpha_n = max(alpha*(mu_n, sigma), floor) (module docstring)."""

    name = "mmd_adaptive_bandwidth"
    options = ("floor", "sigma")
    kernels = ("gaussian_scaled",)  # the config's bandwidth is the floor

    def __init__(self, target, kernel, step_size, floor=None, sigma=None, budget_bytes=None):
        floor = getattr(kernel, "bandwidth", None) if floor is None else floor
        if floor is None or not float(floor) > 0:
            raise ValueError(f"floor must be a bandwidth > 0 (or given by the kernel's bandwidth), got {floor!r}")
        super().__init__(target, get_kernel("gaussian_scaled", float(floor)), step_size, budget_bytes)
        self.floor = float(floor)
        if sigma is None:
            sigma = target.to(torch.float64).var(dim=-2).mean(-1).sqrt()  # (...) pooled sample std
        self.sigma = torch.as_tensor(sigma, dtype=torch.float64, device=target.device).expand(target.shape[:-2])
        self.target_mean = target.mean(-2)  # (..., d)

    def choose_bandwidth(self, particles: torch.Tensor) -> torch.Tensor:
        """alpha_n = max(optimal_bandwidth(mean(Y) - mean(X), sigma), floor): float64 ``[...]``."""
        mu = particles.mean(-2) - self.target_mean  # (..., d)
        return optimal_bandwidth(mu, self.sigma, self.floor)

    def first_variation(self, particles: torch.Tensor) -> FirstVariation:
        alpha = self.choose_bandwidth(particles)  # (...)
        self.kernel = get_kernel("gaussian_scaled", alpha)
        self.c, self.k_xx_mean = self.target_moments()
        return dataclasses.replace(super().first_variation(particles), bandwidth=alpha)
