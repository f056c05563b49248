"""The ``particle_flow`` config: its key spec (docs/contract.md), the keys replicas may vary in, and
the validation that names a bad key, its value and what is allowed.

:data:`SPEC` is built from the keys every flow run has and the keys each registered flow declares
for itself (its ``config_keys``: ``velocity``, ``linear_solver``, ``hrmmd_alpha``); the step and
the log and snapshot periods default to values derived from other keys. :func:`validate_flow_config`
returns the complete config frozen (:class:`~studentteacher.keys.FrozenConfig`).
"""
from __future__ import annotations

from ..keys import (DEVICE, DTYPES, SEED, THREADS, FrozenConfig, Key, check_device, check_keys, check_replica_seeds,
                    defaults, fail, merged)  # fmt: skip
from ..kernels import KERNELS
from ..toys import TARGETS, TOY_OPTIONS
from .registry import FLOWS


def default_step_size(flow: str, lmbda) -> float:
    """The ``step_size`` of a config that names none: the flow's
    :meth:`~studentteacher.flows.base.KernelFlow.default_step_size` (0.1; 0.1 * lambda for ``kale``).
    0.1 for a name or lambda that is not valid (the config's validation names it)."""
    valid_lmbda = isinstance(lmbda, (int, float)) and not isinstance(lmbda, bool) and 0 < lmbda < float("inf")
    if not isinstance(flow, str) or flow not in FLOWS or not valid_lmbda:
        return 0.1
    return FLOWS[flow].default_step_size(lmbda)


def default_period(steps, periods: int) -> int:
    """Steps between logs (``periods`` = 200) or snapshots (20) of a config that names none:
    max(1, steps // periods); 1 for a ``steps`` that is not an integer (the validation names it)."""
    return max(1, steps // periods) if isinstance(steps, int) and not isinstance(steps, bool) else 1


SPEC: dict[str, Key] = merged({
    "target": Key("three_rings", str, choices=TARGETS, help="the target sample (`studentteacher/toys.py`)"),
    "flow": Key("mmd", str, choices=FLOWS, help="the flow (a name registered in `studentteacher.flows.FLOWS`)"),
    "kernel": Key("gaussian", str, choices=KERNELS,
                  help="kernel of the flow (bandwidth convention in docs/model.md); srmmd and hrmmd take gaussian or "
                       "imq, mmd_adaptive_bandwidth gaussian_scaled"),
    "bandwidth": Key(0.15, float, minimum=0.0, exclusive_minimum=True,
                     help="kernel bandwidth sigma (mmd_adaptive_bandwidth: the floor of the adaptive bandwidth)"),
    "dim": Key(TOY_OPTIONS["dim"], int, minimum=1, help="gaussian_nd only: the dimension d"),
    "source_distance": Key(TOY_OPTIONS["source_distance"], float, minimum=0.0,
                           help="gaussian_nd only: the distance of the source's mean from the target's, abs(mu_0)"),
    "n_particles": Key(300, int, minimum=1, help="moving particles N"),
    "n_target": Key(300, int, minimum=1, help="target points M"),
    "steps": Key(1000, int, minimum=0, help="Euler steps"),
    "lmbda": Key(1e-3, float, minimum=0.0, exclusive_minimum=True,
                 help="lambda of drmmd, drmmd_adaptive (lambda_0), kale, srmmd, hrmmd"),
    "step_size": Key("0.1; kale: 0.1 * lmbda", float, minimum=0.0, exclusive_minimum=True,
                     derive=lambda config: default_step_size(config["flow"], config["lmbda"]),
                     help="the step; drmmd: rate = lmbda * step_size"),
    "noise_level": Key(0.0, float, minimum=0.0, help="mmd_noise: the noise beta while step < noise_until"),
    "noise_until": Key(0, int, minimum=0, help="mmd_noise: the first step without noise"),
}, *(flow.config_keys for flow in FLOWS.values()), {
    "dtype": Key("float64", str, choices=tuple(DTYPES), help="floating point type"),
    "device": DEVICE,
    "log_every": Key("max(1, steps // 200)", int, minimum=1, derive=lambda config: default_period(config["steps"], 200),
                     help="steps between metric logs (the last step is always logged)"),
    "snapshot_every": Key("max(1, steps // 20)", int, minimum=1,
                          derive=lambda config: default_period(config["steps"], 20),
                          help="steps between snapshots (the last step is always one)"),
    "replicas": Key(1, int, minimum=1, help="flows run as one batched flow (seeds seed, seed+1, ...), one run each"),
    "threads": THREADS,
    "checkpoint_every": Key(0, int, minimum=0, help="steps between checkpoints (0: only on a stop signal)"),
    "resume_from": Key(None, str, nullable=True, help="checkpoint to resume from"),
    "seed": SEED,
})
#: The default of every key but the seed and the derived ones (``step_size``, ``log_every``, ``snapshot_every``).
DEFAULTS = defaults(SPEC)
#: The keys the registered flows declare for themselves (``config_keys``), with their Keys.
FLOW_KEYS: dict[str, Key] = merged(*(flow.config_keys for flow in FLOWS.values()))
#: Config keys in which the replicas of one batched run may differ (every other key is shared).
REPLICA_KEYS = ("seed", "step_size", "lmbda", "noise_level", "noise_until", "replicas", "resume_from")


def validate_flow_config(config: dict) -> FrozenConfig:
    """The complete config, frozen, or ConfigError naming the key, its value and what is allowed, before
    any work. Beyond each key's own check: a seed (the toys are drawn from it), ``n_target`` a multiple
    of 3 for ``three_rings``, a kernel the flow works with, the device present. ``resume_from`` is
    checked for its type only (the file is :func:`~.resume.checked_checkpoint`'s: the experiment checks
    it before work, once the resumed run has taken the checkpoint's config)."""
    complete = check_keys(config, SPEC)
    if complete.get("seed") is None:
        fail("seed", complete.get("seed"), "an integer 0 <= seed < 2**32 (the toys are drawn from it)")
    if complete["target"] == "three_rings" and complete["n_target"] % 3:
        fail("n_target", complete["n_target"], "a multiple of 3 for target 'three_rings'")
    kernels = FLOWS[complete["flow"]].kernels
    if kernels and complete["kernel"] not in kernels:
        fail("kernel", complete["kernel"], f"one of {', '.join(map(repr, kernels))} for flow {complete['flow']!r}")
    check_device(complete["device"])
    check_replica_seeds(complete)
    return FrozenConfig(complete)
