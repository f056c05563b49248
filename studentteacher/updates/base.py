"""The shared interface of the update rules.

Every rule has one shape (docs/model.md): compute detached per-sample weights rho_b, evaluate the
features at the particles the rule asks for (clean, noise-injected, or noised-and-kept), and
take the parameter gradient of the surrogate S = sum_i (1/B) sum_b rho_b^T phi_{Z_i}(x_b); the
step is theta <- theta - lr * grad S. A rule is a small object built once from the run's
options; :meth:`UpdateRule.step` is a pure function of tensors (particles, batch, schedule
values, standard normal draws) that returns the new particles and the batch loss as a 0-dim
tensor, without synchronising with the host. Because it draws nothing itself, the same step can
be mapped over a leading replica dimension with ``torch.func.vmap``.

A rule declares the config keys it takes (``options``; :func:`~studentteacher.updates.make_rule`
passes exactly those), what it descends (:meth:`UpdateRule.objective`, the loss the training loop
logs at epoch 0 and the D_n of the adaptive lambda schedule) and whether lambda enters its step
(``adapts_lambda``: only then may the loop adapt lambda).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ..divergences import st_mmd2
from ..keys import Key
from ..networks import Architecture, Params


class StepHyper(NamedTuple):
    """Schedule values in force for one step: learning rate gamma, noise level beta_t, lambda_t.

    Python floats for one run; 0-dim tensors (one per replica under ``vmap``) for batched runs.
    """

    lr: float | torch.Tensor
    noise_level: float | torch.Tensor = 0.0
    lmbda: float | torch.Tensor = 0.1


class UpdateRule:
    """Base class: ``step(params, x, y, hyper, noise) -> (new_params, loss)``.

    ``x: [B, d_in]`` inputs, ``y: [B, d_out]`` teacher outputs f_T(x), ``noise`` a dict of
    standard normal draws shaped like ``params`` (:func:`draw_noise`), or None when the rule
    uses no noise or the noise level is 0.
    """

    name: str = ""
    #: the config keys the rule takes as keyword arguments of its constructor (their defaults are those
    #: of the constructor), each declared here once: the student-teacher spec is built from them
    options: dict[str, Key] = {}
    uses_noise: bool = False
    #: lambda enters the step (and the objective), so the loop may adapt it (``adaptive_lmbda``)
    adapts_lambda: bool = False

    def __init__(self, arch: Architecture):
        self.arch = arch

    def step(self, params: Params, x: torch.Tensor, y: torch.Tensor, hyper: StepHyper, noise: Params | None):
        raise NotImplementedError

    def objective(self, outputs: torch.Tensor, y: torch.Tensor, lmbda) -> torch.Tensor:
        """What the rule descends, on a batch or a whole set: MMD2_hat = (1/B) sum_b |f_S(x_b) - f_T(x_b)|^2.

        ``outputs = f_S(x): [B, d_out]``, ``y = f_T(x): [B, d_out]`` -> 0-dim; ``lmbda`` lambda_n.
        """
        return st_mmd2(outputs, y)


def draw_noise(params: Params, generator: torch.Generator) -> Params:
    """u ~ N(0, I) shaped like every tensor of ``params``, drawn in the order of its keys."""
    return {
        key: torch.randn(value.shape, generator=generator, dtype=value.dtype, device=value.device)
        for key, value in params.items()
    }


def descend(params: Params, grads: Params, lr) -> Params:
    """theta <- theta - lr * grad, for every tensor of the particles (one fused pass each)."""
    if isinstance(lr, torch.Tensor):
        return {key: torch.addcmul(value, grads[key], lr, value=-1) for key, value in params.items()}
    return {key: torch.add(value, grads[key], alpha=-lr) for key, value in params.items()}


def perturb(params: Params, noise_level, noise: Params | None) -> Params:
    """Z + beta u for every weight (and bias); ``params`` itself when ``noise`` is None."""
    if noise is None:
        return params
    if isinstance(noise_level, torch.Tensor):
        return {key: torch.addcmul(value, noise[key], noise_level) for key, value in params.items()}
    return {key: torch.add(value, noise[key], alpha=noise_level) for key, value in params.items()}
