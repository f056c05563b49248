"""The scaled Gaussian kernel, the adaptive-bandwidth MMD flow (Galashov et al., 2025, Prop. 3.1) and
the toy gaussian_nd, against independent computations: autograd of the kernel, the closed forms of
studentteacher.bandwidth, a plain run of every batched replica."""
from __future__ import annotations

import math

import pytest
import torch

from studentteacher import bandwidth, flows, kernels, toys

DTYPE = torch.float64


def _points(n, m, d, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=generator, dtype=DTYPE),
            torch.randn(m, d, generator=generator, dtype=DTYPE) + 0.3)  # fmt: skip


@pytest.mark.parametrize("d, alpha", [(1, 0.7), (2, 1.3), (10, 2.0)])
def test_scaled_gaussian_value_and_closed_form_gradient_match_autograd(d, alpha):
    x, y = _points(6, 9, d)
    gram = kernels.gaussian_scaled(x, y, alpha)
    expected = alpha ** (-d) * torch.exp(-torch.cdist(x, y) ** 2 / (2 * alpha**2))
    assert gram.dtype == DTYPE and gram.shape == (6, 9)
    torch.testing.assert_close(gram, expected, rtol=1e-12, atol=0)
    weights = torch.linspace(-1.0, 2.0, 9, dtype=DTYPE)
    kernel = kernels.get_kernel("gaussian_scaled", alpha)
    assert kernel.radial_value is None and kernel.bandwidth == alpha
    points = x.clone().requires_grad_()
    (autograd,) = torch.autograd.grad((kernel(points, y) @ weights).sum(), points)
    torch.testing.assert_close(kernel.weighted_gradient(x, y, weights), autograd, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(kernels.kernel_matvec_grad(kernel, x, y, weights, budget_bytes=2000), autograd,
                               rtol=1e-10, atol=1e-14)  # fmt: skip


def test_scaled_gaussian_takes_one_bandwidth_per_replica():
    x, y = _points(5, 7, 3)
    xs, ys = torch.stack([x, x + 1]), torch.stack([y, y])  # (2, n, d), (2, m, d)
    alphas = torch.tensor([0.8, 1.7], dtype=DTYPE)
    kernel = kernels.get_kernel("gaussian_scaled", alphas)
    weights = torch.stack([torch.ones(7, dtype=DTYPE), torch.arange(7, dtype=DTYPE)])  # (2, m)
    batched = kernel.weighted_gradient(xs, ys, weights)
    for r in range(2):
        plain = kernels.get_kernel("gaussian_scaled", float(alphas[r]))
        torch.testing.assert_close(kernel(xs, ys)[r], plain(xs[r], ys[r]), rtol=1e-13, atol=0)
        torch.testing.assert_close(batched[r], plain.weighted_gradient(xs[r], ys[r], weights[r]), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        kernels.gaussian_scaled(x, y, torch.tensor([1.0, 0.0]))


def test_gaussian_nd_toy_has_its_dimension_and_distance():
    toy = toys.make_toy("gaussian_nd", 4000, 3000, seed=1, dim=10, source_distance=6.0)
    assert toy.source.shape == (4000, 10) and toy.target.shape == (3000, 10)
    assert float(toy.source.mean(0).norm()) == pytest.approx(6.0, abs=0.1)
    assert float(toy.target.std()) == pytest.approx(toys.GAUSSIAN_ND_SCALE, rel=0.02)
    assert toy.reference_bandwidth == pytest.approx(math.sqrt(10))
    other = toys.make_toy("gaussian_nd", 10, 3000, seed=1, dim=10, source_distance=2.0)
    torch.testing.assert_close(other.target, toy.target)  # the source's settings never change the target
    roll = toys.make_toy("swiss_roll", 50, 2000, seed=0)
    radius = roll.target.norm(dim=1)
    assert roll.target.shape == (2000, 2) and 0.8 < float(radius.min()) and float(radius.max()) < 3.1


def _adaptive_run(dim, distance, floor, steps=6, n=200, sigma=None, step_size=None):
    toy = toys.make_toy("gaussian_nd", n, n, seed=2, dim=dim, source_distance=distance)
    step_size = 0.5 * (floor**2 + 2.0) ** (dim / 2 + 1) if step_size is None else step_size
    flow = flows.build_flow("mmd_adaptive_bandwidth", toy.target, kernels.get_kernel("gaussian_scaled", floor),
                            step_size, sigma=sigma)  # fmt: skip
    trajectory = flows.run_flow(flow, toy.source, steps, reference_bandwidth=toy.reference_bandwidth, log_every=1,
                                snapshot_every=1)  # fmt: skip
    return toy, flow, trajectory


@pytest.mark.parametrize("dim, distance, floor", [(2, 8.0, 0.3), (10, 9.0, 0.5), (10, 3.0, 0.7)])
def test_adaptive_bandwidth_is_the_optimal_bandwidth_of_the_current_means_at_every_step(dim, distance, floor):
    toy, flow, trajectory = _adaptive_run(dim, distance, floor)
    sigma = float(toy.target.var(dim=0).mean().sqrt())  # the estimate the flow makes (module docstring)
    assert float(flow.sigma) == pytest.approx(sigma, rel=1e-12)
    logged = trajectory.metrics()["bandwidth"]
    assert len(logged) == 7
    for step, snapshot in zip(trajectory.snapshot_steps, trajectory.snapshots):
        mu = snapshot.mean(0) - toy.target.mean(0)
        expected = max(math.sqrt(max(float(mu @ mu) / (dim + 2) - 2 * sigma**2, 0.0)), floor)
        assert float(logged[step]) == pytest.approx(expected, rel=1e-10), f"bandwidth at step {step}"
        assert float(logged[step]) == pytest.approx(float(bandwidth.optimal_bandwidth(mu, sigma, floor)), rel=1e-12)
    floored = bool((logged == floor).all())
    assert floored == (distance**2 < 2 * (dim + 2) * sigma**2), "the floor binds exactly near the target"


def test_first_step_moves_the_mean_as_the_closed_form_gradient_predicts():
    """Delta mean = -(gamma / 2) grad_mu MMD^2_alpha (module docstring of the flow), checked against the
    closed form of bandwidth.mmd2_gradient with a large float64 sample (N = M = 4000, known sigma = 1)."""
    dim, distance, gamma = 2, 5.0, 20.0
    toy = toys.make_toy("gaussian_nd", 4000, 4000, seed=0, dim=dim, source_distance=distance)
    flow = flows.build_flow("mmd_adaptive_bandwidth", toy.target, kernels.get_kernel("gaussian_scaled", 0.1), gamma,
                            sigma=1.0)  # fmt: skip
    first, velocity = flows.flow_velocity(flow, toy.source, 0)
    moved = flows.euler_step(toy.source, first, velocity)
    mu = toy.source.mean(0) - toy.target.mean(0)
    alpha = float(first.bandwidth)
    assert alpha == pytest.approx(math.sqrt(distance**2 / 4 - 2), rel=0.05)
    predicted = -0.5 * gamma * bandwidth.mmd2_gradient(mu, 1.0, alpha)  # (d,)
    torch.testing.assert_close(moved.mean(0) - toy.source.mean(0), predicted, rtol=0.05, atol=0)
    assert float(first.value) == pytest.approx(float(bandwidth.mmd2_gaussians(mu, 1.0, alpha)), rel=0.05)


@pytest.mark.parametrize("dim, distance, step_size", [(2, 8.0, 9.0), (10, 6.5, 729.0)])
def test_adaptive_flow_closes_the_gap_of_the_means_faster_than_its_floor_alone(dim, distance, step_size):
    """Far from the target (alpha* above the floor) the adaptive flow moves the mean faster than the
    fixed bandwidth equal to its floor, at the same step (half the stable step at the floor)."""
    toy, _, adaptive = _adaptive_run(dim, distance, 1.0, steps=20, step_size=step_size)
    fixed = flows.build_flow("mmd", toy.target, kernels.get_kernel("gaussian_scaled", 1.0), step_size)
    plain = flows.run_flow(fixed, toy.source, 20, reference_bandwidth=toy.reference_bandwidth, log_every=20)
    gap = lambda particles: float((particles.mean(0) - toy.target.mean(0)).norm())  # noqa: E731
    assert gap(adaptive.particles) < gap(plain.particles) < distance + 0.5


def test_batched_adaptive_flow_equals_its_plain_runs():
    made = [toys.make_toy("gaussian_nd", 40, 50, seed=s, dim=3, source_distance=d) for s, d in ((1, 7.0), (2, 2.0))]
    kernel = kernels.get_kernel("gaussian_scaled", 0.5)
    batched = flows.build_flow("mmd_adaptive_bandwidth", torch.stack([t.target for t in made]), kernel, 3.0)
    runs = flows.run_flow(batched, torch.stack([t.source for t in made]), 5, reference_bandwidth=1.0, log_every=1)
    for toy, run in zip(made, runs):
        plain = flows.run_flow(flows.build_flow("mmd_adaptive_bandwidth", toy.target, kernel, 3.0), toy.source, 5,
                               reference_bandwidth=1.0, log_every=1)  # fmt: skip
        torch.testing.assert_close(run.particles, plain.particles, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(run.metrics()["bandwidth"], plain.metrics()["bandwidth"], rtol=1e-12, atol=0)


def test_fixed_flows_log_their_kernel_bandwidth():
    toy = toys.make_toy("mog", 20, 20, seed=0)
    trajectory = flows.run_flow(flows.build_flow("mmd", toy.target, kernels.get_kernel("gaussian", 0.7), 0.1),
                                toy.source, 2, reference_bandwidth=1.0, log_every=1)  # fmt: skip
    assert trajectory.metrics()["bandwidth"].tolist() == [0.7, 0.7, 0.7]


GOOD = dict(target="gaussian_nd", flow="mmd_adaptive_bandwidth", kernel="gaussian_scaled", bandwidth=0.5,
            n_particles=10, n_target=10, steps=2, step_size=1.0, lmbda=1e-3, noise_level=0.0, noise_until=0,
            dtype="float64", device="cpu", log_every=1, snapshot_every=1, replicas=1, seed=0, dim=5,
            source_distance=3.0)  # fmt: skip


@pytest.mark.parametrize("key, value", [("kernel", "gaussian"), ("dim", 0), ("dim", 2.5), ("source_distance", -1.0),
                                        ("source_distance", float("inf")), ("target", "gaussian_3d")])  # fmt: skip
def test_validation_names_the_bad_key(key, value):
    flows.validate_flow_config(GOOD)
    flows.validate_flow_config({k: v for k, v in GOOD.items() if k not in ("dim", "source_distance")})
    with pytest.raises(ValueError, match=f"'{key}'"):
        flows.validate_flow_config({**GOOD, key: value})


def test_the_experiment_runs_the_adaptive_flow_on_gaussian_nd_and_logs_its_bandwidth(tmp_path):
    import json
    from pathlib import Path

    from conftest import import_script

    script = Path(__file__).resolve().parents[1] / "experiments" / "flows2d.py"
    experiment = import_script(script, "flows2d_adaptive_bandwidth_experiment")
    updates = dict(n_particles=20, n_target=20, steps=4, log_every=2, snapshot_every=2, seed=1, device="cpu")
    run = experiment.ex.run(named_configs=["gaussian_nd_adaptive_bandwidth"], config_updates=updates,
                            options={"--file_storage": str(tmp_path), "--capture": "no"})  # fmt: skip
    assert run.status == "COMPLETED"
    directory = tmp_path / str(run._id)
    metrics = json.loads((directory / "metrics.json").read_text())
    assert set(metrics) == set(flows.METRICS) and metrics["bandwidth"]["steps"] == [0, 2, 4]
    assert all(value >= 1.0 for value in metrics["bandwidth"]["values"]), "never below the floor (bandwidth = 1)"
    config = json.loads((directory / "config.json").read_text())
    assert (config["dim"], config["source_distance"], config["kernel"]) == (10, 6.5, "gaussian_scaled")
    assert (directory / "snapshots.png").stat().st_size > 0 and (directory / "flow.gif").stat().st_size > 0
