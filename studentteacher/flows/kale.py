"""KALE flow (Glaser et al., 2021).

phi = (1+lambda) h*, the KALE witness of :mod:`studentteacher.divergences`: with the dual weights
alpha >= 0 ``[M]``,

    phi(z) = ((1+lambda)/lambda) [mean_j k(z, y_j) - sum_m alpha_m k(z, x_m)],

the value is KALE_lambda and gamma_n = ``step`` (not multiplied by lambda: the three-ring setting
"lambda = 1e-3, rate 1e-4" is ``step = 1e-4``). With d KALE/dy_i = (1/N) grad phi(y_i) the move is
y_i -= step N grad_i KALE. alpha is found by Newton's method
(:func:`~studentteacher.divergences.kale_dual`), warm-started from the previous step (checkpoints
keep it), until the duality gap is below ``kale_tol``.

Default step: a config that names no ``step_size`` gets 0.1 * lambda (1e-4 at lambda = 1e-3, the
rate lambda * 0.1 of the DrMMD flow at its default step), because phi carries the factor
(1+lambda)/lambda: the other flows' default 0.1 moves KALE particles about 1/lambda times too far
(at lambda = 1e-3 they fly off the three rings and the run ends FAILED, see
:mod:`~studentteacher.flows.health`). An explicit ``step_size`` is the step itself, as above, so
named configs and sweep files keep their meaning.
"""
from __future__ import annotations

import torch

from .. import divergences
from ..kernels import kernel_gram
from .base import FirstVariation, KernelFlow, as_hyper, row_scale


class KALEFlow(KernelFlow):
    """KALE flow, phi = (1+lambda) h*, dual weights by warm-started Newton (module docstring)."""

    name = "kale"
    options = ("lmbda", "kale_tol", "max_newton")
    carried = ("alpha",)  # the warm start of the next step's dual
    holds_target_gram = True

    @classmethod
    def default_step_size(cls, lmbda: float) -> float:
        """0.1 * lambda (module docstring)."""
        return 0.1 * lmbda

    def __init__(self, target, kernel, step_size, lmbda, kale_tol: float = 1e-10, max_newton: int = 200,
                 budget_bytes=None):  # fmt: skip
        super().__init__(target, kernel, step_size, budget_bytes)
        self.lmbda, self.tol, self.max_newton = as_hyper(lmbda, target), kale_tol, max_newton
        self.k_xx = kernel_gram(kernel, target, target, self.budget)  # (..., M, M)
        self.alpha: torch.Tensor | None = None  # (..., M) warm start

    def first_variation(self, particles: torch.Tensor) -> FirstVariation:
        """Newton's iterations stop on a data-dependent test, so each replica solves its own dual."""
        a, k_yy_mean = self.moments(particles)  # (..., M), (...)
        size = a.shape[-1]
        grams, moments, means = self.k_xx.reshape(-1, size, size), a.reshape(-1, size), k_yy_mean.reshape(-1)
        lmbdas = self.lmbda.reshape(-1).tolist()
        starts = [None] * len(lmbdas) if self.alpha is None else list(self.alpha.reshape(-1, size))
        starts = [s if s is None or bool(torch.isfinite(s).all()) else None for s in starts]  # a failed replica restarts
        duals = [divergences.kale_dual(*problem, self.tol, self.max_newton) for problem in zip(grams, moments, lmbdas, starts)]
        self.alpha = torch.stack([dual.alpha for dual in duals]).reshape(a.shape)  # (..., M)
        values = [divergences.kale_from_dual(*problem) for problem in zip(duals, grams, moments, means, lmbdas)]
        scale = (1.0 + self.lmbda) / self.lmbda  # (...)
        weights_y = row_scale(scale / particles.shape[-2], a).expand(particles.shape[:-1])  # (..., N)
        weights_x = -row_scale(scale, a) * self.alpha  # (..., M)
        return FirstVariation(torch.stack(values).reshape(a.shape[:-1]), weights_y, weights_x, self.lmbda, self.step)
