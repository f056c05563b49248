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

Every explicit kernel takes ``x: [n, d]`` and ``y: [m, d]`` and returns the Gram ``[n, m]``; with a
leading replica dimension R in both (``x: [R, n, d]``, ``y: [R, m, d]``, batched flows) it returns
the R Grams ``[R, n, m]``. Distances use a safe square root so that gradients stay finite (zero) at
coinciding points.

Blocked reductions (:func:`kernel_matvec`, :func:`kernel_matvec_grad`, :func:`kernel_gram`)
evaluate a Gram by blocks of rows of ``x``, so that the temporaries of one block stay within a
memory budget (``budget_bytes``, default :func:`block_budget` of the device) whatever n and m are:
a flow with N = M = 10 000 never holds an N x M matrix of kernel values (nor its autograd graph).

The feature kernel of the student-teacher problem is k(U, Z) = E_x[phi_U(x)^T phi_Z(x)];
:func:`feature_gram` is its batch estimate.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch

Kernel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|x_i - y_j|^2 for ``x: [n, d]``, ``y: [m, d]`` -> ``[n, m]``, or per replica for ``x: [R, n, d]``,
    ``y: [R, m, d]`` -> ``[R, n, m]`` (clamped at 0)."""
    squares_x = (x * x).sum(-1)[..., :, None]  # (..., n, 1)
    if x.dim() == 2:
        sq = torch.addmm(squares_x, x, y.T, alpha=-2.0)  # (n, m)
    else:
        sq = torch.baddbmm(squares_x, x, y.mT, alpha=-2.0)  # (R, n, m)
    return sq.add_((y * y).sum(-1)[..., None, :]).clamp_min_(0.0)  # in place: no copies (autograd-safe)


def _safe_norm_from_squares(sq: torch.Tensor) -> torch.Tensor:
    """sqrt(sq) with a zero (not NaN) gradient where sq == 0."""
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), 0.0)


def _check_bandwidth(bandwidth) -> None:
    positive = bool((bandwidth > 0).all()) if isinstance(bandwidth, torch.Tensor) else bandwidth > 0
    if not positive:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth!r}")


#: The kernels that are functions of |x - y|^2 alone (their values and slopes can share one
#: matrix of squared distances: :func:`get_kernel` gives them ``radial_value`` and ``radial_slope``).
#: ``gaussian_scaled`` also depends on the dimension d, so it goes through the blocked reductions.
RADIAL = ("gaussian", "laplace", "imq")


def _radial_value(name: str, sq: torch.Tensor, bandwidth: float, inplace: bool = False) -> torch.Tensor:
    """k(s) at s = |x - y|^2 for the radial kernel ``name``; ``inplace`` lets it overwrite ``sq``."""
    if name == "gaussian":
        return (sq.mul_ if inplace else sq.mul)(-0.5 / bandwidth**2).exp_()
    if name == "laplace":
        return torch.exp(-_safe_norm_from_squares(sq) / bandwidth)
    return torch.rsqrt(1.0 + sq / bandwidth**2)  # imq


def gaussian(x: torch.Tensor, y: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Gaussian kernel exp(-|x - y|^2 / (2 bandwidth^2)); ``[n, d], [m, d] -> [n, m]``."""
    _check_bandwidth(bandwidth)
    return _radial_value("gaussian", squared_distances(x, y), bandwidth, inplace=True)


def laplace(x: torch.Tensor, y: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Laplace kernel exp(-|x - y| / bandwidth); ``[n, d], [m, d] -> [n, m]``."""
    _check_bandwidth(bandwidth)
    return _radial_value("laplace", squared_distances(x, y), bandwidth)


def imq(x: torch.Tensor, y: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Inverse multiquadric (1 + |x - y|^2 / bandwidth^2)^(-1/2); ``[n, d], [m, d] -> [n, m]``."""
    _check_bandwidth(bandwidth)
    return _radial_value("imq", squared_distances(x, y), bandwidth)


def _replica_scale(bandwidth, like: torch.Tensor):
    """A bandwidth (a number, or a tensor ``[...]`` of the replica shape) shaped to scale ``[..., n, m]``."""
    if isinstance(bandwidth, torch.Tensor):
        return bandwidth.to(like.dtype).reshape(bandwidth.shape + ((1, 1) if bandwidth.dim() else ()))
    return bandwidth


def _scaled_gaussian_value(sq: torch.Tensor, bandwidth, dim: int) -> torch.Tensor:
    """sigma^(-d) exp(-s / (2 sigma^2)) at s = |x - y|^2 ``[..., n, m]``; ``bandwidth`` a number or ``[...]``."""
    sigma = _replica_scale(bandwidth, sq)
    return torch.exp(sq * (-0.5 / sigma**2)) * sigma ** (-dim)


def gaussian_scaled(x: torch.Tensor, y: torch.Tensor, bandwidth) -> torch.Tensor:
    """Scaled Gaussian kernel bandwidth^(-d) exp(-|x - y|^2 / (2 bandwidth^2)), d = ``x.shape[-1]``;
    ``[n, d], [m, d] -> [n, m]`` (per replica ``[R, n, d], [R, m, d] -> [R, n, m]``, where ``bandwidth``
    may be one number or a tensor ``[R]``)."""
    _check_bandwidth(bandwidth)
    return _scaled_gaussian_value(squared_distances(x, y), bandwidth, x.shape[-1])


def energy(x: torch.Tensor, y: torch.Tensor, bandwidth: float = 1.0) -> torch.Tensor:
    """Distance-induced (energy) kernel (|x| + |y| - |x - y|) / bandwidth; ``[n, m]``."""
    _check_bandwidth(bandwidth)
    norm_x = _safe_norm_from_squares((x * x).sum(-1))  # (..., n)
    norm_y = _safe_norm_from_squares((y * y).sum(-1))  # (..., m)
    dist = _safe_norm_from_squares(squared_distances(x, y))  # (..., n, m)
    return (norm_x[..., :, None] + norm_y[..., None, :] - dist) / bandwidth


KERNELS: dict[str, Callable[..., torch.Tensor]] = {
    "gaussian": gaussian,
    "laplace": laplace,
    "imq": imq,
    "energy": energy,
    "gaussian_scaled": gaussian_scaled,
}


def _radial_slope(name: str, sq: torch.Tensor, bandwidth: float, value: torch.Tensor | None = None) -> torch.Tensor:
    """q(s) = 2 dk/ds at s = |x - y|^2 for the translation-invariant part of kernel ``name``, so that
    grad_x k(x, y) = q (x - y); 0 where the distance is 0 (as the safe square root's gradient).

    ``value``: k(s) when the caller has it already; the Gaussian slope -k / sigma^2 and the IMQ slope
    -k^3 / sigma^2 are then taken from it (bitwise the same numbers, one exponential or square root
    fewer per entry)."""
    if name == "gaussian":
        if value is not None:
            return value.mul(-1.0 / bandwidth**2)
        return sq.mul(-0.5 / bandwidth**2).exp_().mul_(-1.0 / bandwidth**2)
    if name == "imq":
        return (torch.rsqrt(1.0 + sq / bandwidth**2) if value is None else value) ** 3 / -(bandwidth**2)
    dist = _safe_norm_from_squares(sq)
    positive = dist > 0
    safe = torch.where(positive, dist, 1.0)
    if name == "laplace":
        return torch.where(positive, torch.exp(-safe / bandwidth) / -(bandwidth * safe), 0.0)
    return torch.where(positive, -1.0 / (bandwidth * safe), 0.0)  # energy: -|x - y| / bandwidth


def radial_weighted_gradient(x: torch.Tensor, y: torch.Tensor, slopes: torch.Tensor, weights: torch.Tensor):
    """sum_j w_j q_ij (x_i - y_j) = x_i sum_j w_j q_ij - sum_j w_j q_ij y_j from the slopes q ``[..., n, m]``
    (overwritten); ``x: [..., n, d]``, ``y: [..., m, d]``, ``weights: [..., m]`` -> ``[..., n, d]``."""
    coefficients = slopes.mul_(weights[..., None, :])  # (..., n, m)
    return x * coefficients.sum(-1, keepdim=True) - coefficients @ y


def _weighted_gradient(name: str, bandwidth: float, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor):
    """Closed form of grad_x sum_j w_j k(x_i, y_j) = x_i sum_j w_j q_ij - sum_j w_j q_ij y_j (+ the energy
    kernel's base-point term x_i / (bandwidth |x_i|) sum_j w_j); ``[n, d], [m, d], [m] -> [n, d]``
    (or per replica: ``[R, n, d], [R, m, d], [R, m] -> [R, n, d]``)."""
    if name == "gaussian_scaled":  # q = -k / sigma^2, with sigma per replica
        values = _scaled_gaussian_value(squared_distances(x, y), bandwidth, x.shape[-1])  # (..., n, m)
        slopes = values.mul_(-1.0 / _replica_scale(bandwidth, values) ** 2)
    else:
        slopes = _radial_slope(name, squared_distances(x, y), bandwidth)  # (..., n, m)
    gradient = radial_weighted_gradient(x, y, slopes, weights)
    if name == "energy":
        norm_x = _safe_norm_from_squares((x * x).sum(-1, keepdim=True))  # (..., n, 1)
        total = weights.sum(-1)[..., None, None]  # (..., 1, 1)
        gradient = gradient + torch.where(norm_x > 0, x / (bandwidth * norm_x.clamp_min(1e-300)), 0.0) * total
    return gradient


#: The radial kernels whose k(s), s = |x - y|^2, has three continuous derivatives at every s >= 0,
#: so that d_{1,l} d_{2,m} k(y, y) exists (the features d_{1,l} k(y, .) of SrMMD and HrMMD): the
#: Laplace and energy kernels have no gradient at x = y.
SMOOTH_RADIAL = ("gaussian", "imq")


def _radial_derivatives(name: str, sq: torch.Tensor, bandwidth: float):
    """(k, q, dq/ds, d^2q/ds^2) at s = |x - y|^2 ``[..., n, m]`` for a kernel of :data:`SMOOTH_RADIAL`,
    q = 2 dk/ds as in :func:`_radial_slope`:

    gaussian: k = exp(-s / (2 sigma^2)), q = -k / sigma^2, dq/ds = k / (2 sigma^4), d^2q/ds^2 = -k / (4 sigma^6);
    imq: k = (1 + s / sigma^2)^(-1/2), q = -k^3 / sigma^2, dq/ds = 3 k^5 / (2 sigma^4),
    d^2q/ds^2 = -15 k^7 / (4 sigma^6).
    """
    scale = 1.0 / bandwidth**2
    if name == "gaussian":
        value = torch.exp(sq * (-0.5 * scale))
        return value, value * -scale, value * (0.5 * scale**2), value * (-0.25 * scale**3)
    value = torch.rsqrt(1.0 + sq * scale)  # imq
    return value, -scale * value**3, (1.5 * scale**2) * value**5, (-3.75 * scale**3) * value**7


@dataclass(frozen=True)
class RadialJet:
    """A kernel k(z, c) = kappa(|z - c|^2) of :data:`SMOOTH_RADIAL` and its derivatives at the pairs of
    points z_p ``[..., P, d]`` and centres c_j ``[..., J, d]``: ``difference`` z_p - c_j ``[..., P, J, d]``
    and, at s = |z_p - c_j|^2, ``value`` k, ``slope`` q = 2 dk/ds, ``slope_ds`` dq/ds and ``slope_ds2``
    d^2q/ds^2 (each ``[..., P, J]``), so that, with delta = z - c,

    grad_z k(z, c) = q delta,   Hess_z k(z, c) = q I + 2 (dq/ds) delta delta^T.
    """

    difference: torch.Tensor
    value: torch.Tensor
    slope: torch.Tensor
    slope_ds: torch.Tensor
    slope_ds2: torch.Tensor

    def columns(self, columns: slice) -> "RadialJet":
        """The jet at the centres ``columns`` only."""
        return RadialJet(self.difference[..., columns, :], self.value[..., columns], self.slope[..., columns],
                         self.slope_ds[..., columns], self.slope_ds2[..., columns])  # fmt: skip


def radial_jet(kernel: Kernel, points: torch.Tensor, centres: torch.Tensor) -> RadialJet:
    """:class:`RadialJet` of ``kernel`` (from :func:`get_kernel`, one of :data:`SMOOTH_RADIAL`) at
    ``points: [..., P, d]`` and ``centres: [..., J, d]``; ValueError for any other kernel."""
    derivatives = getattr(kernel, "radial_derivatives", None)
    if derivatives is None:
        raise ValueError(f"the kernel must be one of {list(SMOOTH_RADIAL)} (from get_kernel), got {kernel!r}")
    difference = points[..., :, None, :] - centres[..., None, :, :]  # (..., P, J, d)
    return RadialJet(difference, *derivatives((difference * difference).sum(-1)))


def get_kernel(name: str, bandwidth) -> Kernel:
    """The kernel ``name`` with its bandwidth bound: a callable ``(x, y) -> Gram``.

    It carries its ``bandwidth`` (a number; for ``gaussian_scaled`` also a tensor of the replica
    shape ``[R]``), ``weighted_gradient(x, y, w)``, the closed form of grad_x sum_j w_j k(x_i, y_j)
    ``[n, d]``, which :func:`kernel_matvec_grad` uses instead of autograd; the :data:`RADIAL`
    kernels also carry ``radial_value(sq)`` and ``radial_slope(sq, value=None)``: k and q = 2 dk/ds
    (so that grad_x k(x, y) = q (x - y)) from squared distances s = |x - y|^2 (and k at them, when
    known), else both are None; the :data:`SMOOTH_RADIAL` kernels also carry
    ``radial_derivatives(sq)`` (:func:`_radial_derivatives`), else it is None.
    """
    if name not in KERNELS:
        raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {name!r}")
    _check_bandwidth(bandwidth)
    function = KERNELS[name]

    def kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return function(x, y, bandwidth)

    kernel.__name__ = f"{name}(bandwidth={bandwidth})"
    kernel.bandwidth = bandwidth
    kernel.weighted_gradient = functools.partial(_weighted_gradient, name, bandwidth)
    radial = name in RADIAL
    kernel.radial_value = (lambda sq: _radial_value(name, sq, bandwidth)) if radial else None
    kernel.radial_slope = (lambda sq, value=None: _radial_slope(name, sq, bandwidth, value)) if radial else None
    smooth = name in SMOOTH_RADIAL
    kernel.radial_derivatives = (lambda sq: _radial_derivatives(name, sq, bandwidth)) if smooth else None
    return kernel


#: Default memory budget of the temporaries of one block of a blocked kernel reduction, per device
#: type. On the CPU a block's temporaries should stay in the last-level cache: with 32 MiB a
#: three-ring flow step at N = M = 3000 was 1.5x faster than with 256 MiB, 16 batched flows at
#: N = M = 300 1.2x (2-core AMD EPYC VM, 32 MiB L3, 2026-11-23). On a GPU every block costs
#: kernel launches, so blocks are large.
BLOCK_BYTES = {"cpu": 32 * 2**20, "cuda": 256 * 2**20}


def block_budget(device: torch.device | str) -> int:
    """The default block budget (:data:`BLOCK_BYTES`) for tensors on ``device``."""
    return BLOCK_BYTES.get(torch.device(device).type, BLOCK_BYTES["cuda"])
#: Temporaries per Gram entry of a block, autograd included (distances, exponent, kernel, gradients).
_TEMPORARIES_PER_ENTRY = 10


def block_rows(n_rows: int, n_cols: int, dtype: torch.dtype, budget_bytes: int, replicas: int = 1) -> int:
    """Rows per block so that ``replicas * rows * n_cols`` entries (and their temporaries) fit in ``budget_bytes``."""
    entry_bytes = torch.finfo(dtype).bits // 8 * _TEMPORARIES_PER_ENTRY
    return max(1, min(n_rows, budget_bytes // max(1, replicas * n_cols * entry_bytes)))


def _blocks(x: torch.Tensor, y: torch.Tensor, budget_bytes: int | None) -> tuple[torch.Tensor, ...]:
    """``x`` split into blocks of rows (dim -2) that keep one block's Gram with ``y`` within the budget
    (None: :func:`block_budget` of the device)."""
    replicas = x.shape[0] if x.dim() == 3 else 1
    budget = block_budget(x.device) if budget_bytes is None else budget_bytes
    return x.split(block_rows(x.shape[-2], y.shape[-2], x.dtype, budget, replicas), dim=-2)


def matvec(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """``matrix @ vector``: ``[n, m], [m] -> [n]``, or per replica ``[R, n, m], [R, m] -> [R, n]``."""
    return matrix @ vector if vector.dim() == 1 else (matrix @ vector[..., None])[..., 0]


def kernel_matvec(
    kernel: Kernel, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, budget_bytes: int | None = None
) -> torch.Tensor:
    """K(x, y) @ weights by blocks of rows of ``x``, without a graph.

    ``x: [n, d]``, ``y: [m, d]``, ``weights: [m]`` -> ``[n]``: sum_j k(x_i, y_j) w_j (with a leading
    replica dimension R on all three: ``[R, n]``).
    """
    with torch.no_grad():
        return torch.cat([matvec(kernel(block, y), weights) for block in _blocks(x, y, budget_bytes)], dim=-1)


def kernel_matvec_grad(
    kernel: Kernel, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, budget_bytes: int | None = None
) -> torch.Tensor:
    """Gradient in x_i of sum_j w_j k(x_i, y_j), by blocks of rows of ``x``.

    ``x: [n, d]``, ``y: [m, d]``, ``weights: [m]`` (no gradient flows into ``y`` or ``weights``)
    -> ``[n, d]`` (with a leading replica dimension R on all three: ``[R, n, d]``). Kernels from
    :func:`get_kernel` use their closed-form ``weighted_gradient``; any other callable goes through
    autograd, one block's graph at a time.
    """
    y, weights = y.detach(), weights.detach()
    closed_form = getattr(kernel, "weighted_gradient", None)
    gradients = []
    for block in _blocks(x.detach(), y, budget_bytes):
        if closed_form is not None:
            gradients.append(closed_form(block, y, weights))  # (..., rows, d)
            continue
        with torch.enable_grad():
            block = block.requires_grad_()
            (gradient,) = torch.autograd.grad(matvec(kernel(block, y), weights).sum(), block)  # (..., rows, d)
        gradients.append(gradient)
    return torch.cat(gradients, dim=-2)  # (..., n, d)


def kernel_gram(kernel: Kernel, x: torch.Tensor, y: torch.Tensor, budget_bytes: int | None = None) -> torch.Tensor:
    """The Gram K(x, y) ``[n, m]`` (``[R, n, m]`` per replica), filled by blocks of rows so that only
    the result is held in full."""
    gram = torch.empty(*x.shape[:-1], y.shape[-2], dtype=x.dtype, device=x.device)  # (..., n, m)
    start = 0
    with torch.no_grad():
        for block in _blocks(x, y, budget_bytes):
            gram[..., start:start + block.shape[-2], :] = kernel(block, y)
            start += block.shape[-2]
    return gram


def feature_gram(phi_u: torch.Tensor, phi_z: torch.Tensor) -> torch.Tensor:
    """Batch estimate of the feature kernel, K_hat(U_m, Z_n) = (1/B) sum_b phi_{U_m}(x_b)^T phi_{Z_n}(x_b).

    ``phi_u: [B, M, d_out]``, ``phi_z: [B, N, d_out]`` -> ``[M, N]``.
    """
    batch = phi_u.shape[0]
    return torch.einsum("bmo,bno->mn", phi_u, phi_z) / batch  # (M, N)
