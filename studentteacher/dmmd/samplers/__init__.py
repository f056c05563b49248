"""DMMD samplers, a registry from the ``sampler`` config name to the class (one module each; see
:mod:`~studentteacher.dmmd.samplers.base` for the step and the table)."""
from __future__ import annotations

from .approximate import ApproximateSampler
from .base import Sampler, SamplingTrajectory, run_sampler
from .interacting import InteractingSampler
from .pairwise import PairwiseSampler

SAMPLERS: dict[str, type[Sampler]] = {cls.name: cls for cls in (InteractingSampler, ApproximateSampler, PairwiseSampler)}


def make_sampler(name: str, discriminator, kernel, data) -> Sampler:
    """``SAMPLERS[name](discriminator, kernel, data)``; ValueError listing the valid names."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {list(SAMPLERS)}, got {name!r}")
    return SAMPLERS[name](discriminator, kernel, data)


__all__ = ["SAMPLERS", "make_sampler", "Sampler", "SamplingTrajectory", "run_sampler", "InteractingSampler",
           "PairwiseSampler", "ApproximateSampler"]  # fmt: skip
