"""De-regularised MMD gradient flow (Chen et al., 2024) for the student network.

With a_T = (1/B) sum_b |f_T|^2 and c_T = (1/B) sum_b f_T^T f_S (the teacher is the target, M = 1):

    rho_b = ((1+lambda)/lambda) [f_S(x_b) - f_T(x_b) (lambda + c_T) / (a_T + lambda)]

and particle i moves by -gamma grad h(Z_i), h(z) = (1/B) sum_b phi_z(x_b)^T rho_b (no factor 1/2),
at noise-injected particles when ``drmmd_noise`` is set (rho from the clean particles). In
parameter terms the step is -gamma (N/2) grad DrMMD_hat; as lambda -> infinity it is twice
the :class:`~.sgd.Sgd` step. lambda comes from the schedule (fixed or adaptive, see
:mod:`studentteacher.training.schedules`); the objective (and the loss) is the DrMMD value at that lambda.
"""
from __future__ import annotations

from ..divergences import st_drmmd, st_drmmd_weights
from ..networks import forward, surrogate_grad
from ..keys import Key
from .base import UpdateRule, descend, perturb


DRMMD_NOISE = Key(False, bool, help="DrMMD witness gradient at noise-injected particles")


class Drmmd(UpdateRule):
    name = "drmmd"
    options = {"drmmd_noise": DRMMD_NOISE}
    adapts_lambda = True

    def __init__(self, arch, drmmd_noise: bool = DRMMD_NOISE.default):
        super().__init__(arch)
        self.drmmd_noise = bool(drmmd_noise)
        self.uses_noise = self.drmmd_noise

    def step(self, params, x, y, hyper, noise):
        clean = forward(self.arch, params, x)
        rho = st_drmmd_weights(clean.mean(), y, hyper.lmbda)  # (B, O)
        grad_params, grad_fwd = params, clean
        if self.drmmd_noise and noise is not None:
            grad_params = perturb(params, hyper.noise_level, noise)
            grad_fwd = forward(self.arch, grad_params, x)
        grads = surrogate_grad(self.arch, grad_params, x, grad_fwd, rho)
        return descend(params, grads, hyper.lr), self.objective(clean.mean(), y, hyper.lmbda)

    def objective(self, outputs, y, lmbda):
        """DrMMD_hat = ((1+lambda)/lambda) [MMD2_hat - (c_T - a_T)^2 / (a_T + lambda)]; ``[B, d_out]`` each -> 0-dim."""
        return st_drmmd(outputs, y, lmbda)
