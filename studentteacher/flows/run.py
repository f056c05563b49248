"""Running a flow: the Euler loop, logging, health, checkpoints, and building a flow from a config.

:func:`run_flow` advances a flow (one, or R batched replicas) for ``steps`` Euler steps; at every
``log_every``-th step (and the last) it logs the flow's value, the reference MMD^2, W1, W2
(:mod:`~studentteacher.flows.metrics`), lambda, the step size and the kernel bandwidth, and keeps
snapshots of the particles every ``snapshot_every``-th step (and the last). It writes checkpoints
and resumes from them (:mod:`~studentteacher.flows.resume`).

Failure rule. The step runs on the device without host synchronisation: bad replicas are flagged
there and read at log, snapshot and checkpoint steps, where a replica that went bad stops alone
(:class:`FlowDivergedError`, naming the step and the measure). A replica is bad when its value or
a particle is not finite, or when its particles ran away: their mean distance (max norm) outside
the box B around the target and the source exceeds :data:`RUNAWAY_DIAMETERS` (1) diameters D of B
(D its Euclidean diagonal), i.e. they left, on average, a box three diameters wide. Particles far
from every kernel centre feel no force and freeze, so a run-away flow keeps a finite, even falling,
value (MMD^2 of a bounded kernel is at most 2 sup k; a legitimate DrMMD flow at lambda 1e-4 raises
its value 2x), and only the positions tell. The mean, not the farthest particle, because the MMD
flow between 1-D Gaussians legitimately pushes a few stragglers outwards, slowly and for ever.
Measured (max over the run of the mean; of the farthest particle in brackets): small sweeps
(experiments/sweeps/figures/*_small.yaml, every task completes under the rule) at most 0.26 D
(0.26) on the three rings and 0.14 D (0.96) for the 1-D Gaussians; full scale, seed 1: the
three-ring flows (N = M = 300, 10^5 steps: mmd at step 0.1, drmmd at lambda 1e-4, 1e-3 and 1,
drmmd_adaptive; kale 2 10^4 steps) at most (0.67); the 1-D Gaussians (N = M = 1000,
mmd_flow_gaussians.yaml) 0.18 D (1.95) for the MMD flow after 3 10^4 steps and slowing (+0.02 D a
doubling of the steps), (0.47) with noise injection after 10^4. Run-away: the three-ring KALE
flow at step 0.1, lambda 1e-3 (the old default) 3.6 D at N = 60 by step 150 and 2.1 D at N = 300
by step 600 (1.5 D at step 0.01); MMD at step 1e300 (N = 24) about 1e299 D after one step.

:func:`setup_flow` builds what a config (or R compatible ones) runs: the toys, one flow over them
from the registry, each run's noise stream (:func:`noise_stream`) and the checkpoints it resumes from.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..config import SEED_LIMIT, ConfigError, check_device, resolve_device
from ..divergences import SOBOLEV_SOLVERS
from ..kernels import KERNELS, Kernel, get_kernel
from ..threads import check_threads
from ..toys import TARGETS, TOY_OPTIONS, Toy, generators, make_toy
from . import FLOWS, build_flow, flow_class
from .base import FirstVariation, KernelFlow, euler_step, flow_velocity
from .metrics import FlowRecord, FlowTrajectory, mean_gap, sample_distances
from .resume import RESUMABLE_CHANGES, Checkpoints, FlowCheckpoint, checked_checkpoint, restore
from .srmmd import SOBOLEV_OPTIONS, VELOCITIES


class FlowDivergedError(RuntimeError):
    """A flow went bad at ``step``: ``quantity`` is "divergence" or "particles" (not finite) or
    "escape" (the particles ran away, see :data:`RUNAWAY_DIAMETERS`); ``trajectory`` holds everything
    logged before, ``reason`` says what happened."""

    def __init__(self, step: int, quantity: str, trajectory: FlowTrajectory, replica: int | None = None,
                 reason: str | None = None):  # fmt: skip
        where = "" if replica is None else f" (replica {replica})"
        self.reason = reason or f"{quantity} is not finite"
        super().__init__(f"flow diverged at step {step}{where}: {self.reason}")
        self.step, self.quantity, self.trajectory, self.replica = step, quantity, trajectory, replica


class FlowInterrupted(RuntimeError):
    """``should_stop`` asked the flow to stop at the start of ``step``; ``trajectories`` hold what was
    logged (one per replica), ``checkpoint_paths[r]`` replica r's checkpoint (None if none was written)."""

    def __init__(self, step: int, trajectories: list[FlowTrajectory], checkpoint_paths: list[str | None] | None = None):
        super().__init__(f"stopped on request at step {step}")
        self.step, self.trajectories = step, trajectories
        self.checkpoint_paths = checkpoint_paths or [None] * len(trajectories)


# ----------------------------------------------------------------------------- the runner
#: A replica whose particles lie on average farther outside the box around its target and source than
#: this many diameters of that box has run away (module docstring).
RUNAWAY_DIAMETERS = 1.0
_VALUE, _NOT_FINITE, _ESCAPE = 0, 1, 2  # what went bad (_Health.kind)


class _Health:
    """Which of the R replicas still run. The first bad step of each, what went bad (value or
    particles not finite, particles run away) and how far out they were stay on the device
    (``[R]``) until :meth:`report` reads them. The box is that of the target and the source
    (``[..., M, d]``, ``[..., N, d]``): centre, half widths ``[..., 1, d]``, diameter D ``[...]``."""

    def __init__(self, target: torch.Tensor, source: torch.Tensor, batched: bool):
        self.replicas, self.batched = (source.shape[0] if batched else 1), batched
        self.alive = [True] * self.replicas
        both = torch.cat([target, source.to(target.dtype)], dim=-2)  # (..., M + N, d)
        low, high = both.amin(-2, keepdim=True), both.amax(-2, keepdim=True)  # (..., 1, d)
        self.centre, self.half = (low + high) / 2, (high - low) / 2
        self.diameter = (high - low)[..., 0, :].norm(dim=-1).clamp_min(torch.finfo(both.dtype).tiny)  # (...)
        self.first_bad = torch.full((self.replicas,), -1, dtype=torch.long, device=source.device)  # (R,)
        self.kind = torch.zeros(self.replicas, dtype=torch.long, device=source.device)  # (R,)
        self.distance = torch.zeros(self.replicas, dtype=torch.float64, device=source.device)  # (R,)

    def mark(self, good: torch.Tensor, step: int, kind: int, distance: torch.Tensor | None = None) -> None:
        """Flag the replicas whose ``good`` (``[...]``) is false at ``step``, unless flagged before."""
        new = (self.first_bad < 0) & ~good.reshape(self.replicas)
        self.first_bad = torch.where(new, step, self.first_bad)
        self.kind = torch.where(new, kind, self.kind)
        if distance is not None:
            self.distance = torch.where(new, distance.reshape(self.replicas).double(), self.distance)

    def advance(self, particles: torch.Tensor, moved: torch.Tensor, step: int) -> torch.Tensor:
        """``moved: [..., N, d]``, but a flagged replica (not finite, run away) keeps its last ``particles``."""
        self.mark(torch.isfinite(moved).reshape(self.replicas, -1).all(1), step, _NOT_FINITE)
        outside = ((moved - self.centre).abs() - self.half).amax(-1).clamp_min(0.0)  # (..., N) distance to the box
        distance = outside.mean(-1) / self.diameter.to(outside.dtype)  # (...) their mean, in diameters
        self.mark(distance <= RUNAWAY_DIAMETERS, step, _ESCAPE, distance)
        stopped = (self.first_bad >= 0).reshape(particles.shape[:-2])[..., None, None]  # (..., 1, 1)
        return torch.where(stopped, particles, moved)

    def report(self, trajectories: list[FlowTrajectory], on_failure) -> None:
        """Stop each newly flagged replica: its :class:`FlowDivergedError` goes to ``on_failure``, or
        is raised when there is none."""
        flags = zip(self.first_bad.tolist(), self.kind.tolist(), self.distance.tolist())
        for replica, (step, kind, distance) in enumerate(flags):
            if step < 0 or not self.alive[replica]:
                continue
            self.alive[replica] = False
            quantity, reason = ("divergence", "particles", "escape")[kind], None
            if kind == _ESCAPE:
                reason = (f"the particles ran away: their mean distance outside the box around the target and "
                          f"the source is {distance:.3g} diameters of that box (the limit is {RUNAWAY_DIAMETERS:g})")
            error = FlowDivergedError(step, quantity, trajectories[replica], replica if self.batched else None, reason)
            if on_failure is None:
                raise error
            on_failure(error)


class _Recorder:
    """The R trajectories: a :class:`FlowRecord` per replica at log steps, snapshots at snapshot steps."""

    def __init__(self, flow: KernelFlow, replicas: int, reference_bandwidth: float, on_log):
        self.targets = flow.target.reshape(replicas, *flow.target.shape[-2:])  # (R, M, d)
        self.fixed_bandwidth = flow.bandwidth  # (...)
        self.reference_bandwidth, self.on_log = reference_bandwidth, on_log
        self.trajectories = [FlowTrajectory() for _ in range(replicas)]

    def record(self, step: int, first: FirstVariation, particles: torch.Tensor, alive: list[bool], logging: bool,
               snapshot: bool) -> None:  # fmt: skip
        views = particles.reshape(len(alive), *particles.shape[-2:])  # (R, N, d)
        bandwidth = self.fixed_bandwidth if first.bandwidth is None else first.bandwidth
        columns = [first.value, first.lmbda, first.step_size, bandwidth]
        values, lmbdas, step_sizes, bandwidths = (column.expand(particles.shape[:-2]).reshape(-1).tolist()
                                                  for column in columns)  # fmt: skip
        for replica in (r for r in range(len(alive)) if alive[r]):
            trajectory, view = self.trajectories[replica], views[replica]
            if logging:
                distances = sample_distances(view, self.targets[replica], self.reference_bandwidth)
                record = FlowRecord(step, values[replica], **distances, lmbda=lmbdas[replica],
                                    step_size=step_sizes[replica], bandwidth=bandwidths[replica],
                                    mean_gap=mean_gap(view, self.targets[replica]), replica=replica)  # fmt: skip
                trajectory.records.append(record)
                if self.on_log is not None:
                    self.on_log(record)
            if snapshot:
                trajectory.snapshot_steps.append(step)
                trajectory.snapshots.append(view.detach().cpu().clone())
            trajectory.particles = view

    def finish(self, particles: torch.Tensor) -> list[FlowTrajectory]:
        """The trajectories, each with its replica's final ``particles: [N, d]``."""
        for trajectory, view in zip(self.trajectories, particles.reshape(len(self.trajectories), *particles.shape[-2:])):
            trajectory.particles = view
        return self.trajectories


def _pause(step: int, stop: bool, checkpoints: Checkpoints | None, health: _Health, recorder: _Recorder, on_failure,
           state: tuple) -> bool:  # fmt: skip
    """At the start of ``step``: fail newly flagged replicas, write the live ones' checkpoints
    (``state`` = particles, flow, generator) and raise :class:`FlowInterrupted` on ``stop``;
    False when no replica is left."""
    health.report(recorder.trajectories, on_failure)
    if not any(health.alive):
        return False
    written = None
    if checkpoints is not None:
        written = checkpoints.write(step, *state, recorder.trajectories, health.alive)
    if stop:
        raise FlowInterrupted(step, recorder.trajectories, written)
    return True


def run_flow(
    flow: KernelFlow,
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
    on_step: Callable[[int], None] | None = None,
    checkpoints: Checkpoints | None = None,
    resume: FlowCheckpoint | list[FlowCheckpoint] | None = None,
):
    """Run ``steps`` Euler steps of ``flow`` from ``source: [N, d]`` (:mod:`~studentteacher.flows.base`);
    returns a :class:`FlowTrajectory`. For a batched flow (target ``[R, M, d]``), ``source: [R, N, d]``
    runs its R replicas together and returns R trajectories; ``generator`` is then a list of R streams.

    ``generator`` draws the injected noise (needed only when the flow has noise). ``on_log`` gets
    each :class:`FlowRecord` as soon as it is measured, ``on_step(step)`` every step once it is measured
    (the progress of :mod:`studentteacher.progress`). A replica that goes bad (module docstring)
    stops, its particles at their last good positions, and its :class:`FlowDivergedError` (step,
    quantity, replica) goes to ``on_failure`` when given (the other replicas go on), else is raised.

    ``checkpoints`` (:class:`~studentteacher.flows.resume.Checkpoints`) writes each live replica's
    checkpoint at the start of every ``checkpoints.every``-th step and when ``should_stop()``, polled
    before every step, is true; then :class:`FlowInterrupted` is raised with every replica's
    trajectory so far and the checkpoints' paths. ``resume`` (one checkpoint, or R of one step)
    continues from there: particles, noise streams, the flow's carried state and the trajectory.
    """
    batched = source.dim() == 3
    health = _Health(flow.target, source, batched)
    recorder = _Recorder(flow, health.replicas, reference_bandwidth, on_log)
    particles, start = source.detach().clone(), 0  # (..., N, d)
    if resume is not None:
        particles, start, recorder.trajectories = restore(resume if isinstance(resume, list) else [resume], flow,
                                                          generator, source)  # fmt: skip
    for step in range(start, steps + 1):
        stop = step > start and should_stop is not None and should_stop()
        due = step > start and checkpoints is not None and checkpoints.due(step)
        state = (particles, flow, generator)
        if (stop or due) and not _pause(step, stop, checkpoints, health, recorder, on_failure, state):
            break
        first, velocity = flow_velocity(flow, particles, step, generator)  # (..., N, d)
        health.mark(torch.isfinite(first.value), step, _VALUE)
        last = step == steps
        logging, snapshot = step % log_every == 0 or last, step % snapshot_every == 0 or last
        if logging or snapshot:
            health.report(recorder.trajectories, on_failure)
            if not any(health.alive):
                break
            recorder.record(step, first, particles, health.alive, logging, snapshot)
        if on_step is not None:
            on_step(step)
        if last:
            break
        particles = health.advance(particles, euler_step(particles, first, velocity), step + 1)
    trajectories = recorder.finish(particles)
    return trajectories if batched else trajectories[0]


# ----------------------------------------------------------------------------- config
DTYPES = {"float64": torch.float64, "float32": torch.float32}
CONFIG_KEYS = (
    "target", "dim", "source_distance", "flow", "kernel", "bandwidth", "n_particles", "n_target", "steps",
    "step_size", "lmbda", "noise_level", "noise_until", "velocity", "linear_solver", "hrmmd_alpha", "dtype", "device",
    "log_every", "snapshot_every", "replicas", "threads", "seed", "checkpoint_every", "resume_from",
)  # fmt: skip
#: Keys a config may leave out, with the value it then has (the toy's ``dim`` and ``source_distance``:
#: :data:`~studentteacher.toys.TOY_OPTIONS`; the SrMMD and HrMMD flows' ``velocity``,
#: ``linear_solver`` and ``hrmmd_alpha``: :data:`~studentteacher.flows.srmmd.SOBOLEV_OPTIONS`).
OPTIONAL_KEYS = {"checkpoint_every": 0, "resume_from": None, "threads": "auto", **TOY_OPTIONS, **SOBOLEV_OPTIONS}
#: Config keys in which the replicas of one batched run may differ (every other key is shared).
REPLICA_KEYS = ("seed", "step_size", "lmbda", "noise_level", "noise_until", "replicas", "resume_from")


def _fail(key: str, value, allowed: str):
    raise ValueError(f"config key {key!r}: got {value!r}; allowed: {allowed}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def validate_flow_config(config: dict) -> None:
    """Check every key of a ``particle_flow`` config before any work; ValueError naming key, value, allowed.
    ``flow`` is checked against the registry :data:`~studentteacher.flows.FLOWS` as it is now;
    ``resume_from`` only for its type (the file is :func:`~.resume.checked_checkpoint`'s: the
    experiment checks it before work, once the resumed run has taken the checkpoint's config)."""
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; allowed keys: {list(CONFIG_KEYS)}")
    required = [key for key in CONFIG_KEYS if key not in OPTIONAL_KEYS]
    missing = [key for key in required if key not in config]
    if missing:
        raise ValueError(f"missing config keys {missing}; required keys: {required}")
    for key, options in (("target", TARGETS), ("flow", tuple(FLOWS)), ("kernel", tuple(KERNELS)), ("dtype", tuple(DTYPES))):
        if config[key] not in options:
            _fail(key, config[key], f"one of {list(options)}")
    for key in ("bandwidth", "step_size", "lmbda"):
        if not (_is_real(config[key]) and config[key] > 0):
            _fail(key, config[key], "a finite number > 0")
    if not (_is_real(config["noise_level"]) and config["noise_level"] >= 0):
        _fail("noise_level", config["noise_level"], "a finite number >= 0")
    config = {**OPTIONAL_KEYS, **config}
    for key, low in (("n_particles", 1), ("n_target", 1), ("steps", 0), ("noise_until", 0), ("log_every", 1),
                     ("snapshot_every", 1), ("replicas", 1), ("checkpoint_every", 0), ("dim", 1)):  # fmt: skip
        if not (_is_int(config[key]) and config[key] >= low):
            _fail(key, config[key], f"an integer >= {low}")
    if not (_is_real(config["source_distance"]) and config["source_distance"] >= 0):
        _fail("source_distance", config["source_distance"], "a finite number >= 0")
    for key, options in (("velocity", VELOCITIES), ("linear_solver", SOBOLEV_SOLVERS)):
        if not (isinstance(config[key], str) and config[key] in options):
            _fail(key, config[key], f"one of {list(options)}")
    if not (_is_real(config["hrmmd_alpha"]) and 0 <= config["hrmmd_alpha"] <= 1):
        _fail("hrmmd_alpha", config["hrmmd_alpha"], "a number 0 <= hrmmd_alpha <= 1")
    if config["target"] == "three_rings" and config["n_target"] % 3:
        _fail("n_target", config["n_target"], "a multiple of 3 for target 'three_rings'")
    kernels = FLOWS[config["flow"]].kernels
    if kernels and config["kernel"] not in kernels:
        _fail("kernel", config["kernel"], f"one of {list(kernels)} for flow {config['flow']!r}")
    if not (_is_int(config["seed"]) and 0 <= config["seed"] <= SEED_LIMIT - config["replicas"]):
        _fail("seed", config["seed"], "an integer 0 <= seed < 2**32 (numpy's seed range: Sacred seeds numpy with it; "
              "with replicas, seed + replicas - 1 < 2**32)")
    if not isinstance(config["device"], str):
        _fail("device", config["device"], "'auto', 'cpu', 'cuda' or 'cuda:N'")
    check_device(config["device"])  # the student-teacher experiment's check: a CUDA device must exist
    check_threads(config.get("threads", "auto"))
    if not (config["resume_from"] is None or isinstance(config["resume_from"], str)):
        _fail("resume_from", config["resume_from"], "null or the path of a checkpoint")


def make_flow(
    flow: str,
    target: torch.Tensor,
    kernel: Kernel,
    step_size,
    lmbda,
    noise_level=0.0,
    noise_until=0,
    solver: str = "factor",
    budget_bytes: int | None = None,
    velocity: str = SOBOLEV_OPTIONS["velocity"],
    linear_solver: str = SOBOLEV_OPTIONS["linear_solver"],
    hrmmd_alpha: float = SOBOLEV_OPTIONS["hrmmd_alpha"],
) -> KernelFlow:
    """The flow named ``flow`` (a key of :data:`~studentteacher.flows.FLOWS`) towards ``target: [M, d]``
    (or ``[R, M, d]``, with numbers or ``[R]`` lists as hyperparameters), from a config's values.

    A config holds ``lmbda``, ``noise_level``, ``noise_until``, ``velocity``, ``linear_solver`` and
    ``hrmmd_alpha`` whichever flow it names: each flow gets those of them (and ``solver``) that it
    declares in its ``options``, and ignores the others
    (:func:`~studentteacher.flows.build_flow` instead rejects an option a flow does not take).
    ``budget_bytes`` bounds the temporaries of each block of a kernel reduction (None: the
    device's default, :func:`~studentteacher.kernels.block_budget`).
    """
    values = {"lmbda": lmbda, "noise_level": noise_level, "noise_until": noise_until, "solver": solver,
              "velocity": velocity, "linear_solver": linear_solver, "hrmmd_alpha": hrmmd_alpha}
    declared = flow_class(flow).options
    options = {key: value for key, value in values.items() if key in declared}
    return build_flow(flow, target, kernel, step_size, budget_bytes=budget_bytes, **options)


def noise_stream(seed: int) -> torch.Generator:
    """The stream of the injected noise of the run with ``seed``: the third of
    :func:`~studentteacher.toys.generators` (seed, 3), the toy drawing its target and source from the
    first two. On the CPU, so that a seed gives the same flow on every device."""
    return generators(seed, 3)[2]


@dataclass(frozen=True)
class FlowSetup:
    """What R >= 1 ``particle_flow`` configs run: the toy of each, one flow over their targets
    (batched when R > 1), each one's noise stream and the checkpoints they resume from (None: they
    start afresh); ``config`` is the first (the shared keys), ``configs`` all R."""

    config: dict
    toys: list[Toy]
    flow: KernelFlow
    noise: list[torch.Generator]
    configs: list[dict] = field(default_factory=list)
    resume: list[FlowCheckpoint] | None = None

    def run(self, checkpoint_paths: list[str | None] | None = None, before_checkpoint: Callable[[], None] | None = None,
            **hooks) -> list[FlowTrajectory]:  # fmt: skip
        """:func:`run_flow` with the config's steps and log/snapshot periods from the stacked sources
        ``[R, N, d]`` (``[N, d]`` for one config): one trajectory per config. Config r's checkpoints
        go to ``checkpoint_paths[r]`` (every ``checkpoint_every`` steps and on a stop request), each
        after ``before_checkpoint()``. ``hooks``: ``on_log``, ``on_failure``, ``should_stop``, ``on_step``."""
        batched = len(self.toys) > 1
        source = torch.stack([toy.source for toy in self.toys]) if batched else self.toys[0].source
        every = self.config.get("checkpoint_every", OPTIONAL_KEYS["checkpoint_every"])
        checkpoints = None if checkpoint_paths is None else Checkpoints(list(checkpoint_paths), every, self.configs,
                                                                            before_checkpoint)
        trajectories = run_flow(
            self.flow, source, self.config["steps"], reference_bandwidth=self.toys[0].reference_bandwidth,
            log_every=self.config["log_every"], snapshot_every=self.config["snapshot_every"],
            generator=self.noise if batched else self.noise[0], checkpoints=checkpoints, resume=self.resume, **hooks,
        )  # fmt: skip
        return trajectories if batched else [trajectories]


def _resume_points(configs: list[dict]) -> list[FlowCheckpoint] | None:
    """The checkpoints ``configs`` resume from (None: none does); ConfigError naming ``resume_from``
    unless every one of them resumes, from one step, or none."""
    resume = [checked_checkpoint(config) for config in configs]
    if all(checkpoint is None for checkpoint in resume):
        return None
    steps = sorted({-1 if checkpoint is None else checkpoint.step for checkpoint in resume})
    if len(steps) > 1:
        raise ConfigError(f"config key 'resume_from': the replicas of a batch resume from checkpoints of one step, "
                          f"or none (got steps {', '.join('none' if s < 0 else str(s) for s in steps)})")  # fmt: skip
    return resume


def setup_flow(configs: list[dict]) -> FlowSetup:
    """Validate ``configs`` (R >= 1, compatible: they differ only in :data:`REPLICA_KEYS`) and build
    their toys and flow, all on the device and dtype of the first config (the replicas share both),
    and read the checkpoints they resume from (all of them resume, from one step, or none)."""
    for config in configs:
        validate_flow_config(config)
    resume = _resume_points(configs)
    first = configs[0]
    device, dtype = resolve_device(first["device"]), DTYPES[first["dtype"]]
    toys = [make_toy(c["target"], c["n_particles"], c["n_target"], c["seed"], dtype, device,
                     **{key: c.get(key, default) for key, default in TOY_OPTIONS.items()}) for c in configs]  # fmt: skip
    kernel = get_kernel(first["kernel"], first["bandwidth"])
    hyper = [[c[key] for c in configs] for key in ("step_size", "lmbda", "noise_level", "noise_until")]
    if len(configs) == 1:
        hyper = [values[0] for values in hyper]
    target = torch.stack([toy.target for toy in toys]) if len(configs) > 1 else toys[0].target
    sobolev = {key: first.get(key, default) for key, default in SOBOLEV_OPTIONS.items()}
    flow = make_flow(first["flow"], target, kernel, *hyper, **sobolev)
    return FlowSetup(first, toys, flow, [noise_stream(c["seed"]) for c in configs], list(configs), resume)


def default_step_size(flow: str, lmbda) -> float:
    """The ``step_size`` of a config that names none: the flow's
    :meth:`~studentteacher.flows.base.KernelFlow.default_step_size` (0.1; 0.1 * lambda for ``kale``).
    0.1 for a name or lambda that is not valid (the config's validation names it)."""
    if not isinstance(flow, str) or flow not in FLOWS or not (_is_real(lmbda) and lmbda > 0):
        return 0.1
    return FLOWS[flow].default_step_size(lmbda)
