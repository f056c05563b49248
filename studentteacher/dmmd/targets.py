"""The data DMMD learns to sample, with the held-out sample its metrics compare against.

=============== ====================================================================================
target          training data ``[n_train, d]`` / held-out sample ``[n_eval, d]``
=============== ====================================================================================
``three_rings`` the toy of :mod:`studentteacher.toys` (d = 2) drawn with a seed derived from the run's
``mog``         seed (SeedSequence([seed, 1]); the rings: deterministic, equispaced) for training; the
``swiss_roll``  held-out sample is a separately seeded exact draw (:func:`studentteacher.held_out.held_out_sample`),
                the points that the particle-flow baselines of the same seed are scored against too,
                and that no method saw
``digits``      the scaled 8x8 digits (d = 64, :mod:`studentteacher.digits`): the 1437 training and
                360 held-out images of the fixed split (``n_train`` and ``n_eval`` are not used)
=============== ====================================================================================
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import digits, toys
from ..held_out import derived_seed, held_out_sample

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
    """The seed of the training sample of a 2-D toy: derived from the run's ``seed`` (SeedSequence([seed, 1])),
    so that it is independent of the held-out sample and of a flow's target sample of that seed."""
    return derived_seed(seed, 1)


def load_target(name: str, n_train: int, n_eval: int, seed: int, dtype=torch.float32, device="cpu") -> TargetData:
    """The data of target ``name`` (module docstring)."""
    if name not in TARGETS:
        raise ValueError(f"target must be one of {list(TARGETS)}, got {name!r}")
    if name == "digits":
        split = digits.load()
        return TargetData(name, split.train.to(device, dtype), split.held_out.to(device, dtype), None)
    train = toys.make_toy(name, 1, n_train, training_seed(seed), dtype, device).target
    held_out = held_out_sample(name, n_eval, seed, dtype, device)
    return TargetData(name, train, held_out, toys.REFERENCE_BANDWIDTH[name])
