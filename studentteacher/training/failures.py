"""When a student-teacher replica fails, and why (the failure rule).

A non-finite loss or particle (tracked on the device, read at logging, checkpoint and stop time)
or metric, or a run-away replica, fails that replica with
:class:`~studentteacher.errors.TrainingDiverged` naming the epoch and the quantity, passed to
``on_failure`` (a plain run raises it); the other replicas go on. Run-away, read at log epochs
against the replica's epoch-0 run-away baseline (which checkpoints keep): ``train_mmd2`` above
:data:`MMD2_GROWTH` (1e3) x its epoch-0 value, or the RMS of all particle weights above
:data:`SCALE_GROWTH` (1e4) x the larger of its epoch-0 value and the teacher's.

A run-away student under the quadexp features s(u) = exp(-u^2/sigma^2) in (0, 1] does not
overflow: a huge step throws its weights far out, s saturates at 0, the gradients vanish and the
weights freeze (the error stays at E|f_T|^2), so the weights tell, not the error, which is at most
d_out (MMD2_hat <= d_out) and starts at 0.09-0.44 in the papers' configs: the MMD rule guards
feature maps with a wider range and starts near the teacher. Neither fires on the papers' configs:
in the small sweeps (experiments/sweeps/figures/*_small.yaml) train_mmd2 rises at most 5.5 x its
start (diffusion, which raises the error at first by design; all other rules at most 1.12 x) and
the RMS weight ends at most 14 x the teacher's (diffusion: its noise stays, a random walk of RMS
beta sqrt(steps), sqrt(1 + 5 * 30 * 4/3) = 14 at that scale, about 115 at full scale: beta_0 = 1
halved every 1000 epochs, 10 batches an epoch); the other rules stay below 1.2 x.
"""
from __future__ import annotations

import math

import torch

from ..networks import Params
from .state import ReplicaState

#: Run-away thresholds (module docstring): train_mmd2 over its epoch-0 value, and the RMS particle
#: weight over the larger of its epoch-0 value and the teacher's.
MMD2_GROWTH, SCALE_GROWTH = 1e3, 1e4


def to_host(value: torch.Tensor) -> list[float]:
    """A 0-dim or ``[R]`` tensor as R Python floats (one read)."""
    return torch.atleast_1d(value).tolist()


def weight_scales(params: Params, replicas: int) -> list[float]:
    """The RMS of each replica's particle weights (every coordinate of every tensor ``[R, ...]``, or
    ``[...]`` for R = 1): R floats."""
    rows = [value.reshape(replicas, -1) for value in params.values()]  # (R, n_k) each
    squares = sum(row.square().sum(1) for row in rows)  # (R,)
    return to_host(torch.sqrt(squares / sum(row.shape[1] for row in rows)))


def failure_of(replica: ReplicaState, values: dict[str, float], scale: float, epoch: int) -> str | None:
    """Why the log epoch ``epoch`` fails ``replica`` (non-finite, or run-away: module docstring), or None.
    The first call takes the run-away baseline (epoch 0, or the resumed epoch of an older checkpoint)."""
    failed = [name for name, value in values.items() if not math.isfinite(value)]
    if failed or not math.isfinite(scale):
        return f"non-finite {failed[0] if failed else 'particles'} at epoch {epoch}"
    if replica.runaway_baseline is None:
        teacher = torch.cat([value.reshape(-1) for value in replica.teacher.values()])
        replica.runaway_baseline = (values["train_mmd2"], max(scale, float(teacher.square().mean().sqrt())))
    start_mmd2, start_scale = replica.runaway_baseline
    if start_mmd2 > 0 and values["train_mmd2"] > MMD2_GROWTH * start_mmd2:
        return (f"run-away train_mmd2 at epoch {epoch}: {values['train_mmd2']:.4g} > {MMD2_GROWTH:g} x its "
                f"epoch-0 value {start_mmd2:.4g}")  # fmt: skip
    if scale > SCALE_GROWTH * start_scale:
        return (f"run-away particles at epoch {epoch}: RMS weight {scale:.4g} > {SCALE_GROWTH:g} x "
                f"{start_scale:.4g} (the larger of its epoch-0 value and the teacher's)")  # fmt: skip
    return None
