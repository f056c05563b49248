"""Sample quality of generated 8x8 digits: a Frechet distance in a classifier's feature space and the
class histogram (mode coverage), a small FID for :mod:`studentteacher.digits`.

A small MLP classifier (64 -> 128 -> 64 -> 10, SiLU, 150 full-batch Adam steps, float64, its weights drawn
from ``torch.Generator`` seed 0) is trained on the training digits once per process (cached);
it reaches > 0.9 accuracy on the held-out digits. Its 64 penultimate activations are the features
of the Frechet distance

.. math::

    \\mathrm{FD} = |\\mu_1 - \\mu_2|^2
        + \\mathrm{tr}\\big(\\Sigma_1 + \\Sigma_2 - 2 (\\Sigma_1^{1/2} \\Sigma_2 \\Sigma_1^{1/2})^{1/2}\\big)

between Gaussians fitted to the features of the samples and of the held-out digits (unbiased
covariances); the square roots come from symmetric eigendecompositions (eigenvalues clamped at 0).
The class histogram of the samples (the classifier's argmax) gives its entropy (nats, log 10 at
most) and the coverage: the number of classes predicted for at least 10 % of a uniform share
(N / 100 samples).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from .. import digits
from .discriminator import init_uniform

HIDDEN, FEATURES, EPOCHS, LR = 128, 64, 150, 1e-2
COVERAGE_SHARE = 0.1


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric PSD ``[k, k]`` (eigenvalues clamped at 0)."""
    values, vectors = torch.linalg.eigh(0.5 * (matrix + matrix.T))
    return (vectors * values.clamp_min(0.0).sqrt()) @ vectors.T


def frechet_from_moments(mean_1, cov_1, mean_2, cov_2) -> float:
    """FD between N(mean_1, cov_1) and N(mean_2, cov_2) (``[k]``, ``[k, k]``, float64; module docstring)."""
    root = _psd_sqrt(cov_1)
    middle = torch.linalg.eigvalsh(root @ cov_2 @ root).clamp_min(0.0).sqrt().sum()
    return float(((mean_1 - mean_2) ** 2).sum() + torch.trace(cov_1) + torch.trace(cov_2) - 2.0 * middle)


def frechet_distance(features_1: torch.Tensor, features_2: torch.Tensor) -> float:
    """FD between Gaussians fitted to ``features_1: [n, k]`` and ``features_2: [m, k]`` (float64)."""
    a, b = features_1.double(), features_2.double()
    return frechet_from_moments(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


class DigitsClassifier(nn.Module):
    """64 -> 128 -> 64 (the features) -> 10 logits, SiLU."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, HIDDEN, dtype=torch.float64), nn.SiLU(),
                                  nn.Linear(HIDDEN, FEATURES, dtype=torch.float64), nn.SiLU())  # fmt: skip
        self.head = nn.Linear(FEATURES, digits.CLASSES, dtype=torch.float64)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate activations ``[n, 64]`` of images ``[n, 64]`` in [-1, 1]."""
        return self.body(images.double().cpu())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


@functools.lru_cache(maxsize=1)
def classifier() -> DigitsClassifier:
    """The classifier trained on the training digits (deterministic; cached per process), in eval mode."""
    data = digits.load()
    generator = torch.Generator().manual_seed(0)
    model = DigitsClassifier()
    init_uniform(model, generator)
    optimiser = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=1e-4)
    for _ in range(EPOCHS):
        optimiser.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(data.train), data.train_labels).backward()
        optimiser.step()
    return model.eval().requires_grad_(False)


def accuracy(images: torch.Tensor, labels: torch.Tensor) -> float:
    """The classifier's accuracy on ``images: [n, 64]`` with ``labels: [n]``."""
    return float((classifier()(images).argmax(1) == labels.cpu()).double().mean())


@dataclass(frozen=True)
class DigitsQuality:
    """``frechet`` (FD to the held-out digits), ``histogram`` (samples per predicted class, 10
    counts), ``entropy`` of its frequencies (nats) and ``coverage`` (classes with >= 10 % of a uniform share)."""

    frechet: float
    histogram: list[int]
    entropy: float
    coverage: int


def digits_quality(samples: torch.Tensor) -> DigitsQuality:
    """Sample quality of generated digits ``samples: [N, 64]`` (module docstring)."""
    model = classifier()
    samples = samples.detach().double().cpu()
    frechet = frechet_distance(model.features(samples), model.features(digits.load().held_out))
    counts = torch.bincount(model(samples).argmax(1), minlength=digits.CLASSES)  # (10,)
    shares = counts.double() / counts.sum()
    entropy = float(-(shares[shares > 0] * shares[shares > 0].log()).sum())
    coverage = int((counts >= COVERAGE_SHARE * len(samples) / digits.CLASSES).sum())
    return DigitsQuality(frechet, counts.tolist(), entropy, coverage)
