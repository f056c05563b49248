"""The adaptive bandwidth of the MMD flow between two Gaussians in closed form (docs/model.md).

Galashov, De Bortoli and Gretton (ICLR 2025), Proposition 3.1. With the target
nu* = N(0, sigma^2 I), the flowing measure nu_t = N(mu, sigma^2 I) in R^d and the *scaled* Gaussian
kernel

.. math::

    k_\\alpha(x, y) = \\alpha^{-d} \\exp(-|x - y|^2 / (2 \\alpha^2))

(the factor alpha^(-d), which :func:`studentteacher.kernels.gaussian` does not carry, makes
k_alpha a density-like kernel), and s = alpha^2 + 2 sigma^2:

.. math::

    \\mathrm{MMD}^2_\\alpha(\\nu^*, \\nu_t) = 2 s^{-d/2} (1 - e^{-|\\mu|^2 / (2 s)}), \\qquad
    |\\nabla_\\mu \\mathrm{MMD}^2_\\alpha| = 2 s^{-d/2 - 1} |\\mu| e^{-|\\mu|^2 / (2 s)}.

The gradient norm is maximal over s at s = |mu|^2 / (d + 2), so the bandwidth that moves the mean
fastest is

.. math::

    \\alpha^* = \\mathrm{ReLU}(|\\mu|^2 / (d + 2) - 2 \\sigma^2)^{1/2},

0 once |mu|^2 < 2 (d + 2) sigma^2: close to the target no positive bandwidth is optimal, and a
flow needs a floor (:func:`optimal_bandwidth`'s ``floor``).
"""
from __future__ import annotations

import torch


def _s(alpha, sigma):
    return torch.as_tensor(alpha, dtype=torch.float64) ** 2 + 2.0 * torch.as_tensor(sigma, dtype=torch.float64) ** 2


def mmd2_gaussians(mu: torch.Tensor, sigma: float, alpha) -> torch.Tensor:
    """MMD^2_alpha(N(0, sigma^2 I), N(mu, sigma^2 I)) = 2 s^(-d/2) (1 - exp(-|mu|^2 / (2 s))).

    ``mu: [..., d]``; ``alpha`` a number or a tensor broadcasting against ``mu``'s batch shape.
    """
    d, s = mu.shape[-1], _s(alpha, sigma)
    distance2 = (mu.to(torch.float64) ** 2).sum(-1)
    return 2.0 * s ** (-d / 2) * -torch.expm1(-distance2 / (2.0 * s))


def mmd2_gradient(mu: torch.Tensor, sigma: float, alpha) -> torch.Tensor:
    """grad_mu MMD^2_alpha = 2 s^(-d/2 - 1) exp(-|mu|^2 / (2 s)) mu, shape of ``mu``."""
    d, s = mu.shape[-1], _s(alpha, sigma)
    mu = mu.to(torch.float64)
    distance2 = (mu**2).sum(-1)
    return (2.0 * s ** (-d / 2 - 1) * torch.exp(-distance2 / (2.0 * s)))[..., None] * mu


def mmd2_gradient_norm(mu: torch.Tensor, sigma: float, alpha) -> torch.Tensor:
    """|grad_mu MMD^2_alpha| = 2 s^(-d/2 - 1) |mu| exp(-|mu|^2 / (2 s))."""
    d, s = mu.shape[-1], _s(alpha, sigma)
    distance2 = (mu.to(torch.float64) ** 2).sum(-1)
    return 2.0 * s ** (-d / 2 - 1) * distance2.sqrt() * torch.exp(-distance2 / (2.0 * s))


def optimal_bandwidth(mu: torch.Tensor, sigma: float, floor: float = 0.0) -> torch.Tensor:
    """alpha* = max(ReLU(|mu|^2 / (d + 2) - 2 sigma^2)^(1/2), floor) for ``mu: [..., d]``."""
    d = mu.shape[-1]
    distance2 = (mu.to(torch.float64) ** 2).sum(-1)
    alpha = torch.relu(distance2 / (d + 2) - 2.0 * sigma**2).sqrt()
    return torch.clamp(alpha, min=floor)
