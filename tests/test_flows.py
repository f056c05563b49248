"""2-D particle flows (studentteacher.flows), toy targets (studentteacher.toys), spectral DrMMD."""
import functools
import math
import os
import pickle
from pathlib import Path

import numpy as np
import ot
import pytest
import torch

from studentteacher import divergences, flows, kernels, toys

DTYPE = torch.float64
KERNEL = functools.partial(kernels.gaussian, bandwidth=0.8)


def _problem(n=10, m=14, seed=0):
    generator = torch.Generator().manual_seed(seed)
    particles = torch.randn(n, 2, generator=generator, dtype=DTYPE) + 0.5  # (N, 2)
    target = torch.randn(m, 2, generator=generator, dtype=DTYPE)  # (M, 2)
    return particles, target


def _velocity(flow, particles):
    """The flow's (blocked) velocity, checked against autograd of its unblocked potential phi."""
    first, velocity = flows.flow_velocity(flow, particles, 0)
    points = particles.clone().requires_grad_()
    (grad,) = torch.autograd.grad(flow.potential(first, points, particles).sum(), points)
    torch.testing.assert_close(velocity, grad, rtol=1e-10, atol=1e-12)
    return first, velocity  # (N, d)


def _finite_difference(value, particles, index, eps=1e-6):
    columns = []
    for axis in range(particles.shape[1]):
        shift = torch.zeros_like(particles)
        shift[index, axis] = eps
        columns.append(float((value(particles + shift) - value(particles - shift)) / (2 * eps)))
    return torch.tensor(columns, dtype=DTYPE)


# ----------------------------------------------------------------------------- toys
def test_three_rings_geometry_and_streams():
    toy = toys.make_toy("three_rings", 30, 300, seed=1)
    assert toy.target.shape == (300, 2) and toy.source.shape == (30, 2) and toy.target.dtype == DTYPE
    centres = torch.tensor([[0.0, 0.0], [0.0, -0.75], [0.0, -1.5]], dtype=DTYPE).repeat_interleave(100, 0)
    radii = (toy.target - centres).norm(dim=1)
    torch.testing.assert_close(radii, torch.full_like(radii, 0.3))
    assert toy.target[0].tolist() == pytest.approx([0.3, 0.0])  # angle 0, no endpoint duplicate
    assert (toy.source.mean(0) - torch.tensor([0.0, -0.3], dtype=DTYPE)).abs().max() < 0.01
    # Separate streams: the target does not depend on N, the source not on M.
    mog_a, mog_b = toys.make_toy("mog", 10, 50, seed=3), toys.make_toy("mog", 20, 50, seed=3)
    torch.testing.assert_close(mog_a.target, mog_b.target)
    torch.testing.assert_close(mog_a.source, toys.make_toy("mog", 10, 80, seed=3).source)
    assert toys.make_toy("gaussian_1d", 5, 7, seed=0).target.shape == (7, 1)
    with pytest.raises(ValueError, match="n_target"):
        toys.make_toy("three_rings", 10, 100, seed=0)


def test_spiral_is_the_equispaced_roll_with_its_narrow_source():
    toy = toys.make_toy("spiral", 400, 9, seed=2)
    assert toy.target.shape == (9, 2) and toy.source.shape == (400, 2) and toy.target.dtype == DTYPE
    t = torch.linspace(0.5 * math.pi, 4.5 * math.pi, 9, dtype=DTYPE)
    noiseless = 0.12 * t[:, None] * torch.stack([torch.cos(t), torch.sin(t)], dim=1)  # (9, 2)
    assert float((toy.target - noiseless).abs().max()) < 0.02 * 5  # noise std 0.02
    assert float((toy.target - noiseless).abs().max()) > 0.0
    assert float(toy.source.std()) == pytest.approx(0.05, rel=0.1)  # N(0, 0.05^2 I)
    torch.testing.assert_close(toy.target, toys.make_toy("spiral", 3, 9, seed=2).target)  # own stream
    assert toy.reference_bandwidth == toys.REFERENCE_BANDWIDTH["spiral"]


# ----------------------------------------------------------------------------- first variations
def test_mmd_first_variation_gradient_equals_finite_difference():
    particles, target = _problem()
    first, grad = _velocity(flows.MMDFlow(target, KERNEL, 1.0), particles)
    torch.testing.assert_close(first.value, divergences.mmd2(particles, target, KERNEL))
    expected = _finite_difference(lambda y: divergences.mmd2(y, target, KERNEL), particles, 2)
    torch.testing.assert_close(grad[2] * 2 / particles.shape[0], expected, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("adaptive", [False, True])
def test_drmmd_first_variation_gradient_equals_finite_difference(adaptive):
    particles, target = _problem()
    lmbda = 0.05
    flow_class = flows.AdaptiveDrMMDFlow if adaptive else flows.DrMMDFlow
    first, grad = _velocity(flow_class(target, KERNEL, 1.0, lmbda), particles)
    torch.testing.assert_close(first.value, divergences.drmmd(particles, target, KERNEL, lmbda))
    expected = _finite_difference(lambda y: divergences.drmmd(y, target, KERNEL, lmbda), particles, 4)
    # phi = 2 h and d DrMMD / d y_i = (2/N) grad h(y_i) = (1/N) grad phi(y_i).
    torch.testing.assert_close(grad[4] / particles.shape[0], expected, rtol=1e-6, atol=1e-10)


def test_kale_flow_first_variation_gradient_equals_finite_difference():
    particles, target = _problem()
    lmbda = 0.2
    first, grad = _velocity(flows.KALEFlow(target, KERNEL, 1.0, lmbda, kale_tol=1e-14), particles)
    torch.testing.assert_close(first.value, divergences.kale(particles, target, KERNEL, lmbda))
    expected = _finite_difference(lambda y: divergences.kale(y, target, KERNEL, lmbda), particles, 1, eps=1e-5)
    torch.testing.assert_close(grad[1] / particles.shape[0], expected, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("lmbda", [1e-4, 1e-2, 1.0, 1e3])
def test_drmmd_spectral_equals_direct_solve(lmbda):
    particles, target = _problem(n=20, m=30)
    eigh = divergences.GramEigh(KERNEL(target, target))
    spectral = divergences.drmmd_spectral(particles, target, KERNEL, lmbda, eigh)
    direct = divergences.drmmd(particles, target, KERNEL, lmbda)
    assert spectral.dtype == DTYPE and spectral.shape == ()
    torch.testing.assert_close(spectral, direct, rtol=1e-9, atol=1e-12)
    regularised = KERNEL(target, target) + 30 * lmbda * torch.eye(30, dtype=DTYPE)
    v = torch.linspace(-1, 1, 30, dtype=DTYPE)
    torch.testing.assert_close(eigh.solve_rotated(eigh.rotate(v), lmbda), torch.linalg.solve(regularised, v))


# ----------------------------------------------------------------------------- flows
def _run(flow, source, steps, **options):
    options = {"reference_bandwidth": 0.15, "log_every": steps, "snapshot_every": steps, **options}
    return flows.run_flow(flow, source, steps, **options)


def test_drmmd_at_huge_lambda_moves_like_mmd():
    toy = toys.make_toy("three_rings", 30, 30, seed=0)
    kernel = functools.partial(kernels.gaussian, bandwidth=0.15)
    lmbda, step = 1e8, 0.5e-9  # gamma_DrMMD * 2 h ~ 2 lambda step grad f = MMD step 0.1
    drmmd = _run(flows.DrMMDFlow(toy.target, kernel, step, lmbda), toy.source, 50)
    mmd = _run(flows.MMDFlow(toy.target, kernel, 2 * lmbda * step), toy.source, 50)
    assert (drmmd.particles - toy.source).abs().max() > 1e-3, "the flow did not move"
    torch.testing.assert_close(drmmd.particles, mmd.particles, rtol=0, atol=1e-6)


def test_adaptive_drmmd_eigh_path_equals_solve_path_and_follows_the_rule():
    toy = toys.make_toy("three_rings", 30, 30, seed=0)
    kernel = functools.partial(kernels.gaussian, bandwidth=0.15)
    paths = {}
    for solver in ("factor", "solve"):
        flow = flows.AdaptiveDrMMDFlow(toy.target, kernel, 0.1, 0.1, solver=solver)
        paths[solver] = _run(flow, toy.source, 30, log_every=1)
    torch.testing.assert_close(paths["factor"].particles, paths["solve"].particles, rtol=0, atol=1e-9)
    lmbdas = paths["factor"].metrics()["lmbda"]
    steps = paths["factor"].metrics()["step_size"]
    assert float(lmbdas[0]) == 0.1 and float(lmbdas[-1]) < 0.1, "lambda must follow the falling DrMMD"
    torch.testing.assert_close(steps, (lmbdas * 0.1).clamp_min(flows.MIN_ADAPTIVE_STEP))
    # lambda_1 = lambda_0 sqrt(DrMMD_{lambda_0}(y_1) / DrMMD_{lambda_0}(y_0)).
    after_one = _run(flows.AdaptiveDrMMDFlow(toy.target, kernel, 0.1, 0.1), toy.source, 1).particles
    ratio = float(divergences.drmmd(after_one, toy.target, kernel, 0.1))
    ratio /= float(divergences.drmmd(toy.source, toy.target, kernel, 0.1))
    assert float(lmbdas[1]) == pytest.approx(0.1 * math.sqrt(ratio), rel=1e-10)


def test_noise_injection_schedule_and_clean_metrics():
    toy = toys.make_toy("gaussian_1d", 50, 50, seed=0)
    kernel = functools.partial(kernels.gaussian, bandwidth=2.0)
    flow = flows.make_flow("mmd_noise", toy.target, kernel, 0.1, 1.0, noise_level=10.0, noise_until=5)
    assert [flow.noise(n) for n in (0, 4, 5, 6)] == [10.0, 10.0, 0.0, 0.0]
    first = _run(flow, toy.source, 10, log_every=1, generator=torch.Generator().manual_seed(0))
    second = _run(flows.make_flow("mmd_noise", toy.target, kernel, 0.1, 1.0, noise_level=10.0, noise_until=5),
                  toy.source, 10, log_every=1, generator=torch.Generator().manual_seed(0))  # fmt: skip
    torch.testing.assert_close(first.particles, second.particles)
    metrics = first.metrics()
    torch.testing.assert_close(metrics["divergence"][0], divergences.mmd2(toy.source, toy.target, kernel))


@pytest.mark.parametrize("power", [1, 2])
def test_wasserstein_in_1d_equals_the_network_simplex(power):
    """The 1-D shortcut (sorted samples) against ot.emd2 on the full cost matrix, N != M."""
    generator = torch.Generator().manual_seed(4)
    y, x = torch.randn(70, 1, generator=generator, dtype=DTYPE), 2 + torch.randn(50, 1, generator=generator, dtype=DTYPE)
    cost = ot.dist(y.numpy(), x.numpy(), metric="euclidean" if power == 1 else "sqeuclidean")
    expected = float(ot.emd2(np.full(70, 1 / 70), np.full(50, 1 / 50), cost)) ** (1 / power)
    assert flows.wasserstein(y, x, power) == pytest.approx(expected, rel=1e-12)


def test_wasserstein_of_a_shifted_copy_is_the_shift():
    _, target = _problem(m=40)
    shift = torch.tensor([0.3, -0.4], dtype=DTYPE)  # |shift| = 0.5
    assert flows.wasserstein(target + shift, target, 1) == pytest.approx(0.5, rel=1e-9)
    assert flows.wasserstein(target + shift, target, 2) == pytest.approx(0.5, rel=1e-9)


def test_short_three_ring_drmmd_run_improves_and_is_reproducible():
    def run():
        toy = toys.make_toy("three_rings", 60, 60, seed=5)
        kernel = kernels.get_kernel("gaussian", 0.15)
        return _run(flows.make_flow("drmmd", toy.target, kernel, 0.1, 1e-3), toy.source, 300, log_every=100,
                    snapshot_every=50)  # fmt: skip

    first, second = run(), run()
    metrics = first.metrics()
    assert float(metrics["w1"][-1]) < 0.75 * float(metrics["w1"][0])
    assert float(metrics["mmd2"][-1]) < 0.2 * float(metrics["mmd2"][0])
    assert metrics["step"].tolist() == [0, 100, 200, 300]
    assert first.snapshot_steps == [0, 50, 100, 150, 200, 250, 300]
    assert first.snapshot_tensor().shape == (7, 60, 2)
    torch.testing.assert_close(first.snapshot_tensor(), second.snapshot_tensor(), rtol=0, atol=0)


def test_divergence_raises_naming_step_with_earlier_records_kept():
    toy = toys.make_toy("three_rings", 30, 30, seed=0)
    flow = flows.make_flow("mmd", toy.target, kernels.get_kernel("gaussian", 0.15), 1e300, 1.0)
    with pytest.raises(flows.FlowDivergedError, match="step 1") as caught:
        _run(flow, toy.source, 5, log_every=1)
    assert [record.step for record in caught.value.trajectory.records] == [0]


# ----------------------------------------------------------------------------- config
GOOD = dict(target="three_rings", flow="drmmd", kernel="gaussian", bandwidth=0.15, n_particles=30, n_target=30,
            steps=10, step_size=0.1, lmbda=1e-3, noise_level=0.0, noise_until=0, dtype="float64", device="auto",
            log_every=1, snapshot_every=5, replicas=1, seed=0)  # fmt: skip


@pytest.mark.parametrize(
    "key, value",
    [("target", "moons"), ("flow", "sgd"), ("kernel", "rbf"), ("bandwidth", 0.0), ("bandwidth", -1.0),
     ("lmbda", 0.0), ("step_size", float("nan")), ("n_particles", 0), ("n_target", 31), ("steps", 2.5),
     ("log_every", True), ("dtype", "float16"), ("device", "tpu"), ("noise_level", -1.0), ("replicas", 0),
     ("checkpoint_every", -1), ("checkpoint_every", 2.5), ("resume_from", 3), ("seed", None)],
)  # fmt: skip
def test_validate_flow_config_names_the_bad_key(key, value):
    flows.validate_flow_config(GOOD)
    with pytest.raises(ValueError, match=f"'{key}'"):
        flows.validate_flow_config({**GOOD, key: value})


def test_validate_flow_config_unknown_and_missing_keys():
    with pytest.raises(ValueError, match="unknown config key 'lr'.*known keys: target, flow"):
        flows.validate_flow_config({**GOOD, "lr": 0.1})
    without = {key: value for key, value in GOOD.items() if key not in ("lmbda", "step_size", "log_every")}
    complete = flows.validate_flow_config(without)  # the spec's defaults; the derived ones from the other keys
    assert complete["lmbda"] == flows.SPEC["lmbda"].default == 1e-3
    assert complete["step_size"] == 0.1 and complete["log_every"] == 1  # steps 10: max(1, 10 // 200)
    kale = flows.validate_flow_config({**without, "flow": "kale", "lmbda": 0.01, "steps": 4000})
    assert kale["step_size"] == pytest.approx(0.001) and kale["log_every"] == 20


def test_a_validated_flow_config_is_frozen_and_whole_numbers_are_ints():
    complete = flows.validate_flow_config({**GOOD, "checkpoint_every": 2.0})
    assert complete["checkpoint_every"] == 2 and isinstance(complete["checkpoint_every"], int)
    with pytest.raises(TypeError, match="read-only"):
        complete["steps"] = 5
    assert type(pickle.loads(pickle.dumps(complete))) is dict  # checkpoints hold a plain dict


# ----------------------------------------------------------------------------- blocked reductions
@pytest.mark.parametrize("name", sorted(kernels.KERNELS))
def test_blocked_kernel_reductions_equal_the_full_gram(name):
    kernel = kernels.get_kernel(name, 0.7)
    x, y = _problem(n=23, m=17, seed=3)
    weights = torch.linspace(-1.0, 2.0, 17, dtype=DTYPE)
    tiny = 1  # one row per block
    assert kernels.block_rows(23, 17, DTYPE, tiny) == 1
    torch.testing.assert_close(kernels.kernel_gram(kernel, x, y, tiny), kernel(x, y))
    torch.testing.assert_close(kernels.kernel_matvec(kernel, x, y, weights, tiny), kernel(x, y) @ weights)
    points = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad((kernel(points, y) @ weights).sum(), points)
    torch.testing.assert_close(kernels.kernel_matvec_grad(kernel, x, y, weights, tiny), expected)


@pytest.mark.parametrize("flow_name", ["mmd", "mmd_noise", "drmmd", "drmmd_adaptive", "kale"])
def test_a_flow_with_one_row_per_block_follows_the_unblocked_flow(flow_name):
    toy = toys.make_toy("three_rings", 30, 30, seed=0)
    kernel = kernels.get_kernel("gaussian", 0.15)
    trajectories = []
    for budget in (None, 1):
        flow = flows.make_flow(flow_name, toy.target, kernel, 0.1 if flow_name != "kale" else 1e-3, 0.01,
                               noise_level=0.1, noise_until=5, budget_bytes=budget)  # fmt: skip
        generator = torch.Generator().manual_seed(0)
        trajectories.append(_run(flow, toy.source, 10, generator=generator))
    assert (trajectories[0].particles - toy.source).abs().max() > 1e-4, "the flow did not move"
    torch.testing.assert_close(trajectories[1].particles, trajectories[0].particles, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- batched replicas
def _replica_problem(flow_name, seeds=(0, 1, 2)):
    """Three replicas: their own seeds (sources, targets, noise) and their own step, lambda, noise level."""
    target = "gaussian" if flow_name != "mmd_noise" else "gaussian_1d"
    toy_list = [toys.make_toy(target, 24, 21, seed=seed) for seed in seeds]
    steps = [1e-3, 2e-3, 5e-4] if flow_name == "kale" else [0.1, 0.2, 0.05]
    hyper = dict(lmbdas=[0.01, 0.1, 0.05], levels=[1.0, 0.5, 2.0], untils=[5, 3, 8], steps=steps)
    return toy_list, hyper


@pytest.mark.parametrize("flow_name", flows.FLOWS)
def test_batched_replicas_follow_their_plain_runs(flow_name):
    toy_list, hyper = _replica_problem(flow_name)
    kernel = kernels.get_kernel("gaussian", 1.0)
    plain = []
    for r, toy in enumerate(toy_list):
        flow = flows.make_flow(flow_name, toy.target, kernel, hyper["steps"][r], hyper["lmbdas"][r],
                               noise_level=hyper["levels"][r], noise_until=hyper["untils"][r])  # fmt: skip
        plain.append(_run(flow, toy.source, 12, log_every=3, snapshot_every=4,
                          generator=torch.Generator().manual_seed(10 + r)))  # fmt: skip
    batched_flow = flows.make_flow(
        flow_name, torch.stack([toy.target for toy in toy_list]), kernel, hyper["steps"], hyper["lmbdas"],
        noise_level=hyper["levels"], noise_until=hyper["untils"],
    )  # fmt: skip
    logged = []
    batched = _run(batched_flow, torch.stack([toy.source for toy in toy_list]), 12, log_every=3, snapshot_every=4,
                   generator=[torch.Generator().manual_seed(10 + r) for r in range(3)], on_log=logged.append)  # fmt: skip
    assert len(batched) == 3 and [record.replica for record in logged[:3]] == [0, 1, 2]
    for one, together in zip(plain, batched):
        assert (one.particles - one.snapshots[0]).abs().max() > 1e-4, "the flow did not move"
        assert one.snapshot_steps == together.snapshot_steps == [0, 4, 8, 12]
        for name, values in one.metrics().items():
            torch.testing.assert_close(together.metrics()[name], values, rtol=1e-10, atol=1e-12, msg=name)
        torch.testing.assert_close(together.particles, one.particles, rtol=0, atol=1e-10)
        torch.testing.assert_close(together.snapshot_tensor(), one.snapshot_tensor(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("flow_name", ["mmd", "drmmd", "kale"])
def test_a_diverging_replica_fails_alone(flow_name):
    toy_list, _ = _replica_problem(flow_name)
    kernel = kernels.get_kernel("gaussian", 1.0)
    healthy = 1e-3 if flow_name == "kale" else 0.1
    steps = [healthy, float("inf"), healthy]  # replica 1 leaves R^d at its first move
    targets, sources = torch.stack([t.target for t in toy_list]), torch.stack([t.source for t in toy_list])
    failures = []
    batched = _run(flows.make_flow(flow_name, targets, kernel, steps, 0.1), sources, 6, log_every=2,
                   on_failure=failures.append)  # fmt: skip
    assert [(error.replica, error.step, error.quantity) for error in failures] == [(1, 1, "particles")]
    assert "replica 1" in str(failures[0])
    assert [record.step for record in batched[1].records] == [0]
    torch.testing.assert_close(batched[1].particles, toy_list[1].source)  # stopped at its last finite positions
    for replica in (0, 2):
        alone = _run(flows.make_flow(flow_name, toy_list[replica].target, kernel, healthy, 0.1),
                     toy_list[replica].source, 6, log_every=2)  # fmt: skip
        assert [record.step for record in batched[replica].records] == [0, 2, 4, 6]
        torch.testing.assert_close(batched[replica].particles, alone.particles, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", sorted(kernels.KERNELS))
def test_batched_kernel_reductions_equal_each_replica(name):
    kernel = kernels.get_kernel(name, 0.7)
    pairs = [_problem(n=23, m=17, seed=seed) for seed in (3, 4)]
    x, y = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])  # (2, 23, 2), (2, 17, 2)
    weights = torch.stack([torch.linspace(-1.0, 2.0, 17, dtype=DTYPE), torch.linspace(0.5, -3.0, 17, dtype=DTYPE)])
    tiny = 1
    for r in range(2):
        torch.testing.assert_close(kernels.kernel_gram(kernel, x, y, tiny)[r], kernel(x[r], y[r]))
        torch.testing.assert_close(kernels.kernel_matvec(kernel, x, y, weights, tiny)[r],
                                   kernels.kernel_matvec(kernel, x[r], y[r], weights[r]))  # fmt: skip
        torch.testing.assert_close(kernels.kernel_matvec_grad(kernel, x, y, weights, tiny)[r],
                                   kernels.kernel_matvec_grad(kernel, x[r], y[r], weights[r]))  # fmt: skip


@pytest.mark.parametrize("name", kernels.RADIAL)
def test_radial_slope_from_the_kernel_values_is_bitwise_the_slope_from_distances(name):
    """q(s) taken from k(s) (what the shared-distances step does) == q(s) from s alone, bit for bit,
    and q = 2 dk/ds by autograd through k(s) (away from s = 0, where the Laplace slope is set to 0)."""
    particles, target = _problem()
    kernel = kernels.get_kernel(name, 0.7)
    sq = kernels.squared_distances(particles, torch.cat([particles, target]))  # (N, N + M)
    slope = kernel.radial_slope(sq)
    assert torch.equal(kernel.radial_slope(sq, kernel.radial_value(sq)), slope)
    leaf = sq.clone().requires_grad_(True)
    (derivative,) = torch.autograd.grad(kernel.radial_value(leaf).sum(), leaf)
    apart = sq > 1e-6
    torch.testing.assert_close(slope[apart], 2.0 * derivative[apart], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", kernels.RADIAL)
@pytest.mark.parametrize("flow_name", ["mmd", "drmmd"])
def test_shared_distances_step_equals_the_separate_reductions(name, flow_name):
    """One matrix of squared distances per step (radial kernels, small flows) == separate kernel
    evaluations through autograd (the same kernel as a plain function, which has no radial form)."""
    particles, target = _problem()
    fused_kernel = kernels.get_kernel(name, 0.8)
    plain_kernel = functools.partial(kernels.KERNELS[name], bandwidth=0.8)
    fused = flows.make_flow(flow_name, target, fused_kernel, 0.1, 0.05)
    assert fused._shared_distances(particles) is not None, "the shared path must be taken"
    first, velocity = flows.flow_velocity(fused, particles, 0)
    expected_first, expected = flows.flow_velocity(flows.make_flow(flow_name, target, plain_kernel, 0.1, 0.05), particles, 0)
    torch.testing.assert_close(first.value, expected_first.value, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(velocity, expected, rtol=1e-10, atol=1e-12)
    assert fused._kept is None, "kept distances are released after the velocity"


# ----------------------------------------------------------------------------- checkpoints and resume
def _resume_configs(flow_name, seeds=(2,)):
    """Small configs of ``flow_name`` (with the first kernel it takes) whose noise (mmd_noise) ends after
    the stop step, one per seed."""
    steps = {"kale": [1e-3, 2e-3, 5e-4]}.get(flow_name, [0.1, 0.2, 0.05])
    kernel = (flows.FLOWS[flow_name].kernels or ("gaussian",))[0]
    return [dict(GOOD, flow=flow_name, target="gaussian", kernel=kernel, bandwidth=1.0, n_particles=24, n_target=21, steps=12,
                 log_every=3, snapshot_every=4, step_size=steps[r], lmbda=[0.05, 0.1, 0.02][r],
                 noise_level=[0.5, 1.0, 0.2][r], noise_until=8, seed=seed)
            for r, seed in enumerate(seeds)]  # fmt: skip


def _interrupted(configs, paths, at_step):
    """Run ``configs`` (one batch) until a stop request before step ``at_step``; the FlowInterrupted."""
    polls = []
    with pytest.raises(flows.FlowInterrupted) as stop:
        flows.setup_flow(configs).run(checkpoint_paths=paths,
                                      should_stop=lambda: polls.append(1) or len(polls) >= at_step)
    assert stop.value.step == at_step and stop.value.checkpoint_paths == paths
    return stop.value


def _assert_same(trajectory, expected, atol=0.0):
    for name, values in expected.metrics().items():
        torch.testing.assert_close(trajectory.metrics()[name], values, rtol=0, atol=atol, msg=name)
    assert trajectory.snapshot_steps == expected.snapshot_steps
    torch.testing.assert_close(trajectory.snapshot_tensor(), expected.snapshot_tensor(), rtol=0, atol=atol)
    torch.testing.assert_close(trajectory.particles, expected.particles, rtol=0, atol=atol)


@pytest.mark.parametrize("flow_name", list(flows.FLOWS))
def test_flow_restarted_from_step_0_after_an_interruption(flow_name, tmp_path):
    """Regression (2-D flows restarted from step 0): a flow stopped at step 5 and resumed from its
    checkpoint equals the uninterrupted flow bitwise (float64), its whole trajectory included; so
    does one resumed from the periodic checkpoint (checkpoint_every) of a finished run."""
    (config,) = _resume_configs(flow_name)
    periodic = str(tmp_path / "periodic.pt")
    (straight,) = flows.setup_flow([dict(config, checkpoint_every=5)]).run(checkpoint_paths=[periodic])
    assert flows.load_checkpoint(periodic).step == 10
    path = str(tmp_path / "checkpoint.pt")
    stop = _interrupted([config], [path], 5)
    assert [record.step for record in stop.trajectories[0].records] == [0, 3]
    checkpoint = flows.load_checkpoint(path)
    assert checkpoint.step == 5 and not os.path.exists(path + ".tmp")
    assert checkpoint.config == flows.validate_flow_config(config)  # the complete config, defaults filled in
    if flow_name in ("drmmd_adaptive", "kale"):
        assert all(value is not None for value in checkpoint.flow_state.values()) and checkpoint.flow_state
    for source in (path, periodic):
        (resumed,) = flows.setup_flow([dict(config, resume_from=source)]).run()
        _assert_same(resumed, straight)


@pytest.mark.parametrize("flow_name", list(flows.FLOWS))
def test_batched_flow_restarted_from_step_0_after_an_interruption(flow_name, tmp_path):
    """Regression, batched replicas: each replica's checkpoint is a plain run's; the three resume
    together (bitwise equal to the uninterrupted batch) or one alone (equal to its plain run)."""
    configs = _resume_configs(flow_name, seeds=(0, 1, 2))
    straight = flows.setup_flow(configs).run()
    paths = [str(tmp_path / f"replica{r}.pt") for r in range(3)]
    _interrupted(configs, paths, 5)
    resumed = flows.setup_flow([dict(c, resume_from=p) for c, p in zip(configs, paths)]).run()
    for together, expected in zip(resumed, straight):
        _assert_same(together, expected)
    (alone,) = flows.setup_flow([dict(configs[1], resume_from=paths[1])]).run()
    (plain,) = flows.setup_flow([configs[1]]).run()
    _assert_same(alone, plain, atol=1e-12)


def test_resume_refuses_a_changed_config_naming_the_key(tmp_path):
    (config,) = _resume_configs("drmmd_adaptive")
    path = str(tmp_path / "checkpoint.pt")
    _interrupted([config], [path], 5)
    flows.checked_checkpoint(dict(config, resume_from=path, steps=20, log_every=2, snapshot_every=7, device="cpu",
                                    checkpoint_every=3))  # fmt: skip
    for key, value in (("lmbda", 0.2), ("seed", 3), ("step_size", 0.3), ("n_particles", 25), ("dtype", "float32")):
        with pytest.raises(ValueError, match=f"config key '{key}'.*checkpoint"):
            flows.checked_checkpoint(dict(config, resume_from=path, **{key: value}))
    with pytest.raises(ValueError, match="config key 'steps'.*step 5"):
        flows.checked_checkpoint(dict(config, resume_from=path, steps=4))
    with pytest.raises(ValueError, match="config key 'resume_from'.*particle_flow experiment \\(no such file\\)"):
        flows.checked_checkpoint(dict(config, resume_from=str(tmp_path / "none.pt")))
    with pytest.raises(ValueError, match=r"config key 'resume_from'.*of one step, or none \(got steps none, 5\)"):
        flows.setup_flow([dict(config, resume_from=path), dict(config, seed=9)])


def test_flow_checkpoint_on_a_full_disk_names_the_path_and_leaves_no_temporary(full_disk):
    """Regression (a full disk gave 'basic_ios::clear: iostream error' and left checkpoint.pt.tmp)."""
    (config,) = _resume_configs("kale")
    config = dict(config, n_particles=3000, n_target=21)  # particles [3000, 2] float64: 48 kB, 2 snapshots
    path = str(full_disk / "checkpoint.pt")
    with pytest.raises(OSError, match=f"cannot write checkpoint {path}: No space left on device"):
        _interrupted([config], [path], 5)
    assert os.listdir(full_disk) == []


# ----------------------------------------------------------------------------- run-away flows
def test_runaway_kale_flow_is_reported_completed_no_more():
    """Regression (three rings, KALE at step 0.1 and lambda 1e-3 ended COMPLETED with W1 rising from
    0.69 to 8.8): the particles leave the box around target and source; the run fails naming the
    step and their mean distance outside it in box diameters. The default KALE step (0.1 lambda)
    flows sanely."""
    config = dict(GOOD, flow="kale", n_particles=60, n_target=60, steps=300, step_size=0.1, lmbda=1e-3, seed=3,
                  log_every=50, snapshot_every=300)  # fmt: skip
    with pytest.raises(flows.FlowDivergedError, match=r"diverged at step \d+: the particles ran away: their mean "
                                                      r"distance outside the box .* is [\d.]+ diameters") as caught:  # fmt: skip
        flows.setup_flow([config]).run()
    assert caught.value.quantity == "escape" and caught.value.step <= 10
    assert flows.default_step_size("kale", 1e-3) == pytest.approx(1e-4)
    assert flows.default_step_size("kale", 1e-2) == pytest.approx(1e-3)
    assert flows.default_step_size("drmmd", 1e-3) == 0.1
    sane = dict(config, step_size=flows.default_step_size("kale", 1e-3), steps=200, log_every=100, snapshot_every=200)
    (trajectory,) = flows.setup_flow([sane]).run()
    w1 = trajectory.metrics()["w1"]
    assert float(w1[-1]) < float(w1[0])


def test_particles_blown_up_without_overflow_are_caught():
    """Regression (MMD at step 1e300 and N = 24 threw the particles to ~1e299, still finite: COMPLETED)."""
    toy = toys.make_toy("three_rings", 24, 24, seed=0)
    flow = flows.make_flow("mmd", toy.target, kernels.get_kernel("gaussian", 0.15), 1e300, 1.0)
    with pytest.raises(flows.FlowDivergedError, match="step 1: the particles ran away") as caught:
        _run(flow, toy.source, 5, log_every=1)
    assert caught.value.quantity == "escape" and [record.step for record in caught.value.trajectory.records] == [0]


def test_a_runaway_replica_fails_alone():
    toy_list, _ = _replica_problem("mmd")
    kernel = kernels.get_kernel("gaussian", 1.0)
    targets, sources = torch.stack([t.target for t in toy_list]), torch.stack([t.source for t in toy_list])
    failures = []
    batched = _run(flows.make_flow("mmd", targets, kernel, [0.1, 1e300, 0.1], 0.1), sources, 6, log_every=2,
                   on_failure=failures.append)  # fmt: skip
    assert [(error.replica, error.step, error.quantity) for error in failures] == [(1, 1, "escape")]
    assert "replica 1" in str(failures[0]) and [record.step for record in batched[1].records] == [0]
    torch.testing.assert_close(batched[1].particles, toy_list[1].source)
    alone = _run(flows.make_flow("mmd", toy_list[2].target, kernel, 0.1, 0.1), toy_list[2].source, 6, log_every=2)
    torch.testing.assert_close(batched[2].particles, alone.particles, rtol=0, atol=1e-10)


SMALL_FLOW_SWEEPS = ("three_rings_small", "three_rings_lambda_small", "mmd_flow_gaussians_small", "srmmd_toys_small")


@pytest.mark.slow
@pytest.mark.parametrize("name", SMALL_FLOW_SWEEPS)
def test_the_runaway_rule_never_fires_on_the_small_sweeps(name):
    """Every config of the small flow sweeps runs to its end (metrics only at the ends, for speed)."""
    from studentteacher.sweep import spec

    sweep = spec.load(Path(__file__).resolve().parents[1] / "experiments" / "sweeps" / "figures" / f"{name}.yaml")
    for index in range(len(sweep)):
        config = {**GOOD, **sweep.config_updates(index)}
        config = dict(config, log_every=config["steps"], snapshot_every=config["steps"], device="cpu")
        (trajectory,) = flows.setup_flow([config]).run()
        assert trajectory.records[-1].step == config["steps"], (name, index)
