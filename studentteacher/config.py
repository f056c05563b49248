"""The student-teacher configuration: its key spec (the keys: docs/contract.md) and one validation before any work.

:func:`validate` checks every key of a config against :data:`SPEC` (the spec system:
:mod:`studentteacher.keys`) and the cross-key rules, and returns the complete config frozen
(:class:`~studentteacher.keys.FrozenConfig`) or raises :class:`ConfigError` naming the key, the
value and what is allowed. The experiment calls it once per run, before anything is built; the
training loop takes the frozen config as checked.
"""
from __future__ import annotations

from .data import INPUT_DISTS
from .keys import (DEVICE, DTYPE, SEED, THREADS, ConfigError, FrozenConfig, Key, check_device, check_keys,
                   check_replica_seeds, defaults, fail, merged)  # fmt: skip
from .networks import READOUTS
from .updates import RULES

__all__ = ["SPEC", "DEFAULTS", "COMPILE_MODES", "ConfigError", "validate", "has_tiny_tensors"]

COMPILE_MODES = ("off", "default", "reduce-overhead")

SPEC: dict[str, Key] = merged({
    "d_in": Key(50, int, minimum=1, help="input dimension d"),
    "hidden": Key(3, int, minimum=1, help="hidden units H per particle"),
    "d_out": Key(1, int, minimum=1, help="outputs per particle"),
    "n_particles": Key(1000, int, minimum=1, help="student particles N"),
    "n_teacher": Key(1, int, minimum=1, help="teacher particles M (averaged)"),
    "readout": Key("particle", str, choices=READOUTS, help="particle (mean-field) or dense (reference code)"),
    "bias": Key(False, bool, help="biases on both layers"),
    "input_dist": Key("sphere", str, choices=INPUT_DISTS, help="inputs uniform on the sphere or Gaussian"),
    "n_train": Key(1000, int, minimum=1, help="training inputs"),
    "n_valid": Key(1000, int, minimum=1, help="validation inputs"),
    "batch_size": Key(100, int, minimum=1, help="batch size B (<= n_train)"),
    "epochs": Key(1000, int, minimum=1, help="passes over the training set"),
    "lr": Key(0.1, float, minimum=0.0, exclusive_minimum=True, help="step size gamma"),
    "method": Key("sgd", str, choices=RULES, help="update rule (a name registered in studentteacher.updates.RULES)"),
    "noise_level": Key(1.0, float, minimum=0.0, help="beta_0 of the noise schedule"),
    "noise_decay": Key(0.5, float, minimum=0.0, exclusive_minimum=True, maximum=1.0, help="factor of each decay"),
    "noise_decay_every": Key(1000, int, minimum=1, help="epochs between noise decays"),
    "lmbda": Key(0.1, float, minimum=0.0, exclusive_minimum=True, help="DrMMD/SrMMD/HrMMD lambda (lambda_0 if adapts)"),
    "adaptive_lmbda": Key(False, bool, help="lambda_{n+1} = lambda_0 sqrt(D_{n+1}/D_0)"),
}, *(rule.options for rule in RULES.values()), {
    "student_mean": Key(0.001, float, help="mean of the student's initial weights"),
    "student_std": Key(1.0, float, minimum=0.0, help="std of the student's initial weights"),
    "teacher_mean": Key(0.0, float, help="mean of the teacher's weights"),
    "teacher_std": Key(1.0, float, minimum=0.0, help="std of the teacher's weights"),
    "device": DEVICE,
    "dtype": DTYPE,
    "allow_tf32": Key(False, bool, help="TF32 matrix products on CUDA for float32 (faster, ~1e-3 relative error)"),
    "compile": Key("off", str, choices=COMPILE_MODES,
                   help="torch.compile the update rule's step: off, default (fused kernels) or reduce-overhead "
                        "(CUDA graphs on CUDA); one run at a time (replicas = 1)"),
    "log_every": Key(10, int, minimum=1, help="epochs between metric logs"),
    "checkpoint_every": Key(0, int, minimum=0, help="epochs between checkpoints (0: only on a stop signal)"),
    "resume_from": Key(None, str, nullable=True, help="checkpoint to resume from"),
    "replicas": Key(1, int, minimum=1, help="replicas run as one batched computation (seeds seed, seed+1, ...)"),
    "threads": THREADS,
    "seed": SEED,
})

DEFAULTS: dict = defaults(SPEC)


def validate(config: dict) -> FrozenConfig:
    """The complete config (defaults filled in, ints accepted for floats), frozen, or ConfigError.

    Checks: unknown keys (with the closest known key), types, ranges and choices, the device,
    and the cross-key rules batch_size <= n_train, compile = 'off' with replicas > 1 and
    seed + replicas <= 2**32.
    """
    complete = check_keys(config, SPEC)
    check_device(complete["device"])
    if complete["compile"] != "off" and complete["replicas"] > 1:
        fail("compile", complete["compile"], f"'off' when replicas > 1 (got replicas = {complete['replicas']})")
    if complete["batch_size"] > complete["n_train"]:
        fail("batch_size", complete["batch_size"], f"an integer <= n_train = {complete['n_train']}")
    check_replica_seeds(complete)
    return FrozenConfig(complete)


def has_tiny_tensors(config: dict) -> bool:
    """Whether a run's tensors are too small to share between CPU threads (``threads="auto"`` then
    takes one, :mod:`studentteacher.threads`): the particle readout's, [B, N, H] per step."""
    return config.get("readout") == "particle"
