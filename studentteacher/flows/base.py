"""The shared interface of the kernel flows: first variation, velocity, Euler step (docs/model.md).

A flow moves source particles ``Y: [N, d]`` towards the target ``X: [M, d]`` by explicit Euler
steps on the first variation phi_n of its divergence at the particles of step n,

.. math::

    \\varphi_n(z) = \\sum_j w^Y_j k(z, y_j) + \\sum_m w^X_m k(z, x_m), \\qquad
    y_i \\leftarrow y_i - \\gamma_n \\, \\nabla \\varphi_n(y_i + \\beta_n u_i), \\quad u_i \\sim N(0, I),

so that a flow only says, at each step, what the weights w^Y ``[N]``, w^X ``[M]``, the value, lambda
and gamma_n are (:class:`FirstVariation`); the velocity grad phi, its blocked evaluation and the
move are shared. A batched flow of R replicas gives every tensor a leading dimension R.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kernels import (
    Kernel, block_budget, block_rows, kernel_matvec, kernel_matvec_grad, matvec, radial_weighted_gradient,
    squared_distances,
)  # fmt: skip
from ..keys import Key


def as_hyper(value, target: torch.Tensor) -> torch.Tensor:
    """A flow hyperparameter (a number, or one per replica) as a float64 tensor of the replica shape
    of ``target`` (``[]`` for one flow, ``[R]`` for R batched flows) on the target's device."""
    tensor = torch.as_tensor(value, dtype=torch.float64, device=target.device)
    if tensor.dim() and tensor.shape != target.shape[:-2]:
        raise ValueError(f"a per-replica hyperparameter needs shape {tuple(target.shape[:-2])}, got {tuple(tensor.shape)}")
    return tensor.expand(target.shape[:-2])


def row_scale(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-replica scalar ``[...]`` in the dtype of ``like``, shaped ``[..., 1]`` to scale rows of it."""
    return value.to(like.dtype)[..., None]


@dataclass(frozen=True)
class FirstVariation:
    """One step's first variation, a weighted sum of kernels centred at the particles and the target:

    phi(z) = sum_j ``particle_weights[j]`` k(z, y_j) + sum_m ``target_weights[m]`` k(z, x_m)

    ``value`` (0-dim, at the clean particles), ``particle_weights: [N]``, ``target_weights: [M]``,
    the ``lmbda`` in use (0 for the MMD flows, which have none; a finite stand-in so that logged
    metrics stay valid JSON), ``step_size`` gamma_n (float64, 0-dim) and the kernel ``bandwidth`` in
    force at this step (float64, 0-dim; None: the flow's fixed kernel bandwidth,
    :attr:`KernelFlow.bandwidth`). A batched flow of R replicas gives each of them a leading dimension R.
    """

    value: torch.Tensor
    particle_weights: torch.Tensor
    target_weights: torch.Tensor
    lmbda: torch.Tensor
    step_size: torch.Tensor
    bandwidth: torch.Tensor | None = None


class KernelFlow:
    """Base class of the flows: ``first_variation(particles: [..., N, d]) -> FirstVariation``.

    A new flow subclasses this, sets ``name`` (its ``flow`` config value) and ``options`` (the
    keyword arguments of its ``__init__`` beyond ``target, kernel, step_size, budget_bytes``; those
    that are config keys of its own it declares in ``config_keys``, which puts them into the config), and
    implements :meth:`first_variation` with the moments a = K_XY 1/N ``[..., M]`` and mean(K_YY)
    ``[...]`` of :meth:`moments` and the target's c = K_XX 1/M ``[..., M]`` and mean(K_XX) ``[...]``;
    a flow with noise injection also overrides :meth:`noise`, one whose step depends on more than
    the particles and n names those attributes in ``carried`` (checkpoints keep them), and one whose
    sane step depends on lambda overrides :meth:`default_step_size`; one that works with certain
    kernels only names them in ``kernels`` (the config's validation refuses the others); one that
    holds the target's Gram sets ``holds_target_gram`` and one that solves a system on the particles'
    kernel derivatives overrides :meth:`unknowns_per_particle` (the memory preflight counts both). Then it is
    one line in the registry (:data:`studentteacher.flows.registry.FLOWS`).

    Every kernel reduction goes through the blocked functions of :mod:`studentteacher.kernels`
    with ``budget_bytes`` per block (None: the device's default,
    :func:`~studentteacher.kernels.block_budget`), so that no N x M (or N x N) matrix is held; only
    the flows that need the target Gram K_XX (DrMMD, KALE) hold that one M x M matrix (or its factor).

    Batched replicas: a target ``[R, M, d]`` makes R independent flows advanced as one computation
    (particles ``[R, N, d]``; every per-replica quantity gets the leading dimension R); the
    hyperparameters may then be one number for all or one per replica (``[R]``).
    """

    name: str = ""
    options: tuple[str, ...] = ()
    #: the config keys only this flow takes (name -> :class:`~studentteacher.keys.Key`), each one also an
    #: option; the ``particle_flow`` spec is built from them (:mod:`studentteacher.flows.config`)
    config_keys: dict[str, Key] = {}
    #: the ``kernel`` config values the flow works with; () for any
    kernels: tuple[str, ...] = ()
    #: attributes that carry over from one step to the next besides the particles (:meth:`state`)
    carried: tuple[str, ...] = ()
    #: whether the flow holds the target's Gram K_XX ``[..., M, M]`` (or its factor) for its solves
    holds_target_gram: bool = False

    def __init__(self, target: torch.Tensor, kernel: Kernel, step_size, budget_bytes: int | None = None):
        if target.dim() not in (2, 3):
            raise ValueError(f"target must be [M, d] or [R, M, d] (R replicas), got shape {tuple(target.shape)}")
        self.target = target  # (..., M, d)
        self.kernel = kernel
        self.step = as_hyper(step_size, target)  # (...)
        self.lmbda = as_hyper(0.0, target)  # (...): no lambda (MMD flows)
        self.bandwidth = as_hyper(getattr(kernel, "bandwidth", 0.0), target)  # (...): 0 stands for "not known"
        self.budget = budget_bytes
        self._kept: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # (particles, distances, Gram) of this step
        self.c, self.k_xx_mean = self.target_moments()

    def target_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """c = K_XX 1/M ``[..., M]`` and mean(K_XX) ``[...]`` under the current kernel (once, unless
        the kernel changes: :class:`~studentteacher.flows.mmd_adaptive_bandwidth.AdaptiveBandwidthMMDFlow`)."""
        size = self.target.shape[-2]
        uniform = torch.full(self.target.shape[:-1], 1.0 / size, dtype=self.target.dtype, device=self.target.device)
        c = self._matvec(self.target, self.target, uniform)  # (..., M)
        return c, c.mean(-1)

    def first_variation(self, particles: torch.Tensor) -> FirstVariation:
        raise NotImplementedError

    @classmethod
    def unknowns_per_particle(cls, dim: int) -> int:
        """C, the unknowns per particle of the linear system the flow solves on the kernel's derivatives
        at the particles (``N C`` in all; 0: it solves none)."""
        return 0

    @classmethod
    def default_step_size(cls, lmbda: float) -> float:
        """The ``step_size`` a config gets when it names none: 0.1 (the papers' MMD and DrMMD step)."""
        return 0.1

    def state(self) -> dict[str, torch.Tensor | None]:
        """What a checkpoint keeps of the flow: its :attr:`carried` attributes (replica shape, or None
        before the first step); {} for a flow whose step depends only on the particles and n."""
        return {name: getattr(self, name) for name in self.carried}

    def load_state(self, state: dict[str, torch.Tensor | None]) -> None:
        """Restore :meth:`state` (tensors moved to the target's device)."""
        for name in self.carried:
            value = state[name]
            setattr(self, name, None if value is None else value.to(self.target.device))

    def _matvec(self, x, y, weights):
        return kernel_matvec(self.kernel, x, y, weights, self.budget)

    def noise(self, step: int) -> torch.Tensor:
        """beta_n, the noise level at step n (0 for flows without noise injection): float64 on the
        CPU (host decisions need no device sync), of the replica shape."""
        return torch.zeros(self.target.shape[:-2], dtype=torch.float64)

    def _shared_distances(self, particles: torch.Tensor) -> torch.Tensor | None:
        """|y_i - c_j|^2 from the particles to the N + M centres of phi (particles, then target)
        ``[..., N, N + M]``, when the kernel is radial and they fit one block; else None."""
        if getattr(self.kernel, "radial_value", None) is None:
            return None
        size, replicas = particles.shape[-2], particles.shape[0] if particles.dim() == 3 else 1
        budget = block_budget(particles.device) if self.budget is None else self.budget
        if block_rows(size, size + self.target.shape[-2], particles.dtype, budget, replicas) < size:
            return None
        return squared_distances(particles, torch.cat([particles, self.target], dim=-2))

    def moments(self, particles: torch.Tensor):
        """a = K_XY 1/N ``[..., M]`` and mean(K_YY) ``[...]`` at the clean particles ``[..., N, d]``.

        Small flows with a radial kernel compute the squared distances to every centre of phi and
        the kernel at them once per step and keep both for :meth:`velocity` at the same particles
        (one kernel evaluation per step instead of two, and the Gaussian's slope from its values);
        larger ones go through the blocked reductions."""
        size = particles.shape[-2]
        distances = self._shared_distances(particles)
        self._kept = None
        if distances is not None:
            gram = self.kernel.radial_value(distances)  # (..., N, N + M)
            self._kept = (particles, distances, gram)
            return gram[..., size:].mean(-2), gram[..., :size].mean((-2, -1))
        uniform = torch.full(particles.shape[:-1], 1.0 / size, dtype=particles.dtype, device=particles.device)
        return self._matvec(self.target, particles, uniform), self._matvec(particles, particles, uniform).mean(-1)

    def mmd2(self, a: torch.Tensor, k_yy_mean: torch.Tensor) -> torch.Tensor:
        """MMD^2 (V-statistic) ``[...]`` = mean(K_YY) + mean(K_XX) - 2 mean(K_XY) from :meth:`moments`."""
        return k_yy_mean + self.k_xx_mean - 2.0 * a.mean(-1)

    def velocity(self, first: FirstVariation, points: torch.Tensor, particles: torch.Tensor) -> torch.Tensor:
        """grad phi at ``points: [..., P, d]`` -> ``[..., P, d]`` (phi of :class:`FirstVariation`): from the
        distances kept by :meth:`moments` when ``points`` are those particles, else blocked."""
        centres = torch.cat([particles, self.target], dim=-2)  # (..., N + M, d)
        weights = torch.cat([first.particle_weights, first.target_weights], dim=-1)  # (..., N + M)
        kept, self._kept = self._kept, None
        if kept is not None and kept[0] is particles and points is particles:
            return radial_weighted_gradient(points, centres, self.kernel.radial_slope(kept[1], kept[2]), weights)
        return kernel_matvec_grad(self.kernel, points, centres, weights, self.budget)

    def potential(self, first: FirstVariation, points: torch.Tensor, particles: torch.Tensor) -> torch.Tensor:
        """phi at ``points: [..., P, d]`` -> ``[..., P]``, differentiable in the points (unblocked; for checks)."""
        to_particles = matvec(self.kernel(points, particles), first.particle_weights)  # (..., P)
        return to_particles + matvec(self.kernel(points, self.target), first.target_weights)


def _injected_noise(particles: torch.Tensor, beta: torch.Tensor, generator) -> torch.Tensor:
    """u ~ N(0, I) ``[..., N, d]``: replica r draws from its own stream (``generator[r]``; one
    generator for a plain flow) only where beta_r > 0, so it draws what its plain run draws."""
    streams = generator if isinstance(generator, (list, tuple)) else [generator]
    shape = particles.shape[-2:]
    source = "cpu" if streams[0] is None else streams[0].device
    draws = [
        torch.randn(shape, generator=stream, dtype=particles.dtype, device=source) if level > 0
        else torch.zeros(shape, dtype=particles.dtype, device=source)
        for stream, level in zip(streams, beta.reshape(-1).tolist(), strict=True)
    ]  # fmt: skip
    return torch.stack(draws).reshape(particles.shape).to(particles.device)


def flow_velocity(flow: KernelFlow, particles: torch.Tensor, step: int, generator=None):
    """The first variation at step n (clean particles) and the velocity grad phi_n(y_i + beta_n u_i): ``[..., N, d]``.

    ``generator`` draws u: one ``torch.Generator`` for a plain flow, a list of R for R batched
    replicas. The noise is drawn on the generator's device (the CPU in the experiment, so that a seed
    gives the same flow on every device) and moved to the particles' device.
    """
    first = flow.first_variation(particles)
    beta = flow.noise(step)  # (...) on the CPU
    points = particles
    if bool((beta > 0).any()):
        noise = _injected_noise(particles, beta, generator)  # (..., N, d)
        points = particles + beta.to(particles.device, particles.dtype)[..., None, None] * noise
    return first, flow.velocity(first, points, particles)


def euler_step(particles: torch.Tensor, first: FirstVariation, velocity: torch.Tensor) -> torch.Tensor:
    """y - gamma_n v: ``[..., N, d]`` (gamma_n of ``first``, one per replica for a batched flow)."""
    return particles - first.step_size.to(particles.device, particles.dtype)[..., None, None] * velocity
