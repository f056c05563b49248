"""Training the noise-conditional discriminator of DMMD without a generator (docs/model.md).

Each step draws G noise levels t_g ~ U[0, 1] (``levels_per_step``) and, for each, a clean batch
x ``[b, d]`` of the data (b = ``batch_size`` / G, drawn with replacement) and its noised version
y = alpha_t x + beta_t eps (:mod:`~studentteacher.dmmd.forward`). With phi = phi(.; t_g) and the
feature kernel kappa (:mod:`~studentteacher.dmmd.feature_kernels`), it minimises the mean over the
G groups of

.. math::

    L = -\\widehat{\\mathrm{MMD}}^2_u(x, y)
        + \\lambda_{l2} \\, \\overline{f(x)^2, f(y)^2}
        + \\lambda_{gp} \\, \\overline{(|\\nabla_z f(\\hat z)| - 1)^2},

with Adam, where f(z) = mean_j kappa(phi(z), phi(y_j)) - mean_i kappa(phi(z), phi(x_i)) is the
witness of the batch (its graph kept, so both penalties act on theta through the features and the
means). MMD_u^2 is the unbiased estimator for paired samples. The gradient penalty's points z-hat
(``gp_points``, :data:`GP_POINTS`): ``noised``, the noised samples y (the paper's choice, the default),
or ``interpolates``, z-hat = u x + (1 - u) y with u ~ U[0, 1] per pair (WGAN-GP's recipe, Gulrajani et
al. 2017; the weights below were measured with it).

Weights (the paper's values are not available offline here): with the linear kernel MMD^2 =
|mean phi(y) - mean phi(x)|^2 grows with the scale of the features, and the gradient penalty holds
|grad f| near 1. We started from WGAN-GP's ``gp_weight`` = 10 (Gulrajani et al., 2017; also the
MMD GANs of Binkowski et al., 2018) and Adam's lr = 1e-3, and measured on the Swiss roll (seed 1,
1500 steps, interacting sampler, 10 levels x 40 steps of 0.02, 2026-11-25, this 2-core CPU): W1 of the
samples to the held-out data 0.48 with (10, 1e-3), 0.41 with gp 1, 0.41 with lr 3e-3, 0.35 with both
and 2000 steps, and the mixture of Gaussians went from no learned signal to its four modes; so the
defaults are ``gp_weight`` = 1 and lr = 3e-3. ``l2_weight`` = 0.1 is a mild bound on the witness's
values (the "variance" penalty): it stops f from drifting by a constant, and dropping it made the
Swiss roll worse (W1 0.52).

:func:`evaluate_levels` measures MMD_u^2 between data and noised data at fixed levels with fixed
draws (the curve of figure (c)); :func:`train_discriminator` logs it every ``log_every`` steps.
:func:`feature_spectrum` measures how many directions the learned features use: with the linear
kernel the flow stops once the mean features match, so features whose variance lies in one or two
directions match after a few moments.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import RunDiverged
from .discriminator import Discriminator, features_by_blocks
from .feature_kernels import FeatureKernel
from .forward import NoiseSchedule


@dataclass(frozen=True)
class TrainSettings:
    """Steps, batch (split into ``levels_per_step`` groups, one level each), Adam's lr, penalty weights."""

    steps: int = 2000
    batch_size: int = 256
    lr: float = 3e-3
    l2_weight: float = 0.1
    gp_weight: float = 1.0
    gp_points: str = "noised"
    levels_per_step: int = 4
    log_every: int = 100
    eval_levels: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    eval_size: int = 512


@dataclass
class TrainingResult:
    """``losses: [steps]`` (L of each step), the MMD_u^2 at ``eval_levels`` at each of ``log_steps``
    (``level_mmd2[k][j]``: log step k, level j) and the mean seconds per step (logging excluded)."""

    losses: list[float] = field(default_factory=list)
    log_steps: list[int] = field(default_factory=list)
    level_mmd2: list[list[float]] = field(default_factory=list)
    eval_levels: tuple[float, ...] = ()
    seconds_per_step: float = 0.0


def _grouped_features(discriminator, points: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """phi at ``points: [G, b, d]``, group g at level ``levels[g]`` -> ``[G, b, F]``."""
    groups, size = points.shape[:2]
    flat_levels = levels[:, None].expand(groups, size).reshape(-1)  # (G b,)
    return discriminator(points.reshape(groups * size, -1), flat_levels).reshape(groups, size, -1)


def noised_points(clean: torch.Tensor, noised: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The gradient penalty at the noised samples y ``[G, b, d]`` (the paper's)."""
    return noised


def interpolated_points(clean: torch.Tensor, noised: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """u x + (1 - u) y ``[G, b, d]``, u ~ U[0, 1] per pair drawn from ``generator`` (WGAN-GP's)."""
    u = torch.rand(clean.shape[:2] + (1,), generator=generator, dtype=clean.dtype).to(clean.device)  # (G, b, 1)
    return u * clean + (1.0 - u) * noised


#: ``gp_points`` -> where the gradient penalty is taken, from (clean, noised, generator).
GP_POINTS = {"noised": noised_points, "interpolates": interpolated_points}


def discriminator_loss(discriminator: Discriminator, kernel: FeatureKernel, clean: torch.Tensor, noised: torch.Tensor,
                       levels: torch.Tensor, settings: TrainSettings, generator: torch.Generator):  # fmt: skip
    """(L, MMD_u^2 per group ``[G]``) for ``clean, noised: [G, b, d]`` at ``levels: [G]`` (module docstring)."""
    phi_x = _grouped_features(discriminator, clean, levels)  # (G, b, F)
    phi_y = _grouped_features(discriminator, noised, levels)  # (G, b, F)
    mmd2 = kernel.mmd2_unbiased(phi_x, phi_y)  # (G,)
    witness = kernel.witness(torch.cat([phi_x, phi_y], dim=1), phi_x, phi_y)  # (G, 2b)
    between = GP_POINTS[settings.gp_points](clean, noised, generator).detach().requires_grad_()  # (G, b, d)
    f_between = kernel.witness(_grouped_features(discriminator, between, levels), phi_x, phi_y)  # (G, b)
    (gradient,) = torch.autograd.grad(f_between.sum(), between, create_graph=True)  # (G, b, d)
    penalty = ((gradient.norm(dim=-1) - 1.0) ** 2).mean()
    loss = -mmd2.mean() + settings.l2_weight * (witness**2).mean() + settings.gp_weight * penalty
    return loss, mmd2


def _batch(data: torch.Tensor, groups: int, size: int, schedule: NoiseSchedule, generator: torch.Generator):
    """(clean ``[G, b, d]``, noised ``[G, b, d]``, levels ``[G]``): draws on the generator's device (CPU)."""
    index = torch.randint(0, data.shape[0], (groups * size,), generator=generator)
    clean = data[index.to(data.device)].reshape(groups, size, -1)
    levels = torch.rand(groups, generator=generator, dtype=data.dtype).to(data.device)  # (G,)
    eps = torch.randn(clean.shape, generator=generator, dtype=data.dtype).to(data.device)
    flat = groups * size
    noised = schedule.noise(clean.reshape(flat, -1), levels.repeat_interleave(size), eps.reshape(flat, -1))
    return clean, noised.reshape(clean.shape), levels


def evaluate_levels(discriminator: Discriminator, kernel: FeatureKernel, data: torch.Tensor, schedule: NoiseSchedule,
                    levels, size: int = 512, seed: int = 0) -> list[float]:  # fmt: skip
    """MMD_u^2 between ``size`` data points and their noised versions at each of ``levels``, with
    fixed draws (``seed``), so that curves at different training steps compare: one float per level."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(0, data.shape[0], (size,), generator=generator).to(data.device)
    clean = data[index]  # (n, d)
    eps = torch.randn(clean.shape, generator=generator, dtype=data.dtype).to(data.device)
    values = []
    with torch.no_grad():
        for level in levels:
            noised = schedule.noise(clean, torch.tensor(float(level), dtype=data.dtype), eps)
            values.append(float(kernel.mmd2_unbiased(discriminator(clean, level), discriminator(noised, level))))
    return values


def feature_spectrum(discriminator: Discriminator, data: torch.Tensor, levels, top: int = 3) -> list[float]:
    """The share of the variance of the learned features in their top 1, ..., ``top`` singular
    directions, averaged over ``levels``: with s_1 >= s_2 >= ... the singular values of the centred
    phi(x, t) ``[n, F]`` of the data ``x: [n, d]``, share_k = mean_t sum_{i <= k} s_i^2 / sum_i s_i^2;
    ``top`` floats, non-decreasing, in [0, 1]."""
    shares = torch.zeros(top, dtype=torch.float64)
    for level in levels:
        features = features_by_blocks(discriminator, data, level).double()  # (n, F)
        values = torch.linalg.svdvals(features - features.mean(0)) ** 2  # (min(n, F),)
        cumulative = torch.cumsum(values, 0) / values.sum().clamp_min(torch.finfo(torch.float64).tiny)
        shares += torch.nn.functional.pad(cumulative[:top], (0, max(top - len(cumulative), 0)), value=1.0).cpu()
    return (shares / max(len(levels), 1)).tolist()


def train_discriminator(discriminator: Discriminator, kernel: FeatureKernel, data: torch.Tensor, schedule: NoiseSchedule,
                        settings: TrainSettings, generator: torch.Generator,
                        on_log: Callable[[int, float, list[float]], None] | None = None) -> TrainingResult:  # fmt: skip
    """Train ``discriminator`` on ``data: [n, d]`` for ``settings.steps`` Adam steps (module docstring).

    ``generator`` (a CPU ``torch.Generator``) draws batches, levels, noise and interpolation weights.
    At every ``log_every``-th step (and the last) the MMD_u^2 at ``settings.eval_levels`` is measured
    and ``on_log(step, loss, level_mmd2)`` is called. A non-finite loss raises
    :class:`~studentteacher.errors.RunDiverged` (a FloatingPointError).
    """
    if settings.batch_size % settings.levels_per_step or settings.batch_size // settings.levels_per_step < 2:
        raise ValueError(f"batch_size {settings.batch_size} must be a multiple of levels_per_step "
                         f"{settings.levels_per_step} with at least 2 points per level")  # fmt: skip
    optimiser = torch.optim.Adam(discriminator.parameters(), lr=settings.lr)
    result = TrainingResult(eval_levels=tuple(settings.eval_levels))
    size, busy = settings.batch_size // settings.levels_per_step, 0.0
    for step in range(1, settings.steps + 1):
        start = time.perf_counter()
        clean, noised, levels = _batch(data, settings.levels_per_step, size, schedule, generator)
        loss, _ = discriminator_loss(discriminator, kernel, clean, noised, levels, settings, generator)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        value = float(loss.detach())
        busy += time.perf_counter() - start
        if value != value or abs(value) == float("inf"):
            raise RunDiverged(f"discriminator training diverged at step {step}: the loss is {value}")
        result.losses.append(value)
        if step % settings.log_every == 0 or step == settings.steps:
            curve = evaluate_levels(discriminator, kernel, data, schedule, settings.eval_levels, settings.eval_size)
            result.log_steps.append(step)
            result.level_mmd2.append(curve)
            if on_log is not None:
                on_log(step, value, curve)
    result.seconds_per_step = busy / max(settings.steps, 1)
    return result
