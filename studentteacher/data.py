"""Inputs, teacher-labelled datasets held on the device, shuffled orders, and random streams.

Every source of randomness of a run has its own ``torch.Generator``, seeded from the run's
seed and the stream's name (:func:`make_generators`), so that e.g. changing ``n_particles``
(the student stream) leaves the teacher and the datasets unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

STREAMS = ("teacher", "student", "train", "valid", "batches", "noise")
INPUT_DISTS = ("sphere", "gaussian")


def stream_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for ``stream``, derived from the run's ``seed`` with numpy's SeedSequence."""
    index = STREAMS.index(stream)
    return int(np.random.SeedSequence([int(seed) % 2**63, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def make_generators(seed: int, device: torch.device | str = "cpu") -> dict[str, torch.Generator]:
    """One generator per stream of STREAMS. Initialisations, data and the batch order are drawn
    on the CPU (the same bits on every device: a float64 GPU run follows its CPU twin); the noise
    is drawn on ``device`` so that the hot path never copies it."""
    generators = {}
    for stream in STREAMS:
        on_device = stream == "noise"
        generator = torch.Generator(device=device if on_device else "cpu")
        generator.manual_seed(stream_seed(seed, stream))
        generators[stream] = generator
    return generators


def sample_inputs(n: int, d: int, dist: str, generator: torch.Generator) -> torch.Tensor:
    """``n`` inputs in R^d, float64 on the generator's device: uniform on the unit sphere
    (a standard Gaussian vector divided by its norm) or standard Gaussian. ``[n, d]``."""
    if dist not in INPUT_DISTS:
        raise ValueError(f"input_dist must be one of {list(INPUT_DISTS)}, got {dist!r}")
    x = torch.randn(n, d, generator=generator, dtype=torch.float64, device=generator.device)
    if dist == "sphere":
        x = x / x.norm(dim=1, keepdim=True)
    return x


@dataclass
class Dataset:
    """Inputs ``x: [n, d]`` and teacher labels ``y = f_T(x): [n, d_out]`` on one device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    def order(self, generator: torch.Generator) -> torch.Tensor:
        """The row order of one shuffled pass: a permutation of range(n) drawn with ``generator``, on
        its device (the training loop moves it to the data's device and takes batches of it). ``[n]``."""
        return torch.randperm(len(self), generator=generator, device=generator.device)


def labelled_dataset(
    n: int, d: int, dist: str, teacher_fn, generator: torch.Generator, dtype: torch.dtype, device
) -> Dataset:
    """Draw ``n`` inputs with ``generator``, cast and move them, and label them with ``teacher_fn(x)``."""
    x = sample_inputs(n, d, dist, generator).to(device=device, dtype=dtype)
    with torch.no_grad():
        y = teacher_fn(x)
    return Dataset(x=x, y=y)
