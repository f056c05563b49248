"""How a student-teacher replica starts, drawn from its seed or resumed from its checkpoint.

A checkpoint is one replica as a plain run (a batched run writes one per replica; each resumes alone
or in a batch of any size) at the end of an epoch, written atomically by
:func:`studentteacher.checkpoints.save_atomically`:

===============  =========================================================================
``epoch``        the epochs done
``config``       the run's validated config
``params``       the particles ``{name: [N, ...]}`` (CPU, the run's dtype)
``lmbda``        lambda_n (0-dim; the config's lmbda unless lambda adapts)
``drmmd_start``  D_0 of the adaptive lambda schedule, or None
``best_valid``   the lowest logged valid_mmd2
``yardsticks``   run-away baseline (the key's first name): epoch-0 train_mmd2, RMS weight
``generators``   the state of each random stream (:data:`~studentteacher.data.STREAMS`)
===============  =========================================================================

A run resumes with the same config up to :data:`RESUMABLE_CHANGES`.
"""
from __future__ import annotations

from functools import partial

import torch

from .. import checkpoints
from .. import config as config_module
from ..data import labelled_dataset, make_generators
from ..keys import resolve_device
from ..networks import Architecture, Params, init_params, output
from .state import ReplicaStart, ReplicaState

# keys that may differ between a checkpoint's run and the run resuming from it (how the run is carried
# out, not what it computes: a replica's checkpoint resumes alone or in a batch of another size)
RESUMABLE_CHANGES = ("epochs", "log_every", "checkpoint_every", "resume_from", "device", "allow_tf32", "compile",
                     "replicas", "threads")
#: The entries a checkpoint must hold (module docstring).
CHECKPOINT_KEYS = checkpoints.CHECKPOINT_KEYS["student_teacher"]


def read_checkpoint(path: str) -> dict:
    """The state a checkpoint holds; ConfigError naming ``resume_from`` and what is wrong with the file
    (missing, a directory, empty, truncated or corrupt, or not a student-teacher checkpoint)."""
    state = checkpoints.read_checkpoint(path, "student_teacher", config_module.SPEC)
    if state["config"] is None:
        raise config_module.ConfigError(f"config key 'resume_from': got {path!r}; allowed: a checkpoint written by "
                                        f"the student_teacher experiment (it holds no config)")
    return state


def _written_with(state: dict, key: str):
    """The checkpoint's value of ``key``; a key added to the config after it was written has its default."""
    if key not in state["config"] and key in config_module.SPEC:
        return config_module.SPEC[key].default
    return state["config"].get(key)


def _check_same_run(path: str, state: dict, config: dict) -> None:
    """ConfigError unless ``config`` equals the checkpoint's run outside RESUMABLE_CHANGES."""
    differing = [key for key in config if key not in RESUMABLE_CHANGES and _written_with(state, key) != config[key]]
    if differing:
        key = differing[0]
        raise config_module.ConfigError(
            f"config key {key!r}: got {config[key]!r}, but the checkpoint resume_from={path!r} was written with "
            f"{_written_with(state, key)!r}; only {', '.join(RESUMABLE_CHANGES)} may change on resume"
        )


def check_resume(config: dict) -> dict | None:
    """The state of ``resume_from`` after checking that ``config`` can continue it (None without one).

    ConfigError (naming the key) for a file :func:`read_checkpoint` refuses, a checkpoint of another
    run (keys outside RESUMABLE_CHANGES differ), random states of another device type, or
    ``epochs`` at or below the checkpoint's epoch (nothing would be left to train).
    """
    path = config["resume_from"]
    if path is None:
        return None
    state = read_checkpoint(path)
    _check_same_run(path, state, config)
    device = resolve_device(config["device"])
    expected = torch.Generator(device=device).get_state().numel()
    if any(torch.as_tensor(s).numel() != expected for s in state["generators"].values()):
        raise config_module.ConfigError(
            f"config key 'device': got {config['device']!r} ({device.type}), but the checkpoint resume_from={path!r} "
            f"holds random states of another device type; resume on the device type it was written on"
        )
    if config["epochs"] <= state["epoch"]:
        raise config_module.ConfigError(
            f"config key 'epochs': got {config['epochs']}; allowed: an integer > {state['epoch']}, the epoch at which "
            f"the checkpoint resume_from={path!r} was written"
        )
    return state


def load_checkpoint(path: str, replica: ReplicaState, dtype: torch.dtype, device: torch.device) -> ReplicaStart:
    """Restore ``replica``'s random streams and best value from ``path``; its Progress (ConfigError if
    the checkpoint's config differs outside RESUMABLE_CHANGES or its streams are of another device)."""
    state = read_checkpoint(path)
    _check_same_run(path, state, replica.config)
    for name, generator in replica.generators.items():
        try:
            generator.set_state(state["generators"][name])
        except RuntimeError as error:
            raise config_module.ConfigError(
                f"config key 'device': the checkpoint {path!r} holds random states of another device type "
                f"({error}); resume on the device it was written on"
            ) from error
    replica.best_valid = state["best_valid"]
    replica.runaway_baseline = state.get("yardsticks")  # None in older checkpoints: taken again at the resumed epoch
    return ReplicaStart(
        epoch=state["epoch"],
        params={key: value.to(device=device, dtype=dtype) for key, value in state["params"].items()},
        lmbda=torch.as_tensor(state["lmbda"]).to(device=device, dtype=dtype),
        drmmd_start=None if state["drmmd_start"] is None else state["drmmd_start"].to(device),
    )



def start_replica(config: dict, arch: Architecture, device: torch.device, dtype: torch.dtype):
    """(ReplicaState, ReplicaStart) of a validated ``config``: drawn from its seed, or resumed from ``resume_from``."""
    if config["seed"] is None:
        raise config_module.ConfigError("config key 'seed': got None; allowed: an integer")
    generators = make_generators(config["seed"], device)
    create = dict(dtype=dtype, device=device)
    teacher = init_params(
        arch, config["n_teacher"], config["teacher_mean"], config["teacher_std"], generators["teacher"], **create
    )
    datasets = [
        labelled_dataset(config[f"n_{name}"], config["d_in"], config["input_dist"], partial(output, arch, teacher),
                         generators[name], **create)
        for name in ("train", "valid")
    ]  # fmt: skip
    replica = ReplicaState(config, generators, teacher, *datasets)
    params = init_params(
        arch, config["n_particles"], config["student_mean"], config["student_std"], generators["student"], **create
    )
    progress = ReplicaStart(0, params, torch.tensor(config["lmbda"], **create))
    if config["resume_from"] is not None:
        progress = load_checkpoint(config["resume_from"], replica, **create)
    return replica, progress



def write_checkpoint(path: str, replica: ReplicaState, epoch: int, params: Params, lmbda, drmmd_start) -> None:
    """Write ``replica`` at ``epoch`` with its particles ``params`` ``{name: [N, ...]}``, lambda_n
    (a float or 0-dim) and D_0 (0-dim or None) as a plain run's checkpoint, atomically."""
    checkpoints.save_atomically(
        {
            "epoch": epoch,
            "config": replica.config,
            "params": {k: v.detach().cpu() for k, v in params.items()},
            "lmbda": torch.as_tensor(lmbda).cpu(),
            "drmmd_start": drmmd_start,
            "best_valid": replica.best_valid,
            "yardsticks": replica.runaway_baseline,
            "generators": {name: g.get_state() for name, g in replica.generators.items()},
        },
        path,
    )
