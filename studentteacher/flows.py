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
target (uniform weights, ``ot.emd2``; the papers' "W2" is this W1), lambda and the step size.
Snapshots of the particles every ``snapshot_every``-th step (and the last).
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
from .kernels import BLOCK_BYTES, KERNELS, Kernel, get_kernel, kernel_gram, kernel_matvec, kernel_matvec_grad
from .toys import TARGETS

FLOWS = ("mmd", "mmd_noise", "drmmd", "drmmd_adaptive", "kale")
#: Floor of the adaptive DrMMD step size gamma_n = max(lambda_n * step, MIN_ADAPTIVE_STEP).
MIN_ADAPTIVE_STEP = 1e-4


@dataclass(frozen=True)
class FirstVariation:
    """One step's first variation, a weighted sum of kernels centred at the particles and the target:

    phi(z) = sum_j ``particle_weights[j]`` k(z, y_j) + sum_m ``target_weights[m]`` k(z, x_m)

    ``value`` (0-dim, at the clean particles), ``particle_weights: [N]``, ``target_weights: [M]``,
    the ``lmbda`` in use (0.0 for the MMD flows, which have none; a finite stand-in so that logged
    metrics stay valid JSON) and ``step_size`` gamma_n.
    """

    value: torch.Tensor
    particle_weights: torch.Tensor
    target_weights: torch.Tensor
    lmbda: float
    step_size: float


class _KernelFlow:
    """Shared parts: the target, its kernel moments, the particle moments, the velocity.

    Every kernel reduction goes through the blocked functions of :mod:`studentteacher.kernels`
    with ``budget_bytes`` per block, so that no N x M (or N x N) matrix is held; only the flows
    that need the target Gram K_XX (DrMMD, KALE) hold that one M x M matrix (or its factor).
    """

    lmbda = 0.0  # no lambda (MMD flows)

    def __init__(self, target: torch.Tensor, kernel: Kernel, step_size: float, budget_bytes: int = BLOCK_BYTES):
        self.target = target  # (M, d)
        self.kernel = kernel
        self.step = step_size
        self.budget = budget_bytes
        size = target.shape[0]
        self.c = self._matvec(target, target, torch.full((size,), 1.0 / size, dtype=target.dtype, device=target.device))
        self.k_xx_mean = self.c.mean()  # c = K_XX 1/M: (M,)

    def _matvec(self, x, y, weights):
        return kernel_matvec(self.kernel, x, y, weights, self.budget)

    def noise(self, step: int) -> float:
        """beta_n: the noise level at step n (0 for flows without noise injection)."""
        return 0.0

    def moments(self, particles: torch.Tensor):
        """a = K_XY 1/N ``[M]`` and mean(K_YY) (0-dim) at the clean particles ``[N, d]``."""
        size = particles.shape[0]
        uniform = torch.full((size,), 1.0 / size, dtype=particles.dtype, device=particles.device)  # (N,)
        return self._matvec(self.target, particles, uniform), self._matvec(particles, particles, uniform).mean()

    def velocity(self, first: FirstVariation, points: torch.Tensor, particles: torch.Tensor) -> torch.Tensor:
        """grad phi at ``points: [P, d]`` -> ``[P, d]`` (blocked; phi of :class:`FirstVariation`)."""
        centres = torch.cat([particles, self.target])  # (N + M, d)
        weights = torch.cat([first.particle_weights, first.target_weights])  # (N + M,)
        return kernel_matvec_grad(self.kernel, points, centres, weights, self.budget)

    def potential(self, first: FirstVariation, points: torch.Tensor, particles: torch.Tensor) -> torch.Tensor:
        """phi at ``points: [P, d]`` -> ``[P]``, differentiable in the points (unblocked; for checks)."""
        to_particles = self.kernel(points, particles) @ first.particle_weights  # (P,)
        return to_particles + self.kernel(points, self.target) @ first.target_weights


class MMDFlow(_KernelFlow):
    """MMD flow, phi = f (the MMD witness), optionally with noise injection."""

    def __init__(self, target, kernel, step_size, noise_level: float = 0.0, noise_until: int = 0, **options):
        super().__init__(target, kernel, step_size, **options)
        self.noise_level, self.noise_until = noise_level, noise_until

    def noise(self, step: int) -> float:
        return self.noise_level if step < self.noise_until else 0.0

    def first_variation(self, particles: torch.Tensor) -> FirstVariation:
        a, k_yy_mean = self.moments(particles)
        value = k_yy_mean + self.k_xx_mean - 2.0 * a.mean()
        n, m = particles.shape[0], self.target.shape[0]
        weights_y = torch.full((n,), 1.0 / n, dtype=a.dtype, device=a.device)  # (N,)
        weights_x = torch.full((m,), -1.0 / m, dtype=a.dtype, device=a.device)  # (M,)
        return FirstVariation(value, weights_y, weights_x, self.lmbda, self.step)


class DrMMDFlow(_KernelFlow):
    """DrMMD flow, phi = 2 h_lambda, with a fixed or an adaptive lambda (module docstring).

    The target side is factorised once: a Cholesky factor of K_XX + M lambda I for a fixed lambda,
    an eigendecomposition of K_XX (:class:`~studentteacher.divergences.GramEigh`) for an adaptive
    one; ``solver="solve"`` keeps K_XX and solves from scratch each time (reference path).
    """

    def __init__(self, target, kernel, step_size, lmbda: float, adaptive: bool = False, solver: str = "factor",
                 **options):  # fmt: skip
        super().__init__(target, kernel, step_size, **options)
        if solver not in ("factor", "solve"):
            raise ValueError(f"solver must be one of ['factor', 'solve'], got {solver!r}")
        self.lmbda0, self.lmbda, self.adaptive = lmbda, lmbda, adaptive
        k_xx = kernel_gram(kernel, target, target, self.budget)  # (M, M)
        size = target.shape[0]
        self.k_xx = k_xx if solver == "solve" else None
        self.eigh = divergences.GramEigh(k_xx) if adaptive and solver == "factor" else None
        self.cholesky = None
        if not adaptive and solver == "factor":
            k_xx.diagonal().add_(size * lmbda)  # in place: K_XX is not needed any more
            self.cholesky = torch.linalg.cholesky(k_xx)  # (M, M)
        del k_xx
        self.initial_value: torch.Tensor | None = None

    def _solver(self, a_minus_c: torch.Tensor) -> Callable[[float], torch.Tensor]:
        """lambda -> beta_lambda = (K_XX + M lambda I)^{-1} (a - c) ``[M]``."""
        if self.eigh is not None:
            rotated = self.eigh.rotate(a_minus_c)  # (M,)
            return lambda lmbda: self.eigh.solve_rotated(rotated, lmbda)
        if self.cholesky is not None:
            return lambda lmbda: torch.cholesky_solve(a_minus_c[:, None], self.cholesky)[:, 0]
        size = self.k_xx.shape[0]
        identity = torch.eye(size, dtype=self.k_xx.dtype, device=self.k_xx.device)
        return lambda lmbda: torch.linalg.solve(self.k_xx + size * lmbda * identity, a_minus_c)

    def _value(self, value_mmd2, a_minus_c, beta, lmbda):
        return (1.0 + lmbda) / lmbda * (value_mmd2 - a_minus_c @ beta)

    def first_variation(self, particles: torch.Tensor) -> FirstVariation:
        a, k_yy_mean = self.moments(particles)
        value_mmd2 = k_yy_mean + self.k_xx_mean - 2.0 * a.mean()
        a_minus_c = a - self.c  # (M,)
        beta_of = self._solver(a_minus_c)
        if self.adaptive:
            previous = self._value(value_mmd2, a_minus_c, beta_of(self.lmbda), self.lmbda)
            if self.initial_value is None:
                self.initial_value = previous
            else:
                self.lmbda = self.lmbda0 * math.sqrt(max(float(previous / self.initial_value), 0.0))
        beta = beta_of(self.lmbda)  # (M,)
        value = self._value(value_mmd2, a_minus_c, beta, self.lmbda)
        scale = 2.0 * (1.0 + self.lmbda) / self.lmbda
        n, m = particles.shape[0], self.target.shape[0]
        weights_y = torch.full((n,), scale / n, dtype=a.dtype, device=a.device)  # (N,)
        weights_x = -scale * (1.0 / m + beta)  # (M,)
        step_size = max(self.lmbda * self.step, MIN_ADAPTIVE_STEP) if self.adaptive else self.lmbda * self.step
        return FirstVariation(value, weights_y, weights_x, self.lmbda, step_size)


class KALEFlow(_KernelFlow):
    """KALE flow, phi = (1+lambda) h*, dual weights by warm-started Newton (module docstring)."""

    def __init__(self, target, kernel, step_size, lmbda: float, kale_tol: float = 1e-10, max_newton: int = 200,
                 **options):  # fmt: skip
        super().__init__(target, kernel, step_size, **options)
        self.lmbda, self.tol, self.max_newton = lmbda, kale_tol, max_newton
        self.k_xx = kernel_gram(kernel, target, target, self.budget)  # (M, M)
        self.alpha: torch.Tensor | None = None  # (M,) warm start
        self.newton_iterations = 0

    def first_variation(self, particles: torch.Tensor) -> FirstVariation:
        a, k_yy_mean = self.moments(particles)
        dual = divergences.kale_dual(self.k_xx, a, self.lmbda, self.alpha, self.tol, self.max_newton)
        self.alpha, self.newton_iterations = dual.alpha, self.newton_iterations + dual.iterations
        value = divergences.kale_from_dual(dual, self.k_xx, a, k_yy_mean, self.lmbda)
        scale = (1.0 + self.lmbda) / self.lmbda
        n = particles.shape[0]
        weights_y = torch.full((n,), scale / n, dtype=a.dtype, device=a.device)  # (N,)
        return FirstVariation(value, weights_y, -scale * dual.alpha, self.lmbda, self.step)


def make_flow(
    flow: str,
    target: torch.Tensor,
    kernel: Kernel,
    step_size: float,
    lmbda: float,
    noise_level: float = 0.0,
    noise_until: int = 0,
    solver: str = "factor",
    budget_bytes: int = BLOCK_BYTES,
):
    """The flow object named ``flow`` (one of :data:`FLOWS`) towards ``target: [M, d]``.

    ``budget_bytes`` bounds the temporaries of each block of a kernel reduction.
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
    """Exact OT W_p (p = 1 or 2) between uniform measures on ``[N, d]`` and ``[M, d]`` (``ot.emd2``)."""
    y = particles.detach().cpu().double().numpy()
    x = target.detach().cpu().double().numpy()
    cost = ot.dist(y, x, metric="euclidean") if power == 1 else ot.dist(y, x, metric="sqeuclidean")  # (N, M)
    weights_y = np.full(y.shape[0], 1.0 / y.shape[0])
    weights_x = np.full(x.shape[0], 1.0 / x.shape[0])
    value = float(ot.emd2(weights_y, weights_x, cost, numItermax=10_000_000))
    return value if power == 1 else math.sqrt(max(value, 0.0))


METRICS = ("divergence", "mmd2", "w1", "w2", "lmbda", "step_size")


@dataclass(frozen=True)
class FlowRecord:
    """The metrics of one logged step, as plain floats (names as in :data:`METRICS`)."""

    step: int
    divergence: float
    mmd2: float
    w1: float
    w2: float
    lmbda: float
    step_size: float


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

    def __init__(self, step: int, quantity: str, trajectory: FlowTrajectory):
        super().__init__(f"flow diverged at step {step}: {quantity} is not finite")
        self.step, self.quantity, self.trajectory = step, quantity, trajectory


def flow_velocity(flow, particles: torch.Tensor, step: int, generator: torch.Generator | None = None):
    """The first variation at step n (clean particles) and the velocity grad phi_n(y_i + beta_n u_i): ``[N, d]``.

    The noise u is drawn on the generator's device (the CPU in the experiment, so that a seed gives
    the same flow on every device) and moved to the particles' device.
    """
    first = flow.first_variation(particles)
    beta = flow.noise(step)
    points = particles
    if beta > 0:
        source = "cpu" if generator is None else generator.device
        noise = torch.randn(particles.shape, generator=generator, dtype=particles.dtype, device=source)
        noise = noise.to(particles.device)  # (N, d)
        points = particles + beta * noise  # (N, d)
    return first, flow.velocity(first, points, particles)


def run_flow(
    flow,
    source: torch.Tensor,
    steps: int,
    *,
    reference_bandwidth: float,
    log_every: int = 100,
    snapshot_every: int = 1000,
    generator: torch.Generator | None = None,
    on_log: Callable[[FlowRecord], None] | None = None,
    progress: bool = False,
) -> FlowTrajectory:
    """Run ``steps`` Euler steps of ``flow`` from ``source: [N, d]`` (module docstring).

    ``generator`` draws the injected noise (needed only when the flow has noise). ``on_log`` is called
    with each :class:`FlowRecord` as soon as it is measured. Raises :class:`FlowDivergedError` (naming
    the step and the quantity) on a non-finite value, velocity or particle position.
    """
    target = flow.target
    reference = get_kernel("gaussian", reference_bandwidth)
    trajectory = FlowTrajectory()
    particles = source.detach().clone()  # (N, d)
    for step in tqdm(range(steps + 1), file=sys.stderr, disable=not progress, mininterval=1.0):
        first, velocity = flow_velocity(flow, particles, step, generator)  # (N, d)
        if not bool(torch.isfinite(first.value)):
            raise FlowDivergedError(step, "divergence", trajectory)
        last = step == steps
        if step % log_every == 0 or last:
            record = FlowRecord(
                step=step,
                divergence=float(first.value),
                mmd2=float(divergences.mmd2(particles, target, reference)),
                w1=wasserstein(particles, target, 1),
                w2=wasserstein(particles, target, 2),
                lmbda=float(first.lmbda),
                step_size=float(first.step_size),
            )
            trajectory.records.append(record)
            if on_log is not None:
                on_log(record)
        if step % snapshot_every == 0 or last:
            trajectory.snapshot_steps.append(step)
            trajectory.snapshots.append(particles.detach().cpu().clone())
        trajectory.particles = particles
        if last:
            break
        particles = particles - first.step_size * velocity
        if not bool(torch.isfinite(particles).all()):
            raise FlowDivergedError(step + 1, "particles", trajectory)
    return trajectory


# ----------------------------------------------------------------------------- config
DTYPES = {"float64": torch.float64, "float32": torch.float32}
CONFIG_KEYS = (
    "target", "flow", "kernel", "bandwidth", "n_particles", "n_target", "steps", "step_size", "lmbda",
    "noise_level", "noise_until", "dtype", "device", "log_every", "snapshot_every", "seed",
)  # fmt: skip


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
                     ("snapshot_every", 1)):  # fmt: skip
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
