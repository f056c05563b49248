"""The closed forms of studentteacher.bandwidth (Proposition 3.1 of Galashov et al., 2025) against
independent computations: a float64 Monte Carlo estimate of MMD^2_alpha with the scaled kernel,
autograd of the closed form, and a numerical argmax of the gradient norm over a fine grid."""
from __future__ import annotations

import math

import pytest
import torch

from studentteacher import bandwidth

CASES = [(2, 3.0, 1.0), (2, 6.0, 0.5), (10, 8.0, 1.0), (10, 20.0, 1.0), (50, 30.0, 1.0), (50, 100.0, 2.0)]


def scaled_gaussian(x, y, alpha):
    """alpha^(-d) exp(-|x - y|^2 / (2 alpha^2)), float64, [n, m]."""
    return alpha ** (-x.shape[1]) * torch.exp(-torch.cdist(x, y) ** 2 / (2 * alpha**2))


@pytest.mark.parametrize("d, distance, sigma", [(1, 2.0, 1.0), (2, 1.5, 0.7), (3, 2.5, 1.0)])
def test_mmd2_closed_form_matches_a_float64_sample_estimate(d, distance, sigma):
    generator = torch.Generator().manual_seed(d)
    mu = torch.zeros(d, dtype=torch.float64)
    mu[0] = distance
    n, alpha = 4000, 1.3
    x = sigma * torch.randn(n, d, generator=generator, dtype=torch.float64)
    y = mu + sigma * torch.randn(n, d, generator=generator, dtype=torch.float64)
    # unbiased U-statistic: drop the diagonals of the within-sample Grams
    kxx, kyy, kxy = scaled_gaussian(x, x, alpha), scaled_gaussian(y, y, alpha), scaled_gaussian(x, y, alpha)
    estimate = ((kxx.sum() - kxx.diagonal().sum()) + (kyy.sum() - kyy.diagonal().sum())) / (n * (n - 1)) - 2 * kxy.mean()
    exact = bandwidth.mmd2_gaussians(mu, sigma, alpha)
    assert float(estimate) == pytest.approx(float(exact), rel=0.05)


@pytest.mark.parametrize("d, distance, sigma", CASES)
def test_gradient_closed_form_matches_autograd(d, distance, sigma):
    """Autograd of the value written with exp (the module's expm1 form has an inexact backward:
    its derivative is rebuilt as expm1 + 1, which loses the tiny exp(-|mu|^2 / 2s) far away)."""
    mu = torch.full((d,), distance / math.sqrt(d), dtype=torch.float64, requires_grad=True)
    for alpha in (0.5, 2.0, 7.0):
        s = alpha**2 + 2 * sigma**2
        value = 2 * s ** (-d / 2) * (1 - torch.exp(-(mu**2).sum() / (2 * s)))
        assert float(value.detach()) == pytest.approx(float(bandwidth.mmd2_gaussians(mu.detach(), sigma, alpha)), rel=1e-12)
        (grad,) = torch.autograd.grad(value, mu)
        torch.testing.assert_close(bandwidth.mmd2_gradient(mu.detach(), sigma, alpha), grad, rtol=1e-12, atol=0)
        assert float(bandwidth.mmd2_gradient_norm(mu.detach(), sigma, alpha)) == pytest.approx(
            float(grad.norm()), rel=1e-12)


@pytest.mark.parametrize("d, distance, sigma", CASES)
def test_optimal_bandwidth_is_the_numerical_argmax_of_the_gradient_norm(d, distance, sigma):
    mu = torch.zeros(d, dtype=torch.float64)
    mu[-1] = distance
    alphas = torch.linspace(1e-3, 3 * distance, 200_001, dtype=torch.float64)
    norms = bandwidth.mmd2_gradient_norm(mu.expand(len(alphas), d), sigma, alphas)
    numerical = float(alphas[norms.argmax()])
    formula = float(bandwidth.optimal_bandwidth(mu, sigma))
    assert formula > 0
    assert formula == pytest.approx(numerical, abs=2 * float(alphas[1] - alphas[0]))


def test_optimal_bandwidth_is_zero_near_the_target_and_the_floor_applies():
    d, sigma = 10, 1.0
    near = torch.zeros(d, dtype=torch.float64)
    near[0] = 0.99 * math.sqrt(2 * (d + 2)) * sigma  # |mu|^2 < 2 (d + 2) sigma^2
    assert float(bandwidth.optimal_bandwidth(near, sigma)) == 0.0
    assert float(bandwidth.optimal_bandwidth(near, sigma, floor=0.3)) == 0.3
    # there the gradient norm decreases in alpha on (0, inf): the sup is at alpha -> 0
    alphas = torch.tensor([1e-3, 0.1, 0.5, 1.0, 3.0], dtype=torch.float64)
    norms = bandwidth.mmd2_gradient_norm(near.expand(len(alphas), d), sigma, alphas)
    assert bool((norms[1:] < norms[:-1]).all())
