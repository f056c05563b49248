"""KALE: the Newton dual solver, its value and first variation (studentteacher.divergences)."""
import functools

import numpy as np
import pytest
import scipy.optimize
import torch

from studentteacher import divergences, kernels

DTYPE = torch.float64


def _problem(n=12, m=15, seed=0, bandwidth=0.8):
    generator = torch.Generator().manual_seed(seed)
    particles = torch.randn(n, 2, generator=generator, dtype=DTYPE) + 0.7  # (N, 2)
    target = torch.randn(m, 2, generator=generator, dtype=DTYPE)  # (M, 2)
    return particles, target, functools.partial(kernels.gaussian, bandwidth=bandwidth)


@pytest.mark.parametrize("lmbda", [1e-2, 0.5])
def test_newton_reaches_gap_and_matches_lbfgsb(lmbda):
    particles, target, kernel = _problem()
    k_xx = kernel(target, target)  # (M, M)
    a = kernel(target, particles).mean(1)  # (M,)
    dual = divergences.kale_dual(k_xx, a, lmbda, tol=1e-12)
    assert dual.converged, f"gap {float(dual.gap)} after {dual.iterations} iterations"
    assert float(dual.gap) < 1e-8
    assert dual.alpha.dtype == DTYPE and dual.alpha.shape == (target.shape[0],)
    assert bool((dual.alpha > 0).all())

    k_np, a_np, size = k_xx.numpy(), a.numpy(), target.shape[0]

    def objective(alpha):
        safe = np.maximum(alpha, 1e-300)
        quadratic = (alpha @ k_np @ alpha - 2 * alpha @ a_np) / (2 * lmbda)
        value = (alpha * np.log(size * safe)).sum() - alpha.sum() + quadratic
        grad = np.log(size * safe) + (k_np @ alpha - a_np) / lmbda
        return value, grad

    reference = scipy.optimize.minimize(
        objective, np.full(size, 1.0 / size), jac=True, method="L-BFGS-B",
        bounds=[(1e-12, None)] * size, options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000},
    )  # fmt: skip
    ours = float(divergences.kale_dual_objective(dual.alpha, k_xx, a, 0.0, lmbda))
    assert ours <= reference.fun + 1e-10, "Newton optimum above the L-BFGS-B one"
    assert ours == pytest.approx(reference.fun, abs=1e-7)
    np.testing.assert_allclose(dual.alpha.numpy(), reference.x, atol=1e-4, err_msg="alpha")


def test_warm_start_converges_in_few_iterations():
    particles, target, kernel = _problem()
    k_xx = kernel(target, target)
    cold = divergences.kale_dual(k_xx, kernel(target, particles).mean(1), 0.01)
    moved = particles + 1e-3
    warm = divergences.kale_dual(k_xx, kernel(target, moved).mean(1), 0.01, alpha=cold.alpha)
    assert warm.converged and warm.iterations <= 2 and warm.iterations < cold.iterations


def test_kale_value_limits_and_dtype():
    particles, target, kernel = _problem()
    value = divergences.kale(particles, target, kernel, 0.1)
    assert value.dtype == DTYPE and value.shape == ()
    assert float(value) > 0
    # lambda -> infinity: KALE -> MMD^2 / 2.
    large = divergences.kale(particles, target, kernel, 1e7)
    assert float(large) == pytest.approx(0.5 * float(divergences.mmd2(particles, target, kernel)), rel=1e-5)
    # nu = pi: KALE = 0.
    assert abs(float(divergences.kale(target, target, kernel, 0.1))) < 1e-10


@pytest.mark.parametrize("lmbda", [0.05, 1.0])
def test_first_variation_gradient_equals_finite_difference(lmbda):
    particles, target, kernel = _problem()
    index, eps = 3, 1e-5
    points = particles.clone().requires_grad_()
    witness = divergences.kale_witness(points, particles, target, kernel, lmbda)  # (N,)
    (grad,) = torch.autograd.grad(witness.sum(), points)
    predicted = grad[index] / particles.shape[0]  # d KALE / d y_i = (1/N) grad phi(y_i)
    for axis in range(2):
        shift = torch.zeros_like(particles)
        shift[index, axis] = eps
        up = divergences.kale(particles + shift, target, kernel, lmbda)
        down = divergences.kale(particles - shift, target, kernel, lmbda)
        finite_difference = float((up - down) / (2 * eps))
        assert finite_difference == pytest.approx(float(predicted[axis]), rel=1e-5, abs=1e-9), f"axis {axis}"
