"""The ``particle_flow`` config: its keys, the optional ones with their values, the keys replicas may
vary in, and the validation that names a bad key, its value and what is allowed (docs/contract.md).
"""
from __future__ import annotations

import math
import numbers

import torch

from ..config import SEED_LIMIT, check_device
from ..divergences import SOBOLEV_SOLVERS
from ..kernels import KERNELS
from ..threads import check_threads
from ..toys import TARGETS, TOY_OPTIONS
from .registry import FLOWS
from .srmmd import SOBOLEV_OPTIONS, VELOCITIES

DTYPES = {"float64": torch.float64, "float32": torch.float32}
CONFIG_KEYS = (
    "target", "dim", "source_distance", "flow", "kernel", "bandwidth", "n_particles", "n_target", "steps",
    "step_size", "lmbda", "noise_level", "noise_until", "velocity", "linear_solver", "hrmmd_alpha", "dtype", "device",
    "log_every", "snapshot_every", "replicas", "threads", "seed", "checkpoint_every", "resume_from",
)  # fmt: skip
#: Optional keys that are options of some flows (each flow gets those it declares in its ``options``),
#: with the value a config that leaves one out has: the SrMMD and HrMMD flows' ``velocity``,
#: ``linear_solver`` and ``hrmmd_alpha`` (:data:`~studentteacher.flows.srmmd.SOBOLEV_OPTIONS`).
FLOW_OPTIONS = dict(SOBOLEV_OPTIONS)
#: Keys a config may leave out, with the value it then has (the toy's ``dim`` and ``source_distance``:
#: :data:`~studentteacher.toys.TOY_OPTIONS`; :data:`FLOW_OPTIONS`).
OPTIONAL_KEYS = {"checkpoint_every": 0, "resume_from": None, "threads": "auto", **TOY_OPTIONS, **FLOW_OPTIONS}
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



def default_step_size(flow: str, lmbda) -> float:
    """The ``step_size`` of a config that names none: the flow's
    :meth:`~studentteacher.flows.base.KernelFlow.default_step_size` (0.1; 0.1 * lambda for ``kale``).
    0.1 for a name or lambda that is not valid (the config's validation names it)."""
    if not isinstance(flow, str) or flow not in FLOWS or not (_is_real(lmbda) and lmbda > 0):
        return 0.1
    return FLOWS[flow].default_step_size(lmbda)
