"""Kernels: explicit kernels between points of R^d, and the feature-kernel Gram estimate.

Bandwidth convention (the same everywhere in this package, in the configs and in the docs):

.. math::

    \\text{gaussian}(x, y) = \\exp\\left(-\\frac{|x - y|^2}{2\\,\\sigma^2}\\right)
    \\qquad \\text{laplace}(x, y) = \\exp\\left(-\\frac{|x - y|}{\\sigma}\\right)

    \\text{imq}(x, y) = \\left(1 + \\frac{|x - y|^2}{\\sigma^2}\\right)^{-1/2}
    \\qquad \\text{energy}(x, y) = \\frac{|x| + |y| - |x - y|}{\\sigma}

with ``sigma = bandwidth``. So a Gaussian with ``bandwidth=0.15`` is exp(-|x-y|^2 / 0.045), the
convention of the DrMMD paper's three-ring experiment (sigma = 0.15). The energy kernel is the
distance-induced kernel with base point 0: it is positive definite and its MMD^2 is the energy
distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` divided by ``bandwidth``.

Every explicit kernel takes ``x: [n, d]`` and ``y: [m, d]`` and returns the Gram ``[n, m]``.
Distances use a safe square root so that gradients stay finite (zero) at coinciding points.

The feature kernel of the student-teacher problem is k(U, Z) = E_x[phi_U(x)^T phi_Z(x)];
:func:`feature_gram` is its batch estimate.
"""
from __future__ import annotations

from typing import Callable

import torch

Kernel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|x_i - y_j|^2 for ``x: [n, d]``, ``y: [m, d]`` -> ``[n, m]`` (clamped at 0)."""
    sq = (x * x).sum(-1)[:, None] + (y * y).sum(-1)[None, :] - 2.0 * x @ y.T  # (n, m)
    return sq.clamp_min(0.0)


def _safe_norm_from_squares(sq: torch.Tensor) -> torch.Tensor:
    """sqrt(sq) with a zero (not NaN) gradient where sq == 0."""
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), 0.0)


def _check_bandwidth(bandwidth: float) -> None:
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth!r}")


def gaussian(x: torch.Tensor, y: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Gaussian kernel exp(-|x - y|^2 / (2 bandwidth^2)); ``[n, d], [m, d] -> [n, m]``."""
    _check_bandwidth(bandwidth)
    return torch.exp(-squared_distances(x, y) / (2.0 * bandwidth**2))


def laplace(x: torch.Tensor, y: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Laplace kernel exp(-|x - y| / bandwidth); ``[n, d], [m, d] -> [n, m]``."""
    _check_bandwidth(bandwidth)
    return torch.exp(-_safe_norm_from_squares(squared_distances(x, y)) / bandwidth)


def imq(x: torch.Tensor, y: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Inverse multiquadric (1 + |x - y|^2 / bandwidth^2)^(-1/2); ``[n, d], [m, d] -> [n, m]``."""
    _check_bandwidth(bandwidth)
    return torch.rsqrt(1.0 + squared_distances(x, y) / bandwidth**2)


def energy(x: torch.Tensor, y: torch.Tensor, bandwidth: float = 1.0) -> torch.Tensor:
    """Distance-induced (energy) kernel (|x| + |y| - |x - y|) / bandwidth; ``[n, m]``."""
    _check_bandwidth(bandwidth)
    norm_x = _safe_norm_from_squares((x * x).sum(-1))  # (n,)
    norm_y = _safe_norm_from_squares((y * y).sum(-1))  # (m,)
    dist = _safe_norm_from_squares(squared_distances(x, y))  # (n, m)
    return (norm_x[:, None] + norm_y[None, :] - dist) / bandwidth


KERNELS: dict[str, Callable[..., torch.Tensor]] = {
    "gaussian": gaussian,
    "laplace": laplace,
    "imq": imq,
    "energy": energy,
}


def get_kernel(name: str, bandwidth: float) -> Kernel:
    """The kernel ``name`` with its bandwidth bound: a callable ``(x, y) -> Gram``."""
    if name not in KERNELS:
        raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {name!r}")
    _check_bandwidth(bandwidth)
    function = KERNELS[name]

    def kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return function(x, y, bandwidth)

    kernel.__name__ = f"{name}(bandwidth={bandwidth})"
    return kernel


def feature_gram(phi_u: torch.Tensor, phi_z: torch.Tensor) -> torch.Tensor:
    """Batch estimate of the feature kernel, K_hat(U_m, Z_n) = (1/B) sum_b phi_{U_m}(x_b)^T phi_{Z_n}(x_b).

    ``phi_u: [B, M, d_out]``, ``phi_z: [B, N, d_out]`` -> ``[M, N]``.
    """
    batch = phi_u.shape[0]
    return torch.einsum("bmo,bno->mn", phi_u, phi_z) / batch  # (M, N)
