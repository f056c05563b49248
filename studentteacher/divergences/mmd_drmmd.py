"""MMD and DrMMD between particles ``Y: [N, d]`` and a target ``X: [M, d]``: values and witnesses
(formulas: the package docstring); DrMMD also through one eigendecomposition of K_XX for many lambdas.
"""
from __future__ import annotations

import torch

from ..kernels import Kernel, matvec


def check_lmbda(lmbda: float) -> None:
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
    check_lmbda(lmbda)
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
    check_lmbda(lmbda)
    k_xx = kernel(target, target)  # (M, M)
    eigh = GramEigh(k_xx) if eigh is None else eigh
    k_xy = kernel(target, particles)  # (M, N)
    a_minus_c = k_xy.mean(1) - k_xx.mean(1)  # (M,)
    value_mmd2 = kernel(particles, particles).mean() + k_xx.mean() - 2.0 * k_xy.mean()
    quadratic = eigh.quadratic_rotated(eigh.rotate(a_minus_c), lmbda)
    return (1.0 + lmbda) / lmbda * (value_mmd2 - quadratic)
