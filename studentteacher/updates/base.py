"""The shared interface of the update rules.

Every rule has one shape (DESIGN §2): compute detached per-sample weights rho_b, evaluate the
features at the particles the rule asks for (clean, noise-injected, or noised-and-kept), and
take the parameter gradient of the surrogate S = sum_i (1/B) sum_b rho_b^T phi_{Z_i}(x_b); the
step is theta <- theta - lr * grad S. A rule is a small object built once from the run's
options; :meth:`UpdateRule.step` is a pure function of tensors (particles, batch, schedule
values, standard normal draws) that returns the new particles and the batch loss as a 0-dim
tensor, without synchronising with the host. Because it draws nothing itself, the same step can
be mapped over a leading replica dimension with ``torch.func.vmap``.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

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
    uses_noise: bool = False

    def __init__(self, arch: Architecture):
        self.arch = arch

    def step(self, params: Params, x: torch.Tensor, y: torch.Tensor, hyper: StepHyper, noise: Params | None):
        raise NotImplementedError


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
