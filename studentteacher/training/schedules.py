"""The schedules of a student-teacher run (docs/model.md):

* noise: beta_t = noise_level * noise_decay ** floor(epoch / noise_decay_every);
* lambda: fixed, or, when the rule ``adapts_lambda`` and ``adaptive_lmbda`` is set,
  lambda_{n+1} = lmbda_0 sqrt(D_{n+1} / D_0) after every epoch, D_n = ``rule.objective`` (DrMMD)
  of the whole training set at lambda_n with the clean particles;
* the step size follows lambda in the adaptive case, as in the 2-D reference code:
  lr_n = max(lr * lambda_n / lmbda_0, 1e-4) (so lr_0 = lr). The DrMMD witness carries a factor
  (1 + lambda)/lambda, so the particles' speed lr_n (1 + lambda_n)/lambda_n stays bounded.

Metrics are logged every ``log_every`` epochs and after the last one (:func:`log_due`).
"""
from __future__ import annotations

import torch

#: The floor of the adaptive step size lr_n.
MIN_ADAPTIVE_LR = 1e-4


def noise_at(config: dict, epoch: int) -> float:
    """beta_t = noise_level * noise_decay ** floor(epoch / noise_decay_every)."""
    return config["noise_level"] * config["noise_decay"] ** (epoch // config["noise_decay_every"])


def log_due(config: dict, epoch: int) -> bool:
    """Metrics are logged every ``log_every`` epochs and after the last one."""
    return epoch % config["log_every"] == 0 or epoch == config["epochs"]



def adaptive_lr(lr, lmbda: torch.Tensor, lmbda_0) -> torch.Tensor:
    """lr_n = max(lr * lambda_n / lmbda_0, 1e-4); ``lr``, ``lmbda_0``: floats or ``[R]``; ``lmbda``: 0-dim or ``[R]``
    (the result's shape)."""
    return torch.clamp(lr * lmbda / lmbda_0, min=MIN_ADAPTIVE_LR)
