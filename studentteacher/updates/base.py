"""The shared interface of the update rules.

Every rule has one shape (DESIGN §2): compute detached per-sample weights rho_b, evaluate the
features at the particles the rule asks for (clean, noise-injected, or noised-and-kept), and
take the parameter gradient of the surrogate S = sum_i (1/B) sum_b rho_b^T phi_{Z_i}(x_b); the
step is theta <- theta - lr * grad S. A rule is a small object built once from the run's
options; :meth:`UpdateRule.step` is a function of tensors (particles, batch, schedule values,
noise generator) that returns the new particles and the batch loss as a 0-dim tensor, without
synchronising with the host.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..networks import Architecture, Params


@dataclass(frozen=True)
class StepHyper:
    """Schedule values in force for one step: learning rate gamma, noise level beta_t, lambda_t."""

    lr: float
    noise_level: float = 0.0
    lmbda: float = 0.1


class UpdateRule:
    """Base class: ``step(params, x, y, hyper, generator) -> (new_params, loss)``.

    ``x: [B, d_in]`` inputs, ``y: [B, d_out]`` teacher outputs f_T(x), ``generator`` the run's
    noise stream (on the particles' device).
    """

    name: str = ""

    def __init__(self, arch: Architecture):
        self.arch = arch

    def step(self, params: Params, x: torch.Tensor, y: torch.Tensor, hyper: StepHyper, generator: torch.Generator):
        raise NotImplementedError


def descend(params: Params, grads: Params, lr: float) -> Params:
    """theta <- theta - lr * grad, for every tensor of the particles."""
    return {key: torch.add(value, grads[key], alpha=-lr) for key, value in params.items()}


def perturb(params: Params, noise_level: float, generator: torch.Generator) -> Params:
    """Z + beta u with u ~ N(0, I) fresh for every weight (and bias); ``params`` itself if beta = 0."""
    if noise_level == 0.0:
        return params
    return {
        key: value + noise_level * torch.randn(value.shape, generator=generator, dtype=value.dtype, device=value.device)
        for key, value in params.items()
    }
