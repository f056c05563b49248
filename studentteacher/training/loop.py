"""The epoch loop of the student-teacher problem, independent of Sacred (the package docstring says
what it trains and logs; :mod:`~.failures` when a replica fails).

:class:`TrainingLoop` trains R >= 1 compatible replicas held by a layout (:mod:`~.layouts`);
:class:`Trainer` is the plain run (R = 1), :class:`BatchedTrainer` R runs at once.
"""
from __future__ import annotations

import time
from typing import Callable

import torch

from .. import config as config_module
from ..data import Dataset
from ..divergences import st_mmd2
from ..errors import TrainingDiverged, TrainingInterrupted
from ..keys import DTYPES, resolve_device, validated
from ..networks import Architecture, Params, output
from ..replicas import check_compatible
from ..updates import StepHyper, draw_noise, rule_from_config
from .failures import failure_of, to_host, weight_scales
from .layouts import OneReplica, StackedReplicas
from .resume import start_replica, write_checkpoint
from .schedules import adaptive_lr, log_due, noise_at
from .state import EpochMetrics, ReplicaStart, ReplicaView


class EpochClock:
    """Mean wall time per epoch since the previous reading (CUDA is synchronised first)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.start, self.epochs = time.perf_counter(), 0

    def tick(self) -> None:
        self.epochs += 1

    def read(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = (time.perf_counter() - self.start) / max(self.epochs, 1)
        self.start, self.epochs = time.perf_counter(), 0
        return seconds


def compile_step(rule, mode: str, device: torch.device):
    """``rule.step`` through ``torch.compile`` (``mode`` "default" or "reduce-overhead"; fixed shapes).

    Under "reduce-overhead" on CUDA the step is replayed as a CUDA graph; each call first marks a
    new step (``torch.compiler.cudagraph_mark_step_begin``), as the particles a step returns are
    the next step's inputs. Schedule values that are Python floats (lr, a decaying noise level)
    are constants of the compiled step: a new value compiles it again (noise decays do so a few
    times per run).
    """
    compiled = torch.compile(rule.step, mode=mode, dynamic=False)
    if not (mode == "reduce-overhead" and device.type == "cuda"):
        return compiled

    def step(*args):
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(*args)

    return step


def _raise(replica: int, error: Exception) -> None:
    """The default ``on_failure``: raise the replica's error."""
    raise error


class TrainingLoop:
    """R >= 1 compatible replicas trained together (module docstring); built by :class:`Trainer`
    (R = 1) or :class:`BatchedTrainer`."""

    def __init__(self, configs: list[dict]):
        if not configs:
            raise ValueError("a training loop needs at least one config")
        configs = [validated(config, config_module.validate) for config in configs]
        check_compatible(configs)
        self.config = cfg = configs[0]
        if len(configs) > 1 and cfg["compile"] != "off":
            raise ValueError(f"config key 'compile': got {cfg['compile']!r}; allowed: 'off' for batched "
                             "replicas (their step is vmapped, not compiled)")  # fmt: skip
        self.device = resolve_device(cfg["device"])
        self.dtype = DTYPES[cfg["dtype"]]
        if self.device.type == "cuda":  # TF32 only when the config asks for it (PyTorch's default may differ)
            torch.backends.cuda.matmul.allow_tf32 = cfg["allow_tf32"]
        self.arch = Architecture(cfg["readout"], cfg["d_in"], cfg["hidden"], cfg["d_out"], cfg["bias"])
        self.rule = rule_from_config(cfg, self.arch)
        self.adaptive = self.rule.adapts_lambda and cfg["adaptive_lmbda"]
        size = len(configs)
        self.layout = (StackedReplicas(size, self.dtype, self.device) if size > 1
                       else OneReplica(self.dtype, self.device))  # fmt: skip
        started = [start_replica(config, self.arch, self.device, self.dtype) for config in configs]
        self.replicas = [replica for replica, _ in started]
        self._hold([start for _, start in started])
        step = self.rule.step if cfg["compile"] == "off" else compile_step(self.rule, cfg["compile"], self.device)
        self._step = self.layout.map(step)
        self._step_noiseless = self.layout.map(step, in_dims=(0, 0, 0, 0, None))
        self._mmd2 = self.layout.map(lambda params, x, y: st_mmd2(output(self.arch, params, x), y))
        self._objective = self.layout.map(
            lambda params, x, y, lmbda: self.rule.objective(output(self.arch, params, x), y, lmbda)
        )
        self._bad_loss = torch.full((size,), -1, device=self.device)  # first non-finite epoch, or -1
        self._bad_particles = torch.full((size,), -1, device=self.device)

    def _hold(self, starts: list[ReplicaStart]) -> None:
        """Stack the replicas' particles, data and lambda_n as the layout holds them."""
        epochs = {p.epoch for p in starts}
        if len(epochs) != 1:
            raise ValueError(f"replicas must start at the same epoch, got {sorted(epochs)}")
        self.epoch = epochs.pop()
        stack = self.layout.stack
        self.params = self.layout.stack_params([p.params for p in starts])  # ([R], N, ...) each
        self.train_x = stack([r.train_set.x for r in self.replicas])  # ([R], n_train, d)
        self.train_y = stack([r.train_set.y for r in self.replicas])  # ([R], n_train, O)
        self.valid_x = stack([r.valid_set.x for r in self.replicas])
        self.valid_y = stack([r.valid_set.y for r in self.replicas])
        # lambda_n: a device tensor when adaptive (updated without a host sync), else the config's lmbda
        self.lmbda = stack([p.lmbda for p in starts]) if self.adaptive else self._config_values("lmbda")
        initial_values = [p.drmmd_start for p in starts]
        self.drmmd_start = None if any(d is None for d in initial_values) else stack(initial_values)  # D_0

    def _config_values(self, key: str):
        return self.layout.values([replica.config[key] for replica in self.replicas])

    def params_of(self, replica: int) -> Params:
        """Replica ``replica``'s particles as a plain run holds them (views)."""
        return self.layout.pick_params(self.params, replica)

    @property
    def replica_views(self) -> list[ReplicaView]:
        """Each replica as a plain run shows it: its config, particles (views) and metric history."""
        return [ReplicaView(r.config, self.params_of(i), r.history) for i, r in enumerate(self.replicas)]

    # ------------------------------------------------------------------ schedules
    def lr(self):
        """The step sizes in force: lr, or max(lr * lambda_n / lmbda_0, 1e-4) when lambda adapts."""
        lr = self._config_values("lr")
        if not self.adaptive:
            return lr
        return adaptive_lr(lr, self.lmbda, self._config_values("lmbda"))

    @torch.no_grad()
    def objective(self) -> torch.Tensor:
        """The rule's objective on the whole training set at lambda_n, clean particles: ``[R]`` or 0-dim."""
        return self._objective(self.params, self.train_x, self.train_y, self.lmbda)

    def _noise(self) -> Params:
        """u ~ N(0, I) like the particles, each replica from its own generator in its plain run's order."""
        drawn = [draw_noise(self.params_of(r), replica.generators["noise"]) for r, replica in enumerate(self.replicas)]
        return self.layout.stack_params(drawn)

    # ------------------------------------------------------------------ the loop
    def run_epoch(self) -> torch.Tensor:
        """One shuffled pass of the rule for every replica; the mean batch losses (0-dim or ``[R]``, on the device)."""
        levels = [noise_at(replica.config, self.epoch) for replica in self.replicas]
        hyper = StepHyper(lr=self.lr(), noise_level=self.layout.values(levels), lmbda=self.lmbda)
        noisy = self.rule.uses_noise and max(levels) > 0
        orders = self.layout.stack([r.train_set.order(r.generators["batches"]) for r in self.replicas])
        orders = orders.to(self.device, non_blocking=True)  # ([R], n)
        total, n_batches, batch = self.layout.zeros(), 0, self.config["batch_size"]
        for start in range(0, orders.shape[-1], batch):
            index = orders[..., start : start + batch]  # ([R], B)
            x, y = self.layout.take(self.train_x, index), self.layout.take(self.train_y, index)
            if noisy:
                self.params, loss = self._step(self.params, x, y, hyper, self._noise())
            else:
                self.params, loss = self._step_noiseless(self.params, x, y, hyper, None)
            total = total + loss
            n_batches += 1
        mean_loss = total / n_batches
        self._track_finite(mean_loss)
        if self.adaptive:
            ratio = torch.clamp(self.objective() / self.drmmd_start, min=0.0)
            self.lmbda = self._config_values("lmbda") * torch.sqrt(ratio)
        self.epoch += 1
        return mean_loss

    def _track_finite(self, mean_loss: torch.Tensor) -> None:
        """Note (on the device) the first epoch at which each replica's loss or particles became non-finite."""
        size, epoch = self.layout.size, self.epoch + 1  # the epoch being completed, 1-based
        finite_loss = torch.isfinite(mean_loss).reshape(size)
        finite_particles = torch.stack([torch.isfinite(p).reshape(size, -1).all(1) for p in self.params.values()])
        finite_particles = finite_particles.all(0)  # (R,)
        self._bad_loss = torch.where((self._bad_loss < 0) & ~finite_loss, epoch, self._bad_loss)
        self._bad_particles = torch.where((self._bad_particles < 0) & ~finite_particles, epoch, self._bad_particles)

    def train(
        self,
        on_metrics: Callable[[int, EpochMetrics], None] = lambda replica, metrics: None,
        on_failure: Callable[[int, Exception], None] = _raise,
        on_epoch: Callable[[int], None] = lambda epoch: None,
        should_stop: Callable[[], bool] = lambda: False,
        checkpoint_paths: list[str | None] | None = None,
        before_checkpoint: Callable[[], None] = lambda: None,
    ) -> list[dict[str, float] | None]:
        """Train every replica to ``epochs``; its result {valid_mmd2, best_valid_mmd2}, None if it failed.

        ``on_metrics(r, metrics)`` gets replica r's logged values, ``on_failure(r, error)`` its
        :class:`TrainingDiverged` (the default raises it); ``on_epoch(epoch)`` follows each epoch, once
        its metrics are logged. ``should_stop()`` is polled after every
        epoch (host side): when true, each live replica's checkpoint is written to
        ``checkpoint_paths[r]`` and :class:`TrainingInterrupted` is raised. ``before_checkpoint()``
        precedes every checkpoint write (periodic or on a stop): the place to store what was logged,
        so that the stored metrics always reach the latest checkpoint's epoch (a run killed after it
        resumes from there with no gap in its curve).
        """
        cfg = self.config
        if self.adaptive and self.drmmd_start is None:
            self.drmmd_start = self.objective()
        if self.epoch == 0:
            self._log(None, 0.0, on_metrics, on_failure)
        clock = EpochClock(self.device)
        while self.epoch < cfg["epochs"] and not all(replica.failed for replica in self.replicas):
            loss = self.run_epoch()
            clock.tick()
            if log_due(cfg, self.epoch):
                seconds = clock.read()
                self._check_finite(on_failure)
                self._log(loss, seconds, on_metrics, on_failure)
            on_epoch(self.epoch)
            stop = should_stop()
            if stop or (cfg["checkpoint_every"] and self.epoch % cfg["checkpoint_every"] == 0):
                self._check_finite(on_failure)
                before_checkpoint()
                written = self._save_checkpoints(checkpoint_paths)
            if stop:
                raise TrainingInterrupted(f"stopped on request after epoch {self.epoch}", written)
        return [
            None if r.failed else {"valid_mmd2": r.history["valid_mmd2"][-1], "best_valid_mmd2": r.best_valid}
            for r in self.replicas
        ]

    # ------------------------------------------------------------------ failures and metrics
    def _fail(self, r: int, problem: str, on_failure) -> None:
        """Fail replica ``r``: :class:`TrainingDiverged` saying ``problem`` (what, at which epoch) to ``on_failure``."""
        replica = self.replicas[r]
        replica.failed = True
        where = f", replica {r}" if self.layout.size > 1 else ""
        on_failure(r, TrainingDiverged(
            f"{problem} (method={replica.config['method']}, lr={replica.config['lr']}{where}); the run diverged"
        ))  # fmt: skip

    def _check_finite(self, on_failure) -> None:
        """Fail each live replica whose loss or particles became non-finite (the earlier of the two)."""
        bad = zip(self._bad_loss.tolist(), self._bad_particles.tolist())
        for r, (loss_epoch, particles_epoch) in enumerate(bad):
            found = [(e, name) for e, name in ((loss_epoch, "loss"), (particles_epoch, "particles")) if e >= 0]
            if found and not self.replicas[r].failed:
                epoch, quantity = min(found)  # the earlier; the loss on a tie
                self._fail(r, f"non-finite {quantity} at epoch {epoch}", on_failure)

    def _problem(self, replica, values: dict[str, float], scale: float) -> str | None:
        """Why this log epoch fails ``replica`` (:func:`~.failures.failure_of`), or None."""
        return failure_of(replica, values, scale, self.epoch)

    @torch.no_grad()
    def _log(self, loss: torch.Tensor | None, seconds: float, on_metrics, on_failure) -> None:
        """Evaluate and log every live replica; ``loss`` None (epoch 0): the rule's objective before any step."""
        train = to_host(self._mmd2(self.params, self.train_x, self.train_y))
        valid = to_host(self._mmd2(self.params, self.valid_x, self.valid_y))
        losses = to_host(self.objective() if loss is None else loss)
        lmbdas = to_host(self.lmbda) if self.adaptive else [replica.config["lmbda"] for replica in self.replicas]
        scales = weight_scales(self.params, self.layout.size)
        for r, replica in enumerate(self.replicas):
            if replica.failed:
                continue
            values = {
                "train_mmd2": train[r], "valid_mmd2": valid[r], "loss": losses[r],
                "noise_level": noise_at(replica.config, self.epoch), "lmbda": lmbdas[r], "epoch_seconds": seconds,
            }
            problem = self._problem(replica, values, scales[r])
            if problem:
                self._fail(r, problem, on_failure)
                continue
            replica.best_valid = min(replica.best_valid, values["valid_mmd2"])
            on_metrics(r, replica.record(self.epoch, values))


    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoints(self, paths: list[str | None] | None) -> list[str | None]:
        """Each live replica's checkpoint at ``paths[r]`` (where given); the paths written."""
        written = []
        for r, replica in enumerate(self.replicas):
            path = paths[r] if paths and not replica.failed else None
            if path:
                self.save_checkpoint(path, r)
            written.append(path)
        return written

    def save_checkpoint(self, path: str, replica: int = 0) -> None:
        """Replica ``replica`` as a plain run's checkpoint: particles, schedule state, every RNG
        state and the epoch, written atomically (resumable alone or in the same batch)."""
        run = self.replicas[replica]
        lmbda = self.layout.pick(self.lmbda, replica) if self.adaptive else run.config["lmbda"]
        start = None if self.drmmd_start is None else self.layout.pick(self.drmmd_start, replica).cpu()
        write_checkpoint(path, run, self.epoch, self.params_of(replica), lmbda, start)


class Trainer(TrainingLoop):
    """One student-teacher run: the loop with R = 1 and the plain-run interface."""

    def __init__(self, config: dict):
        super().__init__([config])

    @property
    def history(self) -> dict[str, list[float]]:
        return self.replicas[0].history

    @property
    def train_set(self) -> Dataset:
        return self.replicas[0].train_set

    @property
    def valid_set(self) -> Dataset:
        return self.replicas[0].valid_set

    def run(
        self,
        on_metrics: Callable[[EpochMetrics], None] = lambda metrics: None,
        on_epoch: Callable[[int], None] = lambda epoch: None,
        should_stop: Callable[[], bool] = lambda: False,
        checkpoint_path: str | None = None,
    ) -> dict[str, float]:
        """Train until ``epochs``; log through ``on_metrics``; return {valid_mmd2, best_valid_mmd2}.

        Raises :class:`TrainingDiverged` on a failure and, once ``should_stop()`` is true,
        :class:`TrainingInterrupted` after writing a checkpoint to ``checkpoint_path``.
        """
        (result,) = self.train(on_metrics=lambda replica, metrics: on_metrics(metrics), on_epoch=on_epoch,
                               should_stop=should_stop, checkpoint_paths=[checkpoint_path])  # fmt: skip
        return result


class BatchedTrainer(TrainingLoop):
    """R replicas advanced together (R > 1 as one vmapped computation); ``replica_views[r]``: replica r."""

    run = TrainingLoop.train
