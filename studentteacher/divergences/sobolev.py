"""SrMMD and HrMMD (Tian, Sriperumbudur, Gretton and Chen, 2026): the witness's gradient bounded under
the particles, solved on the kernel's derivatives at the particles (the section comment below).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..kernels import Kernel, RadialJet, matvec, radial_jet


# ----------------------------------------------------------------------------- SrMMD and HrMMD
# SrMMD and HrMMD (Tian, Sriperumbudur, Gretton and Chen, 2026), with mu = (1/N) sum_i delta_{y_i}
# the particles and g = m_mu - m_pi the (unnormalised) MMD witness. At each particle the features
# e_{i0} = k(y_i, .) and e_{il} = d_{1,l} k(y_i, .) (l = 1..d; <e_{il}, h>_H = d_l h(y_i)) carry the
# weights w_0 = sqrt(1 - alpha), w_l = sqrt(alpha), alpha in [0, 1]:
#
#   T_mu = alpha S_mu + (1 - alpha) C_mu = (1/N) sum_{i,c} w_c^2 e_{ic} (x) e_{ic},
#   <f, T_mu f>_H = alpha ||grad f||^2_{L2(mu)} + (1 - alpha) ||f||^2_{L2(mu)},
#   HrMMD^2 = sup {(E_mu f - E_pi f)^2 : <f, (T_mu + lambda) f>_H <= 1} = <g, (T_mu + lambda)^{-1} g>_H,
#   witness f = (T_mu + lambda)^{-1} g;   alpha = 1: SrMMD (T_mu = S_mu).
#
# Woodbury, with the jet Gram G_{ic,jc'} = <e_{ic}, e_{jc'}>_H (blocks K_YY, D_YY, H_YY of
# :func:`jet_gram`), W = diag(w_c) and rho_{ic} = <e_{ic}, g>_H = (g(y_i), grad g(y_i)):
#
#   (W G W + N lambda I) s = W rho,   u = W s,
#   f = (1/lambda) [g - sum_{ic} u_{ic} e_{ic}],   HrMMD^2 = (1/lambda) [MMD^2 - rho^T u].
#
# Coordinates of weight 0 drop out: alpha = 1 leaves the N d system (H_YY + N lambda I) v = r of SrMMD
# (r = grad g at the particles), alpha = 0 the N x N system of C_mu (a DrMMD-like regulariser, under mu).
# lambda -> infinity: lambda HrMMD^2 -> MMD^2 and lambda f -> g.
SOBOLEV_SOLVERS = ("dense", "cg")


def jet_weights(alpha: float, dim: int, like: torch.Tensor) -> torch.Tensor:
    """w = (sqrt(1 - alpha), sqrt(alpha), ..., sqrt(alpha)) ``[1 + d]`` in the dtype and on the device of ``like``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    weights = torch.full((1 + dim,), math.sqrt(alpha), dtype=like.dtype, device=like.device)
    weights[0] = math.sqrt(1.0 - alpha)
    return weights


def sobolev_jet(kernel: Kernel, points: torch.Tensor, particles: torch.Tensor, target: torch.Tensor) -> RadialJet:
    """The kernel's :class:`~studentteacher.kernels.RadialJet` at ``points: [..., P, d]`` and the centres
    (y_1..y_N, x_1..x_M): ``[..., P, N + M]``."""
    return radial_jet(kernel, points, torch.cat([particles, target], dim=-2))


def jet_gram(jet: RadialJet, kept: Sequence[int] | None = None) -> torch.Tensor:
    """G_{ic,jc'} = <e_{ic}, e_{jc'}>_H ``[..., N, C, N, C]`` for the coordinates ``kept`` (C of them; default
    all 1 + d) from the jet at the particles (points and centres Y, ``[..., N, N]``); with
    delta_ij = y_i - y_j and q, q' = dq/ds at |delta_ij|^2:

    G_{i0,j0} = k(y_i, y_j),  G_{i0,jm} = -q delta_{ij,m},  G_{il,j0} = d_{1,l} k(y_i, y_j) = q delta_{ij,l},
    G_{il,jm} = d_{1,l} d_{2,m} k(y_i, y_j) = -2 q' delta_{ij,l} delta_{ij,m} - q [l = m].

    Built block by block (each ``[..., N, N]``) straight into the layout whose reshape to
    ``[..., N C, N C]`` is the system matrix: no (N, N, C, C) temporaries.
    """
    kept = range(1 + jet.difference.shape[-1]) if kept is None else [int(c) for c in kept]
    n = jet.value.shape[-1]
    gram = jet.value.new_empty(*jet.value.shape[:-2], n, len(kept), n, len(kept))
    for row, c in enumerate(kept):
        for column, c_other in enumerate(kept):
            gram[..., :, row, :, column] = _gram_block(jet, c, c_other)
    return gram


def _gram_block(jet: RadialJet, c: int, c_other: int) -> torch.Tensor:
    """G_{ic,jc'} over i, j ``[..., N, N]`` (:func:`jet_gram`) for one pair of coordinates."""
    if c == 0 and c_other == 0:
        return jet.value
    if c == 0:
        return -jet.slope * jet.difference[..., c_other - 1]
    if c_other == 0:
        return jet.slope * jet.difference[..., c - 1]
    block = -2.0 * jet.slope_ds * jet.difference[..., c - 1] * jet.difference[..., c_other - 1]
    return block - jet.slope if c == c_other else block


def jet_gram_matvec(jet: RadialJet, coefficients: torch.Tensor) -> torch.Tensor:
    """G u without forming G, O(N^2 d): ``coefficients: [..., N, 1 + d]`` (u_{i0} = a_i, u_{il} = b_{il})
    -> ``[..., N, 1 + d]``, with the notation of :func:`jet_gram`:

    (G u)_{i0} = sum_j k_ij a_j - sum_j q_ij delta_ij . b_j,
    (G u)_{il} = sum_j [q_ij a_j - 2 q'_ij delta_ij . b_j] delta_{ij,l} - sum_j q_ij b_{jl}.
    """
    delta, a, b = jet.difference, coefficients[..., 0], coefficients[..., 1:]  # (..., N, N, d), (..., N), (..., N, d)
    projection = (delta * b[..., None, :, :]).sum(-1)  # (..., N, N): delta_ij . b_j
    values = matvec(jet.value, a) - (jet.slope * projection).sum(-1)  # (..., N)
    along = jet.slope * a[..., None, :] - 2.0 * jet.slope_ds * projection  # (..., N, N)
    gradients = (along[..., None] * delta).sum(-2) - jet.slope @ b  # (..., N, d)
    return torch.cat([values[..., None], gradients], dim=-1)


def solve_dense(jet: RadialJet, rhs: torch.Tensor, weights: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """s of (W G W + shift I) s = rhs by Cholesky on the C coordinates of nonzero weight, O((N C)^3):
    ``rhs: [..., N, 1 + d]`` (0 where w_c = 0), ``weights: [1 + d]``, ``shift: [...]`` -> ``[..., N, 1 + d]``
    (0 where w_c = 0)."""
    kept = weights.nonzero()[:, 0]  # (C,)
    n = rhs.shape[-2]
    size = n * len(kept)
    matrix = jet_gram(jet, kept.tolist()).reshape(*rhs.shape[:-2], size, size)  # (..., N C, N C): rows (i, c)
    kept_weights = weights[kept]
    if not bool((kept_weights == 1).all()):
        scale = kept_weights.repeat(n)  # (N C,)
        matrix.mul_(scale[:, None]).mul_(scale)
    matrix.diagonal(dim1=-2, dim2=-1).add_(shift.to(rhs.dtype)[..., None])
    cholesky = torch.linalg.cholesky(matrix)  # (..., N C, N C)
    kept_rhs = rhs.index_select(-1, kept).reshape(*rhs.shape[:-2], size, 1)  # (..., N C, 1)
    solution = torch.cholesky_solve(kept_rhs, cholesky).reshape(*rhs.shape[:-1], len(kept))  # (..., N, C)
    return torch.zeros_like(rhs).index_copy(-1, kept, solution)


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator where denominator > 0, else 0 (a replica whose CG has converged exactly)."""
    positive = denominator > 0
    return torch.where(positive, numerator / torch.where(positive, denominator, 1.0), 0.0)


def solve_cg(jet: RadialJet, rhs: torch.Tensor, weights: torch.Tensor, shift: torch.Tensor, tol: float,
             max_iter: int | None = None) -> tuple[torch.Tensor, int]:  # fmt: skip
    """s of (W G W + shift I) s = rhs (shapes of :func:`solve_dense`) by conjugate gradients with the
    O(N^2 d) products of :func:`jet_gram_matvec`, from s = 0, until |residual| <= ``tol`` |rhs| for
    every replica or after ``max_iter`` iterations (default N (1 + d), the dimension); (s, iterations)."""
    shift = shift.to(rhs.dtype)[..., None, None]  # (..., 1, 1)

    def apply(direction):
        return weights * jet_gram_matvec(jet, weights * direction) + shift * direction

    solution, residual = torch.zeros_like(rhs), rhs.clone()  # (..., N, 1 + d)
    direction, squared = residual.clone(), (residual * residual).sum((-2, -1))  # (..., N, 1 + d), (...)
    bound = tol**2 * squared
    max_iter = rhs.shape[-2] * rhs.shape[-1] if max_iter is None else max_iter
    for iteration in range(max_iter):
        if bool((squared <= bound).all()):
            return solution, iteration
        product = apply(direction)
        step = _ratio(squared, (direction * product).sum((-2, -1)))[..., None, None]  # (..., 1, 1)
        solution, residual = solution + step * direction, residual - step * product
        new_squared = (residual * residual).sum((-2, -1))
        direction = residual + _ratio(new_squared, squared)[..., None, None] * direction
        squared = new_squared
    return solution, max_iter


@dataclass(frozen=True)
class SobolevWitness:
    """The HrMMD_alpha witness (SrMMD at alpha = 1) of particles Y ``[..., N, d]`` against X ``[..., M, d]``,

    f(z) = sum_j a_j k(y_j, z) + sum_m b_m k(x_m, z) + sum_j q(|z - y_j|^2) c_j . (z - y_j),

    with ``particle_weights`` a = (1/N - u_{j0}) / lambda ``[..., N]``, ``target_weights``
    b = -1 / (M lambda) ``[..., M]`` and ``gradient_weights`` c_j = u_{j,1..d} / lambda ``[..., N, d]``
    (the term -sum_j u_{jl} d_{1,l} k(y_j, z) / lambda, since d_{1,l} k(y, z) = q (y - z)_l); ``value``
    HrMMD^2 and ``mmd2`` ``[...]``, and the ``iterations`` of conjugate gradients (0: dense solve).
    """

    value: torch.Tensor
    mmd2: torch.Tensor
    particle_weights: torch.Tensor
    target_weights: torch.Tensor
    gradient_weights: torch.Tensor
    iterations: int


def sobolev_witness(jet: RadialJet, k_xx_mean, lmbda, alpha: float = 1.0, solver: str = "dense",
                    cg_tol: float | None = None) -> SobolevWitness:  # fmt: skip
    """The HrMMD_alpha witness and value (section comment above) from the jet at the particles
    (:func:`sobolev_jet` with points Y: ``[..., N, N + M]``), mean(K_XX) ``[...]`` and lambda > 0 (a
    number or ``[...]``). ``solver``: "dense" (:func:`solve_dense`) or "cg" (:func:`solve_cg`,
    ``cg_tol`` relative residual; None: sqrt of the dtype's machine epsilon)."""
    if solver not in SOBOLEV_SOLVERS:
        raise ValueError(f"solver must be one of {list(SOBOLEV_SOLVERS)}, got {solver!r}")
    like = jet.value
    lmbda = torch.as_tensor(lmbda, dtype=like.dtype, device=like.device)  # () or (...)
    if not bool((lmbda > 0).all()):
        raise ValueError(f"lmbda must be > 0, got {lmbda!r}")
    n, dim = like.shape[-2], jet.difference.shape[-1]
    m = like.shape[-1] - n
    mean_weights = torch.cat([torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device),
                              torch.full((m,), -1.0 / m, dtype=like.dtype, device=like.device)])  # (N + M,)
    g_values = matvec(like, mean_weights)  # (..., N): g(y_i)
    g_gradients = ((jet.slope * mean_weights)[..., None] * jet.difference).sum(-2)  # (..., N, d): grad g(y_i)
    rho = torch.cat([g_values[..., None], g_gradients], dim=-1)  # (..., N, 1 + d)
    mmd2 = like[..., :n].mean((-2, -1)) + k_xx_mean - 2.0 * like[..., n:].mean((-2, -1))  # (...)
    weights = jet_weights(alpha, dim, like)  # (1 + d,)
    own = jet.columns(slice(None, n))  # (..., N, N)
    if solver == "dense":
        solution, iterations = solve_dense(own, weights * rho, weights, n * lmbda), 0
    else:
        tol = math.sqrt(torch.finfo(like.dtype).eps) if cg_tol is None else cg_tol
        solution, iterations = solve_cg(own, weights * rho, weights, n * lmbda, tol)
    u = weights * solution  # (..., N, 1 + d)
    value = (mmd2 - (rho * u).sum((-2, -1))) / lmbda
    scale = (1.0 / lmbda)[..., None]  # (..., 1)
    target_weights = torch.full((*like.shape[:-2], m), -1.0 / m, dtype=like.dtype, device=like.device) * scale
    return SobolevWitness(value, mmd2, (1.0 / n - u[..., 0]) * scale, target_weights, u[..., 1:] * scale[..., None],
                          iterations)  # fmt: skip


@dataclass(frozen=True)
class WitnessJet:
    """f ``[..., P]``, grad f ``[..., P, d]`` and (Hess f) grad f ``[..., P, d]`` at P points (None when not
    asked for)."""

    value: torch.Tensor
    gradient: torch.Tensor
    hessian_gradient: torch.Tensor | None


def witness_jet(witness: SobolevWitness, jet: RadialJet, hessian: bool = True) -> WitnessJet:
    """f, grad f and, with ``hessian``, (Hess f) grad f at the points of ``jet`` (:func:`sobolev_jet`, ``[..., P, N + M]``).
    With the centres c (particles, then target) of weights w (a, then b), delta = z - c, and the
    gradient weights c_j of :class:`SobolevWitness` (delta_j = z - y_j; q, q', q'' of the jet):

    f = sum_c w_c k + sum_j q (c_j . delta_j),
    grad f = sum_c w_c q delta + sum_j [q c_j + 2 q' (c_j . delta_j) delta_j],
    (Hess f) v = sum_c w_c [q v + 2 q' (delta . v) delta]
                 + sum_j [4 q'' (c_j . delta_j)(delta_j . v) delta_j
                          + 2 q' ((c_j . v) delta_j + (delta_j . v) c_j + (c_j . delta_j) v)].
    """
    n = witness.particle_weights.shape[-1]
    weights = torch.cat([witness.particle_weights, witness.target_weights], dim=-1)[..., None, :]  # (..., 1, N + M)
    delta, c = jet.difference, witness.gradient_weights  # (..., P, N + M, d), (..., N, d)
    own, slope, slope_ds = delta[..., :n, :], jet.slope[..., :n], jet.slope_ds[..., :n]  # (..., P, N, d), (..., P, N)
    along = (own * c[..., None, :, :]).sum(-1)  # (..., P, N): c_j . delta_j
    value = (weights * jet.value).sum(-1) + (slope * along).sum(-1)  # (..., P)
    gradient = (((weights * jet.slope)[..., None] * delta).sum(-2) + slope @ c
                + 2.0 * ((slope_ds * along)[..., None] * own).sum(-2))  # (..., P, d)  # fmt: skip
    if not hessian:
        return WitnessJet(value, gradient, None)
    across = (delta * gradient[..., None, :]).sum(-1)  # (..., P, N + M): delta . v, v = grad f
    own_across, c_dot_v = across[..., :n], gradient @ c.mT  # (..., P, N), (..., P, N)
    centre_terms = ((weights * jet.slope).sum(-1)[..., None] * gradient
                    + 2.0 * ((weights * jet.slope_ds * across)[..., None] * delta).sum(-2))  # (..., P, d)  # fmt: skip
    coefficient = 4.0 * jet.slope_ds2[..., :n] * along * own_across + 2.0 * slope_ds * c_dot_v  # (..., P, N)
    gradient_terms = ((coefficient[..., None] * own).sum(-2) + 2.0 * (slope_ds * own_across) @ c
                      + 2.0 * (slope_ds * along).sum(-1)[..., None] * gradient)  # (..., P, d)  # fmt: skip
    return WitnessJet(value, gradient, centre_terms + gradient_terms)


def hrmmd(particles: torch.Tensor, target: torch.Tensor, kernel: Kernel, lmbda: float, alpha: float,
          solver: str = "dense") -> torch.Tensor:  # fmt: skip
    """HrMMD_alpha^2(mu || pi) = <g, (alpha S_mu + (1 - alpha) C_mu + lambda)^{-1} g>_H between
    ``particles: [N, d]`` and ``target: [M, d]``; 0-dim. ``kernel`` from
    :func:`~studentteacher.kernels.get_kernel`, one of :data:`~studentteacher.kernels.SMOOTH_RADIAL`."""
    jet = sobolev_jet(kernel, particles, particles, target)
    return sobolev_witness(jet, kernel(target, target).mean(), lmbda, alpha, solver).value


def srmmd(particles: torch.Tensor, target: torch.Tensor, kernel: Kernel, lmbda: float,
          solver: str = "dense") -> torch.Tensor:  # fmt: skip
    """SrMMD^2 = (MMD^2 - r^T (H_YY + N lambda I)^{-1} r) / lambda = :func:`hrmmd` at alpha = 1; 0-dim."""
    return hrmmd(particles, target, kernel, lmbda, 1.0, solver)


def hrmmd_witness(points: torch.Tensor, particles: torch.Tensor, target: torch.Tensor, kernel: Kernel, lmbda: float,
                  alpha: float = 1.0) -> torch.Tensor:  # fmt: skip
    """The witness f = (T_mu + lambda)^{-1} (m_mu - m_pi) at ``points: [P, d]`` -> ``[P]`` (alpha = 1:
    SrMMD's, f(z) = (1/lambda) [mean_i k(y_i, z) - mean_m k(x_m, z) - sum_{i,l} v_il d_{1,l} k(y_i, z)])."""
    witness = sobolev_witness(sobolev_jet(kernel, particles, particles, target), kernel(target, target).mean(), lmbda,
                              alpha)  # fmt: skip
    return witness_jet(witness, sobolev_jet(kernel, points, particles, target), hessian=False).value
