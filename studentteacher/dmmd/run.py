"""A DMMD run from a ``dmmd`` config: the data, the discriminator (trained, or loaded from a saved
artifact), the sampler, and the metrics of the samples at each noise level.

Random streams (no global seeding): :func:`studentteacher.toys.generators` (seed, 4) gives the
discriminator's initial weights, the training draws (batches, levels, noise, interpolation
weights), the sampler's N(0, I) start and the start of the interacting run that the ``approximate``
sampler replays (``reference_particles`` of them), each from its own stream on the CPU, so that a
seed gives the same run on every device and changing one size changes no other draw.

Sample metrics (:func:`sample_metrics`) against the held-out sample of :mod:`~studentteacher.dmmd.targets`:
for the 2-D targets W1, W2 (exact OT) and MMD^2 (V-statistic, the toy's reference Gaussian kernel)
of :func:`studentteacher.held_out.held_out_metrics`, and once per run their floor (an exact sample
of N points against the same held-out points, :func:`floor_metrics`); for the digits the Frechet
distance and the class histogram's entropy and coverage of :mod:`~studentteacher.dmmd.sample_quality`.
:func:`spectrum_metrics`: the share of the learned features' variance in their top 1-3 directions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .. import held_out
from ..checkpoints import read_discriminator
from ..keys import DTYPES, resolve_device, validated
from ..toys import generators
from .config import SAVED_SETTINGS, validate_dmmd_config
from .discriminator import Architecture, Discriminator
from .feature_kernels import FeatureKernel, make_feature_kernel
from .forward import NoiseSchedule, make_schedule, sampling_levels
from .sample_quality import digits_quality
from .samplers import (REPLAYING, InteractingSampler, ParticleSideTrajectory, SamplingTrajectory, make_sampler,
                       run_sampler)
from .targets import TargetData, load_target
from .training import TrainingResult, TrainSettings, feature_spectrum, train_discriminator

#: The noise levels at which the discriminator's MMD^2 between data and noised data is logged.
EVAL_LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)


def level_metric(level: float) -> str:
    """The metric name of the discriminator's MMD^2 at noise level t, e.g. ``disc_mmd2_t0.50``."""
    return f"disc_mmd2_t{level:.2f}"


@dataclass
class DMMDSetup:
    """What a config runs: ``config`` (validated; for a loaded discriminator with its saved settings),
    the data, the schedule, the feature kernel, the discriminator and the four random streams."""

    config: dict
    data: TargetData
    schedule: NoiseSchedule
    kernel: FeatureKernel
    discriminator: Discriminator
    streams: list[torch.Generator]
    loaded: bool = False


def discriminator_artifact(setup: DMMDSetup) -> dict:
    """What ``discriminator.pt`` holds: the weights, the architecture, the settings it was trained with, the config."""
    return {"state": setup.discriminator.state_dict(), "architecture": setup.discriminator.architecture.as_dict(),
            "settings": {key: setup.config[key] for key in SAVED_SETTINGS}, "config": dict(setup.config)}  # fmt: skip


def load_discriminator(path: str, device, dtype) -> tuple[Discriminator, dict]:
    """(the discriminator, its saved settings) from a ``discriminator.pt`` artifact."""
    saved = read_discriminator(path)
    model = Discriminator(Architecture(**saved["architecture"]), dtype=dtype)
    model.load_state_dict({key: value.to(dtype) for key, value in saved["state"].items()})
    return model.to(device), saved["settings"]


def setup_dmmd(config: dict) -> DMMDSetup:
    """Validate ``config`` and build its run; a ``discriminator_from`` artifact fixes the target,
    schedule and kernel it was trained with (a config that names others is refused by the validation)."""
    config = validated(config, validate_dmmd_config)
    device, dtype = resolve_device(config["device"]), DTYPES[config["dtype"]]
    streams = generators(config["seed"], 4)
    model, loaded = None, config["discriminator_from"] is not None
    if loaded:  # the validation checked that the config keeps its settings
        model, _ = load_discriminator(config["discriminator_from"], device, dtype)
    data = load_target(config["target"], config["n_train"], config["n_eval"], config["seed"], dtype, device)
    if model is None:
        sizes = {key: config[key] for key in ("hidden", "layers", "features", "embedding")}
        model = Discriminator(Architecture(dim=data.train.shape[1], **sizes), streams[0], dtype).to(device)
    kernel = make_feature_kernel(config["kernel"], config["rbf_bandwidth"])
    return DMMDSetup(config, data, make_schedule(config["schedule"]), kernel, model, streams, loaded)


def train(setup: DMMDSetup, on_log: Callable[[int, float, list[float]], None] | None = None) -> TrainingResult | None:
    """Train the discriminator with the config's settings (None for a loaded one: nothing to train)."""
    if setup.loaded:
        return None
    keys = ("batch_size", "lr", "l2_weight", "gp_weight", "gp_points", "levels_per_step", "log_every")
    settings = TrainSettings(steps=setup.config["train_steps"], eval_levels=EVAL_LEVELS,
                             **{key: setup.config[key] for key in keys})  # fmt: skip
    return train_discriminator(setup.discriminator, setup.kernel, setup.data.train, setup.schedule, settings,
                               setup.streams[1], on_log)  # fmt: skip


def sample_metrics(data: TargetData, particles: torch.Tensor) -> dict[str, float]:
    """The samples' metrics against the held-out data (module docstring), as plain floats."""
    if data.reference_bandwidth is None:
        quality = digits_quality(particles)
        return {"sample_fd": quality.frechet, "sample_class_entropy": quality.entropy,
                "sample_class_coverage": float(quality.coverage)}  # fmt: skip
    return held_out.held_out_metrics(data.name, particles, data.held_out)


def floor_metrics(setup: DMMDSetup) -> dict[str, float]:
    """``sample_{w1,w2,mmd2}_floor`` of a 2-D target (an exact sample of ``n_particles`` points against
    the held-out points; :mod:`studentteacher.held_out`), {} for the digits."""
    if setup.data.name not in held_out.TARGETS:
        return {}
    return held_out.floor_metrics(setup.data.name, setup.config["n_particles"], setup.data.held_out,
                                  setup.config["seed"])  # fmt: skip


def spectrum_metrics(setup: DMMDSetup) -> dict[str, float]:
    """``feature_variance_top{1,2,3}``: the share of the variance of phi(x, t) over the training data in
    its top 1, 2, 3 singular directions, the mean over :data:`EVAL_LEVELS`
    (:func:`~studentteacher.dmmd.training.feature_spectrum`)."""
    shares = feature_spectrum(setup.discriminator, setup.data.train, EVAL_LEVELS, top=3)
    return {f"feature_variance_top{k}": share for k, share in enumerate(shares, start=1)}


def record_mean_features(setup: DMMDSetup, levels: list[float]) -> tuple[ParticleSideTrajectory, float]:
    """(the recording the ``approximate`` sampler replays, its stepping seconds): an interacting run of
    ``reference_particles`` particles from N(0, I) (their own stream) over ``levels``, its particles'
    side (the mean feature) at every Euler step."""
    config, data = setup.config, setup.data
    start = torch.randn(config["reference_particles"], data.train.shape[1], generator=setup.streams[3],
                        dtype=data.train.dtype).to(data.train.device)  # fmt: skip
    recorder = InteractingSampler(setup.discriminator, setup.kernel, data.train, record=True)
    reference = run_sampler(recorder, start, levels, config["steps_per_level"], config["step_size"])
    return recorder.particle_sides(levels, config["steps_per_level"]), reference.seconds


def sample(setup: DMMDSetup, on_level: Callable[[int, float, torch.Tensor], None] | None = None) -> SamplingTrajectory:
    """Run the config's sampler from Z ~ N(0, I) (``n_particles`` of them) over its T noise levels from
    t = 1 to ``t_min``; a replaying sampler (``approximate``) first records its interacting run."""
    config, data = setup.config, setup.data
    levels = sampling_levels(config["levels"], config["t_min"])
    start = torch.randn(config["n_particles"], data.train.shape[1], generator=setup.streams[2],
                        dtype=data.train.dtype).to(data.train.device)  # fmt: skip
    setup.discriminator.requires_grad_(False)
    try:
        recording, recording_seconds = None, 0.0
        if config["sampler"] in REPLAYING:
            recording, recording_seconds = record_mean_features(setup, levels)
        sampler = make_sampler(config["sampler"], setup.discriminator, setup.kernel, data.train, recording)
        trajectory = run_sampler(sampler, start, levels, config["steps_per_level"], config["step_size"], on_level)
        trajectory.recording_seconds = recording_seconds
        return trajectory
    finally:
        setup.discriminator.requires_grad_(True)
