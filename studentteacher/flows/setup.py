"""A flow run built from ``particle_flow`` configs: :func:`setup_flow` builds what a config (or R
compatible ones) runs: the toys, one flow over them from the registry (:func:`make_flow`), each
run's noise stream (:func:`noise_stream`) and the checkpoints it resumes from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..kernels import Kernel, get_kernel
from ..keys import DTYPES, ConfigError, defaults, resolve_device, validated
from ..toys import TOY_OPTIONS, Toy, generators, make_toy
from .base import KernelFlow
from .config import FLOW_KEYS, validate_flow_config
from .metrics import FlowTrajectory
from .registry import build_flow, flow_class
from .resume import Checkpoints, FlowCheckpoint, checked_checkpoint
from .runner import run_flow


def make_flow(flow: str, target: torch.Tensor, kernel: Kernel, step_size, lmbda, noise_level=0.0, noise_until=0,
              solver: str = "factor", budget_bytes: int | None = None, **flow_options) -> KernelFlow:
    """The flow named ``flow`` (a key of :data:`~studentteacher.flows.FLOWS`) towards ``target: [M, d]``
    (or ``[R, M, d]``, with numbers or ``[R]`` lists as hyperparameters), from a config's values.

    A config holds ``lmbda``, ``noise_level``, ``noise_until`` and the keys of :data:`~.config.FLOW_KEYS`
    (``flow_options``, their defaults where not given; TypeError for another keyword) whichever flow
    it names: each flow gets those of them (and ``solver``) that it declares in its ``options``, and
    ignores the others
    (:func:`~studentteacher.flows.build_flow` instead rejects an option a flow does not take).
    ``budget_bytes`` bounds the temporaries of each block of a kernel reduction (None: the
    device's default, :func:`~studentteacher.kernels.block_budget`).
    """
    unknown = sorted(set(flow_options) - set(FLOW_KEYS))
    if unknown:
        raise TypeError(f"make_flow() got unexpected keyword arguments {unknown}; flow options: {list(FLOW_KEYS)}")
    values = {"lmbda": lmbda, "noise_level": noise_level, "noise_until": noise_until, "solver": solver,
              **defaults(FLOW_KEYS), **flow_options}
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
        every = self.config["checkpoint_every"]
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
    """Validate ``configs`` (R >= 1, compatible: they differ only in :data:`REPLICA_KEYS`; those an
    experiment validated already are taken as they are) and build their toys and flow, all on the
    device and dtype of the first config (the replicas share both), and read the checkpoints they
    resume from (all of them resume, from one step, or none)."""
    configs = [validated(config, validate_flow_config) for config in configs]
    resume = _resume_points(configs)
    first = configs[0]
    device, dtype = resolve_device(first["device"]), DTYPES[first["dtype"]]
    toys = [make_toy(c["target"], c["n_particles"], c["n_target"], c["seed"], dtype, device,
                     **{key: c[key] for key in TOY_OPTIONS}) for c in configs]  # fmt: skip
    kernel = get_kernel(first["kernel"], first["bandwidth"])
    hyper = [[c[key] for c in configs] for key in ("step_size", "lmbda", "noise_level", "noise_until")]
    if len(configs) == 1:
        hyper = [values[0] for values in hyper]
    target = torch.stack([toy.target for toy in toys]) if len(configs) > 1 else toys[0].target
    options = {key: first[key] for key in FLOW_KEYS}
    flow = make_flow(first["flow"], target, kernel, *hyper, **options)
    return FlowSetup(first, toys, flow, [noise_stream(c["seed"]) for c in configs], list(configs), resume)
