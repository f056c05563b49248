"""Noise-injected MMD flow (Arbel et al., NeurIPS 2019).

Z_i <- Z_i - (gamma/2) g(Z_i + beta_t u_i), u_i ~ N(0, I) fresh each step for every weight.
The residual r comes from the clean particles; only the feature gradient is taken at the
perturbed particles (rho = r / 2). With beta_t = 0 this is exactly :class:`~.sgd.Sgd`.
"""
from __future__ import annotations

from ..networks import forward, surrogate_grad
from .base import UpdateRule, descend, perturb


class NoiseInjection(UpdateRule):
    name = "noise_injection"
    uses_noise = True

    def step(self, params, x, y, hyper, noise):
        clean = forward(self.arch, params, x)
        residual = clean.mean() - y  # (B, O)
        noisy_params = perturb(params, hyper.noise_level, noise)
        noisy = clean if noisy_params is params else forward(self.arch, noisy_params, x)
        grads = surrogate_grad(self.arch, noisy_params, x, noisy, residual / 2)
        return descend(params, grads, hyper.lr), self.objective(clean.mean(), y, hyper.lmbda)
