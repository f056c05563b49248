"""Plain SGD on the student: the discretised MMD gradient flow.

Z_i <- Z_i - (gamma/2) g(Z_i), with g(z) = (1/B) sum_b (d phi_z(x_b)/dz)^T r(x_b) and the
residual r = f_S - f_T; i.e. rho = r / 2. In parameter terms the step is
-gamma * (N/4) * grad MMD2_hat (the mean-field scaling of docs/model.md).
"""
from __future__ import annotations

from ..networks import forward, surrogate_grad
from .base import UpdateRule, descend


class Sgd(UpdateRule):
    name = "sgd"

    def step(self, params, x, y, hyper, noise=None):
        fwd = forward(self.arch, params, x)
        residual = fwd.mean() - y  # (B, O)
        grads = surrogate_grad(self.arch, params, x, fwd, residual / 2)
        return descend(params, grads, hyper.lr), self.objective(fwd.mean(), y, hyper.lmbda)
