"""studentteacher.dmmd against independent computations: the schedules' closed forms, explicit
double sums for the unbiased MMD, autograd through explicit Grams for the samplers, per-particle
Jacobians for the approximate sampler, and a loop-by-loop discriminator loss."""
from __future__ import annotations

import math

import pytest
import torch

from studentteacher import dmmd
from studentteacher.dmmd import run as dmmd_run
from studentteacher.dmmd.samplers import SAMPLERS

DTYPE = torch.float64


def _discriminator(dim=2, seed=0, **sizes):
    architecture = dmmd.Architecture(dim=dim, **{"hidden": 16, "layers": 2, "features": 5, "embedding": 4, **sizes})
    return dmmd.Discriminator(architecture, torch.Generator().manual_seed(seed), dtype=DTYPE)


def _points(n, d, seed, shift=0.0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=DTYPE) + shift


# ----------------------------------------------------------------------------- forward process
def test_schedules_are_variance_preserving_with_their_endpoints():
    t = torch.linspace(0.0, 1.0, 101, dtype=DTYPE)
    cosine, vp = dmmd.make_schedule("cosine"), dmmd.make_schedule("vp_linear")
    for schedule in (cosine, vp):
        torch.testing.assert_close(schedule.alpha(t) ** 2 + schedule.beta(t) ** 2, torch.ones_like(t))
        assert float(schedule.alpha(t[:1])) == 1.0 and float(schedule.beta(t[:1])) == 0.0
        assert bool((schedule.alpha(t)[1:] < schedule.alpha(t)[:-1]).all()), f"{schedule.name}: alpha decreases"
    assert float(cosine.alpha(t[-1:])) == 0.0 and float(cosine.beta(t[-1:])) == 1.0  # exactly
    torch.testing.assert_close(cosine.alpha(t), torch.cos(math.pi * t / 2), rtol=0, atol=1e-15)
    assert float(vp.alpha(t[-1:])) == pytest.approx(math.exp(-(20.0 - 0.1) / 4 - 0.05), rel=1e-12)  # 6.6e-3
    assert dmmd.DEFAULT_SCHEDULE == "cosine"
    x0, eps = _points(5, 3, 0), _points(5, 3, 1)
    levels = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0], dtype=DTYPE)
    expected = torch.cos(math.pi * levels / 2)[:, None] * x0 + torch.sin(math.pi * levels / 2)[:, None] * eps
    torch.testing.assert_close(cosine.noise(x0, levels, eps), expected)
    with pytest.raises(ValueError, match="'cosine', 'vp_linear'"):
        dmmd.make_schedule("linear")


def test_sampling_levels_go_from_pure_noise_down_to_one_over_t():
    assert dmmd.sampling_levels(4) == [1.0, 0.75, 0.5, 0.25]
    assert dmmd.sampling_levels(1) == [1.0]


# ----------------------------------------------------------------------------- feature kernels
def _mmd_u_by_loops(kernel, a, b):
    n, total = a.shape[0], 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                k = lambda p, q: float(kernel.gram(p[None], q[None])[0, 0].detach())  # noqa: E731
                total += k(a[i], a[j]) + k(b[i], b[j]) - k(a[i], b[j]) - k(a[j], b[i])
    return total / (n * (n - 1))


@pytest.mark.parametrize("name", ["linear", "rbf"])
def test_unbiased_mmd_and_witness_match_explicit_sums(name):
    kernel = dmmd.make_feature_kernel(name, bandwidth=1.5)
    a, b = _points(7, 4, 0), _points(7, 4, 1, shift=0.5)
    assert float(kernel.mmd2_unbiased(a, b)) == pytest.approx(_mmd_u_by_loops(kernel, a, b), rel=1e-12)
    grouped = kernel.mmd2_unbiased(torch.stack([a, b]), torch.stack([b, a]))  # (2,): one value per group
    assert grouped.shape == (2,) and float(grouped[1]) == pytest.approx(float(kernel.mmd2_unbiased(b, a)), rel=1e-12)
    z = _points(3, 4, 2)
    explicit = kernel.gram(z, b).mean(1) - kernel.gram(z, a).mean(1)
    torch.testing.assert_close(kernel.witness(z, a, b), explicit, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(kernel.pair(a, b), kernel.gram(a, b).diagonal(), rtol=1e-12, atol=1e-14)
    if name == "linear":
        torch.testing.assert_close(kernel.gram(a, b), a @ b.T)
    with pytest.raises(ValueError, match="'linear', 'rbf'"):
        dmmd.make_feature_kernel("poly")


# ----------------------------------------------------------------------------- discriminator and training
def test_discriminator_is_drawn_from_its_generator_and_embeds_time():
    one, two, other = _discriminator(seed=3), _discriminator(seed=3), _discriminator(seed=4)
    x = _points(6, 2, 0)
    assert one(x, 0.3).shape == (6, 5) and one(x, 0.3).dtype == DTYPE
    torch.testing.assert_close(one(x, 0.3), two(x, torch.full((6,), 0.3, dtype=DTYPE)))
    assert not torch.allclose(one(x, 0.3), other(x, 0.3))
    assert not torch.allclose(one(x, 0.3), one(x, 0.7)), "phi depends on t"
    embedding = dmmd.time_embedding(torch.tensor([0.0, 0.5], dtype=DTYPE), 6)  # frequencies 1, 10, 100
    expected = torch.tensor([[0, 0, 0, 1, 1, 1], [math.sin(0.5), math.sin(5), math.sin(50), math.cos(0.5),
                                                   math.cos(5), math.cos(50)]], dtype=DTYPE)  # fmt: skip
    torch.testing.assert_close(embedding, expected)


def test_discriminator_loss_matches_a_group_by_group_computation():
    model, kernel = _discriminator(), dmmd.make_feature_kernel("linear")
    settings = dmmd.TrainSettings(l2_weight=0.3, gp_weight=7.0)
    clean, noised = _points(8, 2, 0).reshape(2, 4, 2), _points(8, 2, 1).reshape(2, 4, 2)
    levels = torch.tensor([0.2, 0.8], dtype=DTYPE)
    loss, mmd2 = dmmd.discriminator_loss(model, kernel, clean, noised, levels, settings, torch.Generator().manual_seed(5))
    u = torch.rand(2, 4, 1, generator=torch.Generator().manual_seed(5), dtype=DTYPE)
    parts = []
    for g in range(2):
        phi_x, phi_y = model(clean[g], levels[g]), model(noised[g], levels[g])
        value = _mmd_u_by_loops(kernel, phi_x, phi_y)
        assert float(mmd2[g].detach()) == pytest.approx(value, rel=1e-10)
        delta = phi_y.mean(0) - phi_x.mean(0)  # the linear witness f(z) = phi(z) . delta
        l2 = torch.cat([phi_x @ delta, phi_y @ delta]).pow(2).mean()
        between = (u[g] * clean[g] + (1 - u[g]) * noised[g]).requires_grad_()
        (grad,) = torch.autograd.grad((model(between, levels[g]) @ delta).sum(), between)
        parts.append(-value + 0.3 * float(l2.detach()) + 7.0 * float(((grad.norm(dim=1) - 1) ** 2).mean()))
    assert float(loss.detach()) == pytest.approx(sum(parts) / 2, rel=1e-10)


def test_training_records_losses_and_raises_the_mmd_between_data_and_noise():
    data = _points(200, 2, 0) * 0.3 + 2.0
    model, kernel, schedule = _discriminator(), dmmd.make_feature_kernel("linear"), dmmd.make_schedule("cosine")
    settings = dmmd.TrainSettings(steps=60, batch_size=32, lr=3e-3, log_every=20, eval_levels=(0.5, 0.9), eval_size=64)
    before = dmmd.evaluate_levels(model, kernel, data, schedule, (0.5, 0.9), 64)
    logged = []
    result = dmmd.train_discriminator(model, kernel, data, schedule, settings, torch.Generator().manual_seed(1),
                                      on_log=lambda *args: logged.append(args))  # fmt: skip
    assert len(result.losses) == 60 and result.log_steps == [20, 40, 60] and [s for s, _, _ in logged] == [20, 40, 60]
    assert result.level_mmd2[-1] == dmmd.evaluate_levels(model, kernel, data, schedule, (0.5, 0.9), 64)
    assert result.level_mmd2[-1][1] > before[1], "training separates data from noised data"
    with pytest.raises(ValueError, match="multiple of levels_per_step"):
        dmmd.train_discriminator(model, kernel, data, schedule, dmmd.TrainSettings(batch_size=30), torch.Generator())


# ----------------------------------------------------------------------------- samplers
def _sample(name, kernel_name, levels=(1.0, 0.6, 0.3), steps=3, step_size=0.2):
    model = _discriminator(seed=1)
    data = _points(40, 2, 7, shift=1.0)
    sampler = dmmd.make_sampler(name, model, dmmd.make_feature_kernel(kernel_name, 2.0), data)
    return dmmd.run_sampler(sampler, _points(25, 2, 8), list(levels), steps, step_size)


@pytest.mark.parametrize("kernel_name", ["linear", "rbf"])
def test_interacting_sampler_equals_the_pairwise_one(kernel_name):
    interacting, pairwise = _sample("interacting", kernel_name), _sample("pairwise", kernel_name)
    assert len(interacting.snapshots) == 4 and interacting.levels == [1.0, 0.6, 0.3]
    moved = float((interacting.particles - interacting.snapshots[0]).abs().max())
    assert moved > 1e-4, "the particles move"
    for level, (a, b) in enumerate(zip(interacting.snapshots, pairwise.snapshots)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=f"level {level}")


def test_interacting_linear_velocity_is_the_jacobian_times_the_gap_of_mean_features():
    model, kernel = _discriminator(seed=2), dmmd.make_feature_kernel("linear")
    data, particles = _points(30, 2, 3, shift=1.0), _points(9, 2, 4)
    sampler, level = dmmd.make_sampler("interacting", model, kernel, data), 0.4
    gap = model(particles, level).mean(0) - model(data, level).mean(0)  # (F,)
    for name, coefficient in (("interacting", lambda i: gap),
                              ("approximate", lambda i: model(particles[i:i + 1], level)[0] - model(data, level).mean(0))):
        sampler = dmmd.make_sampler(name, model, kernel, data)
        velocity = sampler.velocity(particles, level, sampler.prepare(level))
        for i in range(9):
            jacobian = torch.autograd.functional.jacobian(lambda z: model(z[None], level)[0], particles[i])  # (F, d)
            torch.testing.assert_close(velocity[i], jacobian.T @ coefficient(i).detach(), rtol=1e-10, atol=1e-12)


def test_sampler_registry_and_divergence():
    assert list(SAMPLERS) == ["interacting", "approximate", "pairwise"]
    with pytest.raises(ValueError, match="'interacting', 'approximate', 'pairwise'"):
        dmmd.make_sampler("langevin", None, None, None)
    with pytest.raises(FloatingPointError, match="noise level 1"):
        _sample("interacting", "linear", step_size=1e200)


# ----------------------------------------------------------------------------- a whole run
def test_run_from_config_trains_samples_and_measures():
    config = dict(target="swiss_roll", n_train=300, n_eval=200, hidden=16, features=8, train_steps=4, batch_size=16,
                  log_every=2, levels=2, steps_per_level=2, n_particles=50, device="cpu", dtype="float64", seed=3)
    setup = dmmd_run.setup_dmmd(config)
    assert setup.data.train.shape == (300, 2) and setup.data.held_out.shape == (200, 2)
    from studentteacher import toys
    torch.testing.assert_close(setup.data.held_out, toys.make_toy("swiss_roll", 1, 200, seed=3).target)
    result = dmmd_run.train(setup)
    assert len(result.losses) == 4 and len(result.level_mmd2[0]) == len(dmmd_run.EVAL_LEVELS)
    seen = []
    trajectory = dmmd_run.sample(setup, on_level=lambda k, t, z: seen.append((k, dmmd_run.sample_metrics(setup.data, z))))
    assert [k for k, _ in seen] == [0, 1, 2] and set(seen[0][1]) == {"sample_mmd2", "sample_w1", "sample_w2"}
    assert trajectory.particles.shape == (50, 2)
