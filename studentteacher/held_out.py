"""Scores of 2-D samplers against target points none of them saw, and the floor an exact sampler scores.

A particle-flow baseline flows onto a fixed sample of its target and DMMD trains on one, so neither
may be scored against those points. For a run with seed s the held-out sample is a fixed, separately
seeded draw: ``n`` i.i.d. points of the target from the stream SeedSequence([s, 2]) (the DMMD training
sample uses [s, 1]; a flow's target sample uses s itself). The floor is what a perfect sampler
scores: a fresh exact sample with as many points N as the method moves, drawn from SeedSequence([s, 3]),
against the same held-out points. The metrics (W1, W2 exact OT; MMD^2 under the toy's reference
Gaussian kernel, :func:`studentteacher.flows.metrics.sample_distances`):

    sample_w1, sample_w2, sample_mmd2                   the particles [N, 2] against the held-out [n, 2]
    sample_w1_floor, sample_w2_floor, sample_mmd2_floor  an exact sample [N, 2] against the same points

A method's ratio to the floor (sample_w1 / sample_w1_floor; 1 is as good as exact sampling) compares
targets with different scales. Exact draws (:func:`exact_sample`): ``three_rings`` a ring chosen
uniformly, the angle U[0, 2 pi) (the flows' target is the deterministic equispaced version of this
law); ``spiral`` 0.12 t (cos t, sin t) + 0.02 eps with t ~ U[0.5 pi, 4.5 pi] (the flows' target puts t on
an equispaced grid); ``mog`` and ``swiss_roll`` :mod:`studentteacher.toys`' samplers.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from . import toys
from .flows.metrics import sample_distances

#: The 2-D targets with an exact sampler (the targets of DMMD and its baselines, and the SrMMD paper's spiral).
TARGETS = ("three_rings", "mog", "swiss_roll", "spiral")
#: SeedSequence([seed, purpose]) entropy of each derived stream (1: DMMD's training sample).
HELD_OUT, FLOOR = 2, 3


def derived_seed(seed: int, purpose: int) -> int:
    """A seed derived from a run's ``seed`` for one ``purpose`` (SeedSequence([seed, purpose])), independent
    of every stream drawn from ``seed`` itself."""
    return int(np.random.SeedSequence([seed, purpose]).generate_state(1, np.uint64)[0] >> 1)


def exact_sample(name: str, n: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """``n`` i.i.d. points ``[n, 2]`` of the 2-D target ``name`` (module docstring), on the CPU."""
    if name == "three_rings":
        centres = torch.tensor([[0.0, 0.0], [0.0, -0.75], [0.0, -1.5]], dtype=dtype)  # (3, 2)
        ring = torch.randint(0, 3, (n,), generator=generator)  # (n,)
        angle = 2.0 * math.pi * torch.rand(n, generator=generator, dtype=dtype)  # (n,)
        return centres[ring] + 0.3 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    if name == "mog":
        return toys.mixture_of_gaussians(n, generator, dtype)
    if name == "swiss_roll":
        return toys.swiss_roll(n, generator, dtype)
    if name == "spiral":
        t = math.pi * (0.5 + 4.0 * torch.rand(n, generator=generator, dtype=dtype))  # (n,)
        noise = torch.randn(n, 2, generator=generator, dtype=dtype)  # (n, 2)
        return 0.12 * t[:, None] * torch.stack([torch.cos(t), torch.sin(t)], dim=1) + 0.02 * noise
    raise ValueError(f"target must be one of {list(TARGETS)} for an exact sample, got {name!r}")


def held_out_sample(name: str, n: int, seed: int, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """The held-out sample ``[n, 2]`` of a run with ``seed`` (module docstring), in ``dtype``. Always drawn in
    float32 (the DMMD runs' dtype), then cast: a float64 flow and a float32 DMMD run of one seed are scored
    against the same points (a float64 draw from the same stream would be other points)."""
    generator = torch.Generator().manual_seed(derived_seed(seed, HELD_OUT))
    return exact_sample(name, n, generator, torch.float32).to(device, dtype)


def floor_metrics(name: str, n_particles: int, held_out: torch.Tensor, seed: int) -> dict[str, float]:
    """``sample_{w1,w2,mmd2}_floor``: an exact sample of ``n_particles`` points (its own stream) against
    ``held_out: [n, 2]`` (module docstring), as plain floats."""
    generator = torch.Generator().manual_seed(derived_seed(seed, FLOOR))
    exact = exact_sample(name, n_particles, generator, torch.float64)
    distances = sample_distances(exact, held_out.detach().cpu().double(), toys.REFERENCE_BANDWIDTH[name])
    return {f"sample_{metric}_floor": value for metric, value in distances.items()}


def held_out_metrics(name: str, particles: torch.Tensor, held_out: torch.Tensor) -> dict[str, float]:
    """``sample_{w1,w2,mmd2}``: ``particles: [N, 2]`` against ``held_out: [n, 2]``, as plain floats."""
    points = held_out.to(particles.device, particles.dtype)  # (n, 2)
    distances = sample_distances(particles, points, toys.REFERENCE_BANDWIDTH[name])
    return {f"sample_{metric}": value for metric, value in distances.items()}


def final_scores(name: str, particles: torch.Tensor, n_held_out: int, seed: int) -> dict[str, float]:
    """The held-out metrics and their floor (module docstring) of a run with ``seed`` whose final
    particles are ``particles: [N, 2]``, against its held-out sample of ``n_held_out`` points; {} for a
    target without an exact sampler."""
    if name not in TARGETS:
        return {}
    points = held_out_sample(name, n_held_out, seed)
    return {**held_out_metrics(name, particles, points), **floor_metrics(name, len(particles), points, seed)}
