"""DMMD: the noise-adaptive MMD gradient flow (Galashov, De Bortoli, Gretton, ICLR 2025; docs/model.md).

A discriminator phi(x, t; theta) (:mod:`~.discriminator`) defines the kernel
k_{theta,t}(x, y) = kappa(phi(x; t), phi(y; t)) (:mod:`~.feature_kernels`: linear or rbf); it is
trained, without a generator, to separate the data from the data noised to level t by the
variance-preserving forward process (:mod:`~.forward`), with an l2 and a gradient penalty on the
witness (:mod:`~.training`). Samples come from the MMD gradient flow of particles from N(0, I)
under k_{theta,t} with t decreasing level by level from 1 to t_min (:mod:`~.samplers`: interacting,
approximate (replays an interacting run's mean features), pairwise, self_potential). :mod:`~.targets` holds the data, :mod:`~.config` the ``dmmd`` experiment's keys and
:mod:`~.run` a whole run from a config. Registries: :data:`SCHEDULES`, :data:`FEATURE_KERNELS`,
:data:`SAMPLERS`.
"""
from __future__ import annotations

from .config import REPLICA_KEYS, SPEC, config_of_earlier_run, validate_dmmd_config
from .discriminator import Architecture, Discriminator, time_embedding
from .feature_kernels import FEATURE_KERNELS, FeatureKernel, LinearKernel, RBFKernel, make_feature_kernel
from .forward import DEFAULT_SCHEDULE, SCHEDULES, NoiseSchedule, make_schedule, sampling_levels
from .samplers import SAMPLERS, ParticleSideTrajectory, Sampler, SamplingTrajectory, make_sampler, run_sampler
from .targets import TARGETS, TargetData, load_target
from .training import (GP_POINTS, TrainingResult, TrainSettings, discriminator_loss, evaluate_levels, feature_spectrum,
                       train_discriminator)

__all__ = [
    "REPLICA_KEYS", "SPEC", "config_of_earlier_run", "validate_dmmd_config",
    "Architecture", "Discriminator", "time_embedding",
    "FEATURE_KERNELS", "FeatureKernel", "LinearKernel", "RBFKernel", "make_feature_kernel",
    "DEFAULT_SCHEDULE", "SCHEDULES", "NoiseSchedule", "make_schedule", "sampling_levels",
    "SAMPLERS", "ParticleSideTrajectory", "Sampler", "SamplingTrajectory", "make_sampler", "run_sampler",
    "TARGETS", "TargetData", "load_target",
    "GP_POINTS", "TrainingResult", "TrainSettings", "discriminator_loss", "evaluate_levels", "feature_spectrum",
    "train_discriminator",
]  # fmt: skip
