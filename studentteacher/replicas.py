"""Batched replicas: R independent student-teacher runs of the same shapes as one computation.

Each replica r is a complete :class:`~studentteacher.training.Trainer` (its own seed, teacher,
datasets, student and random streams; it may also differ in :data:`REPLICA_KEYS`). Their
particles ``[R, ...]`` and datasets ``[R, n, d]`` are stacked, and the update rule's step, a pure
tensor function, is mapped over the leading replica dimension with ``torch.func.vmap``. Batch
orders and noise are drawn with each replica's own generators in the order its plain run draws
them, so replica r follows the plain run of its config (float64: to rounding).

A replica whose loss or particles become non-finite is reported through ``on_failure`` and
stops being logged; the others go on (replicas never mix: every batched product is per replica).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .divergences import st_mmd2
from .networks import output
from .training import (
    MIN_ADAPTIVE_LR,
    EpochClock,
    EpochMetrics,
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
    log_due,
    noise_at,
)
from .updates import StepHyper

# config keys that may differ between the replicas of one batch; every other key must be equal
REPLICA_KEYS = (
    "seed", "lr", "lmbda", "noise_level", "noise_decay", "noise_decay_every",
    "student_mean", "student_std", "teacher_mean", "teacher_std", "resume_from", "replicas",
)


def check_compatible(configs: list[dict], replica_keys: tuple[str, ...] = REPLICA_KEYS) -> None:
    """Raise ValueError naming the first key outside ``replica_keys`` on which two configs differ."""
    first = configs[0]
    for index, config in enumerate(configs[1:], start=1):
        for key in sorted(set(first) | set(config)):
            if key not in replica_keys and first.get(key) != config.get(key):
                raise ValueError(
                    f"replicas must share every config key but {', '.join(replica_keys)}; replica {index} has "
                    f"{key}={config.get(key)!r}, replica 0 has {key}={first.get(key)!r}"
                )


class BatchedTrainer:
    """R :class:`Trainer` replicas advanced together; ``members[r]`` holds replica r's state."""

    def __init__(self, configs: list[dict]):
        if not configs:
            raise ValueError("BatchedTrainer needs at least one config")
        self.members = [Trainer(config) for config in configs]
        check_compatible([member.config for member in self.members])
        epochs = {member.epoch for member in self.members}
        if len(epochs) != 1:
            raise ValueError(f"replicas must start at the same epoch, got {sorted(epochs)}")
        lead = self.members[0]
        if lead.config["compile"] != "off":
            raise ValueError(f"config key 'compile': got {lead.config['compile']!r}; allowed: 'off' for batched "
                             "replicas (their step is vmapped, not compiled)")
        self.config, self.arch, self.rule = lead.config, lead.arch, lead.rule
        self.device, self.dtype, self.epoch = lead.device, lead.dtype, lead.epoch
        self.params = {key: torch.stack([m.params[key] for m in self.members]) for key in lead.params}  # (R, ...)
        self.train_x = torch.stack([m.train_set.x for m in self.members])  # (R, n, d)
        self.train_y = torch.stack([m.train_set.y for m in self.members])  # (R, n, O)
        self.valid_x = torch.stack([m.valid_set.x for m in self.members])
        self.valid_y = torch.stack([m.valid_set.y for m in self.members])
        self.lmbda0 = self._per_replica([m.config["lmbda"] for m in self.members])
        self.lr0 = self._per_replica([m.config["lr"] for m in self.members])
        self.lmbda = torch.stack([torch.as_tensor(m.lmbda, dtype=self.dtype).to(self.device) for m in self.members])
        self.drmmd_start = None
        if all(m.drmmd_start is not None for m in self.members):
            self.drmmd_start = torch.stack([m.drmmd_start for m in self.members])
        self.alive = [True] * len(self.members)
        self._step = torch.func.vmap(self.rule.step)
        self._step_noiseless = torch.func.vmap(self.rule.step, in_dims=(0, 0, 0, 0, None))
        self._mmd2 = torch.func.vmap(lambda p, x, y: st_mmd2(output(self.arch, p, x), y))
        self._objective = torch.func.vmap(
            lambda p, x, y, lmbda: self.rule.objective(output(self.arch, p, x), y, lmbda)
        )
        self._bad_epoch = torch.full((len(self.members),), -1, device=self.device)

    def _per_replica(self, values) -> torch.Tensor:
        return torch.tensor(values, dtype=self.dtype, device=self.device)

    @property
    def replicas(self) -> int:
        return len(self.members)

    def adaptive(self) -> bool:
        return self.members[0].adaptive()

    def lr(self) -> torch.Tensor:
        """Per-replica step sizes ``[R]`` (following lambda when it is adaptive, as Trainer.lr)."""
        if not self.adaptive():
            return self.lr0
        return torch.clamp(self.lr0 * self.lmbda / self.lmbda0, min=MIN_ADAPTIVE_LR)

    def _noise(self, generators) -> dict[str, torch.Tensor]:
        """Standard normal draws ``[R, ...]``, each replica from its own generator in its plain order."""
        return {
            key: torch.stack([
                torch.randn(value.shape[1:], generator=g, dtype=self.dtype, device=self.device) for g in generators
            ])
            for key, value in self.params.items()
        }

    def run_epoch(self) -> torch.Tensor:
        """One shuffled pass for every replica; returns the mean batch losses ``[R]``."""
        cfg, members = self.config, self.members
        levels = [noise_at(m.config, self.epoch) for m in members]
        hyper = StepHyper(lr=self.lr(), noise_level=self._per_replica(levels), lmbda=self.lmbda)
        noisy = self.rule.uses_noise and max(levels) > 0
        n_train, batch = cfg["n_train"], cfg["batch_size"]
        orders = torch.stack([
            torch.randperm(n_train, generator=m.generators["batches"], device=m.generators["batches"].device)
            for m in members
        ]).to(self.device, non_blocking=True)  # (R, n)
        rows = torch.arange(self.replicas, device=self.device)[:, None]  # (R, 1)
        total = torch.zeros(self.replicas, dtype=self.dtype, device=self.device)
        n_batches = 0
        for start in range(0, n_train, batch):
            index = orders[:, start : start + batch]  # (R, B)
            noise = self._noise([m.generators["noise"] for m in members]) if noisy else None
            step = self._step if noise is not None else self._step_noiseless
            self.params, loss = step(self.params, self.train_x[rows, index], self.train_y[rows, index], hyper, noise)
            total = total + loss
            n_batches += 1
        mean_loss = total / n_batches  # (R,)
        finite = torch.isfinite(mean_loss)
        for value in self.params.values():
            finite = finite & torch.isfinite(value.reshape(self.replicas, -1)).all(1)
        self._bad_epoch = torch.where((self._bad_epoch < 0) & ~finite, self.epoch + 1, self._bad_epoch)
        if self.adaptive():
            drmmd_now = self._objective(self.params, self.train_x, self.train_y, self.lmbda)
            self.lmbda = self.lmbda0 * torch.sqrt(torch.clamp(drmmd_now / self.drmmd_start, min=0.0))
        self.epoch += 1
        return mean_loss

    @torch.no_grad()
    def _log(self, loss: torch.Tensor | None, seconds: float, on_metrics, on_failure) -> None:
        train = self._mmd2(self.params, self.train_x, self.train_y).tolist()
        valid = self._mmd2(self.params, self.valid_x, self.valid_y).tolist()
        if loss is None:  # epoch 0: the rule's objective before any step
            loss = self._objective(self.params, self.train_x, self.train_y, self.lmbda)
        losses = loss.tolist()
        lmbdas = self.lmbda.tolist() if self.adaptive() else [m.config["lmbda"] for m in self.members]
        bad = self._bad_epoch.tolist()
        for r, member in enumerate(self.members):
            if not self.alive[r]:
                continue
            values = {
                "train_mmd2": train[r], "valid_mmd2": valid[r], "loss": losses[r],
                "noise_level": noise_at(member.config, self.epoch), "lmbda": lmbdas[r], "epoch_seconds": seconds,
            }
            failed = [name for name, value in values.items() if not math.isfinite(value)]
            if bad[r] >= 0 or failed:
                self.alive[r] = False
                where = f"epoch {bad[r]}" if bad[r] >= 0 else f"epoch {self.epoch}"
                quantity = "loss or particles" if bad[r] >= 0 else failed[0]
                on_failure(r, TrainingDiverged(f"non-finite {quantity} at {where} (replica {r}); the run diverged"))
                continue
            member.epoch = self.epoch
            member.best_valid = min(member.best_valid, valid[r])
            on_metrics(r, member._record(values))

    def sync_members(self) -> None:
        """Copy the stacked state back into each member (for checkpoints and final particles)."""
        for r, member in enumerate(self.members):
            member.epoch = self.epoch
            member.params = {key: value[r] for key, value in self.params.items()}
            if member.adaptive():
                member.lmbda = self.lmbda[r]
                member.drmmd_start = self.drmmd_start[r]

    def run(
        self,
        on_metrics: Callable[[int, EpochMetrics], None] = lambda r, metrics: None,
        on_failure: Callable[[int, Exception], None] = lambda r, error: None,
        on_epoch: Callable[[int], None] = lambda epoch: None,
        should_stop: Callable[[], bool] = lambda: False,
        checkpoint_paths: list[str] | None = None,
    ) -> list[dict[str, float] | None]:
        """Train every replica to ``epochs``; per-replica results (None for a failed replica)."""
        cfg = self.config
        if self.adaptive() and self.drmmd_start is None:
            self.drmmd_start = self._objective(self.params, self.train_x, self.train_y, self.lmbda)
        if self.epoch == 0:
            self._log(None, 0.0, on_metrics, on_failure)
        clock = EpochClock(self.device)
        while self.epoch < cfg["epochs"] and any(self.alive):
            loss = self.run_epoch()
            clock.tick()
            on_epoch(self.epoch)
            if log_due(cfg, self.epoch):
                self._log(loss, clock.read(), on_metrics, on_failure)
            checkpoint_due = cfg["checkpoint_every"] and self.epoch % cfg["checkpoint_every"] == 0
            stop = should_stop()
            if checkpoint_paths and (checkpoint_due or stop):
                self.sync_members()
                for r, member in enumerate(self.members):
                    if self.alive[r]:
                        member.save_checkpoint(checkpoint_paths[r])
            if stop:
                raise TrainingInterrupted(f"stopped on request after epoch {self.epoch}", None)
        self.sync_members()
        return [
            {"valid_mmd2": m.history["valid_mmd2"][-1], "best_valid_mmd2": m.best_valid} if self.alive[r] else None
            for r, m in enumerate(self.members)
        ]
