"""Sobolev-regularised MMD (SrMMD) and its mixture HrMMD (Tian, Sriperumbudur, Gretton, Chen, 2026).

The kernel is the batch estimate k(U, Z) = (1/B) sum_b phi_U(x_b)^T phi_Z(x_b), so a witness is
f_w(Z) = (1/B) sum_b w_b^T phi_Z(x_b) with w ``[B, d_out]`` and ||f_w||^2_H = (1/B) |w|^2. With
r = f_S - f_T, J the Jacobian of sum_i phi_{Z_i}(x_b)_o w.r.t. all weights ``[B d_out, P]`` and
Phi_(b,o),i = phi_{Z_i}(x_b)_o ``[B d_out, N]`` (rows b-major, as in :mod:`.ksd`):

    m_mu - m_pi = r,   ||grad f_w||^2_{L2(mu)} = w^T S w / B,   ||f_w||^2_{L2(mu)} = w^T C w / B,
    S = J J^T / (N B),   C = Phi Phi^T / (N B)            ([B d_out, B d_out] each)

The HrMMD_alpha witness f = (alpha S_mu + (1 - alpha) C_mu + lambda I)^{-1} (m_mu - m_pi) has

    w = (alpha S + (1 - alpha) C + lambda I)^{-1} r,   HrMMD^2 = (1/B) r^T w,

``srmmd`` is alpha = 1 and ``hrmmd`` takes alpha = ``hrmmd_alpha``; lambda = ``lmbda`` (fixed).
Particle i moves by -gamma grad f(Z_i) = -gamma (1/B) J_i^T w, i.e. rho = w (no factor 1/2): the
witness-gradient velocity, not the exact gradient of SrMMD^2 (which adds -(1/2) grad |grad f|^2).
So ``srmmd`` at lambda takes exactly the :class:`~.ksd.Ksd` step at ``ksd_reg`` = lambda (same lr),
and as lambda -> infinity lambda w -> r: the step tends to (2/lambda) x the :class:`~.sgd.Sgd` step.
The objective (the logged loss) is MMD2_hat, as for ``ksd``: HrMMD^2 needs J, not only the outputs.
The derivation is in ``docs/srmmd_student_teacher.md``.
"""
from __future__ import annotations

import torch

from ..keys import Key
from ..networks import Forward, forward, per_sample_gram, surrogate_grad
from .base import UpdateRule, descend
from .ksd import ksd_alpha


def particle_feature_gram(fwd: Forward) -> torch.Tensor:
    """Phi Phi^T with Phi_(b,o),i = phi_{Z_i}(x_b)_o: ``[B*d_out, B*d_out]`` (rows b-major)."""
    batch, n, outputs = fwd.features.shape
    flat = fwd.features.permute(0, 2, 1).reshape(batch * outputs, n)  # (B*O, N)
    return flat @ flat.T  # (B*O, B*O)


class Srmmd(UpdateRule):
    name = "srmmd"
    #: weight of the gradient penalty ||grad f||^2_{L2(mu)}; 1 - alpha weighs ||f||^2_{L2(mu)}
    alpha = 1.0

    def operator(self, params, x, fwd: Forward) -> torch.Tensor:
        """N B (alpha S + (1 - alpha) C) = J J^T here: ``[B*d_out, B*d_out]``."""
        return per_sample_gram(self.arch, params, x, fwd)

    def step(self, params, x, y, hyper, noise=None):
        fwd = forward(self.arch, params, x)
        residual = fwd.mean() - y  # (B, O)
        witness = ksd_alpha(self.operator(params, x, fwd), residual, params["W"].shape[0], hyper.lmbda)  # (B, O)
        grads = surrogate_grad(self.arch, params, x, fwd, witness)
        return descend(params, grads, hyper.lr), self.objective(fwd.mean(), y, hyper.lmbda)


HRMMD_ALPHA = Key(0.8, float, minimum=0.0, maximum=1.0, help="HrMMD weight of ||grad f||^2 (1 - it: ||f||^2)")


class Hrmmd(Srmmd):
    name = "hrmmd"
    options = {"hrmmd_alpha": HRMMD_ALPHA}

    def __init__(self, arch, hrmmd_alpha: float = HRMMD_ALPHA.default):
        super().__init__(arch)
        if not 0.0 <= hrmmd_alpha <= 1.0:
            raise ValueError(f"hrmmd_alpha must be in [0, 1], got {hrmmd_alpha!r}")
        self.alpha = float(hrmmd_alpha)

    def operator(self, params, x, fwd):
        """N B (alpha S + (1 - alpha) C) = alpha J J^T + (1 - alpha) Phi Phi^T: ``[B*d_out, B*d_out]``."""
        jacobian_gram = per_sample_gram(self.arch, params, x, fwd)
        return self.alpha * jacobian_gram + (1.0 - self.alpha) * particle_feature_gram(fwd)
