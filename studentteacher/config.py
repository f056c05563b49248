"""The student-teacher configuration: defaults (the keys: docs/contract.md) and one validation before any work.

:func:`validate` checks every key of a config against :data:`SPEC` and raises
:class:`ConfigError` naming the key, the value and what is allowed. It is called by the
experiment, the sweeps and the training loop before anything is built.
"""
from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import torch

from .data import INPUT_DISTS
from .networks import READOUTS
from .threads import AUTO, THREADS_MAX, check_threads
from .updates import RULES

DTYPES = ("float32", "float64")
#: Seeds numpy accepts (Sacred seeds numpy's global generator with the run's seed): 0 <= seed < 2**32.
SEED_LIMIT = 2**32
COMPILE_MODES = ("off", "default", "reduce-overhead")


class ConfigError(ValueError):
    """A config value that is not allowed; the message names the key."""


@dataclass(frozen=True)
class Key:
    """One config key: its default, its type and the allowed values (read at each check) or range."""

    default: Any
    kind: type
    choices: Collection | None = None
    minimum: float | None = None
    exclusive_minimum: bool = False
    maximum: float | None = None
    nullable: bool = False
    help: str = ""
    allowed: str = ""  # what a range error says is allowed (default: from minimum and maximum)


#: Keys that :data:`SPEC` shares with the ``dmmd`` experiment's (:data:`studentteacher.dmmd.SPEC`).
DEVICE = Key("auto", str, help="auto (cuda if available), cpu, cuda or cuda:N")
THREADS = Key(AUTO, object, help=f"CPU threads: 'auto' (studentteacher.threads) or an integer 1 .. {THREADS_MAX}")
SEED = Key(None, int, nullable=True, minimum=0, maximum=SEED_LIMIT - 1, help="run seed (Sacred draws one when absent)",
           allowed="an integer 0 <= seed < 2**32 (numpy's seed range: Sacred seeds numpy with it)")

SPEC: dict[str, Key] = {
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
    "drmmd_noise": Key(False, bool, help="DrMMD witness gradient at noise-injected particles"),
    "ksd_reg": Key(1e-6, float, minimum=0.0, exclusive_minimum=True, help="KSD ridge eps"),
    "hrmmd_alpha": Key(0.8, float, minimum=0.0, maximum=1.0, help="HrMMD weight of ||grad f||^2 (1 - it: ||f||^2)"),
    "student_mean": Key(0.001, float, help="mean of the student's initial weights"),
    "student_std": Key(1.0, float, minimum=0.0, help="std of the student's initial weights"),
    "teacher_mean": Key(0.0, float, help="mean of the teacher's weights"),
    "teacher_std": Key(1.0, float, minimum=0.0, help="std of the teacher's weights"),
    "device": DEVICE,
    "dtype": Key("float32", str, choices=DTYPES, help="floating point type"),
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
}

def defaults(spec: dict[str, Key]) -> dict[str, Any]:
    """The default of every key of ``spec`` but the seed (Sacred draws one when a config has none)."""
    return {key: item.default for key, item in spec.items() if key != "seed"}


DEFAULTS: dict[str, Any] = defaults(SPEC)


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"config key {key!r}: got {value!r}; allowed: {allowed}")


def _check_type(key: str, value: Any, spec: Key) -> Any:
    if key == "threads":
        try:
            return check_threads(value)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    if value is None:
        if not spec.nullable:
            _fail(key, value, f"a value of type {spec.kind.__name__}")
        return None
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if spec.kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, spec.kind) or (spec.kind is not bool and isinstance(value, bool)):
        _fail(key, value, f"a value of type {spec.kind.__name__}" + (" or null" if spec.nullable else ""))
    return value


def _check_range(key: str, value: Any, spec: Key) -> None:
    if spec.kind is object:
        return
    if spec.choices is not None and value not in spec.choices:
        _fail(key, value, "one of " + ", ".join(repr(c) for c in spec.choices))
    below = spec.minimum is not None and (value < spec.minimum or (spec.exclusive_minimum and value == spec.minimum))
    if spec.allowed and (below or (spec.maximum is not None and value > spec.maximum)):
        _fail(key, value, spec.allowed)
    if below:
        bound = f"> {spec.minimum}" if spec.exclusive_minimum else f">= {spec.minimum}"
        upper = f" and <= {spec.maximum}" if spec.maximum is not None else ""
        _fail(key, value, f"a number {bound}{upper}")
    if spec.maximum is not None and value > spec.maximum:
        _fail(key, value, f"a number <= {spec.maximum}")
    if value != value or value in (float("inf"), float("-inf")):
        _fail(key, value, "a finite number")


def check_device(value: str) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; a CUDA device must exist."""
    if value in ("auto", "cpu"):
        return
    if value == "cuda" or (value.startswith("cuda:") and value[5:].isdigit()):
        if not torch.cuda.is_available():
            _fail("device", value, "'auto' or 'cpu' (no CUDA device is available on this machine)")
        if value != "cuda" and int(value[5:]) >= torch.cuda.device_count():
            _fail("device", value, f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
        return
    _fail("device", value, "'auto', 'cpu', 'cuda' or 'cuda:N'")


def check_keys(config: dict, spec: dict[str, Key]) -> dict:
    """The complete config of a key ``spec`` (defaults filled in, ints accepted for floats) or ConfigError
    naming the first unknown key (with the closest known key) or the first bad type, range or choice."""
    unknown = sorted(set(config) - set(spec))
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, spec, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown config key {key!r}{hint}; known keys: {', '.join(spec)}")
    complete = {**defaults(spec), **config}
    for key, item in spec.items():
        if key not in complete:
            continue
        value = _check_type(key, complete[key], item)
        if value is not None:
            _check_range(key, value, item)
        complete[key] = value
    return complete


def validate(config: dict) -> dict:
    """Return the complete config (defaults filled in, ints accepted for floats) or raise ConfigError.

    Checks: unknown keys (with the closest known key), types, ranges and choices, the device,
    and the cross-key rules batch_size <= n_train, compile = 'off' with replicas > 1 and
    seed + replicas <= 2**32.
    """
    complete = check_keys(config, SPEC)
    check_device(complete["device"])
    if complete["compile"] != "off" and complete["replicas"] > 1:
        _fail("compile", complete["compile"], f"'off' when replicas > 1 (got replicas = {complete['replicas']})")
    if complete["batch_size"] > complete["n_train"]:
        _fail("batch_size", complete["batch_size"], f"an integer <= n_train = {complete['n_train']}")
    check_replica_seeds(complete)
    return complete


def check_replica_seeds(config: dict) -> None:
    """seed + replicas <= 2**32: the replicas' seeds seed .. seed+replicas-1 stay in numpy's range."""
    if config.get("seed") is not None and config["seed"] + config["replicas"] > SEED_LIMIT:
        _fail("seed", config["seed"], f"an integer <= {SEED_LIMIT - config['replicas']} with replicas = "
              f"{config['replicas']} (the replicas' seeds seed .. seed+replicas-1 must stay below 2**32)")


def resolve_device(value: str) -> torch.device:
    """The torch device of a validated ``device`` value (``auto`` picks CUDA when present)."""
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(value)


def light_work(config: dict) -> bool:
    """Whether a run's tensors are too small to share between CPU threads (``threads="auto"`` then
    takes one, :mod:`studentteacher.threads`): the particle readout's, [B, N, H] per step."""
    return config.get("readout") == "particle"
