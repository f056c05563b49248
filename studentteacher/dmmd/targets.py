"""The data DMMD learns to sample, with the held-out sample its metrics compare against.

=============== ====================================================================================
target          training data ``[n_train, d]`` / held-out sample ``[n_eval, d]``
=============== ====================================================================================
``three_rings`` the toy of :mod:`studentteacher.toys` (d = 2): its target points (deterministic,
``mog``         equispaced for the rings) drawn with a seed derived from the run's seed for training;
``swiss_roll``  the held-out sample is *the* target sample of the ``particle_flow`` run with the same
                seed and ``n_target = n_eval``, so DMMD and the particle-flow baselines are measured
                against the same points
``digits``      the scaled 8x8 digits (d = 64, :mod:`studentteacher.digits`): the 1437 training and
                360 held-out images of the fixed split (``n_train`` and ``n_eval`` are not used)
=============== ====================================================================================
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import digits, toys

TARGETS = ("three_rings", "mog", "swiss_roll", "digits")


@dataclass(frozen=True)
class TargetData:
    """``train: [n, d]`` and ``held_out: [m, d]`` on the run's device and dtype; ``reference_bandwidth`` of
    the 2-D toys' reference Gaussian kernel (None for the digits)."""

    name: str
    train: torch.Tensor
    held_out: torch.Tensor
    reference_bandwidth: float | None


def training_seed(seed: int) -> int:
    """The seed of the training sample of a 2-D toy: derived from the run's ``seed`` (SeedSequence), so
    that it is independent of the held-out sample drawn with ``seed`` itself."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1, np.uint64)[0] >> 1)


def load_target(name: str, n_train: int, n_eval: int, seed: int, dtype=torch.float32, device="cpu") -> TargetData:
    """The data of target ``name`` (module docstring)."""
    if name not in TARGETS:
        raise ValueError(f"target must be one of {list(TARGETS)}, got {name!r}")
    if name == "digits":
        split = digits.load()
        return TargetData(name, split.train.to(device, dtype), split.held_out.to(device, dtype), None)
    train = toys.make_toy(name, 1, n_train, training_seed(seed), dtype, device).target
    held_out = toys.make_toy(name, 1, n_eval, seed, dtype, device)
    return TargetData(name, train, held_out.target, held_out.reference_bandwidth)
