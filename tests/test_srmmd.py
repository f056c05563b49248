"""SrMMD and HrMMD (studentteacher.divergences, studentteacher.flows.srmmd) against independent
computations in float64: the explicit N d system built by autograd of a plain kernel, the resolvent
identity, both limits in lambda, finite differences of the value, dense solve vs conjugate gradients,
alpha = 1 and alpha = 0 of HrMMD, and short flows through the experiment's config."""
import json
from pathlib import Path

import pytest
import torch
from conftest import import_script

from studentteacher import divergences, flows, kernels

DTYPE = torch.float64
BANDWIDTH = 0.9
SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "flows2d.py"


def _problem(n=6, m=7, seed=0):
    generator = torch.Generator().manual_seed(seed)
    particles = torch.randn(n, 2, generator=generator, dtype=DTYPE) + 0.5  # (N, 2)
    target = torch.randn(m, 2, generator=generator, dtype=DTYPE)  # (M, 2)
    points = 1.5 * torch.randn(5, 2, generator=generator, dtype=DTYPE)  # (P, 2) test points
    return particles, target, points


def _plain_kernel(name, bandwidth=BANDWIDTH):
    """k(a, b) for single points ``a, b: [d]``, written from the formula (not kernels.py)."""

    def k(a, b):
        s = ((a - b) ** 2).sum()
        return torch.exp(-s / (2 * bandwidth**2)) if name == "gaussian" else (1 + s / bandwidth**2) ** -0.5

    return k


def _table(function, rows, columns):
    """function(rows[i], columns[j]) for every pair: ``[I, J, ...]``."""
    return torch.func.vmap(lambda a: torch.func.vmap(lambda b: function(a, b))(columns))(rows)


class Explicit:
    """The issue's quantities by autograd of the plain kernel: D_YY ``[N d, N]``, D_YX ``[N d, M]``,
    H_YY ``[N d, N d]``, r ``[N d]``, MMD^2, and the MMD witness g, its kernel and first derivative."""

    def __init__(self, name, particles, target, bandwidth=BANDWIDTH):
        self.k = _plain_kernel(name, bandwidth)
        self.grad_1 = torch.func.grad(self.k, argnums=0)  # d_{1,l} k(a, b): [d]
        mixed = torch.func.jacfwd(self.grad_1, argnums=1)  # d_{1,l} d_{2,m} k(a, b): [d, d]
        self.particles, self.target = particles, target
        n, d = particles.shape
        self.d_yy = _table(self.grad_1, particles, particles).permute(0, 2, 1).reshape(n * d, n)
        self.d_yx = _table(self.grad_1, particles, target).permute(0, 2, 1).reshape(n * d, -1)
        self.h_yy = _table(mixed, particles, particles).permute(0, 2, 1, 3).reshape(n * d, n * d)
        self.r = self.d_yy.mean(1) - self.d_yx.mean(1)  # (N d,)
        grams = [_table(self.k, a, b) for a, b in ((particles, particles), (target, target), (particles, target))]
        self.mmd2 = grams[0].mean() + grams[1].mean() - 2 * grams[2].mean()

    def g(self, points):
        """MMD witness mean_i k(y_i, z) - mean_m k(x_m, z): ``[P]``."""
        return _table(self.k, points, self.particles).mean(1) - _table(self.k, points, self.target).mean(1)

    def kernel(self, points):
        """k(y_i, z): ``[P, N]``."""
        return _table(self.k, self.particles, points).T

    def derivative_features(self, points):
        """d_{1,l} k(y_i, z): ``[P, N d]``."""
        return _table(self.grad_1, self.particles, points).permute(1, 0, 2).reshape(points.shape[0], -1)

    def srmmd(self, lmbda):
        """SrMMD^2 = (MMD^2 - r^T v) / lambda and v = (H_YY + N lambda I)^{-1} r ``[N d]`` (dense solve)."""
        size = self.h_yy.shape[0]
        v = torch.linalg.solve(self.h_yy + self.particles.shape[0] * lmbda * torch.eye(size, dtype=DTYPE), self.r)
        return (self.mmd2 - self.r @ v) / lmbda, v

    def srmmd_witness(self, points, v, lmbda):
        """f(z) = (1/lambda) [g(z) - sum_{il} v_il d_{1,l} k(y_i, z)]: ``[P]``."""
        return (self.g(points) - self.derivative_features(points) @ v) / lmbda


def _gradient_of_witness(points, particles, target, kernel, lmbda, alpha):
    """(f, grad f) at ``points`` by autograd of divergences.hrmmd_witness."""
    points = points.clone().requires_grad_()
    values = divergences.hrmmd_witness(points, particles, target, kernel, lmbda, alpha)
    (gradient,) = torch.autograd.grad(values.sum(), points)
    return values.detach(), gradient


# ----------------------------------------------------------------------------- kernel derivatives
@pytest.mark.parametrize("name", kernels.SMOOTH_RADIAL)
def test_radial_derivatives_are_the_derivatives_of_k_in_s(name):
    kernel = kernels.get_kernel(name, BANDWIDTH)
    sq = torch.linspace(0.0, 4.0, 9, dtype=DTYPE)
    value, slope, slope_ds, slope_ds2 = kernel.radial_derivatives(sq)
    k_of_s = (lambda s: torch.exp(-s / (2 * BANDWIDTH**2))) if name == "gaussian" else (
        lambda s: (1 + s / BANDWIDTH**2) ** -0.5)  # fmt: skip
    first = torch.func.grad(k_of_s)
    second, third = torch.func.grad(first), torch.func.grad(torch.func.grad(first))
    for field, computed, expected in (("value", value, torch.stack([k_of_s(s) for s in sq])),
                                      ("slope", slope, torch.stack([2 * first(s) for s in sq])),
                                      ("slope_ds", slope_ds, torch.stack([2 * second(s) for s in sq])),
                                      ("slope_ds2", slope_ds2, torch.stack([2 * third(s) for s in sq]))):  # fmt: skip
        torch.testing.assert_close(computed, expected, rtol=1e-12, atol=1e-14, msg=field)


@pytest.mark.parametrize("name", ["laplace", "energy", "gaussian_scaled"])
def test_kernels_without_second_derivatives_at_the_diagonal_are_refused(name):
    particles, target, _ = _problem()
    with pytest.raises(ValueError, match="gaussian"):
        divergences.srmmd(particles, target, kernels.get_kernel(name, 1.0), 0.1)
    with pytest.raises(ValueError, match="needs a kernel"):
        flows.SrMMDFlow(target, kernels.get_kernel(name, 1.0), 0.1, 0.1)


# ----------------------------------------------------------------------------- SrMMD against the N d system
@pytest.mark.parametrize("name", kernels.SMOOTH_RADIAL)
@pytest.mark.parametrize("solver", divergences.SOBOLEV_SOLVERS)
def test_srmmd_value_and_witness_equal_the_explicit_nd_system(name, solver):
    particles, target, points = _problem()
    kernel, lmbda = kernels.get_kernel(name, BANDWIDTH), 0.3
    explicit = Explicit(name, particles, target)
    value, v = explicit.srmmd(lmbda)
    torch.testing.assert_close(divergences.srmmd(particles, target, kernel, lmbda, solver), value, rtol=1e-9, atol=0)
    torch.testing.assert_close(divergences.hrmmd_witness(points, particles, target, kernel, lmbda),
                               explicit.srmmd_witness(points, v, lmbda), rtol=1e-9, atol=1e-12)  # fmt: skip


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.0])
def test_resolvent_identity_holds_at_test_points(alpha):
    """(alpha S_mu + (1 - alpha) C_mu + lambda) f = m_mu - m_pi, evaluated at z:
    alpha/N sum_i grad f(y_i) . d_1 k(y_i, z) + (1 - alpha)/N sum_i f(y_i) k(y_i, z) + lambda f(z) = g(z)."""
    particles, target, points = _problem()
    kernel, lmbda, n = kernels.get_kernel("gaussian", BANDWIDTH), 0.2, particles.shape[0]
    explicit = Explicit("gaussian", particles, target)
    f_at_particles, grad_f = _gradient_of_witness(particles, particles, target, kernel, lmbda, alpha)
    f_at_points = divergences.hrmmd_witness(points, particles, target, kernel, lmbda, alpha)
    sobolev = explicit.derivative_features(points) @ grad_f.reshape(-1) / n  # (P,)
    covariance = explicit.kernel(points) @ f_at_particles / n  # (P,)
    left = alpha * sobolev + (1 - alpha) * covariance + lmbda * f_at_points
    torch.testing.assert_close(left, explicit.g(points), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_large_lambda_gives_mmd(alpha):
    """lambda HrMMD^2 -> MMD^2 and lambda f -> the MMD witness, with an error O(1/lambda)."""
    particles, target, points = _problem()
    kernel = kernels.get_kernel("gaussian", BANDWIDTH)
    mmd2 = divergences.mmd2(particles, target, kernel)
    mmd_witness = divergences.mmd_witness(points, particles, target, kernel)
    errors = []
    for lmbda in (1e3, 1e6):
        value = lmbda * divergences.hrmmd(particles, target, kernel, lmbda, alpha)
        witness = lmbda * divergences.hrmmd_witness(points, particles, target, kernel, lmbda, alpha)
        errors.append((float(abs(value - mmd2) / mmd2), float((witness - mmd_witness).abs().max())))
    assert errors[1][0] < 1e-6 and errors[1][1] < 1e-7, errors
    assert errors[1][0] < 1e-2 * errors[0][0] and errors[1][1] < 1e-2 * errors[0][1], "the error must fall as 1/lambda"


def test_small_lambda_gives_the_kernel_sobolev_discrepancy():
    """lambda -> 0: SrMMD^2 = |P g|^2_perp / lambda + <g, S_mu^+ g> + O(lambda), where P_perp projects off the
    span of the d_{1,l} k(y_i, .) (MMD^2 - r^T H^+ r) and <g, S_mu^+ g> = N r^T (H^+)^2 r, both by
    eigendecomposition of the explicit N d matrix H_YY."""
    particles, target, _ = _problem(n=4, m=5, seed=1)
    kernel, n = kernels.get_kernel("gaussian", 1.0), particles.shape[0]
    explicit = Explicit("gaussian", particles, target, bandwidth=1.0)
    eigenvalues, eigenvectors = torch.linalg.eigh(explicit.h_yy)
    assert float(eigenvalues.min()) > 1e-4, "the test needs a well-conditioned H_YY"
    rotated = eigenvectors.T @ explicit.r
    outside = explicit.mmd2 - (rotated**2 / eigenvalues).sum()  # |P_perp g|^2
    discrepancy = n * (rotated**2 / eigenvalues**2).sum()  # <g, S_mu^+ g>
    assert float(outside) > 1e-3 and float(discrepancy) > 1e-3
    errors = []
    for lmbda in (1e-5, 1e-7):
        value = divergences.srmmd(particles, target, kernel, lmbda)
        errors.append(float(abs(value - outside / lmbda - discrepancy) / discrepancy))
    torch.testing.assert_close(lmbda * value, outside, rtol=1e-5, atol=0)
    assert errors[1] < 1e-5 and errors[1] < 0.05 * errors[0], errors


# ----------------------------------------------------------------------------- velocities
def _finite_difference_gradient(value, particles, eps=1e-6):
    """d value / d y_il by central differences: ``[N, d]``."""
    gradient = torch.zeros_like(particles)
    for index in range(particles.shape[0]):
        for axis in range(particles.shape[1]):
            shift = torch.zeros_like(particles)
            shift[index, axis] = eps
            gradient[index, axis] = (value(particles + shift) - value(particles - shift)) / (2 * eps)
    return gradient


@pytest.mark.parametrize("name", kernels.SMOOTH_RADIAL)
@pytest.mark.parametrize("alpha", [1.0, 0.6, 0.0])
def test_gradient_velocity_is_the_particle_gradient_of_the_value(name, alpha):
    """velocity="gradient": v_i = (N/2) d HrMMD^2 / d y_i, and v = grad phi (autograd of the flow's potential)."""
    particles, target, _ = _problem()
    kernel, lmbda, n = kernels.get_kernel(name, BANDWIDTH), 0.3, particles.shape[0]
    flow = flows.HrMMDFlow(target, kernel, 0.1, lmbda, hrmmd_alpha=alpha, velocity="gradient")
    first, velocity = flows.flow_velocity(flow, particles, 0)
    torch.testing.assert_close(first.value, divergences.hrmmd(particles, target, kernel, lmbda, alpha))
    expected = _finite_difference_gradient(lambda y: divergences.hrmmd(y, target, kernel, lmbda, alpha), particles)
    torch.testing.assert_close(velocity * 2 / n, expected, rtol=1e-6, atol=1e-9)
    points = particles.clone().requires_grad_()
    (grad_phi,) = torch.autograd.grad(flow.potential(first, points, particles).sum(), points)
    torch.testing.assert_close(velocity, grad_phi, rtol=1e-10, atol=1e-12)


def test_witness_velocity_is_grad_f_and_decreases_mmd2_at_the_predicted_rate():
    """velocity="witness": v = grad f, and d/dt MMD^2(Y - t v) = -2 <g, S_mu f> = -2 (|S_mu f|^2_H
    + lambda |grad f|^2_{L2(mu)}) < 0, with |S_mu f|^2_H = (1/N^2) grad f^T H_YY grad f; the exact
    gradient velocity differs from it."""
    particles, target, _ = _problem()
    kernel, lmbda, n = kernels.get_kernel("gaussian", BANDWIDTH), 0.3, particles.shape[0]
    _, velocity = flows.flow_velocity(flows.SrMMDFlow(target, kernel, 0.1, lmbda), particles, 0)
    _, grad_f = _gradient_of_witness(particles, particles, target, kernel, lmbda, 1.0)
    torch.testing.assert_close(velocity, grad_f, rtol=1e-10, atol=1e-12)
    explicit, flat = Explicit("gaussian", particles, target), grad_f.reshape(-1)
    predicted = -2 * (flat @ explicit.h_yy @ flat / n**2 + lmbda * (flat @ flat) / n)
    eps = 1e-6
    rate = (divergences.mmd2(particles - eps * velocity, target, kernel)
            - divergences.mmd2(particles + eps * velocity, target, kernel)) / (2 * eps)  # fmt: skip
    assert float(predicted) < 0
    torch.testing.assert_close(rate, predicted, rtol=1e-6, atol=0)
    _, exact = flows.flow_velocity(flows.SrMMDFlow(target, kernel, 0.1, lmbda, velocity="gradient"), particles, 0)
    assert float((exact - velocity).abs().max()) > 1e-3 * float(velocity.abs().max())


# ----------------------------------------------------------------------------- solvers and HrMMD's ends
@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.0])
def test_dense_solve_and_conjugate_gradients_agree_per_replica(alpha):
    """Three replicas with their own lambda: the CG witness equals the Cholesky one, and each replica
    equals its plain (unbatched) flow."""
    problems = [_problem(seed=seed) for seed in range(3)]
    particles, target = torch.stack([p[0] for p in problems]), torch.stack([p[1] for p in problems])
    kernel, lmbdas = kernels.get_kernel("imq", BANDWIDTH), [0.05, 0.3, 2.0]
    firsts = {}
    for solver in divergences.SOBOLEV_SOLVERS:
        flow = flows.HrMMDFlow(target, kernel, 0.1, lmbdas, hrmmd_alpha=alpha, linear_solver=solver, cg_tol=1e-13)
        firsts[solver] = (flow.first_variation(particles), flow)
    (dense, _), (cg, cg_flow) = firsts["dense"], firsts["cg"]
    unknowns = particles.shape[1] * ((alpha < 1) + (alpha > 0) * particles.shape[2])
    assert 0 < cg_flow.cg_iterations <= unknowns
    for field in ("value", "mmd2", "particle_weights", "target_weights", "gradient_weights"):
        torch.testing.assert_close(getattr(cg.witness, field), getattr(dense.witness, field), rtol=1e-9, atol=1e-11,
                                   msg=field)  # fmt: skip
    for r, (y, x, _) in enumerate(problems):
        plain = divergences.hrmmd(y, x, kernel, lmbdas[r], alpha)
        torch.testing.assert_close(dense.value[r], plain, rtol=1e-12, atol=0)


def test_hrmmd_near_alpha_one_is_srmmd():
    """HrMMD at alpha = 1 - 1e-9 keeps the value block of the system; it must agree with SrMMD, which
    drops it (the N d system of the issue)."""
    particles, target, points = _problem()
    kernel, lmbda = kernels.get_kernel("gaussian", BANDWIDTH), 0.3
    torch.testing.assert_close(divergences.hrmmd(particles, target, kernel, lmbda, 1 - 1e-9),
                               divergences.srmmd(particles, target, kernel, lmbda), rtol=1e-7, atol=0)  # fmt: skip
    torch.testing.assert_close(divergences.hrmmd_witness(points, particles, target, kernel, lmbda, 1 - 1e-9),
                               divergences.hrmmd_witness(points, particles, target, kernel, lmbda), rtol=1e-7,
                               atol=1e-10)  # fmt: skip


def test_hrmmd_at_alpha_zero_is_the_l2_mu_regularised_witness():
    """alpha = 0: f = (C_mu + lambda)^{-1} g, solved here without Woodbury: f = sum_c beta_c k(z_c, .)
    over the centres z = (Y, X), (lambda I + E K_YZ / N) beta = (1/N, -1/M) with E placing rows on Y;
    HrMMD^2 = <g, f>_H = w^T K_ZZ beta."""
    particles, target, points = _problem()
    kernel, lmbda = kernels.get_kernel("gaussian", BANDWIDTH), 0.2
    n, m = particles.shape[0], target.shape[0]
    centres = torch.cat([particles, target])
    gram = kernel(centres, centres)  # (N + M, N + M)
    system = lmbda * torch.eye(n + m, dtype=DTYPE)
    system[:n] += gram[:n] / n
    mean_weights = torch.cat([torch.full((n,), 1 / n, dtype=DTYPE), torch.full((m,), -1 / m, dtype=DTYPE)])
    beta = torch.linalg.solve(system, mean_weights)
    torch.testing.assert_close(divergences.hrmmd_witness(points, particles, target, kernel, lmbda, 0.0),
                               kernel(points, centres) @ beta, rtol=1e-10, atol=1e-12)  # fmt: skip
    torch.testing.assert_close(divergences.hrmmd(particles, target, kernel, lmbda, 0.0), mean_weights @ gram @ beta,
                               rtol=1e-10, atol=0)  # fmt: skip


# ----------------------------------------------------------------------------- config and runs
CONFIG = dict(target="gaussian", flow="srmmd", kernel="gaussian", bandwidth=1.0, n_particles=16, n_target=16, steps=6,
              step_size=0.02, lmbda=0.5, noise_level=0.0, noise_until=0, dtype="float64", device="cpu", log_every=1,
              snapshot_every=3, replicas=1, seed=3)  # fmt: skip


@pytest.mark.parametrize("flow, velocity, solver", [("srmmd", "gradient", "dense"), ("srmmd", "witness", "cg"),
                                                    ("hrmmd", "gradient", "cg"), ("hrmmd", "witness", "dense")])
def test_a_short_flow_from_its_config_decreases_its_objective(flow, velocity, solver):
    """The exact gradient velocity decreases the flow's value HrMMD^2 at every step (a step small
    enough); every run ends closer to the target in MMD^2 under the flow's kernel (for the witness
    velocity of SrMMD the rate test above shows why)."""
    config = dict(CONFIG, flow=flow, velocity=velocity, linear_solver=solver, hrmmd_alpha=0.7)
    flows.validate_flow_config(config)
    setup = flows.setup_flow([config])
    assert isinstance(setup.flow, flows.FLOWS[flow]) and setup.flow.velocity_rule == velocity
    assert setup.flow.alpha == (1.0 if flow == "srmmd" else 0.7)
    (trajectory,) = setup.run()
    values = [record.divergence for record in trajectory.records]
    assert len(values) == 7 and (trajectory.particles - setup.toys[0].source).abs().max() > 1e-3
    if velocity == "gradient":
        assert all(later < earlier for earlier, later in zip(values, values[1:])), values
    kernel = kernels.get_kernel("gaussian", 1.0)
    toy = setup.toys[0]
    start, end = (divergences.mmd2(particles, toy.target, kernel) for particles in (toy.source, trajectory.particles))
    assert float(end) < float(start)


@pytest.mark.parametrize("key, value, allowed", [
    ("velocity", "fast", "one of 'witness', 'gradient'"), ("velocity", 1, "one of 'witness', 'gradient'"),
    ("linear_solver", "lu", "one of 'dense', 'cg'"), ("hrmmd_alpha", 1.5, "0 <= hrmmd_alpha <= 1"),
    ("hrmmd_alpha", "abc", "0 <= hrmmd_alpha <= 1"), ("kernel", "laplace", "one of 'gaussian', 'imq' for flow 'srmmd'"),
])  # fmt: skip
def test_bad_options_are_refused_naming_the_key_and_the_allowed_values(key, value, allowed):
    flows.validate_flow_config(CONFIG)
    with pytest.raises(ValueError) as caught:
        flows.validate_flow_config({**CONFIG, key: value})
    message = str(caught.value)
    assert f"config key {key!r}" in message and allowed in message and "\n" not in message, message


def test_hrmmd_runs_through_the_experiment(tmp_path):
    experiment = import_script(SCRIPT, "flows2d_srmmd_experiment")
    updates = dict(flow="hrmmd", hrmmd_alpha=0.5, velocity="gradient", linear_solver="cg", target="mog",
                   n_particles=20, n_target=20, steps=4, step_size=0.05, lmbda=0.5, bandwidth=1.0, log_every=2,
                   snapshot_every=2, seed=1, device="cpu")  # fmt: skip
    run = experiment.ex.run(config_updates=updates, options={"--file_storage": str(tmp_path), "--capture": "no"})
    assert run.status == "COMPLETED"
    directory = tmp_path / str(run._id)
    config = json.loads((directory / "config.json").read_text())
    assert (config["flow"], config["hrmmd_alpha"], config["velocity"], config["linear_solver"]) == ("hrmmd", 0.5,
                                                                                                   "gradient", "cg")
    divergence = json.loads((directory / "metrics.json").read_text())["divergence"]
    assert divergence["steps"] == [0, 2, 4] and divergence["values"][-1] < divergence["values"][0]
    assert "hrmmd flow" in experiment.picture_title(config) and "alpha 0.5" in experiment.picture_title(config)
