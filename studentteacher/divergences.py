"""Kernel divergences between a particle measure and a target: values and witness functions.

Notation: particles ``Y: [N, d]`` (the moving source measure nu = (1/N) sum_j delta_{y_j}),
target ``X: [M, d]`` (pi = (1/M) sum_m delta_{x_m}), ``kernel(a, b) -> Gram`` a callable such
as ``functools.partial(kernels.gaussian, bandwidth=0.15)``.

.. math::

    \\mathrm{MMD}^2 = \\overline{K_{YY}} + \\overline{K_{XX}} - 2\\,\\overline{K_{XY}}
    \\quad\\text{(V-statistic, unhalved)},\\qquad
    f(z) = \\tfrac1N \\textstyle\\sum_j k(z, y_j) - \\tfrac1M \\sum_m k(z, x_m)

    \\mathrm{DrMMD}_\\lambda = \\tfrac{1+\\lambda}{\\lambda}\\left[\\mathrm{MMD}^2
        - (a - c)^T (K_{XX} + M\\lambda I)^{-1} (a - c)\\right],
    \\quad a = K_{XY} 1/N,\\ c = K_{XX} 1/M

    h(z) = \\tfrac{1+\\lambda}{\\lambda}\\left[f(z) - k(z, X)(K_{XX} + M\\lambda I)^{-1}(a - c)\\right]

DrMMD is (1 + lambda) ||(Sigma_pi + lambda I)^{-1/2} (m_nu - m_pi)||^2_H written with Woodbury
(Chen et al., 2024, "(De)-regularized maximum mean discrepancy gradient flow"); it tends to
MMD^2 as lambda -> infinity and to the chi^2 divergence as lambda -> 0. The M x M system is
solved by Cholesky, never by an explicit inverse.

The student-teacher closed forms (target = the teacher, M = 1, the kernel is the batch Gram
estimate of :func:`studentteacher.kernels.feature_gram`) are :func:`st_mmd2`,
:func:`st_drmmd` and :func:`st_drmmd_weights`.
"""
from __future__ import annotations

import torch

from .kernels import Kernel


def _check_lmbda(lmbda: float) -> None:
    if not lmbda > 0:
        raise ValueError(f"lmbda must be > 0, got {lmbda!r}")


# ----------------------------------------------------------------------------- MMD
def mmd2(particles: torch.Tensor, target: torch.Tensor, kernel: Kernel) -> torch.Tensor:
    """MMD^2 V-statistic between ``particles: [N, d]`` and ``target: [M, d]``; 0-dim tensor."""
    k_yy = kernel(particles, particles)  # (N, N)
    k_xx = kernel(target, target)  # (M, M)
    k_xy = kernel(target, particles)  # (M, N)
    return k_yy.mean() + k_xx.mean() - 2.0 * k_xy.mean()


def mmd_witness(points: torch.Tensor, particles: torch.Tensor, target: torch.Tensor, kernel: Kernel) -> torch.Tensor:
    """MMD witness f(z) = mean_j k(z, y_j) - mean_m k(z, x_m) at ``points: [P, d]`` -> ``[P]``.

    Its gradient at a particle is the MMD flow's velocity: d MMD^2 / d y_i = (2/N) grad f(y_i).
    """
    return kernel(points, particles).mean(1) - kernel(points, target).mean(1)  # (P,)


# ----------------------------------------------------------------------------- DrMMD
def _drmmd_coefficients(particles: torch.Tensor, target: torch.Tensor, kernel: Kernel, lmbda: float):
    """Return (MMD^2, beta) with beta = (K_XX + M lambda I)^{-1} (a - c): ``[M]``."""
    _check_lmbda(lmbda)
    n_target = target.shape[0]
    k_xx = kernel(target, target)  # (M, M)
    k_xy = kernel(target, particles)  # (M, N)
    k_yy = kernel(particles, particles)  # (N, N)
    a_minus_c = k_xy.mean(1) - k_xx.mean(1)  # (M,)
    regularised = k_xx + n_target * lmbda * torch.eye(n_target, dtype=k_xx.dtype, device=k_xx.device)
    cholesky = torch.linalg.cholesky(regularised)  # (M, M)
    beta = torch.cholesky_solve(a_minus_c[:, None], cholesky)[:, 0]  # (M,)
    value_mmd2 = k_yy.mean() + k_xx.mean() - 2.0 * k_xy.mean()
    return value_mmd2, a_minus_c, beta


def drmmd(particles: torch.Tensor, target: torch.Tensor, kernel: Kernel, lmbda: float) -> torch.Tensor:
    """DrMMD_lambda(nu || pi) of the module docstring; 0-dim tensor (Cholesky solve)."""
    value_mmd2, a_minus_c, beta = _drmmd_coefficients(particles, target, kernel, lmbda)
    return (1.0 + lmbda) / lmbda * (value_mmd2 - a_minus_c @ beta)


def drmmd_witness(
    points: torch.Tensor, particles: torch.Tensor, target: torch.Tensor, kernel: Kernel, lmbda: float
) -> torch.Tensor:
    """DrMMD witness h(z) at ``points: [P, d]`` -> ``[P]``.

    Its gradient is the DrMMD flow's velocity: d DrMMD / d y_i = (2/N) grad h(y_i).
    """
    _, _, beta = _drmmd_coefficients(particles, target, kernel, lmbda)
    witness_mmd = mmd_witness(points, particles, target, kernel)  # (P,)
    return (1.0 + lmbda) / lmbda * (witness_mmd - kernel(points, target) @ beta)


# ----------------------------------------------------------------------------- student-teacher
def st_mmd2(student_mean: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MMD2_hat = (1/B) sum_b |f_S(x_b) - f_T(x_b)|^2; ``[B, d_out]`` each -> 0-dim (unhalved)."""
    return ((student_mean - teacher) ** 2).sum(-1).mean()


def _st_moments(student_mean: torch.Tensor, teacher: torch.Tensor):
    """a_T = (1/B) sum_b |f_T|^2 and c_T = (1/B) sum_b f_T^T f_S (0-dim each)."""
    a_t = (teacher * teacher).sum(-1).mean()
    c_t = (teacher * student_mean).sum(-1).mean()
    return a_t, c_t


def st_drmmd(student_mean: torch.Tensor, teacher: torch.Tensor, lmbda: float) -> torch.Tensor:
    """Student-teacher DrMMD: ((1+lambda)/lambda) [MMD2_hat - (c_T - a_T)^2 / (a_T + lambda)]; 0-dim."""
    a_t, c_t = _st_moments(student_mean, teacher)
    return (1.0 + lmbda) / lmbda * (st_mmd2(student_mean, teacher) - (c_t - a_t) ** 2 / (a_t + lmbda))


def st_drmmd_weights(student_mean: torch.Tensor, teacher: torch.Tensor, lmbda: float) -> torch.Tensor:
    """Per-sample weights rho_b of the DrMMD witness, h(z) = (1/B) sum_b phi_z(x_b)^T rho_b.

    rho_b = ((1+lambda)/lambda) [f_S(x_b) - f_T(x_b) (lambda + c_T) / (a_T + lambda)]; ``[B, d_out]``.
    """
    a_t, c_t = _st_moments(student_mean, teacher)
    return (1.0 + lmbda) / lmbda * (student_mean - teacher * (lmbda + c_t) / (a_t + lmbda))
