"""DMMD samplers, a registry from the ``sampler`` config name to the class (one module each; see
:mod:`~studentteacher.dmmd.samplers.base` for the step and the table)."""
from __future__ import annotations

from .approximate import ApproximateSampler
from .base import ParticleSideTrajectory, Sampler, SamplingTrajectory, run_sampler
from .interacting import InteractingSampler
from .pairwise import PairwiseSampler
from .self_potential import SelfPotentialSampler

SAMPLERS: dict[str, type[Sampler]] = {cls.name: cls for cls in (InteractingSampler, ApproximateSampler,
                                                                PairwiseSampler, SelfPotentialSampler)}  # fmt: skip
#: The samplers that replay an interacting run's recording (:class:`ParticleSideTrajectory`).
REPLAYING = ("approximate",)


def make_sampler(name: str, discriminator, kernel, data, recording: ParticleSideTrajectory | None = None) -> Sampler:
    """``SAMPLERS[name](discriminator, kernel, data)`` (``recording``: that of a :data:`REPLAYING` sampler,
    which needs one); ValueError listing the valid names."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {list(SAMPLERS)}, got {name!r}")
    if (name in REPLAYING) != (recording is not None):
        raise ValueError(f"sampler {name!r} {'needs' if name in REPLAYING else 'takes no'} recording")
    if name in REPLAYING:
        return SAMPLERS[name](discriminator, kernel, data, recording)
    return SAMPLERS[name](discriminator, kernel, data)


__all__ = ["SAMPLERS", "REPLAYING", "make_sampler", "Sampler", "SamplingTrajectory", "ParticleSideTrajectory",
           "run_sampler", "InteractingSampler", "ApproximateSampler", "PairwiseSampler",
           "SelfPotentialSampler"]  # fmt: skip
