"""The student-teacher SrMMD and HrMMD rules (studentteacher.updates.srmmd) in float64: the exact relation
to ksd, the witness against the particle-space system built by autograd from the kernel's definition,
the lambda -> infinity limit, the exact gradient of the value, and short training runs."""
from __future__ import annotations

import pytest
import torch

from conftest import tiny_network
from studentteacher.networks import forward, init_params
from studentteacher.training import BatchedTrainer, Trainer
from studentteacher.updates import StepHyper, make_rule

LR = 0.1
N_PARTICLES = 3


def problem(readout="particle", bias=False, d_out=1):
    arch, student, x = tiny_network(readout, bias, d_out, n_particles=N_PARTICLES, d_in=4, hidden=2)
    teacher = init_params(arch, 1, 0.0, 1.0, torch.Generator().manual_seed(11), dtype=torch.float64)
    return arch, student, teacher, x


def move(method, arch, params, x, y, lmbda, **options):
    """The step's change of every weight, flattened: ``[P]``."""
    rule = make_rule(method, arch, **options)
    new, _ = rule.step(params, x, y, StepHyper(lr=LR, lmbda=lmbda), None)
    return torch.cat([(new[key] - params[key]).reshape(-1) for key in params])


ARCHS = [("particle", False, 1), ("dense", True, 1), ("particle", True, 2), ("dense", False, 2)]


@pytest.mark.parametrize("readout,bias,d_out", ARCHS)
def test_srmmd_at_lambda_is_ksd_at_eps_lambda_with_the_same_lr(readout, bias, d_out):
    """w = (J J^T/(N B) + lambda I)^{-1} r is ksd's alpha at eps = lambda, and both move by -gamma J^T w / B."""
    arch, params, teacher, x = problem(readout, bias, d_out)
    y = forward(arch, teacher, x).mean()
    for lmbda in (1e-3, 0.1, 2.0):
        srmmd = move("srmmd", arch, params, x, y, lmbda)
        torch.testing.assert_close(srmmd, move("ksd", arch, params, x, y, 1.0, ksd_reg=lmbda), rtol=0, atol=1e-12)
        torch.testing.assert_close(move("hrmmd", arch, params, x, y, lmbda, hrmmd_alpha=1.0), srmmd, rtol=0, atol=1e-12)
    assert srmmd.abs().max() > 1e-4


class ParticleSpace:
    """The issue's Woodbury system in the particle space, by autograd of k(U, Z) = (1/B) phi_U(x)^T phi_Z(x).

    Each particle is a flat weight vector z ``[p]``. Its functionals are e_(i,0) = k(z_i, .) and
    e_(i,l) = d_{1,l} k(z_i, .), with Gram G ``[N(1+p), N(1+p)]``, rho = E^* g (g = m_mu - m_pi) and
    D = diag(1 - alpha on values, alpha on gradients). Then u = D (G D + N lambda I)^{-1} rho,
    f = (1/lambda) [g - sum_a u_a e_a] and HrMMD^2 = (MMD^2 - rho^T u) / lambda (alpha = 1: SrMMD).
    """

    def __init__(self, arch, params, teacher, x, lmbda, alpha):
        self.arch, self.x, self.lmbda = arch, x, lmbda
        self.particles = torch.cat([params["W"].flatten(1), params["V"].flatten(1)], dim=1)  # (N, p)
        self.teacher = torch.cat([teacher["W"].flatten(1), teacher["V"].flatten(1)], dim=1)[0]  # (p,)
        n, p = self.particles.shape
        gram = torch.stack([torch.stack([self.functional_gram(a, b) for b in self.particles]) for a in self.particles])
        gram = gram.permute(0, 2, 1, 3).reshape(n * (1 + p), n * (1 + p))
        rho = torch.stack([self.functionals(a, self.particles).mean(0) - self.functionals(a, self.teacher[None])[0]
                           for a in self.particles]).reshape(-1)  # fmt: skip
        weights = torch.tensor([1.0 - alpha] + [alpha] * p, dtype=torch.float64).repeat(n)  # (N(1+p),)
        system = gram * weights + n * lmbda * torch.eye(n * (1 + p), dtype=torch.float64)
        self.u = (weights * torch.linalg.solve(system, rho)).reshape(n, 1 + p)
        k_yy = torch.stack([torch.stack([self.k(a, b) for b in self.particles]) for a in self.particles])
        mmd2 = k_yy.mean() - 2 * torch.stack([self.k(a, self.teacher) for a in self.particles]).mean()
        self.value = (mmd2 + self.k(self.teacher, self.teacher) - rho @ self.u.reshape(-1)) / lmbda

    def features(self, z):
        """phi_z(x_b) of one particle: ``[B, d_out]``."""
        h, d = self.arch.hidden, self.arch.d_in
        params = {"W": z[: h * d].reshape(1, h, d), "V": z[h * d :].reshape(1, -1, h)}
        return forward(self.arch, params, self.x).features[:, 0]

    def k(self, a, b):
        return (self.features(a) * self.features(b)).sum() / self.x.shape[0]

    def functionals(self, a, points):
        """[k(a, z), d_{1,l} k(a, z)] for every z of ``points: [P, p]`` -> ``[P, 1 + p]``."""
        return torch.stack([torch.cat([self.k(a, z)[None], torch.func.grad(self.k)(a, z)]) for z in points])

    def functional_gram(self, a, b):
        """<e_(a, s), e_(b, t)> for s, t in (value, d_1..d_p): ``[1 + p, 1 + p]``."""
        first = torch.cat([self.k(a, b)[None], torch.func.grad(self.k)(a, b)])  # (1+p,)
        second = torch.func.jacrev(lambda c: torch.cat([self.k(a, c)[None], torch.func.grad(self.k)(a, c)]))(b)
        return torch.cat([first[:, None], second], dim=1)

    def witness(self, z):
        """f(z) = (1/lambda) [mean_i k(z_i, z) - k(U, z) - sum_(i,s) u_(i,s) e_(i,s)(z)]."""
        g = torch.stack([self.k(a, z) for a in self.particles]).mean() - self.k(self.teacher, z)
        correction = sum(self.functionals(a, z[None])[0] @ u for a, u in zip(self.particles, self.u))
        return (g - correction) / self.lmbda


def feature_space_value(arch, params, x, y, lmbda, alpha):
    """(1/B) r^T (alpha J J^T/(N B) + (1 - alpha) Phi Phi^T/(N B) + lambda I)^{-1} r, J by autograd."""
    keys = list(params)
    network_sum = lambda *t: forward(arch, dict(zip(keys, t)), x).features.sum(1).reshape(-1)  # noqa: E731
    jac = torch.cat([j.flatten(1) for j in torch.autograd.functional.jacobian(network_sum, tuple(params.values()))], 1)
    fwd = forward(arch, params, x)
    phi = fwd.features.permute(0, 2, 1).reshape(-1, N_PARTICLES)  # (B*O, N)
    residual = (fwd.mean() - y).reshape(-1)  # (B*O,)
    operator = (alpha * jac @ jac.T + (1 - alpha) * phi @ phi.T) / (N_PARTICLES * x.shape[0])
    system = operator + lmbda * torch.eye(residual.shape[0], dtype=torch.float64)
    return residual @ torch.linalg.solve(system, residual) / x.shape[0]


@pytest.mark.parametrize("d_out", [1, 2])
@pytest.mark.parametrize("alpha", [1.0, 0.8, 0.0])
def test_step_is_the_particle_space_witness_gradient(d_out, alpha):
    arch, params, teacher, x = problem("particle", False, d_out)
    y, lmbda = forward(arch, teacher, x).mean(), 0.05
    exact = ParticleSpace(arch, params, teacher, x, lmbda, alpha)
    witness_gradients = torch.stack([torch.func.grad(exact.witness)(z) for z in exact.particles])  # (N, p)
    method, options = ("srmmd", {}) if alpha == 1.0 else ("hrmmd", {"hrmmd_alpha": alpha})
    step = move(method, arch, params, x, y, lmbda, **options)
    n, h, d = params["W"].shape
    step_per_particle = torch.cat([step[: n * h * d].reshape(n, h * d), step[n * h * d :].reshape(n, -1)], 1)
    torch.testing.assert_close(step_per_particle, -LR * witness_gradients, rtol=1e-8, atol=1e-12)
    assert exact.value.item() == pytest.approx(feature_space_value(arch, params, x, y, lmbda, alpha).item(), rel=1e-9)


@pytest.mark.parametrize("readout", ["particle", "dense"])
@pytest.mark.parametrize("method,options", [("srmmd", {}), ("hrmmd", {"hrmmd_alpha": 0.8})])
def test_large_lambda_step_is_two_over_lambda_times_the_sgd_step(readout, method, options):
    """lambda w = r - T w -> r as lambda -> infinity (error O(1/lambda)), so lambda * step -> gamma J^T r / B,
    twice the sgd step (lambda 1e6: the step is ~1e-8, still far above the rounding of new - old)."""
    arch, params, teacher, x = problem(readout)
    y, lmbda = forward(arch, teacher, x).mean(), 1e6
    sgd = move("sgd", arch, params, x, y, lmbda)
    scaled = lmbda * move(method, arch, params, x, y, lmbda, **options)
    torch.testing.assert_close(scaled, 2 * sgd, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("readout", ["particle", "dense"])
@pytest.mark.parametrize("alpha", [1.0, 0.8])
def test_step_is_the_witness_part_of_the_exact_gradient(readout, alpha):
    """grad HrMMD^2 = (2/N) grad f - grad_theta (1/B) w^T T(theta) w (w held fixed): the step is
    -gamma grad f, so grad HrMMD^2 = (2/N)(-step/gamma) - that penalty term, which is not small."""
    arch, params, teacher, x = problem(readout)
    y, lmbda, keys = forward(arch, teacher, x).mean(), 0.05, list(params)
    batch = x.shape[0]

    def operator(*weights):
        """T(theta) = (alpha J J^T + (1 - alpha) Phi Phi^T) / (N B) and r(theta)."""
        network_sum = lambda *t: forward(arch, dict(zip(keys, t)), x).features.sum(1).reshape(-1)  # noqa: E731
        blocks = torch.func.jacrev(network_sum, argnums=tuple(range(len(keys))))(*weights)
        jac = torch.cat([block.flatten(1) for block in blocks], 1)  # (B, P)
        fwd = forward(arch, dict(zip(keys, weights)), x)
        phi = fwd.features.permute(0, 2, 1).reshape(batch, N_PARTICLES)
        return (alpha * jac @ jac.T + (1 - alpha) * phi @ phi.T) / (N_PARTICLES * batch), (fwd.mean() - y).reshape(-1)

    def value(*weights):
        t_theta, residual = operator(*weights)
        return residual @ torch.linalg.solve(t_theta + lmbda * torch.eye(batch, dtype=torch.float64), residual) / batch

    t_now, r_now = operator(*params.values())
    w = torch.linalg.solve(t_now + lmbda * torch.eye(batch, dtype=torch.float64), r_now)
    penalty = lambda *weights: w @ operator(*weights)[0] @ w / batch  # noqa: E731
    flat = lambda grads: torch.cat([g.reshape(-1) for g in grads])  # noqa: E731
    gradient = flat(torch.func.grad(value, argnums=tuple(range(len(keys))))(*params.values()))
    penalty_gradient = flat(torch.func.grad(penalty, argnums=tuple(range(len(keys))))(*params.values()))
    step = move("srmmd" if alpha == 1.0 else "hrmmd", arch, params, x, y, lmbda,
                **({} if alpha == 1.0 else {"hrmmd_alpha": alpha}))  # fmt: skip
    torch.testing.assert_close(gradient, 2 / N_PARTICLES * (-step / LR) - penalty_gradient, rtol=1e-8, atol=1e-12)
    assert penalty_gradient.norm() > 1e-2 * gradient.norm()


SMALL = dict(n_particles=20, n_train=200, n_valid=100, batch_size=50, epochs=3, log_every=1, seed=1, dtype="float64")


@pytest.mark.parametrize("readout", ["particle", "dense"])
@pytest.mark.parametrize("method", ["srmmd", "hrmmd"])
def test_training_runs_and_lowers_the_error(readout, method):
    trainer = Trainer(dict(SMALL, method=method, readout=readout))
    trainer.run()
    history = trainer.history
    assert history["train_mmd2"][-1] < history["train_mmd2"][0]
    assert history["loss"][0] == pytest.approx(history["train_mmd2"][0], rel=1e-12)  # the objective is MMD2_hat
    assert history["lmbda"] == [0.1] * 4


def test_replicas_with_different_lambdas_match_their_plain_runs():
    configs = [dict(SMALL, method="hrmmd", seed=seed, lmbda=lmbda) for seed, lmbda in ((1, 0.1), (2, 0.02))]
    batched = BatchedTrainer(configs)
    batched.run()
    for member, config in zip(batched.replica_views, configs):
        plain = Trainer(dict(config))
        plain.run()
        for key in plain.params:
            torch.testing.assert_close(member.params[key], plain.params[key], rtol=1e-10, atol=1e-13)
