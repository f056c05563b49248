"""Kernel Sobolev descent (Mroueh et al., 2019) for the student network.

J_(b,o) = d/dtheta sum_i phi_{Z_i,o}(x_b), one row per sample b and output o: ``[B d_out, P]``;
A = J J^T / (N B) + eps I ``[B d_out, B d_out]`` (eps = ``ksd_reg``), alpha = A^{-1} r with r
flattened in the same (b, o) order, by a linear solve, and rho = alpha ``[B, d_out]``: particle i
moves by -gamma (1/B) sum_b (d phi_i(x_b)/dZ)^T alpha_b. J J^T comes in closed form from
:func:`studentteacher.networks.per_sample_gram` (no per-sample backward pass).

Outputs (d_out > 1): A is the Gram of the tangent kernel of the vector-valued student, so alpha
fits each output's residual and the step is kernel Sobolev descent of the MMD^2 that
:func:`~studentteacher.divergences.st_mmd2` logs (summed over outputs). The papers' code sums the
outputs before differentiating, one B x B system (as docs/model.md writes it); both agree at d_out = 1.
"""
from __future__ import annotations

import torch

from ..keys import Key
from ..networks import forward, per_sample_gram, surrogate_grad
from .base import UpdateRule, descend


def ksd_alpha(gram: torch.Tensor, residual: torch.Tensor, n_particles: int, ksd_reg: float) -> torch.Tensor:
    """alpha = (J J^T / (N B) + eps I)^{-1} r; ``gram: [B*O, B*O]``, ``residual: [B, O]`` -> ``[B, O]``."""
    batch, outputs = residual.shape
    system = gram / (n_particles * batch)
    system = system + ksd_reg * torch.eye(batch * outputs, dtype=gram.dtype, device=gram.device)
    # solve_ex: no error check, so no device-to-host synchronisation on a GPU
    solution, _ = torch.linalg.solve_ex(system, residual.reshape(batch * outputs, 1))
    return solution.reshape(batch, outputs)


KSD_REG = Key(1e-6, float, minimum=0.0, exclusive_minimum=True, help="KSD ridge eps")


class Ksd(UpdateRule):
    name = "ksd"
    options = {"ksd_reg": KSD_REG}

    def __init__(self, arch, ksd_reg: float = KSD_REG.default):
        super().__init__(arch)
        if not ksd_reg > 0:
            raise ValueError(f"ksd_reg must be > 0, got {ksd_reg!r}")
        self.ksd_reg = ksd_reg

    def step(self, params, x, y, hyper, noise=None):
        fwd = forward(self.arch, params, x)
        residual = fwd.mean() - y  # (B, O)
        gram = per_sample_gram(self.arch, params, x, fwd)  # (B*O, B*O)
        alpha = ksd_alpha(gram, residual, params["W"].shape[0], self.ksd_reg)
        grads = surrogate_grad(self.arch, params, x, fwd, alpha)
        return descend(params, grads, hyper.lr), self.objective(fwd.mean(), y, hyper.lmbda)
