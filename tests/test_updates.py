"""Each update rule's step against a float64 finite-difference gradient of what it descends."""
from __future__ import annotations

import pytest
import torch

from conftest import tiny_network
from studentteacher.config import SPEC, validate
from studentteacher.divergences import st_drmmd, st_mmd2
from studentteacher.networks import forward, init_params, per_sample_gram, surrogate_grad
from studentteacher.updates import RULES, StepHyper, draw_noise, make_rule, rule_from_config
from studentteacher.updates.ksd import ksd_alpha

LR = 0.1


def problem(readout="particle", bias=False, d_out=1, n_particles=3):
    arch, student, x = tiny_network(readout, bias, d_out, n_particles=n_particles, d_in=4, hidden=2)
    teacher = init_params(arch, 1, 0.0, 1.0, torch.Generator().manual_seed(11), dtype=torch.float64)
    y = forward(arch, teacher, x).mean()
    return arch, student, x, y


def finite_difference(function, params, eps=1e-6):
    """Central differences of ``function(params) -> float`` in every coordinate (float64)."""
    grads = {}
    for key, value in params.items():
        grad = torch.zeros_like(value).reshape(-1)
        for j in range(value.numel()):
            shifted = {}
            for sign in (1, -1):
                moved = value.clone().reshape(-1)
                moved[j] += sign * eps
                shifted[sign] = function({**params, key: moved.reshape(value.shape)})
            grad[j] = (shifted[1] - shifted[-1]) / (2 * eps)
        grads[key] = grad.reshape(value.shape)
    return grads


def take_step(method, arch, params, x, y, noise=0.0, lmbda=0.1, seed=5, **options):
    rule = make_rule(method, arch, **options)
    drawn = draw_noise(params, torch.Generator().manual_seed(seed)) if rule.uses_noise and noise > 0 else None
    return rule.step(params, x, y, StepHyper(lr=LR, noise_level=noise, lmbda=lmbda), drawn)


def assert_moves(new, old, expected_grads, scale):
    for key in old:
        torch.testing.assert_close(new[key] - old[key], -scale * expected_grads[key], rtol=1e-6, atol=1e-9, msg=key)


@pytest.mark.parametrize("readout,bias,d_out", [("particle", False, 1), ("dense", True, 1), ("particle", True, 2)])
def test_sgd_descends_mmd2_with_mean_field_scaling(readout, bias, d_out):
    arch, params, x, y = problem(readout, bias, d_out)
    new, loss = take_step("sgd", arch, params, x, y)
    mmd2 = lambda p: st_mmd2(forward(arch, p, x).mean(), y).item()  # noqa: E731
    assert loss.item() == pytest.approx(mmd2(params), rel=1e-12)
    assert_moves(new, params, finite_difference(mmd2, params), LR * 3 / 4)  # gamma * N/4


@pytest.mark.parametrize("readout", ["particle", "dense"])
def test_drmmd_descends_drmmd_value(readout):
    arch, params, x, y = problem(readout)
    lmbda = 0.3
    new, loss = take_step("drmmd", arch, params, x, y, lmbda=lmbda)
    value = lambda p: st_drmmd(forward(arch, p, x).mean(), y, lmbda).item()  # noqa: E731
    assert loss.item() == pytest.approx(value(params), rel=1e-12)
    assert_moves(new, params, finite_difference(value, params), LR * 3 / 2)  # gamma * N/2


def test_diffusion_descends_mmd2_at_the_noised_particles():
    arch, params, x, y = problem()
    new, _ = take_step("diffusion", arch, params, x, y, noise=0.2, seed=7)
    generator = torch.Generator().manual_seed(7)
    noised = {k: v + 0.2 * torch.randn(v.shape, generator=generator, dtype=v.dtype) for k, v in params.items()}
    mmd2 = lambda p: st_mmd2(forward(arch, p, x).mean(), y).item()  # noqa: E731
    assert_moves(new, noised, finite_difference(mmd2, noised), LR * 3 / 2)


def test_noise_injection_takes_feature_gradient_at_perturbed_particles_with_clean_residual():
    arch, params, x, y = problem("dense")
    new, _ = take_step("noise_injection", arch, params, x, y, noise=0.5, seed=3)
    generator = torch.Generator().manual_seed(3)
    noisy = {k: v + 0.5 * torch.randn(v.shape, generator=generator, dtype=v.dtype) for k, v in params.items()}
    residual = forward(arch, params, x).mean() - y  # clean, frozen
    surrogate = lambda p: ((forward(arch, p, x).features.sum(1) * residual / 2).sum() / x.shape[0]).item()  # noqa: E731
    assert_moves(new, params, finite_difference(surrogate, noisy), LR)


@pytest.mark.parametrize("readout", ["particle", "dense"])
def test_limits_and_equalities_between_rules(readout):
    arch, params, x, y = problem(readout)
    sgd, _ = take_step("sgd", arch, params, x, y)
    sgd_move = {k: sgd[k] - params[k] for k in params}
    cases = {
        "noise_injection@0": (take_step("noise_injection", arch, params, x, y, noise=0.0)[0], 1.0),
        "diffusion@0": (take_step("diffusion", arch, params, x, y, noise=0.0)[0], 2.0),
        "drmmd@1e8": (take_step("drmmd", arch, params, x, y, lmbda=1e8)[0], 2.0),
        "drmmd+noise@1e8,0": (take_step("drmmd", arch, params, x, y, lmbda=1e8, drmmd_noise=True)[0], 2.0),
    }
    for name, (new, factor) in cases.items():
        for key in params:
            torch.testing.assert_close(new[key] - params[key], factor * sgd_move[key], rtol=1e-6, atol=1e-12, msg=name)


@pytest.mark.parametrize("readout,d_out", [("particle", 1), ("dense", 1), ("particle", 2)])
def test_ksd_alpha_and_step_against_explicit_jacobian(readout, d_out):
    arch, params, x, y = problem(readout, d_out=d_out)
    keys = list(params)
    network_sum = lambda *t: forward(arch, dict(zip(keys, t)), x).features.sum(1).reshape(-1)  # noqa: E731
    jac = torch.autograd.functional.jacobian(network_sum, tuple(params.values()))
    jac = torch.cat([j.reshape(j.shape[0], -1) for j in jac], dim=1).numpy()  # (B*O, P)
    residual = (forward(arch, params, x).mean() - y).reshape(-1).numpy()
    import numpy as np

    batch, n, eps = x.shape[0], 3, 1e-3
    alpha_slow = np.linalg.solve(jac @ jac.T / (n * batch) + eps * np.eye(jac.shape[0]), residual)
    fwd = forward(arch, params, x)
    alpha = ksd_alpha(per_sample_gram(arch, params, x, fwd), fwd.mean() - y, n, eps)
    np.testing.assert_allclose(alpha.reshape(-1).numpy(), alpha_slow, rtol=1e-8)
    new, _ = take_step("ksd", arch, params, x, y, ksd_reg=eps)
    move = np.concatenate([(new[k] - params[k]).reshape(-1).numpy() for k in keys])
    np.testing.assert_allclose(move, -LR * jac.T @ alpha_slow / batch, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("method", list(RULES))
@pytest.mark.parametrize("readout", ["particle", "dense"])
def test_student_made_of_teacher_copies_takes_zero_step(method, readout):
    arch, _, x, _ = problem(readout)
    teacher = init_params(arch, 1, 0.0, 1.0, torch.Generator().manual_seed(11), dtype=torch.float64)
    n, h = 3, arch.hidden
    student = {"W": teacher["W"].repeat(n, 1, 1)}
    if readout == "particle":
        student["V"] = teacher["V"].repeat(n, 1, 1)
    else:  # output i reads only its own copy of the teacher's hidden units: V block-diagonal
        student["V"] = torch.zeros(n, 1, n * h, dtype=torch.float64)
        for i in range(n):
            student["V"][i, :, i * h : (i + 1) * h] = teacher["V"][0]
    y = forward(arch, teacher, x).mean()
    noise = 0.0 if method == "diffusion" else 0.3  # diffusion moves the particles off the teacher by design
    new, loss = take_step(method, arch, student, x, y, noise=noise, drmmd_noise=True) if method == "drmmd" else take_step(
        method, arch, student, x, y, noise=noise
    )
    assert loss.item() == pytest.approx(0.0, abs=1e-14)
    for key in student:
        torch.testing.assert_close(new[key], student[key], rtol=0, atol=1e-14)


def test_particle_readout_step_is_local():
    """In the particle readout, particle 0's step depends only on particle 0 and the residual."""
    arch, params, x, y = problem("particle", n_particles=4)
    fwd = forward(arch, params, x)
    rho = fwd.mean() - y
    others_moved = {k: torch.cat([v[:1], v[1:] + 1.0]) for k, v in params.items()}
    grads = surrogate_grad(arch, params, x, fwd, rho)
    grads_moved = surrogate_grad(arch, others_moved, x, forward(arch, others_moved, x), rho)
    for key in params:
        torch.testing.assert_close(grads[key][0], grads_moved[key][0], rtol=0, atol=0)
        assert not torch.allclose(grads[key][1:], grads_moved[key][1:])


def test_unknown_method_and_bad_options_name_the_argument():
    arch, *_ = problem()
    with pytest.raises(ValueError, match=r"method must be one of \['sgd', 'noise_injection', 'diffusion', 'ksd', 'drmmd', 'srmmd', 'hrmmd'\], got 'adam'"):
        make_rule("adam", arch)
    with pytest.raises(ValueError, match="ksd_reg must be > 0"):
        make_rule("ksd", arch, ksd_reg=0.0)
    with pytest.raises(ValueError, match=r"update rule 'drmmd' takes no option 'ksd_reg'; its options: drmmd_noise"):
        make_rule("drmmd", arch, ksd_reg=1e-3)
    with pytest.raises(ValueError, match=r"update rule 'sgd' takes no option 'lmbda'; its options: none"):
        make_rule("sgd", arch, lmbda=0.1)


def test_rules_take_their_declared_options_from_the_config():
    arch, *_ = problem()
    cfg = validate(dict(method="ksd", ksd_reg=1e-3, drmmd_noise=True))
    assert rule_from_config(cfg, arch).ksd_reg == 1e-3
    assert rule_from_config(dict(cfg, method="drmmd"), arch).drmmd_noise is True
    for name, rule in RULES.items():
        assert set(rule.options) <= set(SPEC), f"{name}: every option is a config key"
        assert isinstance(rule_from_config(dict(cfg, method=name), arch), rule)


@pytest.mark.parametrize("method", list(RULES))
def test_objective_is_the_loss_the_step_reports(method):
    arch, params, x, y = problem("dense")
    rule = make_rule(method, arch)
    _, loss = take_step(method, arch, params, x, y, lmbda=0.3)
    assert rule.objective(forward(arch, params, x).mean(), y, 0.3).item() == pytest.approx(loss.item(), rel=1e-12)
    assert rule.adapts_lambda == (method == "drmmd")


def test_d_out_2_ksd_has_one_gram_row_per_sample_and_output():
    """d_out > 1 convention (ours, kept; updates/ksd.py's docstring): one Gram row per (sample,
    output), against a brute-force float64 loop: each row of J from its own backward pass of
    sum_i phi_{Z_i,o}(x_b), alpha = solve(J J^T / (N B) + eps I, r), the move -gamma J^T alpha / B."""
    arch, params, x, y = problem("particle", d_out=2)
    keys, (batch, outputs), n, eps = list(params), y.shape, 3, 1e-3
    leaves = {key: value.clone().requires_grad_() for key, value in params.items()}
    rows, residual = [], []
    for b in range(batch):
        for o in range(outputs):
            features = forward(arch, leaves, x[b : b + 1]).features[0, :, o]  # (N,)
            rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(features.sum(), list(leaves.values()))]))
            residual.append(float(features.mean()) - float(y[b, o]))
    jac = torch.stack(rows)  # (B*O, P)
    system = jac @ jac.T / (n * batch) + eps * torch.eye(batch * outputs, dtype=torch.float64)
    alpha = torch.linalg.solve(system, torch.tensor(residual, dtype=torch.float64))  # (B*O,)
    new, _ = take_step("ksd", arch, params, x, y, ksd_reg=eps)
    move = torch.cat([(new[key] - params[key]).reshape(-1) for key in keys])
    torch.testing.assert_close(move, -LR * jac.T @ alpha / batch, rtol=1e-8, atol=1e-13)
