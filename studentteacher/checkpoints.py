"""Checkpoint files, shared by the training loop and the 2-D flows: atomic writes and resume checks.

A checkpoint is one ``torch.save`` file written through ``path + '.tmp'`` and a rename, so that a
reader (a resuming run, a sweep's status) never sees half a file. Resuming checks the run's config
against the one stored in the checkpoint: only the keys the caller names may differ.
"""
from __future__ import annotations

import contextlib
import io
import os

import torch

from .config import ConfigError


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


def read_checkpoint(path: str, key: str = "resume_from") -> dict:
    """The dict stored at ``path`` (on the CPU); ConfigError naming ``key`` when there is no such file."""
    if not (isinstance(path, (str, os.PathLike)) and os.path.isfile(path)):
        raise ConfigError(f"config key {key!r}: got {path!r}; allowed: an existing checkpoint file")
    return torch.load(path, map_location="cpu", weights_only=False)


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
