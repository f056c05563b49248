"""The digits and their sample-quality metric (studentteacher.digits, studentteacher.dmmd.sample_quality)
against closed forms: the Frechet distance of Gaussians, a set against itself, the classifier's accuracy."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from studentteacher import digits
from studentteacher.dmmd import sample_quality

DTYPE = torch.float64


def _orthogonal(k, seed):
    q, _ = torch.linalg.qr(torch.randn(k, k, generator=torch.Generator().manual_seed(seed), dtype=DTYPE))
    return q


def test_frechet_distance_of_gaussians_matches_the_closed_forms():
    k, q = 5, _orthogonal(5, 0)
    a, b = torch.tensor([1.0, 2.0, 0.5, 3.0, 0.1], dtype=DTYPE), torch.tensor([2.0, 0.5, 0.5, 1.0, 4.0], dtype=DTYPE)
    mean_1, mean_2 = torch.zeros(k, dtype=DTYPE), torch.arange(k, dtype=DTYPE)
    cov_1, cov_2 = q @ torch.diag(a) @ q.T, q @ torch.diag(b) @ q.T  # commuting: FD = |dm|^2 + sum (sqrt a - sqrt b)^2
    exact = float((mean_1 - mean_2).pow(2).sum() + (a.sqrt() - b.sqrt()).pow(2).sum())
    assert sample_quality.frechet_from_moments(mean_1, cov_1, mean_2, cov_2) == pytest.approx(exact, rel=1e-10)
    cov_3 = _orthogonal(5, 1) @ torch.diag(b) @ _orthogonal(5, 1).T  # not commuting: scipy's sqrtm as reference
    root = scipy.linalg.sqrtm(cov_1.numpy() @ cov_3.numpy()).real
    reference = float((mean_1 - mean_2).pow(2).sum()) + float(np.trace(cov_1.numpy() + cov_3.numpy() - 2 * root))
    assert sample_quality.frechet_from_moments(mean_1, cov_1, mean_2, cov_3) == pytest.approx(reference, rel=1e-8)
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(40_000, k, generator=generator, dtype=DTYPE) @ (q @ torch.diag(a.sqrt())).T + mean_1
    y = torch.randn(40_000, k, generator=generator, dtype=DTYPE) @ (q @ torch.diag(b.sqrt())).T + mean_2
    assert sample_quality.frechet_distance(x, y) == pytest.approx(exact, rel=0.03)
    assert abs(sample_quality.frechet_distance(x, x)) < 1e-8


def test_digits_split_scale_and_classifier():
    data = digits.load()
    assert data.train.shape == (1437, 64) and data.held_out.shape == (360, 64)
    assert float(data.train.min()) == -1.0 and float(data.train.max()) == 1.0
    assert set(data.held_out_labels.tolist()) == set(range(10))
    assert sample_quality.accuracy(data.held_out, data.held_out_labels) > 0.9
    assert sample_quality.classifier() is sample_quality.classifier(), "cached per process"


def test_digits_quality_separates_real_digits_from_collapsed_and_noise_samples():
    data = digits.load()
    real = sample_quality.digits_quality(data.train[:500])
    assert real.coverage == 10 and real.entropy > 0.95 * np.log(10) and sum(real.histogram) == 500
    assert abs(sample_quality.digits_quality(data.held_out).frechet) < 1e-8, "FD of the held-out set with itself"
    collapsed = sample_quality.digits_quality(data.train[:1].expand(200, 64))
    assert collapsed.coverage == 1 and collapsed.entropy == 0.0
    noise = torch.rand(300, 64, generator=torch.Generator().manual_seed(0), dtype=DTYPE) * 2 - 1
    assert sample_quality.digits_quality(noise).frechet > 10 * real.frechet
