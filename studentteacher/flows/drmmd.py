"""DrMMD flow (Chen et al., 2024) with a fixed or an adaptive lambda.

phi = 2 h_lambda, the DrMMD witness of :mod:`studentteacher.divergences`: with a = K_XY 1/N,
c = K_XX 1/M ``[M]`` and beta = (K_XX + M lambda I)^{-1} (a - c) ``[M]``,

    phi(z) = (2 (1+lambda)/lambda) [mean_j k(z, y_j) - sum_m (1/M + beta_m) k(z, x_m)],
    DrMMD_lambda = ((1+lambda)/lambda) [MMD^2 - (a - c)^T beta],

and gamma_n = lambda * ``step``. With d DrMMD/dy_i = (1/N) grad phi(y_i) the move is
y_i -= lambda step N grad_i DrMMD, so a DrMMD flow with lambda -> infinity and step s moves like
an MMD flow with step 2 lambda s.

Adaptive lambda (the 2-D reference code of Chen et al., 2024): D_0 = DrMMD_{lambda_0}(y_0); at
step n >= 1, lambda_n = lambda_0 sqrt(D / D_0) with D = DrMMD_{lambda_{n-1}}(y_n), the value after
the previous move at the lambda of that move; gamma_n = max(lambda_n * ``step``, 1e-4).

The target-side matrix is factorised once, not every step (``solver="factor"``): a Cholesky factor
of K_XX + M lambda I for a fixed lambda, one eigendecomposition of K_XX for an adaptive one
(:class:`~studentteacher.divergences.GramEigh`), so that each step's solve, with a new lambda or
not, is O(M^2). ``solver="solve"`` instead calls ``torch.linalg.solve`` on K_XX + M lambda I every
time it needs one (the per-step reference path, for tests and benchmarks). At N = M = 10 000 in
float64 a DrMMD flow needs about 1.7 GB (fixed lambda) to 3.3 GB (adaptive).
"""
from __future__ import annotations

from typing import Callable

import torch

from .. import divergences
from ..kernels import kernel_gram
from .base import FirstVariation, KernelFlow, as_hyper, row_scale

#: Floor of the adaptive DrMMD step size gamma_n = max(lambda_n * step, MIN_ADAPTIVE_STEP).
MIN_ADAPTIVE_STEP = 1e-4
SOLVERS = ("factor", "solve")


class DrMMDFlow(KernelFlow):
    """DrMMD flow with a fixed lambda, phi = 2 h_lambda (module docstring)."""

    name = "drmmd"
    options = ("lmbda", "solver")
    holds_target_gram = True
    adaptive = False

    def __init__(self, target, kernel, step_size, lmbda, solver: str = "factor", budget_bytes=None):
        super().__init__(target, kernel, step_size, budget_bytes)
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
        self.lmbda = as_hyper(lmbda, target)  # (...)
        k_xx = kernel_gram(kernel, target, target, self.budget)  # (..., M, M)
        size = target.shape[-2]
        self.k_xx = k_xx if solver == "solve" else None
        self.eigh = divergences.GramEigh(k_xx) if self.adaptive and solver == "factor" else None
        self.cholesky = None
        if not self.adaptive and solver == "factor":
            k_xx.diagonal(dim1=-2, dim2=-1).add_(row_scale(size * self.lmbda, k_xx))  # in place: K_XX is not needed any more
            self.cholesky = torch.linalg.cholesky(k_xx)  # (..., M, M)
        del k_xx

    def _solver(self, a_minus_c: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """lambda ``[...]`` -> beta_lambda = (K_XX + M lambda I)^{-1} (a - c) ``[..., M]``."""
        if self.eigh is not None:
            rotated = self.eigh.rotate(a_minus_c)  # (..., M)
            return lambda lmbda: self.eigh.solve_rotated(rotated, lmbda)
        if self.cholesky is not None:
            return lambda lmbda: torch.cholesky_solve(a_minus_c[..., None], self.cholesky)[..., 0]
        size = self.k_xx.shape[-1]
        identity = torch.eye(size, dtype=self.k_xx.dtype, device=self.k_xx.device)
        return lambda lmbda: torch.linalg.solve(self.k_xx + row_scale(size * lmbda, identity)[..., None] * identity, a_minus_c)

    def _value(self, value_mmd2, a_minus_c, beta, lmbda):
        """DrMMD_lambda ``[...]`` = ((1+lambda)/lambda) [MMD^2 - (a - c)^T beta]."""
        return ((1.0 + lmbda) / lmbda).to(value_mmd2.dtype) * (value_mmd2 - (a_minus_c * beta).sum(-1))

    def _adapt(self, value_mmd2: torch.Tensor, a_minus_c: torch.Tensor, beta_of) -> None:
        """Update lambda before the step's solve: a fixed lambda stays (see :class:`AdaptiveDrMMDFlow`)."""

    def _step_size(self) -> torch.Tensor:
        """gamma_n = lambda_n * step ``[...]``."""
        return self.lmbda * self.step

    def first_variation(self, particles: torch.Tensor) -> FirstVariation:
        a, k_yy_mean = self.moments(particles)  # (..., M), (...)
        value_mmd2 = self.mmd2(a, k_yy_mean)
        a_minus_c = a - self.c  # (..., M)
        beta_of = self._solver(a_minus_c)
        self._adapt(value_mmd2, a_minus_c, beta_of)
        beta = beta_of(self.lmbda)  # (..., M)
        value = self._value(value_mmd2, a_minus_c, beta, self.lmbda)
        scale = 2.0 * (1.0 + self.lmbda) / self.lmbda  # (...)
        n, m = particles.shape[-2], self.target.shape[-2]
        weights_y = row_scale(scale / n, a).expand(particles.shape[:-1])  # (..., N)
        weights_x = -row_scale(scale, a) * (1.0 / m + beta)  # (..., M)
        return FirstVariation(value, weights_y, weights_x, self.lmbda, self._step_size())


class AdaptiveDrMMDFlow(DrMMDFlow):
    """DrMMD flow with lambda_n = lambda_0 sqrt(D / D_0) and gamma_n = max(lambda_n step, 1e-4)
    (module docstring); ``lmbda`` is lambda_0."""

    name = "drmmd_adaptive"
    adaptive = True
    carried = ("lmbda", "initial_value")  # lambda_n and D_0

    def __init__(self, target, kernel, step_size, lmbda, solver: str = "factor", budget_bytes=None):
        super().__init__(target, kernel, step_size, lmbda, solver, budget_bytes)
        self.lmbda0 = self.lmbda  # (...)
        self.initial_value: torch.Tensor | None = None  # D_0 (...)

    def _adapt(self, value_mmd2, a_minus_c, beta_of) -> None:
        """lambda_n = lambda_0 sqrt(D / D_0), D = DrMMD_{lambda_{n-1}} at the particles of step n."""
        previous = self._value(value_mmd2, a_minus_c, beta_of(self.lmbda), self.lmbda)  # (...)
        if self.initial_value is None:
            self.initial_value = previous
        else:
            ratio = (previous / self.initial_value).to(torch.float64)
            self.lmbda = self.lmbda0 * torch.sqrt(ratio.clamp_min(0.0))

    def _step_size(self) -> torch.Tensor:
        return super()._step_size().clamp_min(MIN_ADAPTIVE_STEP)
