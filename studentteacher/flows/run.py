"""Running a flow: the Euler loop, logging, health, and building a flow from a ``particle_flow`` config.

:func:`run_flow` advances a flow (one, or R batched replicas) for ``steps`` Euler steps; at every
``log_every``-th step (and the last) it logs the flow's value, the reference MMD^2, W1, W2
(:mod:`~studentteacher.flows.metrics`), lambda and the step size, and keeps snapshots of the
particles every ``snapshot_every``-th step (and the last). The step runs on the device without host
synchronisation: non-finite values or positions are flagged there and read at log and snapshot
steps, where a replica that went bad stops alone (:class:`FlowDivergedError`).

:func:`setup_flow` builds what a config (or R compatible ones) runs: the toys, one flow over them
from the registry, and each run's noise stream (:func:`noise_stream`).
"""
from __future__ import annotations

import math
import numbers
import sys
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm import tqdm

from ..config import resolve_device
from ..kernels import KERNELS, Kernel, get_kernel
from ..toys import TARGETS, Toy, generators, make_toy
from . import FLOWS, build_flow, flow_class
from .base import FirstVariation, KernelFlow, euler_step, flow_velocity
from .metrics import METRICS, sample_distances


@dataclass(frozen=True)
class FlowRecord:
    """The metrics of one logged step of one replica (0 for a plain flow), as plain floats (names as
    in :data:`~studentteacher.flows.metrics.METRICS`)."""

    step: int
    divergence: float
    mmd2: float
    w1: float
    w2: float
    lmbda: float
    step_size: float
    bandwidth: float = 0.0
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


# ----------------------------------------------------------------------------- the runner
class _Health:
    """Which of the R replicas still run. The first non-finite step of each, and whether the value
    or the particles went bad, stay on the device (``[R]``) until :meth:`report` reads them."""

    def __init__(self, replicas: int, device: torch.device, batched: bool):
        self.replicas, self.batched = replicas, batched
        self.alive = [True] * replicas
        self.first_bad = torch.full((replicas,), -1, dtype=torch.long, device=device)  # (R,) first non-finite step
        self.bad_is_particles = torch.zeros(replicas, dtype=torch.bool, device=device)  # (R,)

    def mark(self, finite: torch.Tensor, step: int, is_particles: bool) -> None:
        """Flag the replicas whose ``finite`` (``[...]``) is false at ``step``, unless flagged before."""
        new = (self.first_bad < 0) & ~finite.reshape(self.replicas)
        self.first_bad = torch.where(new, step, self.first_bad)
        self.bad_is_particles = torch.where(new, is_particles, self.bad_is_particles)

    def advance(self, particles: torch.Tensor, moved: torch.Tensor, step: int) -> torch.Tensor:
        """``moved: [..., N, d]`` where finite; a flagged replica keeps its last finite ``particles``."""
        self.mark(torch.isfinite(moved).reshape(self.replicas, -1).all(1), step, True)
        stopped = (self.first_bad >= 0).reshape(particles.shape[:-2])[..., None, None]  # (..., 1, 1)
        return torch.where(stopped, particles, moved)

    def report(self, trajectories: list[FlowTrajectory], on_failure) -> None:
        """Stop each newly flagged replica: its :class:`FlowDivergedError` goes to ``on_failure``, or
        is raised when there is none."""
        for replica, (step, is_particles) in enumerate(zip(self.first_bad.tolist(), self.bad_is_particles.tolist())):
            if step < 0 or not self.alive[replica]:
                continue
            self.alive[replica] = False
            quantity = "particles" if is_particles else "divergence"
            error = FlowDivergedError(step, quantity, trajectories[replica], replica if self.batched else None)
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
                                    replica=replica)  # fmt: skip
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
    progress: bool = False,
):
    """Run ``steps`` Euler steps of ``flow`` from ``source: [N, d]`` (:mod:`~studentteacher.flows.base`);
    returns a :class:`FlowTrajectory`. For a batched flow (target ``[R, M, d]``), ``source: [R, N, d]``
    runs its R replicas together and returns R trajectories; ``generator`` is then a list of R streams.

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
    health = _Health(replicas, source.device, batched=source.dim() == 3)
    recorder = _Recorder(flow, replicas, reference_bandwidth, on_log)
    particles = source.detach().clone()  # (..., N, d)
    for step in tqdm(range(steps + 1), file=sys.stderr, disable=not progress, mininterval=1.0):
        first, velocity = flow_velocity(flow, particles, step, generator)  # (..., N, d)
        health.mark(torch.isfinite(first.value), step, False)
        last = step == steps
        logging, snapshot = step % log_every == 0 or last, step % snapshot_every == 0 or last
        if logging or snapshot:
            health.report(recorder.trajectories, on_failure)
            if not any(health.alive):
                break
            recorder.record(step, first, particles, health.alive, logging, snapshot)
            if logging and not last and should_stop is not None and should_stop():
                raise FlowInterrupted(step, recorder.trajectories)
        if last:
            break
        particles = health.advance(particles, euler_step(particles, first, velocity), step + 1)
    trajectories = recorder.finish(particles)
    return trajectories if source.dim() == 3 else trajectories[0]


# ----------------------------------------------------------------------------- config
DTYPES = {"float64": torch.float64, "float32": torch.float32}
CONFIG_KEYS = (
    "target", "flow", "kernel", "bandwidth", "n_particles", "n_target", "steps", "step_size", "lmbda",
    "noise_level", "noise_until", "dtype", "device", "log_every", "snapshot_every", "replicas", "seed",
)  # fmt: skip
#: Config keys that may be absent (their defaults then apply): those of the toy ``gaussian_nd`` alone,
#: so that every config written before they existed stays valid and unchanged.
OPTIONAL_KEYS = {"dim": 2, "source_distance": 4.0}
#: Config keys in which the replicas of one batched run may differ (every other key is shared).
REPLICA_KEYS = ("seed", "step_size", "lmbda", "noise_level", "noise_until", "replicas")


def _fail(key: str, value, allowed: str):
    raise ValueError(f"config key {key!r}: got {value!r}, allowed: {allowed}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_optional_keys(config: dict) -> None:
    """``dim`` (an integer >= 1) and ``source_distance`` (a finite number >= 0), when present; the
    flow ``mmd_adaptive_bandwidth`` needs the kernel ``gaussian_scaled`` (its ``bandwidth`` is the floor)."""
    dim, distance = (config.get(key, default) for key, default in OPTIONAL_KEYS.items())
    if not (_is_int(dim) and dim >= 1):
        _fail("dim", dim, "an integer >= 1")
    if not (_is_real(distance) and distance >= 0):
        _fail("source_distance", distance, "a finite number >= 0")
    if config["flow"] == "mmd_adaptive_bandwidth" and config["kernel"] != "gaussian_scaled":
        _fail("kernel", config["kernel"], "'gaussian_scaled' for flow 'mmd_adaptive_bandwidth' (bandwidth = its floor)")


def validate_flow_config(config: dict) -> None:
    """Check every key of a ``particle_flow`` config before any work; ValueError naming key, value, allowed.
    ``flow`` is checked against the registry :data:`~studentteacher.flows.FLOWS` as it is now."""
    unknown = sorted(set(config) - set(CONFIG_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; allowed keys: {list(CONFIG_KEYS)}")
    missing = [key for key in CONFIG_KEYS if key not in config]
    if missing:
        raise ValueError(f"missing config keys {missing}; required keys: {list(CONFIG_KEYS)}")
    for key, options in (("target", TARGETS), ("flow", tuple(FLOWS)), ("kernel", tuple(KERNELS)), ("dtype", tuple(DTYPES))):
        if config[key] not in options:
            _fail(key, config[key], f"one of {list(options)}")
    for key in ("bandwidth", "step_size", "lmbda"):
        if not (_is_real(config[key]) and config[key] > 0):
            _fail(key, config[key], "a finite number > 0")
    if not (_is_real(config["noise_level"]) and config["noise_level"] >= 0):
        _fail("noise_level", config["noise_level"], "a finite number >= 0")
    for key, low in (("n_particles", 1), ("n_target", 1), ("steps", 0), ("noise_until", 0), ("log_every", 1),
                     ("snapshot_every", 1), ("replicas", 1)):  # fmt: skip
        if not (_is_int(config[key]) and config[key] >= low):
            _fail(key, config[key], f"an integer >= {low}")
    if config["target"] == "three_rings" and config["n_target"] % 3:
        _fail("n_target", config["n_target"], "a multiple of 3 for target 'three_rings'")
    _check_optional_keys(config)
    if not _is_int(config["seed"]):
        _fail("seed", config["seed"], "an integer")
    device = config["device"]
    if not (isinstance(device, str) and (device in ("auto", "cpu") or device.split(":")[0] == "cuda")):
        _fail("device", device, "'auto', 'cpu', 'cuda' or 'cuda:N'")


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
) -> KernelFlow:
    """The flow named ``flow`` (a key of :data:`~studentteacher.flows.FLOWS`) towards ``target: [M, d]``
    (or ``[R, M, d]``, with numbers or ``[R]`` lists as hyperparameters), from a config's values.

    A config holds ``lmbda``, ``noise_level`` and ``noise_until`` whichever flow it names: each flow
    gets those of them (and ``solver``) that it declares in its ``options``, and ignores the others
    (:func:`~studentteacher.flows.build_flow` instead rejects an option a flow does not take).
    ``budget_bytes`` bounds the temporaries of each block of a kernel reduction (None: the
    device's default, :func:`~studentteacher.kernels.block_budget`).
    """
    values = {"lmbda": lmbda, "noise_level": noise_level, "noise_until": noise_until, "solver": solver}
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
    (batched when R > 1) and each one's noise stream; ``config`` is the first (the shared keys)."""

    config: dict
    toys: list[Toy]
    flow: KernelFlow
    noise: list[torch.Generator]

    def run(self, **hooks) -> list[FlowTrajectory]:
        """:func:`run_flow` with the config's steps and log/snapshot periods from the stacked sources
        ``[R, N, d]`` (``[N, d]`` for one config): one trajectory per config. ``hooks``: ``on_log``,
        ``on_failure``, ``should_stop``, ``progress``."""
        batched = len(self.toys) > 1
        source = torch.stack([toy.source for toy in self.toys]) if batched else self.toys[0].source
        trajectories = run_flow(
            self.flow, source, self.config["steps"], reference_bandwidth=self.toys[0].reference_bandwidth,
            log_every=self.config["log_every"], snapshot_every=self.config["snapshot_every"],
            generator=self.noise if batched else self.noise[0], **hooks,
        )  # fmt: skip
        return trajectories if batched else [trajectories]


def setup_flow(configs: list[dict]) -> FlowSetup:
    """Validate ``configs`` (R >= 1, compatible: they differ only in :data:`REPLICA_KEYS`) and build
    their toys and flow, all on the device and dtype of the first config (the replicas share both)."""
    for config in configs:
        validate_flow_config(config)
    first = configs[0]
    device, dtype = resolve_device(first["device"]), DTYPES[first["dtype"]]
    toys = [make_toy(c["target"], c["n_particles"], c["n_target"], c["seed"], dtype, device,
                     **{key: c.get(key, default) for key, default in OPTIONAL_KEYS.items()}) for c in configs]  # fmt: skip
    kernel = get_kernel(first["kernel"], first["bandwidth"])
    hyper = [[c[key] for c in configs] for key in ("step_size", "lmbda", "noise_level", "noise_until")]
    if len(configs) == 1:
        hyper = [values[0] for values in hyper]
    target = torch.stack([toy.target for toy in toys]) if len(configs) > 1 else toys[0].target
    flow = make_flow(first["flow"], target, kernel, *hyper)
    return FlowSetup(first, toys, flow, [noise_stream(c["seed"]) for c in configs])
