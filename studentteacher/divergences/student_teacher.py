"""Closed forms of the student-teacher divergences (target = the teacher, M = 1), from the student's
and the teacher's outputs ``[B, d_out]`` on a batch; the kernel is the batch Gram estimate of
:func:`studentteacher.kernels.feature_gram`.
"""
from __future__ import annotations

import torch


def st_mmd2(student_mean: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MMD2_hat = (1/B) sum_b sum_o (f_S,o(x_b) - f_T,o(x_b))^2; ``[B, d_out]`` each -> 0-dim (unhalved).

    Summed over the d_out outputs: the MMD^2 of the kernel k(U, Z) = E_x[phi_U(x)^T phi_Z(x)]
    (docs/model.md), the objective every update rule descends (sgd's rho = r/2 is its gradient). The
    papers' code averages the squared error over the outputs (1/d_out of this); they agree at
    d_out = 1, the papers' setting.
    """
    return ((student_mean - teacher) ** 2).sum(-1).mean()


def _st_moments(student_mean: torch.Tensor, teacher: torch.Tensor):
    """a_T = (1/B) sum_b |f_T|^2 and c_T = (1/B) sum_b f_T^T f_S (0-dim each)."""
    a_t = (teacher * teacher).sum(-1).mean()
    c_t = (teacher * student_mean).sum(-1).mean()
    return a_t, c_t


def st_drmmd(student_mean: torch.Tensor, teacher: torch.Tensor, lmbda: float) -> torch.Tensor:
    """Student-teacher DrMMD: ((1+lambda)/lambda) [MMD2_hat - (c_T - a_T)^2 / (a_T + lambda)]; 0-dim."""
    a_t, c_t = _st_moments(student_mean, teacher)
    return (1.0 + lmbda) / lmbda * (st_mmd2(student_mean, teacher) - (c_t - a_t) ** 2 / (a_t + lmbda))


def st_drmmd_weights(student_mean: torch.Tensor, teacher: torch.Tensor, lmbda: float) -> torch.Tensor:
    """Per-sample weights rho_b of the DrMMD witness, h(z) = (1/B) sum_b phi_z(x_b)^T rho_b.

    rho_b = ((1+lambda)/lambda) [f_S(x_b) - f_T(x_b) (lambda + c_T) / (a_T + lambda)]; ``[B, d_out]``.
    """
    a_t, c_t = _st_moments(student_mean, teacher)
    return (1.0 + lmbda) / lmbda * (student_mean - teacher * (lmbda + c_t) / (a_t + lmbda))
