"""The one place where the runners' checkpoint files are written and read.

A checkpoint is one ``torch.save`` file of a dict written through ``path + '.tmp'`` and a rename,
so that a reader (a resuming run, a sweep's status) never sees half a file. Its entries
(:data:`CHECKPOINT_KEYS`; what they mean: :mod:`studentteacher.training.resume` and
:mod:`studentteacher.flows.resume`, which turn them into a run's state):

* ``student_teacher``: one replica at the end of an epoch, as a plain run;
* ``particle_flow``: one replica at the start of a step, with the trajectory logged so far;
* ``dmmd``: no checkpoint; the trained discriminator is the artifact ``discriminator.pt``
  (:func:`read_discriminator`), which a later run may load.

Resuming checks the run's config against the one stored in the checkpoint: only the keys the
caller names may differ (:func:`check_resumable`).
"""
from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Collection

import torch

from .keys import ConfigError

#: The entries of a checkpoint of each experiment.
CHECKPOINT_KEYS = {
    "student_teacher": ("epoch", "config", "params", "lmbda", "drmmd_start", "best_valid", "generators"),
    "particle_flow": ("step", "particles", "noise", "flow_state", "records", "snapshot_steps", "snapshots", "config"),
}


def save_atomically(obj, path: str) -> None:
    """``torch.save(obj)`` to ``path`` through ``path + '.tmp'`` and ``os.replace``.

    The object is serialised in memory first, so a failed write is an OSError of the file system:
    it is raised as ``OSError(errno, "cannot write checkpoint PATH: CAUSE")`` (e.g. "No space left
    on device") and the temporary file is removed; an existing ``path`` stays as it was.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    temporary = f"{path}.tmp"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(temporary, "wb") as handle:
            handle.write(buffer.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise OSError(error.errno, f"cannot write checkpoint {path}: {error.strerror or error}") from error


def read_checkpoint(path: str, experiment: str, config_keys: Collection[str] | None = None) -> dict:
    """The dict a checkpoint of ``experiment`` holds (on the CPU). ConfigError naming ``resume_from`` and
    what is wrong with the file: missing, a directory, empty, truncated or corrupt, without the entries
    ``CHECKPOINT_KEYS[experiment]`` (``config`` among them: a dict, or None for a checkpoint written
    without one), or written by a run with config keys outside ``config_keys`` (another experiment's
    checkpoint; None: not checked)."""
    keys = CHECKPOINT_KEYS[experiment]

    def refuse(problem: str):
        raise ConfigError(f"config key 'resume_from': got {path!r}; allowed: a checkpoint written by the {experiment} "
                          f"experiment ({problem})")

    if not isinstance(path, (str, os.PathLike)) or not os.path.exists(path):
        refuse("no such file")
    if os.path.isdir(path):
        refuse("it is a directory")
    if os.path.getsize(path) == 0:
        refuse("the file is empty")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch.load raises many types for truncated or corrupt files
        refuse(f"it cannot be read, truncated or corrupt: {type(error).__name__}: {error}")
    if not isinstance(state, dict) or set(keys) - set(state) or not isinstance(state["config"], (dict, type(None))):
        refuse(f"it holds no checkpoint with the keys {', '.join(keys)}")
    foreign = [] if config_keys is None else sorted(set(state["config"] or ()) - set(config_keys))
    if foreign:
        refuse(f"its run had the config keys {', '.join(foreign)}, which this experiment does not know")
    return state


def check_resumable(path: str, saved: dict, config: dict, resumable: tuple[str, ...]) -> None:
    """ConfigError naming the first key of ``config`` outside ``resumable`` whose value differs from
    ``saved`` (the config the checkpoint at ``path`` was written with)."""
    differing = [key for key in config if key not in resumable and saved.get(key) != config[key]]
    if differing:
        key = differing[0]
        raise ConfigError(
            f"config key {key!r}: got {config[key]!r} but the checkpoint {path!r} was written with "
            f"{saved.get(key)!r}; only {', '.join(resumable)} may change on resume"
        )


def read_discriminator(path: str) -> dict:
    """The dict of a DMMD ``discriminator.pt`` artifact (on the CPU): ``state`` (the weights),
    ``architecture``, ``settings`` (what it was trained with) and ``config``
    (:func:`studentteacher.dmmd.run.discriminator_artifact` builds it)."""
    return torch.load(path, map_location="cpu", weights_only=False)
