"""A DMMD run from a ``dmmd`` config: the data, the discriminator (trained, or loaded from a saved
artifact), the sampler, and the metrics of the samples at each noise level.

Random streams (no global seeding): :func:`studentteacher.toys.generators` (seed, 3) gives the
discriminator's initial weights, the training draws (batches, levels, noise, interpolation
weights) and the sampler's N(0, I) start, each from its own stream on the CPU, so that a seed
gives the same run on every device and changing one size changes no other draw.

Sample metrics (:func:`sample_metrics`) against the held-out sample of :mod:`~studentteacher.dmmd.targets`:
for the 2-D targets W1, W2 (exact OT) and MMD^2 (V-statistic, the toy's reference Gaussian kernel),
as :func:`studentteacher.flows.sample_distances` logs them for the particle flows; for the digits
the Frechet distance and the class histogram's entropy and coverage of :mod:`studentteacher.sample_quality`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..config import resolve_device
from ..flows.metrics import sample_distances
from ..sample_quality import digits_quality
from ..toys import generators
from .config import SAVED_SETTINGS, validate_dmmd_config
from .discriminator import Architecture, Discriminator
from .feature_kernels import FeatureKernel, make_feature_kernel
from .forward import NoiseSchedule, make_schedule, sampling_levels
from .samplers import SamplingTrajectory, make_sampler, run_sampler
from .targets import TargetData, load_target
from .training import TrainingResult, TrainSettings, train_discriminator

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: The noise levels at which the discriminator's MMD^2 between data and noised data is logged.
EVAL_LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)


def level_metric(level: float) -> str:
    """The metric name of the discriminator's MMD^2 at noise level t, e.g. ``disc_mmd2_t0.50``."""
    return f"disc_mmd2_t{level:.2f}"


@dataclass
class DMMDSetup:
    """What a config runs: ``config`` (validated; for a loaded discriminator with its saved settings),
    the data, the schedule, the feature kernel, the discriminator and the three random streams."""

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
    saved = torch.load(path, map_location="cpu", weights_only=False)
    model = Discriminator(Architecture(**saved["architecture"]), dtype=dtype)
    model.load_state_dict({key: value.to(dtype) for key, value in saved["state"].items()})
    return model.to(device), saved["settings"]


def setup_dmmd(config: dict) -> DMMDSetup:
    """Validate ``config`` and build its run; a ``discriminator_from`` artifact fixes the target,
    schedule and kernel it was trained with (a config that names others is refused by the validation)."""
    config = validate_dmmd_config(config)
    device, dtype = resolve_device(config["device"]), DTYPES[config["dtype"]]
    streams = generators(config["seed"], 3)
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
    keys = ("batch_size", "lr", "l2_weight", "gp_weight", "levels_per_step", "log_every")
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
    distances = sample_distances(particles, data.held_out, data.reference_bandwidth)
    return {f"sample_{name}": value for name, value in distances.items()}


def sample(setup: DMMDSetup, on_level: Callable[[int, float, torch.Tensor], None] | None = None) -> SamplingTrajectory:
    """Run the config's sampler from Z ~ N(0, I) (``n_particles`` of them) over its T noise levels."""
    config, data = setup.config, setup.data
    start = torch.randn(config["n_particles"], data.train.shape[1], generator=setup.streams[2],
                        dtype=data.train.dtype).to(data.train.device)  # fmt: skip
    sampler = make_sampler(config["sampler"], setup.discriminator, setup.kernel, data.train)
    setup.discriminator.requires_grad_(False)
    try:
        return run_sampler(sampler, start, sampling_levels(config["levels"]), config["steps_per_level"],
                           config["step_size"], on_level)  # fmt: skip
    finally:
        setup.discriminator.requires_grad_(True)
