"""Diffusion SGD: the noise is added to the particles and stays.

Z_i <- Z_i + beta_t u_i, then Z_i <- Z_i - gamma g(Z_i) at the noised particles with the residual
of the noised student (rho = r). The step is twice that of :class:`~.sgd.Sgd`, as in the
reference code's diffusion arm.
"""
from __future__ import annotations

from ..networks import forward, surrogate_grad
from .base import UpdateRule, descend, perturb


class Diffusion(UpdateRule):
    name = "diffusion"
    uses_noise = True

    def step(self, params, x, y, hyper, noise):
        noised = perturb(params, hyper.noise_level, noise)
        fwd = forward(self.arch, noised, x)
        residual = fwd.mean() - y  # (B, O)
        grads = surrogate_grad(self.arch, noised, x, fwd, residual)
        return descend(noised, grads, hyper.lr), self.objective(fwd.mean(), y, hyper.lmbda)
