"""Toy targets and sources of the 2-D particle flows (docs/model.md).

Each toy is a pair (source ``Y0: [N, d]``, target ``X: [M, d]``) drawn from two independent
``torch.Generator`` streams derived from one seed (``numpy.random.SeedSequence(seed).spawn``), so
that changing ``n_particles`` never changes the target and vice versa. No global seeding.

=============== ====================================================== =============================
name            target (M points)                                       source (N points)
=============== ====================================================== =============================
``three_rings`` circles of radius 0.3 centred at (0, 0), (0, -0.75),    N((0, -0.3), 0.01^2 I)
                (0, -1.5), M/3 equispaced points each (angles
                ``linspace(0, 2 pi)`` without the endpoint; M must be a
                multiple of 3); deterministic
``mog``         mixture of 4 Gaussians at (+-2, +-2), variance 0.3      N(0, 0.1^2 I)
                (std sqrt(0.3)), equal weights
``gaussian``    N(0, s^2 I) in 2-D with s = :data:`GAUSSIAN_SCALE`      N(1, I) (mean (1, 1))
``gaussian_1d`` N(0, 1) in 1-D                                          N(10, 0.5), 0.5 the *variance*
``gaussian_nd`` N(0, sigma^2 I) in R^d (d = ``dim``),                   N(mu_0, sigma^2 I), mu_0 =
                sigma = :data:`GAUSSIAN_ND_SCALE`                       ``source_distance`` (1, ..., 1)
                                                                        / sqrt(d), so |mu_0| =
                                                                        ``source_distance``
``swiss_roll``  (t cos t, t sin t) / 5 + N(0, 0.05^2 I), t = 1.5 pi     N(0, I) (the DMMD prior)
                (1 + 2 u), u ~ U[0, 1] (:func:`swiss_roll`)
``spiral``      0.12 t (cos t, sin t) + N(0, 0.02^2 I), t equispaced   N(0, 0.05^2 I)
                over [0.5 pi, 4.5 pi] (both ends; :func:`spiral`)
=============== ====================================================== =============================

``spiral`` is the Swiss roll of the SrMMD paper's figure 1 (Tian et al., 2026) as its released code
draws it: equispaced t and a tighter, less noisy roll than ``swiss_roll``, from a narrow source.

``gaussian_nd`` is the setting of Proposition 3.1 of Galashov et al. (2025) (the adaptive bandwidth,
:mod:`studentteacher.bandwidth`); ``dim`` and ``source_distance`` are used by it alone.

The 1-D setting is the Gaussian experiment of Arbel et al. (2019, "Maximum mean discrepancy
gradient flow"), who write N(10, 0.5); we read the second argument as a variance, as in their
N(0, 1) notation, so the source has std sqrt(0.5).

Each toy also fixes the bandwidth of the *reference* Gaussian kernel used for the logged
``mmd2`` metric (:data:`REFERENCE_BANDWIDTH`), independent of the flow's own kernel so that
runs with different kernels are comparable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

#: Standard deviation s of the ``gaussian`` target N(0, s^2 I).
GAUSSIAN_SCALE = 0.5

#: Standard deviation sigma of the ``gaussian_nd`` target N(0, sigma^2 I) and source N(mu_0, sigma^2 I).
GAUSSIAN_ND_SCALE = 1.0

#: Bandwidth sigma of the reference Gaussian kernel exp(-|x-y|^2 / (2 sigma^2)) of the ``mmd2`` metric;
#: for ``gaussian_nd`` it is multiplied by sqrt(d), the scale of |x - y| in R^d.
REFERENCE_BANDWIDTH = {"three_rings": 0.15, "mog": 1.0, "gaussian": 1.0, "gaussian_1d": 1.0, "gaussian_nd": 1.0,
                       "swiss_roll": 0.5, "spiral": 0.5}  # fmt: skip

TARGETS = tuple(REFERENCE_BANDWIDTH)

#: The keyword options of :func:`make_toy` (``gaussian_nd`` only) and their defaults.
TOY_OPTIONS = {"dim": 2, "source_distance": 4.0}


@dataclass(frozen=True)
class Toy:
    """A toy problem: ``source: [N, d]`` (initial particles), ``target: [M, d]``, its reference bandwidth."""

    name: str
    source: torch.Tensor
    target: torch.Tensor
    reference_bandwidth: float


def generators(seed: int, count: int, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """``count`` independent ``torch.Generator`` streams derived from ``seed`` (SeedSequence spawn)."""
    children = np.random.SeedSequence(seed).spawn(count)
    return [torch.Generator(device=device).manual_seed(int(c.generate_state(1, np.uint64)[0] >> 1)) for c in children]


def three_rings(n_target: int, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """Three circles of radius 0.3 at (0, 0), (0, -0.75), (0, -1.5), n_target/3 points each -> ``[M, 2]``."""
    if n_target % 3:
        raise ValueError(f"n_target must be a multiple of 3 for three_rings, got {n_target!r}")
    per_ring = n_target // 3
    angles = torch.linspace(0.0, 2.0 * math.pi, per_ring + 1, dtype=dtype, device=device)[:-1]  # (M/3,)
    circle = 0.3 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # (M/3, 2)
    centres = torch.tensor([[0.0, 0.0], [0.0, -0.75], [0.0, -1.5]], dtype=dtype, device=device)  # (3, 2)
    return (centres[:, None, :] + circle[None, :, :]).reshape(n_target, 2)  # (M, 2)


def _normal(n: int, mean, std: float, generator: torch.Generator, dtype, device) -> torch.Tensor:
    mean = torch.as_tensor(mean, dtype=dtype, device=device)  # (d,)
    noise = torch.randn(n, mean.shape[0], generator=generator, dtype=dtype, device=device)  # (n, d)
    return mean + std * noise


def mixture_of_gaussians(n_target: int, generator: torch.Generator, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """Equal-weight mixture of N(c, 0.3 I), c in {(+-2, +-2)} -> ``[M, 2]``."""
    centres = torch.tensor([[2.0, 2.0], [2.0, -2.0], [-2.0, 2.0], [-2.0, -2.0]], dtype=dtype, device=device)
    component = torch.randint(0, 4, (n_target,), generator=generator, device=device)  # (M,)
    noise = torch.randn(n_target, 2, generator=generator, dtype=dtype, device=device)  # (M, 2)
    return centres[component] + math.sqrt(0.3) * noise


def swiss_roll(n_target: int, generator: torch.Generator, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """The 2-D Swiss roll (t cos t, t sin t) / 5 + 0.05 eps, t = 1.5 pi (1 + 2 u), u ~ U[0, 1], eps ~ N(0, I)
    (scikit-learn's ``make_swiss_roll`` in the plane, scaled to about [-2.8, 2.8]) -> ``[M, 2]``."""
    t = 1.5 * math.pi * (1.0 + 2.0 * torch.rand(n_target, generator=generator, dtype=dtype, device=device))  # (M,)
    noise = torch.randn(n_target, 2, generator=generator, dtype=dtype, device=device)  # (M, 2)
    return torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 5.0 + 0.05 * noise


def spiral(n_target: int, generator: torch.Generator, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """0.12 t (cos t, sin t) + 0.02 eps, t = linspace(0.5 pi, 4.5 pi, M) (both ends), eps ~ N(0, I)
    -> ``[M, 2]`` (radius 0.06 pi to 0.54 pi, about 0.19 to 1.70)."""
    t = torch.linspace(0.5 * math.pi, 4.5 * math.pi, n_target, dtype=dtype, device=device)  # (M,)
    noise = torch.randn(n_target, 2, generator=generator, dtype=dtype, device=device)  # (M, 2)
    return 0.12 * t[:, None] * torch.stack([torch.cos(t), torch.sin(t)], dim=1) + 0.02 * noise


def _gaussian_nd(n_particles, n_target, dim, source_distance, streams, dtype, device):
    """(source, target) of ``gaussian_nd``: N(mu_0, sigma^2 I) and N(0, sigma^2 I) in R^dim, |mu_0| = source_distance."""
    if not (isinstance(dim, int) and dim >= 1):
        raise ValueError(f"dim must be an integer >= 1, got {dim!r}")
    target = _normal(n_target, [0.0] * dim, GAUSSIAN_ND_SCALE, streams[0], dtype, device)
    source = _normal(n_particles, [source_distance / math.sqrt(dim)] * dim, GAUSSIAN_ND_SCALE, streams[1], dtype, device)
    return source, target


def make_toy(name: str, n_particles: int, n_target: int, seed: int, dtype=torch.float64, device="cpu", *,
             dim: int = TOY_OPTIONS["dim"],
             source_distance: float = TOY_OPTIONS["source_distance"]) -> Toy:  # fmt: skip
    """The toy ``name`` (one of :data:`TARGETS`) with N source particles and M target points
    (``dim`` and ``source_distance``: ``gaussian_nd`` only).

    Points are drawn on the CPU from CPU generators, then moved to ``device``, so that a seed gives
    the same toy on every device.
    """
    if name not in REFERENCE_BANDWIDTH:
        raise ValueError(f"target must be one of {list(TARGETS)}, got {name!r}")
    target_stream, source_stream = generators(seed, 2)
    device, on = "cpu", device
    reference = REFERENCE_BANDWIDTH[name] * (math.sqrt(dim) if name == "gaussian_nd" else 1.0)
    if name == "gaussian_nd":
        source, target = _gaussian_nd(n_particles, n_target, dim, source_distance, (target_stream, source_stream),
                                      dtype, device)  # fmt: skip
    elif name == "swiss_roll":
        target = swiss_roll(n_target, target_stream, dtype, device)
        source = _normal(n_particles, [0.0, 0.0], 1.0, source_stream, dtype, device)
    elif name == "spiral":
        target = spiral(n_target, target_stream, dtype, device)
        source = _normal(n_particles, [0.0, 0.0], 0.05, source_stream, dtype, device)
    elif name == "three_rings":
        target = three_rings(n_target, dtype, device)
        source = _normal(n_particles, [0.0, -0.3], 0.01, source_stream, dtype, device)
    elif name == "mog":
        target = mixture_of_gaussians(n_target, target_stream, dtype, device)
        source = _normal(n_particles, [0.0, 0.0], 0.1, source_stream, dtype, device)
    elif name == "gaussian":
        target = _normal(n_target, [0.0, 0.0], GAUSSIAN_SCALE, target_stream, dtype, device)
        source = _normal(n_particles, [1.0, 1.0], 1.0, source_stream, dtype, device)
    else:  # gaussian_1d
        target = _normal(n_target, [0.0], 1.0, target_stream, dtype, device)
        source = _normal(n_particles, [10.0], math.sqrt(0.5), source_stream, dtype, device)
    return Toy(name, source.to(on), target.to(on), reference)
