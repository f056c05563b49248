"""Particle flows of kernel divergences towards a fixed target sample (DESIGN §3).

Source particles ``Y: [N, d]`` (nu) flow towards the target ``X: [M, d]`` (pi) by explicit Euler
steps on a first variation phi of the divergence:

.. math::

    y_i \\leftarrow y_i - \\gamma_n \\, \\nabla \\varphi_n(y_i + \\beta_n u_i), \\qquad u_i \\sim N(0, I)

=================== ============================================== ============================ =========
flow                phi (first variation)                          gamma_n (logged step_size)   value
=================== ============================================== ============================ =========
``mmd``             f = mean_j k(., y_j) - mean_m k(., x_m)        ``step``                     MMD^2
``mmd_noise``       f, evaluated at y_i + beta_n u_i               ``step``                     MMD^2
``drmmd``           2 h_lambda (DrMMD witness, divergences.py)     lambda * ``step``            DrMMD_lambda
``drmmd_adaptive``  2 h_{lambda_n}                                 max(lambda_n * ``step``,     DrMMD_{lambda_n}
                                                                   1e-4)
``kale``            (1+lambda) h* (KALE witness, divergences.py)   ``step``                     KALE_lambda
=================== ============================================== ============================ =========

With the particle gradients of the values (d MMD^2/dy_i = (2/N) grad f, d DrMMD/dy_i = (2/N) grad h,
d KALE/dy_i = (1/N) grad phi) the moves are y_i -= (N/2) step grad_i MMD^2 (mmd),
lambda step N grad_i DrMMD (drmmd) and step N grad_i KALE (kale): mean-field scaling, the
per-particle move does not shrink with N. So a DrMMD flow with lambda -> infinity and step s moves
like an MMD flow with step 2 lambda s. For KALE the step is not multiplied by lambda: the
three-ring setting "lambda = 1e-3, rate 1e-4" is ``step = 1e-4``.

Noise injection (Arbel et al., 2019): beta_n = ``noise_level`` for n < ``noise_until``, then 0;
u is drawn fresh every step; the value (and every logged metric) uses the clean particles.

Adaptive DrMMD (the 2-D reference code of Chen et al., 2024): D_0 = DrMMD_{lambda_0}(y_0); at step
n >= 1, lambda_n = lambda_0 sqrt(D / D_0) with D = DrMMD_{lambda_{n-1}}(y_n), the value after the
previous move at the lambda of that move. The target-side matrix is factorised once, not every
step (``solver="factor"``): a Cholesky factor of K_XX + M lambda I for a fixed lambda, one
eigendecomposition of K_XX for an adaptive one (:class:`~studentteacher.divergences.GramEigh`), so
that each step's solve, with a new lambda or not, is O(M^2). ``solver="solve"`` instead calls
``torch.linalg.solve`` on K_XX + M lambda I every time it needs one (the per-step reference path,
for tests and benchmarks).

Memory: every kernel reduction is blocked (:func:`~studentteacher.kernels.kernel_matvec`,
:func:`~studentteacher.kernels.kernel_matvec_grad`) within ``budget_bytes`` per block, and the
velocity grad phi is one blocked pass over the N + M kernel centres of phi (closed-form kernel
gradients for the kernels of :func:`~studentteacher.kernels.get_kernel`, autograd otherwise). The
only matrix held in full is the M x M target Gram (or its factor) of DrMMD and KALE: at
N = M = 10 000 in float64 a DrMMD flow needs about 1.7 GB (fixed lambda) to 3.3 GB (adaptive).

KALE (Glaser et al., 2021): the dual weights alpha are found by Newton's method
(:func:`~studentteacher.divergences.kale_dual`), warm-started from the previous step, until the
duality gap is below ``kale_tol``.

Logged at every ``log_every``-th step (and the last): the flow's value, MMD^2 (V-statistic) under
a reference Gaussian kernel exp(-|x-y|^2 / (2 sigma_ref^2)) (sigma_ref fixed per toy, see
:mod:`studentteacher.toys`), exact optimal-transport W1 and W2 between the particles and the
target (uniform weights; ``ot.emd2``, in 1-D ``ot.wasserstein_1d``; the papers' "W2" is this
W1), lambda and the step size. Snapshots of the particles every ``snapshot_every``-th step (and
the last).
"""
from __future__ import annotations

import math
import numbers
import sys
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import ot
import torch
from tqdm import tqdm

from . import divergences
from .kernels import (
    KERNELS, Kernel, block_budget, block_rows, get_kernel, kernel_gram, kernel_matvec, kernel_matvec_grad, matvec,
    radial_weighted_gradient, squared_distances,
)  # fmt: skip
from .toys import TARGETS

FLOWS = ("mmd", "mmd_noise", "drmmd", "drmmd_adaptive", "kale")
#: Floor of the adaptive DrMMD step size gamma_n = max(lambda_n * step, MIN_ADAPTIVE_STEP).
MIN_ADAPTIVE_STEP = 1e-4


def _hyper(value, target: torch.Tensor) -> torch.Tensor:
    """A flow hyperparameter (a number, or one per replica) as a float64 tensor of the replica shape
    of ``target`` (``[]`` for one flow, ``[R]`` for R batched flows) on the target's device."""
    tensor = torch.as_tensor(value, dtype=torch.float64, device=target.device)
    if tensor.dim() and tensor.shape != target.shape[:-2]:
        raise ValueError(f"a per-replica hyperparameter needs shape {tuple(target.shape[:-2])}, got {tuple(tensor.shape)}")
    return tensor.expand(target.shape[:-2])


def _rows(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-replica scalar ``[...]`` in the dtype of ``like``, shaped ``[..., 1]`` to scale rows of it."""
    return value.to(like.dtype)[..., None]


@dataclass(frozen=True)
class FirstVariation:
    """One step's first variation, a weighted sum of kernels centred at the particles and the target:

    phi(z) = sum_j ``particle_weights[j]`` k(z, y_j) + sum_m ``target_weights[m]`` k(z, x_m)

    ``value`` (0-dim, at the clean particles), ``particle_weights: [N]``, ``target_weights: [M]``,
    the ``lmbda`` in use (0 for the MMD flows, which have none; a finite stand-in so that logged
    metrics stay valid JSON) and ``step_size`` gamma_n (float64, 0-dim). A batched flow of R
    replicas gives each of them a leading dimension R.
    """

    value: torch.Tensor
    particle_weights: torch.Tensor
    target_weights: torch.Tensor
    lmbda: torch.Tensor
    step_size: torch.Tensor


class _KernelFlow:
    """Shared parts: the target, its kernel moments, the particle moments, the velocity.

    Every kernel reduction goes through the blocked functions of :mod:`studentteacher.kernels`
    with ``budget_bytes`` per block, so that no N x M (or N x N) matrix is held; only the flows
    that need the target Gram K_XX (DrMMD, KALE) hold that one M x M matrix (or its factor).

    Batched replicas: a target ``[R, M, d]`` makes R independent flows advanced as one computation
    (particles ``[R, N, d]``; every per-replica quantity gets the leading dimension R); the
    hyperparameters may then be one number for all or one per replica (``[R]``).
    """

    def __init__(self, target: torch.Tensor, kernel: Kernel, step_size, budget_bytes: int | None = None):
        if target.dim() not in (2, 3):
            raise ValueError(f"target must be [M, d] or [R, M, d] (R replicas), got shape {tuple(target.shape)}")
        self.target = target  # (..., M, d)
        self.kernel = kernel
        self.step = _hyper(step_size, target)  # (...)
        self.lmbda = _hyper(0.0, target)  # (...): no lambda (MMD flows)
        self.budget = budget_bytes
        self._kept: tuple[torch.Tensor, torch.Tensor] | None = None  # (particles, distances) of this step
        size = target.shape[-2]
        uniform = torch.full(target.shape[:-1], 1.0 / size, dtype=target.dtype, device=target.device)  # (..., M)
        self.c = self._matvec(target, target, uniform)  # c = K_XX 1/M: (..., M)
        self.k_xx_mean = self.c.mean(-1)  # (...)

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

        Small flows with a radial kernel compute the squared distances to every centre of phi once
        per step and keep them for :meth:`velocity` at the same particles (one kernel evaluation
        per step instead of two); larger ones go through the blocked reductions."""
        size = particles.shape[-2]
        distances = self._shared_distances(particles)
        self._kept = None if distances is None else (particles, distances)
        if distances is not None:
            gram = self.kernel.radial_value(distances)  # (..., N, N + M)
            return gram[..., size:].mean(-2), gram[..., :size].mean((-2, -1))
        uniform = torch.full(particles.shape[:-1], 1.0 / size, dtype=particles.dtype, device=particles.device)
        return self._matvec(self.target, particles, uniform), self._matvec(particles, particles, uniform).mean(-1)

    def velocity(self, first: FirstVariation, points: torch.Tensor, particles: torch.Tensor) -> torch.Tensor:
        """grad phi at ``points: [..., P, d]`` -> ``[..., P, d]`` (phi of :class:`FirstVariation`): from the
        distances kept by :meth:`moments` when ``points`` are those particles, else blocked."""
        centres = torch.cat([particles, self.target], dim=-2)  # (..., N + M, d)
        weights = torch.cat([first.particle_weights, first.target_weights], dim=-1)  # (..., N + M)
        kept, self._kept = self._kept, None
        if kept is not None and kept[0] is particles and points is particles:
            return radial_weighted_gradient(points, centres, self.kernel.radial_slope(kept[1]), weights)
        return kernel_matvec_grad(self.kernel, points, centres, weights, self.budget)

    def potential(self, first: FirstVariation, points: torch.Tensor, particles: torch.Tensor) -> torch.Tensor:
        """phi at ``points: [..., P, d]`` -> ``[..., P]``, differentiable in the points (unblocked; for checks)."""
        to_particles = matvec(self.kernel(points, particles), first.particle_weights)  # (..., P)
        return to_particles + matvec(self.kernel(points, self.target), first.target_weights)


class MMDFlow(_KernelFlow):
    """MMD flow, phi = f (the MMD witness), optionally with noise injection."""

    def __init__(self, target, kernel, step_size, noise_level=0.0, noise_until=0, **options):
        super().__init__(target, kernel, step_size, **options)
        replicas = target.shape[:-2]
        self.noise_level = torch.as_tensor(noise_level, dtype=torch.float64).expand(replicas)  # (...) on the CPU
        self.noise_until = torch.as_tensor(noise_until).expand(replicas)  # (...)

    def noise(self, step: int) -> torch.Tensor:
        return torch.where(step < self.noise_until, self.noise_level, 0.0)

    def first_variation(self, particles: torch.Tensor) -> FirstVariation:
        a, k_yy_mean = self.moments(particles)
        value = k_yy_mean + self.k_xx_mean - 2.0 * a.mean(-1)
        n, m = particles.shape[-2], self.target.shape[-2]
        weights_y = torch.full(particles.shape[:-1], 1.0 / n, dtype=a.dtype, device=a.device)  # (..., N)
        weights_x = torch.full(a.shape, -1.0 / m, dtype=a.dtype, device=a.device)  # (..., M)
        return FirstVariation(value, weights_y, weights_x, self.lmbda, self.step)


class DrMMDFlow(_KernelFlow):
    """DrMMD flow, phi = 2 h_lambda, with a fixed or an adaptive lambda (module docstring).

    The target side is factorised once: a Cholesky factor of K_XX + M lambda I for a fixed lambda,
    an eigendecomposition of K_XX (:class:`~studentteacher.divergences.GramEigh`) for an adaptive
    one; ``solver="solve"`` keeps K_XX and solves from scratch each time (reference path).
    """

    def __init__(self, target, kernel, step_size, lmbda, adaptive: bool = False, solver: str = "factor",
                 **options):  # fmt: skip
        super().__init__(target, kernel, step_size, **options)
        if solver not in ("factor", "solve"):
            raise ValueError(f"solver must be one of ['factor', 'solve'], got {solver!r}")
        self.lmbda0 = self.lmbda = _hyper(lmbda, target)  # (...)
        self.adaptive = adaptive
        k_xx = kernel_gram(kernel, target, target, self.budget)  # (..., M, M)
        size = target.shape[-2]
        self.k_xx = k_xx if solver == "solve" else None
        self.eigh = divergences.GramEigh(k_xx) if adaptive and solver == "factor" else None
        self.cholesky = None
        if not adaptive and solver == "factor":
            k_xx.diagonal(dim1=-2, dim2=-1).add_(_rows(size * self.lmbda, k_xx))  # in place: K_XX is not needed any more
            self.cholesky = torch.linalg.cholesky(k_xx)  # (..., M, M)
        del k_xx
        self.initial_value: torch.Tensor | None = None

    def _solver(self, a_minus_c: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """lambda ``[...]`` -> beta_lambda = (K_XX + M lambda I)^{-1} (a - c) ``[..., M]``."""
        if self.eigh is not None:
            rotated = self.eigh.rotate(a_minus_c)  # (..., M)
            return lambda lmbda: self.eigh.solve_rotated(rotated, lmbda)
        if self.cholesky is not None:
            return lambda lmbda: torch.cholesky_solve(a_minus_c[..., None], self.cholesky)[..., 0]
        size = self.k_xx.shape[-1]
        identity = torch.eye(size, dtype=self.k_xx.dtype, device=self.k_xx.device)
        return lambda lmbda: torch.linalg.solve(self.k_xx + _rows(size * lmbda, identity)[..., None] * identity, a_minus_c)

    def _value(self, value_mmd2, a_minus_c, beta, lmbda):
        return ((1.0 + lmbda) / lmbda).to(value_mmd2.dtype) * (value_mmd2 - (a_minus_c * beta).sum(-1))

    def first_variation(self, particles: torch.Tensor) -> FirstVariation:
        a, k_yy_mean = self.moments(particles)
        value_mmd2 = k_yy_mean + self.k_xx_mean - 2.0 * a.mean(-1)
        a_minus_c = a - self.c  # (..., M)
        beta_of = self._solver(a_minus_c)
        if self.adaptive:
            previous = self._value(value_mmd2, a_minus_c, beta_of(self.lmbda), self.lmbda)
            if self.initial_value is None:
                self.initial_value = previous
            else:
                ratio = (previous / self.initial_value).to(torch.float64)
                self.lmbda = self.lmbda0 * torch.sqrt(ratio.clamp_min(0.0))
        beta = beta_of(self.lmbda)  # (..., M)
        value = self._value(value_mmd2, a_minus_c, beta, self.lmbda)
        scale = 2.0 * (1.0 + self.lmbda) / self.lmbda  # (...)
        n, m = particles.shape[-2], self.target.shape[-2]
        weights_y = _rows(scale / n, a).expand(particles.shape[:-1])  # (..., N)
        weights_x = -_rows(scale, a) * (1.0 / m + beta)  # (..., M)
        step_size = self.lmbda * self.step
        if self.adaptive:
            step_size = step_size.clamp_min(MIN_ADAPTIVE_STEP)
        return FirstVariation(value, weights_y, weights_x, self.lmbda, step_size)


class KALEFlow(_KernelFlow):
    """KALE flow, phi = (1+lambda) h*, dual weights by warm-started Newton (module docstring)."""

    def __init__(self, target, kernel, step_size, lmbda, kale_tol: float = 1e-10, max_newton: int = 200,
                 **options):  # fmt: skip
        super().__init__(target, kernel, step_size, **options)
        self.lmbda, self.tol, self.max_newton = _hyper(lmbda, target), kale_tol, max_newton
        self.k_xx = kernel_gram(kernel, target, target, self.budget)  # (..., M, M)
        self.alpha: torch.Tensor | None = None  # (..., M) warm start
        self.newton_iterations = 0

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
        self.newton_iterations += sum(dual.iterations for dual in duals)
        values = [divergences.kale_from_dual(*problem) for problem in zip(duals, grams, moments, means, lmbdas)]
        scale = (1.0 + self.lmbda) / self.lmbda  # (...)
        weights_y = _rows(scale / particles.shape[-2], a).expand(particles.shape[:-1])  # (..., N)
        weights_x = -_rows(scale, a) * self.alpha  # (..., M)
        return FirstVariation(torch.stack(values).reshape(a.shape[:-1]), weights_y, weights_x, self.lmbda, self.step)


def make_flow(
    flow: str,
    target: torch.Tensor,
    kernel: Kernel,
    step_size: float,
    lmbda: float,
    noise_level: float = 0.0,
    noise_until: int = 0,
    solver: str = "factor",
    budget_bytes: int | None = None,
):
    """The flow object named ``flow`` (one of :data:`FLOWS`) towards ``target: [M, d]``.

    ``budget_bytes`` bounds the temporaries of each block of a kernel reduction (None: the
    device's default, :func:`~studentteacher.kernels.block_budget`).
    """
    options = {"budget_bytes": budget_bytes}
    if flow in ("mmd", "mmd_noise"):
        noise = noise_level if flow == "mmd_noise" else 0.0
        return MMDFlow(target, kernel, step_size, noise, noise_until, **options)
    if flow in ("drmmd", "drmmd_adaptive"):
        return DrMMDFlow(target, kernel, step_size, lmbda, adaptive=flow == "drmmd_adaptive", solver=solver, **options)
    if flow == "kale":
        return KALEFlow(target, kernel, step_size, lmbda, **options)
    raise ValueError(f"flow must be one of {list(FLOWS)}, got {flow!r}")


# ----------------------------------------------------------------------------- metrics
def wasserstein(particles: torch.Tensor, target: torch.Tensor, power: int) -> float:
    """Exact OT W_p (p = 1 or 2) between uniform measures on ``[N, d]`` and ``[M, d]``: ``ot.emd2``
    (network simplex) in 2-D, ``ot.wasserstein_1d`` (sorted quantile functions, exact and ~70x
    faster at N = M = 1000) in 1-D."""
    y = particles.detach().cpu().double().numpy()
    x = target.detach().cpu().double().numpy()
    if y.shape[1] == 1:
        return float(ot.wasserstein_1d(y[:, 0], x[:, 0], p=power)) ** (1.0 / power)
    cost = ot.dist(y, x, metric="euclidean") if power == 1 else ot.dist(y, x, metric="sqeuclidean")  # (N, M)
    weights_y = np.full(y.shape[0], 1.0 / y.shape[0])
    weights_x = np.full(x.shape[0], 1.0 / x.shape[0])
    value = float(ot.emd2(weights_y, weights_x, cost, numItermax=10_000_000))
    return value if power == 1 else math.sqrt(max(value, 0.0))


METRICS = ("divergence", "mmd2", "w1", "w2", "lmbda", "step_size")


@dataclass(frozen=True)
class FlowRecord:
    """The metrics of one logged step of one replica (0 for a plain flow), as plain floats (names as
    in :data:`METRICS`)."""

    step: int
    divergence: float
    mmd2: float
    w1: float
    w2: float
    lmbda: float
    step_size: float
    replica: int = 0


@dataclass
class FlowTrajectory:
    """What a flow produced: logged ``records``, ``snapshot_steps: [S]``, ``snapshots: [S, N, d]``
    (on the CPU), the final ``particles: [N, d]``."""

    records: list[FlowRecord] = field(default_factory=list)
    snapshot_steps: list[int] = field(default_factory=list)
    snapshots: list[torch.Tensor] = field(default_factory=list)
    particles: torch.Tensor | None = None

    def metrics(self) -> dict[str, torch.Tensor]:
        """``{"step": [L], name: [L] for name in METRICS}`` as float64 tensors."""
        columns = {"step": [r.step for r in self.records]}
        columns.update({name: [getattr(r, name) for r in self.records] for name in METRICS})
        return {name: torch.tensor(values, dtype=torch.float64) for name, values in columns.items()}

    def snapshot_tensor(self) -> torch.Tensor:
        """Snapshots stacked: ``[S, N, d]``."""
        return torch.stack(self.snapshots)


class FlowDivergedError(RuntimeError):
    """A flow produced a non-finite quantity; ``trajectory`` holds everything logged before."""

    def __init__(self, step: int, quantity: str, trajectory: FlowTrajectory, replica: int | None = None):
        where = "" if replica is None else f" (replica {replica})"
        super().__init__(f"flow diverged at step {step}{where}: {quantity} is not finite")
        self.step, self.quantity, self.trajectory, self.replica = step, quantity, trajectory, replica


class FlowInterrupted(RuntimeError):
    """``should_stop`` asked the flow to stop; ``trajectories`` hold what was logged (one per replica)."""

    def __init__(self, step: int, trajectories: list[FlowTrajectory]):
        super().__init__(f"stopped on request at step {step}")
        self.step, self.trajectories = step, trajectories


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


def flow_velocity(flow, particles: torch.Tensor, step: int, generator=None):
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


def run_flow(
    flow,
    source: torch.Tensor,
    steps: int,
    *,
    reference_bandwidth: float,
    log_every: int = 100,
    snapshot_every: int = 1000,
    generator=None,
    on_log: Callable[[FlowRecord], None] | None = None,
    on_failure: Callable[[FlowDivergedError], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress: bool = False,
):
    """Run ``steps`` Euler steps of ``flow`` from ``source: [N, d]`` (module docstring); returns a
    :class:`FlowTrajectory`. For a batched flow (target ``[R, M, d]``), ``source: [R, N, d]`` runs
    its R replicas together and returns R trajectories; ``generator`` is then a list of R streams.

    ``generator`` draws the injected noise (needed only when the flow has noise). ``on_log`` is called
    with each :class:`FlowRecord` as soon as it is measured. A non-finite value or particle position
    stops the replica that produced it (its particles stay at their last finite positions) and is
    reported as a :class:`FlowDivergedError` naming the step, the quantity and the replica: passed
    to ``on_failure`` when given (the other replicas go on), raised otherwise. The step runs on the
    device without host synchronisation: the finiteness flags are read at log and snapshot steps.
    ``should_stop()`` is polled after each log step: when true, :class:`FlowInterrupted` is raised
    with every replica's trajectory so far (their particles where they are).
    """
    replicas = source.shape[0] if source.dim() == 3 else 1
    size, dim = source.shape[-2:]
    targets = flow.target.reshape(replicas, -1, dim)  # (R, M, d)
    reference = get_kernel("gaussian", reference_bandwidth)
    trajectories = [FlowTrajectory() for _ in range(replicas)]
    alive = [True] * replicas
    first_bad = torch.full((replicas,), -1, dtype=torch.long, device=source.device)  # first non-finite step
    bad_is_particles = torch.zeros(replicas, dtype=torch.bool, device=source.device)
    particles = source.detach().clone()  # (..., N, d)

    def mark(finite: torch.Tensor, step: int, is_particles: bool) -> None:
        nonlocal first_bad, bad_is_particles
        new = (first_bad < 0) & ~finite.reshape(replicas)
        first_bad = torch.where(new, step, first_bad)
        bad_is_particles = torch.where(new, is_particles, bad_is_particles)

    def report_failures() -> None:
        for replica, (step, is_particles) in enumerate(zip(first_bad.tolist(), bad_is_particles.tolist())):
            if step < 0 or not alive[replica]:
                continue
            alive[replica] = False
            quantity = "particles" if is_particles else "divergence"
            error = FlowDivergedError(step, quantity, trajectories[replica], None if source.dim() == 2 else replica)
            if on_failure is None:
                raise error
            on_failure(error)

    for step in tqdm(range(steps + 1), file=sys.stderr, disable=not progress, mininterval=1.0):
        first, velocity = flow_velocity(flow, particles, step, generator)  # (..., N, d)
        mark(torch.isfinite(first.value), step, False)
        last = step == steps
        logging, snapshot = step % log_every == 0 or last, step % snapshot_every == 0 or last
        if logging or snapshot:
            report_failures()
            if not any(alive):
                break
            views = particles.reshape(replicas, size, dim)  # (R, N, d)
            columns = [first.value, first.lmbda, first.step_size]
            values, lmbdas, step_sizes = (column.expand(flow.target.shape[:-2]).reshape(-1).tolist() for column in columns)
            for replica in (r for r in range(replicas) if alive[r]):
                trajectory, view, target = trajectories[replica], views[replica], targets[replica]
                if logging:
                    record = FlowRecord(
                        step=step,
                        divergence=values[replica],
                        mmd2=float(divergences.mmd2(view, target, reference)),
                        w1=wasserstein(view, target, 1),
                        w2=wasserstein(view, target, 2),
                        lmbda=lmbdas[replica],
                        step_size=step_sizes[replica],
                        replica=replica,
                    )
                    trajectory.records.append(record)
                    if on_log is not None:
                        on_log(record)
                if snapshot:
                    trajectory.snapshot_steps.append(step)
                    trajectory.snapshots.append(view.detach().cpu().clone())
                trajectory.particles = view
            if logging and not last and should_stop is not None and should_stop():
                raise FlowInterrupted(step, trajectories)
        if last:
            break
        moved = euler_step(particles, first, velocity)
        mark(torch.isfinite(moved).reshape(replicas, -1).all(1), step + 1, True)
        stopped = (first_bad >= 0).reshape(flow.target.shape[:-2])[..., None, None]  # (..., 1, 1)
        particles = torch.where(stopped, particles, moved)
    for trajectory, view in zip(trajectories, particles.reshape(replicas, size, dim)):
        trajectory.particles = view
    return trajectories if source.dim() == 3 else trajectories[0]


# ----------------------------------------------------------------------------- config
DTYPES = {"float64": torch.float64, "float32": torch.float32}
CONFIG_KEYS = (
    "target", "flow", "kernel", "bandwidth", "n_particles", "n_target", "steps", "step_size", "lmbda",
    "noise_level", "noise_until", "dtype", "device", "log_every", "snapshot_every", "replicas", "seed",
)  # fmt: skip
#: Config keys in which the replicas of one batched run may differ (every other key is shared).
REPLICA_KEYS = ("seed", "step_size", "lmbda", "noise_level", "noise_until", "replicas")


def _fail(key: str, value, allowed: str):
    raise ValueError(f"config key {key!r}: got {value!r}, allowed: {allowed}")


def validate_flow_config(config: dict) -> None:
    """Check every key of a ``particle_flow`` config before any work; ValueError naming key, value, allowed."""
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; allowed keys: {list(CONFIG_KEYS)}")
    missing = [key for key in CONFIG_KEYS if key not in config]
    if missing:
        raise ValueError(f"missing config keys {missing}; required keys: {list(CONFIG_KEYS)}")
    for key, options in (("target", TARGETS), ("flow", FLOWS), ("kernel", tuple(KERNELS)), ("dtype", tuple(DTYPES))):
        if config[key] not in options:
            _fail(key, config[key], f"one of {list(options)}")

    def is_int(value):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    def is_real(value):
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)

    for key in ("bandwidth", "step_size", "lmbda"):
        if not (is_real(config[key]) and config[key] > 0):
            _fail(key, config[key], "a finite number > 0")
    if not (is_real(config["noise_level"]) and config["noise_level"] >= 0):
        _fail("noise_level", config["noise_level"], "a finite number >= 0")
    for key, low in (("n_particles", 1), ("n_target", 1), ("steps", 0), ("noise_until", 0), ("log_every", 1),
                     ("snapshot_every", 1), ("replicas", 1)):  # fmt: skip
        if not (is_int(config[key]) and config[key] >= low):
            _fail(key, config[key], f"an integer >= {low}")
    if config["target"] == "three_rings" and config["n_target"] % 3:
        _fail("n_target", config["n_target"], "a multiple of 3 for target 'three_rings'")
    if not is_int(config["seed"]):
        _fail("seed", config["seed"], "an integer")
    device = config["device"]
    if not (isinstance(device, str) and (device in ("auto", "cpu") or device.split(":")[0] == "cuda")):
        _fail("device", device, "'auto', 'cpu', 'cuda' or 'cuda:N'")


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> cuda if available else cpu; otherwise ``torch.device(device)``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
