"""The ``dmmd`` experiment's configuration: keys, defaults and one validation before any work.

:func:`validate_dmmd_config` checks every key against :data:`SPEC` (types, ranges, choices from
the registries of targets, feature kernels, schedules and samplers) and the cross-key rules, and
raises :class:`~studentteacher.keys.ConfigError` naming the key, the value and what is allowed.
"""
from __future__ import annotations

import os

from ..checkpoints import read_discriminator
from ..keys import (DEVICE, DTYPE, SEED, THREADS, ConfigError, FrozenConfig, Key, check_device, check_keys,
                    check_replica_seeds)  # fmt: skip
from .feature_kernels import FEATURE_KERNELS
from .forward import DEFAULT_SCHEDULE, SCHEDULES
from .samplers import SAMPLERS
from .targets import TARGETS
from .training import GP_POINTS

SPEC: dict[str, Key] = {
    "target": Key("three_rings", str, choices=TARGETS, help="the data to sample"),
    "n_train": Key(3000, int, minimum=2, help="training points of a 2-D target (digits: its fixed split)"),
    "n_eval": Key(900, int, minimum=2, help="held-out points of a 2-D target (three_rings: a multiple of 3)"),
    "hidden": Key(256, int, minimum=1, help="hidden units H of the discriminator's MLP"),
    "layers": Key(2, int, minimum=1, help="hidden layers of the MLP"),
    "features": Key(64, int, minimum=1, help="features F of phi(x, t)"),
    "embedding": Key(32, int, minimum=2, help="size E of the sinusoidal time embedding (even)"),
    "train_steps": Key(2000, int, minimum=0, help="Adam steps of the discriminator (0: untrained)"),
    "batch_size": Key(256, int, minimum=2, help="clean points per step, split over levels_per_step levels"),
    "levels_per_step": Key(4, int, minimum=1, help="noise levels t ~ U[0, 1] per step (one group of the batch each)"),
    "lr": Key(3e-3, float, minimum=0.0, exclusive_minimum=True, help="Adam's learning rate"),
    "l2_weight": Key(0.1, float, minimum=0.0, help="weight of the l2 ('variance') penalty on the witness"),
    "gp_weight": Key(1.0, float, minimum=0.0, help="weight of the gradient penalty (|grad f| - 1)^2"),
    "gp_points": Key("noised", str, choices=tuple(GP_POINTS),
                     help="where the gradient penalty is taken: noised (the paper's) | interpolates (WGAN-GP's)"),
    "kernel": Key("linear", str, choices=tuple(FEATURE_KERNELS), help="kernel on the features"),
    "rbf_bandwidth": Key(1.0, float, minimum=0.0, exclusive_minimum=True, help="bandwidth of the rbf feature kernel"),
    "schedule": Key(DEFAULT_SCHEDULE, str, choices=tuple(SCHEDULES), help="noise schedule alpha_t"),
    "levels": Key(10, int, minimum=1, help="noise levels T of the sampler, evenly spaced from t = 1 to t_min"),
    "t_min": Key(0.01, float, minimum=0.0, exclusive_minimum=True, maximum=1.0,
                 help="the sampler's last (least noisy) level, 0 < t_min <= 1"),
    "steps_per_level": Key(40, int, minimum=0, help="Euler steps N_s per noise level"),
    "step_size": Key(0.02, float, minimum=0.0, exclusive_minimum=True, help="Euler step eta"),
    "sampler": Key("interacting", str, choices=tuple(SAMPLERS),
                   help="interacting | approximate (replays an interacting run's mean features) | pairwise | "
                        "self_potential"),
    "n_particles": Key(1000, int, minimum=1, help="particles N drawn from N(0, I)"),
    "reference_particles": Key(1000, int, minimum=1,
                               help="approximate: particles of the interacting run whose mean features it replays"),
    "discriminator_from": Key(None, str, nullable=True, help="a saved discriminator.pt: sample without training"),
    "device": DEVICE,
    "dtype": DTYPE,
    "log_every": Key(100, int, minimum=1, help="training steps between logs of the loss and MMD^2 per level"),
    "replicas": Key(1, int, minimum=1, help="runs with the seeds seed, seed+1, ..., one after the other"),
    "threads": THREADS,
    "seed": SEED,
}

#: What a saved discriminator fixes (its artifact's ``settings``): a run that loads it must keep these.
SAVED_SETTINGS = ("target", "schedule", "kernel", "rbf_bandwidth")
#: The keys added after the first runs, with the values that say what a run from before them did
#: (its config.json lacks them): the penalty at interpolates and levels down to 1 / T.
ADDED_KEYS = {"gp_points": lambda config: "interpolates", "t_min": lambda config: 1.0 / config["levels"],
              "reference_particles": lambda config: SPEC["reference_particles"].default}  # fmt: skip
#: Sampler names of a run from before :data:`ADDED_KEYS`: then ``approximate`` was today's ``self_potential``.
RENAMED_SAMPLERS = {"approximate": "self_potential"}
#: Keys in which the runs of one batch (``replicas``, ``sweep run --batch``) may differ: they run one after the other.
REPLICA_KEYS = ("seed", "replicas")


def validate_dmmd_config(config: dict) -> FrozenConfig:
    """The complete config, frozen, or ConfigError naming the key (module docstring)."""
    complete = check_keys(config, SPEC)
    check_device(complete["device"])
    check_replica_seeds(complete)
    if complete["embedding"] % 2:
        raise ConfigError(f"config key 'embedding': got {complete['embedding']!r}; allowed: an even integer >= 2")
    if complete["batch_size"] % complete["levels_per_step"] or complete["batch_size"] < 2 * complete["levels_per_step"]:
        raise ConfigError(f"config key 'batch_size': got {complete['batch_size']!r}; allowed: a multiple of "
                          f"levels_per_step = {complete['levels_per_step']} with >= 2 points per level")  # fmt: skip
    if complete["target"] == "three_rings":
        for key in ("n_train", "n_eval"):
            if complete[key] % 3:
                raise ConfigError(f"config key {key!r}: got {complete[key]!r}; allowed: a multiple of 3 for target "
                                  "'three_rings'")  # fmt: skip
    _check_saved_discriminator(complete)
    return FrozenConfig(complete)


def config_of_earlier_run(stored: dict) -> dict:
    """What a stored config (a run's config.json) means today: one from before :data:`ADDED_KEYS` (it has
    none of them) gets their values then and today's name of its sampler; a later one is returned as is."""
    if any(key in stored for key in ADDED_KEYS):
        return dict(stored)
    sampler = stored.get("sampler", SPEC["sampler"].default)
    return {**stored, **{key: value(stored) for key, value in ADDED_KEYS.items()},
            "sampler": RENAMED_SAMPLERS.get(sampler, sampler)}  # fmt: skip


def saved_settings(path: str) -> dict:
    """The settings a ``discriminator.pt`` artifact was trained with (:data:`SAVED_SETTINGS`)."""
    return read_discriminator(path)["settings"]


def _check_saved_discriminator(config: dict) -> None:
    """``discriminator_from``: null, or an existing artifact whose target, schedule and kernel the config keeps."""
    source = config["discriminator_from"]
    if source is None:
        return
    if not os.path.isfile(source):
        raise ConfigError(f"config key 'discriminator_from': got {source!r}; allowed: null or the path of an existing "
                          "discriminator.pt (a dmmd run's artifact)")  # fmt: skip
    try:
        settings = saved_settings(source)
    except Exception as error:
        raise ConfigError(f"config key 'discriminator_from': {source!r} is not a dmmd discriminator artifact ({error})")
    for key in SAVED_SETTINGS:
        if key in settings and config[key] != settings[key]:
            raise ConfigError(f"config key {key!r}: got {config[key]!r}; allowed: {settings[key]!r}, what the "
                              f"discriminator in {source} was trained with")  # fmt: skip
