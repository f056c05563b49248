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

from dataclasses import dataclass

import torch

from .kernels import Kernel, matvec


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
    """MMD2_hat = (1/B) sum_b sum_o (f_S,o(x_b) - f_T,o(x_b))^2; ``[B, d_out]`` each -> 0-dim (unhalved).

    Summed over the d_out outputs: the MMD^2 of the kernel k(U, Z) = E_x[phi_U(x)^T phi_Z(x)]
    (DESIGN §1), the objective every update rule descends (sgd's rho = r/2 is its gradient). The
    papers' code averages the squared error over the outputs (1/d_out of this); they agree at
    d_out = 1, the papers' setting.
    """
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


# ----------------------------------------------------------------------------- DrMMD, one eigendecomposition
class GramEigh:
    """(K_XX + M lambda I)^{-1} v for every lambda from one eigendecomposition of K_XX.

    .. math::

        K_{XX} = U \\operatorname{diag}(e) U^T, \\qquad
        (K_{XX} + M\\lambda I)^{-1} v = U \\operatorname{diag}\\big(1 / (e + M\\lambda)\\big) U^T v

    The ``O(M^3)`` eigendecomposition is done once (the target is fixed); each solve is then two
    ``O(M^2)`` matrix-vector products, so an adaptive lambda costs no refactorisation. Eigenvalues are
    clamped at 0 (K_XX is positive semi-definite; rounding can make tiny ones negative).
    ``k_xx: [M, M]``, or R Grams ``[R, M, M]`` (then ``v: [R, M]`` and lambda a float or ``[R]``).
    """

    def __init__(self, k_xx: torch.Tensor):
        eigenvalues, self.eigenvectors = torch.linalg.eigh(k_xx)  # (..., M), (..., M, M)
        self.eigenvalues = eigenvalues.clamp_min(0.0)
        self.size = k_xx.shape[-1]

    def _shifted(self, lmbda) -> torch.Tensor:
        """e + M lambda: ``[..., M]`` (lambda a float, a 0-dim tensor or one per replica ``[R]``)."""
        lmbda = torch.as_tensor(lmbda, dtype=self.eigenvalues.dtype, device=self.eigenvalues.device)
        return self.eigenvalues + self.size * lmbda[..., None]

    def rotate(self, v: torch.Tensor) -> torch.Tensor:
        """U^T v: ``[..., M] -> [..., M]`` (compute once per right-hand side, reuse for many lambdas)."""
        return matvec(self.eigenvectors.mT, v)

    def solve_rotated(self, rotated: torch.Tensor, lmbda) -> torch.Tensor:
        """(K_XX + M lambda I)^{-1} v from ``rotated = U^T v``; ``[..., M]``."""
        return matvec(self.eigenvectors, rotated / self._shifted(lmbda))

    def quadratic_rotated(self, rotated: torch.Tensor, lmbda) -> torch.Tensor:
        """v^T (K_XX + M lambda I)^{-1} v from ``rotated = U^T v``; ``[...]``, O(M)."""
        return (rotated**2 / self._shifted(lmbda)).sum(-1)


def drmmd_spectral(
    particles: torch.Tensor, target: torch.Tensor, kernel: Kernel, lmbda: float, eigh: GramEigh | None = None
) -> torch.Tensor:
    """DrMMD_lambda(nu || pi) as :func:`drmmd`, with the M x M solve done through :class:`GramEigh`."""
    _check_lmbda(lmbda)
    k_xx = kernel(target, target)  # (M, M)
    eigh = GramEigh(k_xx) if eigh is None else eigh
    k_xy = kernel(target, particles)  # (M, N)
    a_minus_c = k_xy.mean(1) - k_xx.mean(1)  # (M,)
    value_mmd2 = kernel(particles, particles).mean() + k_xx.mean() - 2.0 * k_xy.mean()
    quadratic = eigh.quadratic_rotated(eigh.rotate(a_minus_c), lmbda)
    return (1.0 + lmbda) / lmbda * (value_mmd2 - quadratic)


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
    _check_lmbda(lmbda)
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
