"""Kernels, MMD^2, DrMMD and the student-teacher closed forms against independent computations."""
from __future__ import annotations

import functools
import math

import pytest
import torch

from conftest import tiny_network
from studentteacher import divergences, kernels
from studentteacher.networks import forward, init_params


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "name,x,y,expected",
    [
        ("gaussian", [0.0, 0.0], [1.0, 0.0], math.exp(-0.5 / 0.25)),  # bandwidth 0.5: exp(-1/(2*0.25))
        ("laplace", [0.0, 0.0], [3.0, 4.0], math.exp(-5.0 / 0.5)),
        ("imq", [1.0, 1.0], [1.0, 2.0], (1 + 1 / 0.25) ** -0.5),
        ("energy", [1.0, 0.0], [0.0, 1.0], (1 + 1 - math.sqrt(2)) / 0.5),
        ("energy", [1.0, 0.0], [0.0, 0.0], 0.0),
        ("gaussian", [0.3, -0.2], [0.3, -0.2], 1.0),
    ],
)
def test_kernel_values_at_known_points(name, x, y, expected):
    gram = kernels.KERNELS[name](torch.tensor([x], dtype=torch.float64), torch.tensor([y], dtype=torch.float64), 0.5)
    assert gram.shape == (1, 1) and gram.dtype == torch.float64
    assert gram.item() == pytest.approx(expected, rel=1e-12, abs=1e-14)


def test_kernel_gradients_finite_at_coinciding_points():
    x = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    for name in kernels.KERNELS:
        (grad,) = torch.autograd.grad(kernels.KERNELS[name](x, x, 1.0).sum(), x)
        assert torch.isfinite(grad).all(), name


def test_bad_kernel_and_bandwidth_name_the_argument():
    names = r"\['energy', 'gaussian', 'gaussian_scaled', 'imq', 'laplace'\]"
    with pytest.raises(ValueError, match=rf"kernel must be one of {names}, got 'rbf'"):
        kernels.get_kernel("rbf", 1.0)
    with pytest.raises(ValueError, match="bandwidth must be > 0, got -1"):
        kernels.get_kernel("gaussian", -1.0)


def brute_force_mmd2(y, x, sigma):
    """Double sums over pairs with math.exp (float64, no tensors)."""

    def k(a, b):
        return math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b)) / (2 * sigma**2))

    y, x = y.tolist(), x.tolist()
    n, m = len(y), len(x)
    return (
        sum(k(a, b) for a in y for b in y) / n**2
        + sum(k(a, b) for a in x for b in x) / m**2
        - 2 * sum(k(a, b) for a in x for b in y) / (n * m)
    )


@pytest.mark.parametrize("name", ["gaussian", "laplace", "imq", "energy"])
def test_mmd2_is_nonnegative_and_zero_on_equal_samples(name):
    kernel = kernels.get_kernel(name, 0.7)
    y = torch.randn(9, 2, generator=gen(0), dtype=torch.float64)
    x = torch.randn(5, 2, generator=gen(1), dtype=torch.float64)
    assert divergences.mmd2(y, x, kernel).item() > 0
    assert abs(divergences.mmd2(y, y, kernel).item()) < 1e-12


def test_mmd2_and_witness_gradient_against_brute_force():
    sigma = 0.8
    kernel = functools.partial(kernels.gaussian, bandwidth=sigma)
    y = torch.randn(7, 2, generator=gen(0), dtype=torch.float64)  # N = 7
    x = torch.randn(4, 2, generator=gen(1), dtype=torch.float64) + 0.5  # M = 4
    value = divergences.mmd2(y, x, kernel)
    assert value.dim() == 0 and value.dtype == torch.float64
    assert value.item() == pytest.approx(brute_force_mmd2(y, x, sigma), rel=1e-12)

    # d MMD^2 / d y_i = (2/N) grad f(y_i); grad_z k(z, w) = -(z - w)/sigma^2 k(z, w), summed by hand
    leaf = y.clone().requires_grad_(True)
    (autograd,) = torch.autograd.grad(divergences.mmd2(leaf, x, kernel), leaf)
    for i in range(7):
        grad_f = torch.zeros(2, dtype=torch.float64)
        for w, weight in [(w, 1 / 7) for w in y] + [(w, -1 / 4) for w in x]:
            grad_f += weight * -(y[i] - w) / sigma**2 * math.exp(-((y[i] - w) ** 2).sum().item() / (2 * sigma**2))
        torch.testing.assert_close(autograd[i], 2 / 7 * grad_f, rtol=1e-10, atol=1e-14)
        zi = y[i : i + 1].clone().requires_grad_(True)
        (witness_grad,) = torch.autograd.grad(divergences.mmd_witness(zi, y, x, kernel).sum(), zi)
        torch.testing.assert_close(witness_grad[0], grad_f, rtol=1e-10, atol=1e-14)


def test_drmmd_equals_explicit_feature_space_formula():
    """(1+l) (m_nu - m_pi)^T (Sigma_pi + l I)^{-1} (m_nu - m_pi) with explicit features in R^6."""
    features = torch.randn(3, 6, generator=gen(2), dtype=torch.float64)

    def feature_map(points):  # (n, 3) -> (n, 6): tanh of a random linear map
        return torch.tanh(points @ features)

    def kernel(a, b):
        return feature_map(a) @ feature_map(b).T

    y = torch.randn(8, 3, generator=gen(3), dtype=torch.float64)
    x = torch.randn(5, 3, generator=gen(4), dtype=torch.float64) + 1.0
    for lmbda in (1e-3, 0.1, 1.0, 10.0):
        phi_x = feature_map(x)
        difference = feature_map(y).mean(0) - phi_x.mean(0)
        covariance = phi_x.T @ phi_x / x.shape[0]  # uncentred covariance operator of pi
        expected = (1 + lmbda) * difference @ torch.linalg.solve(covariance + lmbda * torch.eye(6, dtype=torch.float64), difference)
        assert divergences.drmmd(y, x, kernel, lmbda).item() == pytest.approx(expected.item(), rel=1e-9)


def test_drmmd_tends_to_mmd2_and_witness_gradient_is_first_variation():
    kernel = functools.partial(kernels.gaussian, bandwidth=1.0)
    y = torch.randn(6, 2, generator=gen(5), dtype=torch.float64)
    x = torch.randn(9, 2, generator=gen(6), dtype=torch.float64)
    mmd2 = divergences.mmd2(y, x, kernel).item()
    assert divergences.drmmd(y, x, kernel, 1e8).item() == pytest.approx(mmd2, rel=1e-6)
    assert divergences.drmmd(y, x, kernel, 1e2).item() != pytest.approx(mmd2, rel=1e-3)
    lmbda = 0.05
    leaf = y.clone().requires_grad_(True)
    (grad_value,) = torch.autograd.grad(divergences.drmmd(leaf, x, kernel, lmbda), leaf)
    points = y.clone().requires_grad_(True)
    (grad_witness,) = torch.autograd.grad(divergences.drmmd_witness(points, y, x, kernel, lmbda).sum(), points)
    torch.testing.assert_close(grad_value, 2 / 6 * grad_witness, rtol=1e-9, atol=1e-12)


def test_drmmd_rejects_nonpositive_lambda():
    kernel = functools.partial(kernels.gaussian, bandwidth=1.0)
    with pytest.raises(ValueError, match="lmbda must be > 0, got -0.1"):
        divergences.drmmd(torch.zeros(2, 2), torch.ones(2, 2), kernel, -0.1)


@pytest.mark.parametrize("readout", ["particle", "dense"])
def test_student_teacher_identity(readout):
    """E_x|f_S - f_T|^2 = mean K(S,S) + mean K(T,T) - 2 mean K(T,S) over the same batch."""
    arch, student, x = tiny_network(readout, n_particles=6)
    teacher = init_params(arch, 2, 0.0, 1.0, gen(9), dtype=torch.float64)
    phi_s, phi_t = forward(arch, student, x).features, forward(arch, teacher, x).features
    loss = divergences.st_mmd2(phi_s.mean(1), phi_t.mean(1))
    kernel_form = (
        kernels.feature_gram(phi_s, phi_s).mean()
        + kernels.feature_gram(phi_t, phi_t).mean()
        - 2 * kernels.feature_gram(phi_t, phi_s).mean()
    )
    assert loss.item() == pytest.approx(kernel_form.item(), rel=1e-12)


@pytest.mark.parametrize("lmbda", [1e-3, 0.1, 10.0])
def test_student_teacher_drmmd_equals_general_gram_form(lmbda):
    """The student-teacher closed form (docs/model.md) = the general Woodbury form with M = 1 and the batch Gram."""
    arch, student, x = tiny_network("particle", d_out=2, n_particles=5)
    teacher = init_params(arch, 1, 0.0, 1.0, gen(8), dtype=torch.float64)
    phi_s, f_t = forward(arch, student, x).features, forward(arch, teacher, x).mean()
    batch = x.shape[0]

    def batch_gram(a, b):  # points are flattened feature tables [n, B*O]
        return a @ b.T / batch

    particles = phi_s.permute(1, 0, 2).reshape(5, -1)  # (N, B*O)
    target = f_t.reshape(1, -1)  # (1, B*O)
    general = divergences.drmmd(particles, target, batch_gram, lmbda)
    closed = divergences.st_drmmd(phi_s.mean(1), f_t, lmbda)
    assert closed.item() == pytest.approx(general.item(), rel=1e-10)
    rho = divergences.st_drmmd_weights(phi_s.mean(1), f_t, lmbda)  # (B, O)
    witness = divergences.drmmd_witness(particles, particles, target, batch_gram, lmbda)  # (N,)
    torch.testing.assert_close(torch.einsum("bno,bo->n", phi_s, rho) / batch, witness, rtol=1e-10, atol=1e-12)


def test_float32_mmd2_nonnegative_and_close_to_float64():
    arch, student, _ = tiny_network("particle", n_particles=50, d_in=50)
    teacher = init_params(arch, 1, 0.0, 1.0, gen(1), dtype=torch.float64)
    x = torch.randn(20000, 50, generator=gen(2), dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    exact = divergences.st_mmd2(forward(arch, student, x).mean(), forward(arch, teacher, x).mean())
    as32 = {k: v.float() for k, v in student.items()}
    single = divergences.st_mmd2(forward(arch, as32, x.float()).mean(), forward(arch, {k: v.float() for k, v in teacher.items()}, x.float()).mean())
    assert single.item() >= 0
    assert single.item() == pytest.approx(exact.item(), rel=1e-4)


def test_d_out_2_mmd2_sums_the_squared_error_over_outputs():
    """d_out > 1 convention (ours, kept; st_mmd2's docstring): MMD2_hat sums the squared error over
    the outputs (the papers' code averages it), checked against a float64 loop over outputs,
    samples and particles, one feature phi_{Z_i}(x_b) = exp(-(V_i relu(W_i x_b))^2 / sigma^2) at a time."""
    arch, student, x = tiny_network("particle", d_out=2, n_particles=5)
    teacher = init_params(arch, 1, 0.0, 1.0, gen(3), dtype=torch.float64)

    def feature(params, i, b):  # (d_out,)
        return torch.exp(-((params["V"][i] @ torch.relu(params["W"][i] @ x[b])) ** 2) / arch.sigma**2)

    batch, size, brute = x.shape[0], 5, 0.0
    for o in range(2):
        for b in range(batch):
            student_mean = sum(float(feature(student, i, b)[o]) for i in range(size)) / size
            brute += (student_mean - float(feature(teacher, 0, b)[o])) ** 2 / batch
    value = divergences.st_mmd2(forward(arch, student, x).mean(), forward(arch, teacher, x).mean())
    assert value.dtype == torch.float64 and value.shape == ()
    assert value.item() == pytest.approx(brute, rel=1e-12)
