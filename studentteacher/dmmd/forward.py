"""The forward (noising) process of DMMD: a variance-preserving path between the data and N(0, I).

.. math::

    x_t = \\alpha_t x_0 + \\beta_t \\varepsilon, \\qquad \\varepsilon \\sim N(0, I), \\qquad t \\in [0, 1],
    \\qquad \\alpha_t^2 + \\beta_t^2 = 1,

with alpha_0 = beta_1 = 1 and alpha_1 = beta_0 = 0 (Song et al., 2021; Galashov et al., 2025). Two
schedules (a registry, :data:`SCHEDULES`):

============= ================================================================ ====================
name          alpha_t                                                          alpha_1
============= ================================================================ ====================
``cosine``    cos(pi t / 2) (beta_t = sin(pi t / 2))                           0 (exactly)
``vp_linear`` exp(-t^2 (b_max - b_min) / 4 - t b_min / 2), b_min = 0.1,         exp(-5.025) = 6.6e-3
              b_max = 20 (Song et al. 2021's VP-SDE with a linear beta(t))
============= ================================================================ ====================

The default is ``vp_linear``, the paper's (Galashov et al. take Song et al.'s VP schedule); its
alpha_1 = 6.6e-3 is not 0, so the sampler's N(0, I) start is the marginal at t = 1 up to a shift of
6.6e-3 x_0 (below the particles' spread). ``cosine`` meets both endpoints exactly and spreads the
signal-to-noise ratio alpha_t^2 / beta_t^2 evenly in log scale over the middle of the path.

The sampler's T levels run from t = 1 down to ``t_min`` (:func:`sampling_levels`): at t = 0 the
discriminator compares the data with itself and carries no signal, so the last level is small but
positive.
"""
from __future__ import annotations

import math

import torch


class NoiseSchedule:
    """alpha_t and beta_t = sqrt(1 - alpha_t^2) of a variance-preserving path; ``t: [...]`` -> ``[...]``."""

    name: str = ""

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((1.0 - self.alpha(t) ** 2).clamp_min(0.0))

    def noise(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t = alpha_t x_0 + beta_t eps for ``x0: [n, d]``, ``eps: [n, d]`` and one level per row ``t: [n]``
        (or one 0-dim t) -> ``[n, d]``."""
        t = torch.as_tensor(t, dtype=x0.dtype, device=x0.device)
        column = t[..., None] if t.dim() else t  # (n, 1) or ()
        return self.alpha(column) * x0 + self.beta(column) * eps


class CosineSchedule(NoiseSchedule):
    """alpha_t = cos(pi t / 2), beta_t = sin(pi t / 2): alpha_0 = beta_1 = 1 and alpha_1 = beta_0 = 0 exactly."""

    name = "cosine"

    def alpha(self, t):
        t = torch.as_tensor(t)
        return torch.where(t >= 1.0, 0.0, torch.cos(0.5 * math.pi * t)).to(t.dtype)

    def beta(self, t):
        t = torch.as_tensor(t)
        return torch.where(t <= 0.0, 0.0, torch.sin(0.5 * math.pi * t)).to(t.dtype)


class VPLinearSchedule(NoiseSchedule):
    """Song et al. (2021)'s VP-SDE, beta(s) = b_min + s (b_max - b_min): alpha_t = exp(-int_0^t beta / 2)."""

    name = "vp_linear"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        self.beta_min, self.beta_max = beta_min, beta_max

    def alpha(self, t):
        t = torch.as_tensor(t)
        return torch.exp(-0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min)


SCHEDULES: dict[str, type[NoiseSchedule]] = {cls.name: cls for cls in (CosineSchedule, VPLinearSchedule)}
DEFAULT_SCHEDULE = "vp_linear"


def make_schedule(name: str) -> NoiseSchedule:
    """The schedule ``name`` (a key of :data:`SCHEDULES`); ValueError listing the valid names."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {name!r}")
    return SCHEDULES[name]()


def sampling_levels(count: int, t_min: float) -> list[float]:
    """The T = ``count`` noise levels of the sampler, from the noisiest down, evenly spaced from
    t = 1 (the prior) to ``t_min`` in (0, 1]: t_k = ((k - 1) + (T - k) t_min) / (T - 1) for
    k = T, ..., 1 ([1] for T = 1). ``t_min`` = 1 / T gives 1, (T-1)/T, ..., 1/T."""
    if count < 1:
        raise ValueError(f"the number of noise levels must be >= 1, got {count!r}")
    if not 0.0 < t_min <= 1.0:
        raise ValueError(f"t_min must be in (0, 1], got {t_min!r}")
    if count == 1:
        return [1.0]
    return [((k - 1) + (count - k) * t_min) / (count - 1) for k in range(count, 0, -1)]
