"""KALE between particles and a target: the dual problem solved by Newton's method, the value and the witness."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kernels import Kernel
from .mmd_drmmd import check_lmbda


# ----------------------------------------------------------------------------- KALE
# KALE (Glaser, Arbel and Gretton, 2021, "KALE flow: a relaxed KL gradient flow for probabilities
# with disjoint support"), with P = nu (the particles Y, N points) and Q = pi (the target X, M points):
#
#   KALE(nu || pi) = (1 + lambda) max_{h in H} { 1 + int h dnu - int e^h dpi - (lambda/2) ||h||^2 }
#                  = (1 + lambda) (1 + min_{alpha >= 0} F(alpha))                (strong duality)
#   F(alpha) = sum_m alpha_m log(M alpha_m) - sum_m alpha_m
#              + (1/(2 lambda)) || sum_m alpha_m k(x_m, .) - (1/N) sum_j k(y_j, .) ||^2_H
#            = sum_m alpha_m log(M alpha_m) - sum_m alpha_m
#              + (1/(2 lambda)) (alpha^T K_XX alpha - 2 alpha^T a + mean(K_YY)),   a = K_XY 1/N.
#
# The optimal witness is h* = (1/lambda) [(1/N) sum_j k(y_j, .) - sum_m alpha*_m k(x_m, .)] and
# alpha*_m = exp(h*(x_m)) / M.


@dataclass(frozen=True)
class KaleDual:
    """Solution of the KALE dual: ``alpha: [M]`` (> 0), the duality ``gap`` (0-dim), Newton ``iterations``."""

    alpha: torch.Tensor
    gap: torch.Tensor
    iterations: int
    converged: bool


def kale_dual_objective(
    alpha: torch.Tensor, k_xx: torch.Tensor, a: torch.Tensor, k_yy_mean, lmbda: float
) -> torch.Tensor:
    """F(alpha) of the KALE dual (comment above); ``alpha, a: [M]``, ``k_xx: [M, M]`` -> 0-dim."""
    size = alpha.shape[0]
    entropy = (alpha * torch.log(size * alpha)).sum() - alpha.sum()
    return entropy + (alpha @ (k_xx @ alpha) - 2.0 * alpha @ a + k_yy_mean) / (2.0 * lmbda)


def kale_dual(
    k_xx: torch.Tensor,
    a: torch.Tensor,
    lmbda: float,
    alpha: torch.Tensor | None = None,
    tol: float = 1e-12,
    max_iter: int = 200,
) -> KaleDual:
    """Minimise the KALE dual F(alpha) over alpha > 0 by Newton's method with a backtracking line search.

    ``k_xx: [M, M]`` (target Gram), ``a = K_XY 1/N: [M]``, ``alpha: [M]`` a warm start (default 1/M).

    .. math::

        \\nabla F = \\log(M\\alpha) - u,\\quad u = (a - K_{XX}\\alpha)/\\lambda, \\qquad
        \\nabla^2 F = \\operatorname{diag}(1/\\alpha) + K_{XX}/\\lambda

    The Newton direction is d = -S (I + S K_XX S / lambda)^{-1} S grad F with S = diag(sqrt(alpha))
    (a Cholesky solve of a matrix with eigenvalues >= 1); steps stay in alpha > 0 (fraction to the
    boundary 0.99) and satisfy Armijo's condition. It stops when the duality gap between F(alpha) and
    the primal objective at h_alpha = (1/lambda)[mu_nu - sum_m alpha_m k(x_m, .)],

    .. math::

        \\mathrm{gap} = \\sum_m \\alpha_m \\left(e^{w_m} - 1 - w_m\\right),\\qquad w = -\\nabla F \\ (\\ge 0),

    is at most ``tol`` (it vanishes iff alpha_m = exp(h_alpha(x_m)) / M), or after ``max_iter``
    iterations, or when no step decreases F any more (rounding); ``converged`` says which.
    """
    check_lmbda(lmbda)
    size = a.shape[0]
    alpha = torch.full_like(a, 1.0 / size) if alpha is None else alpha.clone()
    identity = torch.eye(size, dtype=a.dtype, device=a.device)  # (M, M)
    k_scaled = k_xx / lmbda  # (M, M)
    for iteration in range(max_iter + 1):
        grad = torch.log(size * alpha) + (k_xx @ alpha - a) / lmbda  # (M,)
        gap = (alpha * (torch.expm1(-grad) + grad)).sum()
        if gap <= tol:
            return KaleDual(alpha, gap, iteration, True)
        if iteration == max_iter:
            break
        root = torch.sqrt(alpha)  # (M,)
        cholesky = torch.linalg.cholesky(identity + root[:, None] * k_scaled * root[None, :])  # (M, M)
        direction = -root * torch.cholesky_solve((root * grad)[:, None], cholesky)[:, 0]  # (M,)
        candidate = _line_search(alpha, direction, grad @ direction, k_xx, a, lmbda)
        if candidate is None:
            break
        alpha = candidate
    return KaleDual(alpha, gap, iteration, False)


def _line_search(alpha, direction, slope, k_xx, a, lmbda) -> torch.Tensor | None:
    """alpha + step * direction for the first step (from the fraction-to-the-boundary step, 0.99 of the
    way to alpha = 0, halved) that satisfies Armijo's condition F(new) <= F(alpha) + step * slope / 4;
    None when no step above 1e-12 does (rounding)."""
    tiny = torch.finfo(alpha.dtype).tiny
    shrinking = direction < 0
    step = 1.0
    if bool(shrinking.any()):
        step = min(1.0, 0.99 * float((alpha[shrinking] / -direction[shrinking]).min()))
    current = kale_dual_objective(alpha, k_xx, a, 0.0, lmbda)
    while step > 1e-12:
        candidate = (alpha + step * direction).clamp_min(tiny)
        if kale_dual_objective(candidate, k_xx, a, 0.0, lmbda) <= current + 0.25 * step * slope:
            return candidate
        step *= 0.5
    return None


def kale_from_dual(dual: KaleDual, k_xx: torch.Tensor, a: torch.Tensor, k_yy_mean, lmbda: float) -> torch.Tensor:
    """KALE = (1 + lambda) (1 + F(alpha)) at a dual solution; 0-dim."""
    return (1.0 + lmbda) * (1.0 + kale_dual_objective(dual.alpha, k_xx, a, k_yy_mean, lmbda))


def kale(particles: torch.Tensor, target: torch.Tensor, kernel: Kernel, lmbda: float) -> torch.Tensor:
    """KALE(nu || pi) of Glaser et al. (2021) between ``particles: [N, d]`` and ``target: [M, d]``; 0-dim.

    .. math::

        \\mathrm{KALE}(\\nu \\,\\|\\, \\pi) = (1+\\lambda) \\max_{h \\in H}
            \\Big\\{1 + \\int h \\, d\\nu - \\int e^h \\, d\\pi - \\frac{\\lambda}{2} \\|h\\|_H^2\\Big\\}
            = (1+\\lambda)\\big(1 + \\min_{\\alpha \\ge 0} F(\\alpha)\\big)

    with nu = (1/N) sum_j delta_{y_j} the particles (Glaser et al.'s P) and pi = (1/M) sum_m
    delta_{x_m} the target (their Q, the measure under the exponential), F the dual objective of
    :func:`kale_dual_objective`, solved by :func:`kale_dual` (tol 1e-12). KALE >= 0, = 0 iff nu = pi
    (for a characteristic kernel); it tends to KL(nu || pi) as lambda -> 0 and to MMD^2 / 2 as
    lambda -> infinity. Its first variation is :func:`kale_witness`: d KALE / d y_i = (1/N) grad
    phi(y_i).
    """
    k_xx = kernel(target, target)  # (M, M)
    a = kernel(target, particles).mean(1)  # (M,)
    dual = kale_dual(k_xx, a, lmbda)
    return kale_from_dual(dual, k_xx, a, kernel(particles, particles).mean(), lmbda)


def kale_witness(
    points: torch.Tensor,
    particles: torch.Tensor,
    target: torch.Tensor,
    kernel: Kernel,
    lmbda: float,
    alpha: torch.Tensor | None = None,
) -> torch.Tensor:
    """KALE first variation phi(z) = (1+lambda) h*(z) at ``points: [P, d]`` -> ``[P]``.

    phi(z) = ((1+lambda)/lambda) [mean_j k(z, y_j) - sum_m alpha_m k(z, x_m)] with alpha the dual
    solution (solved here unless given). d KALE / d y_i = (1/N) grad phi(y_i) (envelope theorem).
    """
    if alpha is None:
        k_xx = kernel(target, target)  # (M, M)
        alpha = kale_dual(k_xx, kernel(target, particles).mean(1), lmbda).alpha  # (M,)
    return (1.0 + lmbda) / lmbda * (kernel(points, particles).mean(1) - kernel(points, target) @ alpha)
