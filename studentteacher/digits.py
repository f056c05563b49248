"""The 8x8 digits of scikit-learn (``sklearn.datasets.load_digits``: 1797 images shipped with the
package, no download), scaled to [-1, 1] and split once into a training and a held-out part.

Pixels are integers 0..16; we use x = pixel / 8 - 1 in [-1, 1] (``[n, 64]``, row-major 8 x 8).
The split is fixed (a permutation drawn from seed 0, :data:`HELD_OUT` = 360 of the :data:`SIZE` =
1797 images held out, the other 1437 for training), whatever a run's seed, so that every run and
the sample-quality classifier (:mod:`studentteacher.dmmd.sample_quality`) see the same held-out digits.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

SIZE = 1797  # images in scikit-learn's digits
HELD_OUT = 360
SIDE = 8
CLASSES = 10


@dataclass(frozen=True)
class Digits:
    """``train: [1437, 64]``, ``train_labels: [1437]``, ``held_out: [360, 64]``, ``held_out_labels: [360]``
    (float64 images in [-1, 1], int64 labels)."""

    train: torch.Tensor
    train_labels: torch.Tensor
    held_out: torch.Tensor
    held_out_labels: torch.Tensor


def scale(pixels) -> torch.Tensor:
    """Pixels 0..16 -> [-1, 1]: pixel / 8 - 1 (float64)."""
    return torch.as_tensor(np.asarray(pixels, dtype=np.float64)) / 8.0 - 1.0


@functools.lru_cache(maxsize=1)
def load() -> Digits:
    """The scaled digits and the fixed split (cached per process)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = torch.as_tensor(np.random.default_rng(0).permutation(len(bunch.target)))
    images, labels = scale(bunch.data)[order], torch.as_tensor(bunch.target, dtype=torch.int64)[order]
    return Digits(images[HELD_OUT:], labels[HELD_OUT:], images[:HELD_OUT], labels[:HELD_OUT])
