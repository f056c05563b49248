"""The epoch loop of the student-teacher problem, independent of Sacred.

:class:`Trainer` builds the teacher, the datasets and the student from a validated config
(:mod:`studentteacher.config`), one random stream each, and runs epochs of the configured
update rule. Schedules (DESIGN §2):

* noise: beta_t = noise_level * noise_decay ** floor(epoch / noise_decay_every);
* lambda: fixed, or with ``adaptive_lmbda`` lambda_{n+1} = lmbda_0 sqrt(D_{n+1} / D_0) after
  every epoch, D_n the DrMMD of the whole training set at lambda_n with the clean particles;
* the step size follows lambda in the adaptive case, as in the 2-D reference code:
  lr_n = max(lr * lambda_n / lmbda_0, 1e-4) (so lr_0 = lr). The DrMMD witness carries a factor
  (1 + lambda)/lambda, so the particles' speed lr_n (1 + lambda_n)/lambda_n stays bounded.

Metrics every ``log_every`` epochs (and at epoch 0 and the last epoch): ``train_mmd2`` and
``valid_mmd2`` (unhalved MMD2_hat over the whole sets, clean particles), ``loss`` (the mean batch
loss the rule optimised during the last epoch), ``noise_level``, ``lmbda``, ``epoch_seconds``.
The step never reads a value back to the host; non-finite values are tracked on the device and
raise :class:`TrainingDiverged` (naming the epoch and the quantity) when read at logging time.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Callable

import torch

from . import config as config_module
from .data import Dataset, labelled_dataset, make_generators
from .divergences import st_mmd2
from .networks import Architecture, Params, init_params, output
from .updates import StepHyper, draw_noise, rule_from_config

MIN_ADAPTIVE_LR = 1e-4
# keys that may differ between a checkpoint's run and the run resuming from it
RESUMABLE_CHANGES = ("epochs", "log_every", "checkpoint_every", "resume_from", "device", "allow_tf32", "compile")


class TrainingDiverged(RuntimeError):
    """A non-finite loss or particle; the message says at which epoch and which quantity."""


class TrainingInterrupted(Exception):
    """The loop stopped on request (a signal); a checkpoint was written to ``checkpoint_path``."""

    def __init__(self, message: str, checkpoint_path: str | None):
        super().__init__(message)
        self.checkpoint_path = checkpoint_path


@dataclass
class EpochMetrics:
    epoch: int
    values: dict[str, float]


def set_threads_from_allocation() -> int:
    """Use as many CPU threads as the SLURM allocation grants (``SLURM_CPUS_PER_TASK``), if set."""
    granted = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if granted.isdigit() and int(granted) > 0:
        torch.set_num_threads(int(granted))
    return torch.get_num_threads()


def noise_at(config: dict, epoch: int) -> float:
    """beta_t = noise_level * noise_decay ** floor(epoch / noise_decay_every)."""
    return config["noise_level"] * config["noise_decay"] ** (epoch // config["noise_decay_every"])


def log_due(config: dict, epoch: int) -> bool:
    """Metrics are logged every ``log_every`` epochs and after the last one."""
    return epoch % config["log_every"] == 0 or epoch == config["epochs"]


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


def save_atomically(obj, path: str) -> None:
    """torch.save to ``path + '.tmp'`` then rename, so a reader never sees half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp"
    torch.save(obj, temporary)
    os.replace(temporary, path)


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


class Trainer:
    """State of one student-teacher run: particles, schedules, random streams, history."""

    def __init__(self, config: dict):
        self.config = config_module.validate(config)
        cfg = self.config
        if cfg["seed"] is None:
            raise config_module.ConfigError("config key 'seed': got None; allowed: an integer")
        self.device = config_module.resolve_device(cfg["device"])
        self.dtype = getattr(torch, cfg["dtype"])
        if self.device.type == "cuda":  # TF32 only when the config asks for it (PyTorch's default may differ)
            torch.backends.cuda.matmul.allow_tf32 = cfg["allow_tf32"]
        self.arch = Architecture(cfg["readout"], cfg["d_in"], cfg["hidden"], cfg["d_out"], cfg["bias"])
        self.generators = make_generators(cfg["seed"], self.device)
        create = dict(dtype=self.dtype, device=self.device)
        self.teacher = init_params(
            self.arch, cfg["n_teacher"], cfg["teacher_mean"], cfg["teacher_std"], self.generators["teacher"], **create
        )
        teacher_fn = lambda x: output(self.arch, self.teacher, x)  # noqa: E731
        self.train_set: Dataset = labelled_dataset(
            cfg["n_train"], cfg["d_in"], cfg["input_dist"], teacher_fn, self.generators["train"], **create
        )
        self.valid_set: Dataset = labelled_dataset(
            cfg["n_valid"], cfg["d_in"], cfg["input_dist"], teacher_fn, self.generators["valid"], **create
        )
        self.params: Params = init_params(
            self.arch, cfg["n_particles"], cfg["student_mean"], cfg["student_std"], self.generators["student"], **create
        )
        self.rule = rule_from_config(cfg, self.arch)
        self._step = self.rule.step if cfg["compile"] == "off" else compile_step(self.rule, cfg["compile"], self.device)
        self.epoch = 0
        # lambda_n: a device tensor when adaptive (updated without a host sync), else the float lmbda
        self.lmbda = torch.tensor(cfg["lmbda"], dtype=self.dtype, device=self.device) if self.adaptive() else cfg["lmbda"]
        self.drmmd_start: torch.Tensor | None = None  # D_0 of the adaptive schedule
        self.best_valid = math.inf
        self.history: dict[str, list[float]] = {}
        self._bad_loss_epoch = torch.tensor(-1, device=self.device)
        self._bad_particle_epoch = torch.tensor(-1, device=self.device)
        if cfg["resume_from"]:
            self._load_checkpoint(cfg["resume_from"])

    # ------------------------------------------------------------------ schedules and metrics
    def adaptive(self) -> bool:
        return self.rule.adapts_lambda and self.config["adaptive_lmbda"]

    def lr(self):
        """The step size in force: lr, or max(lr * lambda_n / lmbda_0, 1e-4) when lambda is adaptive."""
        if not self.adaptive():
            return self.config["lr"]
        return torch.clamp(self.config["lr"] * self.lmbda / self.config["lmbda"], min=MIN_ADAPTIVE_LR)

    @torch.no_grad()
    def _train_objective(self, lmbda) -> torch.Tensor:
        """The rule's objective (DrMMD or MMD^2) on the whole training set, clean particles."""
        return self.rule.objective(output(self.arch, self.params, self.train_set.x), self.train_set.y, lmbda)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """MMD2_hat over the whole training and validation sets with the clean particles."""
        train = st_mmd2(output(self.arch, self.params, self.train_set.x), self.train_set.y)
        valid = st_mmd2(output(self.arch, self.params, self.valid_set.x), self.valid_set.y)
        return {"train_mmd2": float(train), "valid_mmd2": float(valid)}

    def _check_finite(self) -> None:
        bad_loss, bad_particle = int(self._bad_loss_epoch), int(self._bad_particle_epoch)
        if bad_loss >= 0 or bad_particle >= 0:
            quantity, epoch = ("loss", bad_loss) if bad_loss >= 0 else ("particles", bad_particle)
            if bad_loss >= 0 and bad_particle >= 0:
                quantity, epoch = ("loss", bad_loss) if bad_loss <= bad_particle else ("particles", bad_particle)
            raise TrainingDiverged(
                f"non-finite {quantity} at epoch {epoch} (method={self.config['method']}, lr={self.config['lr']}); "
                "the run diverged"
            )

    def _record(self, values: dict[str, float]) -> EpochMetrics:
        for name, value in values.items():
            self.history.setdefault(name, []).append(value)
        self.history.setdefault("epoch", []).append(float(self.epoch))
        return EpochMetrics(self.epoch, values)

    # ------------------------------------------------------------------ the loop
    def run_epoch(self) -> torch.Tensor:
        """One shuffled pass of the update rule; returns the mean batch loss (a device tensor)."""
        cfg = self.config
        hyper = StepHyper(lr=self.lr(), noise_level=noise_at(cfg, self.epoch), lmbda=self.lmbda)
        noisy = self.rule.uses_noise and hyper.noise_level > 0
        total = torch.zeros((), dtype=self.dtype, device=self.device)
        n_batches = 0
        for x, y in self.train_set.batches(cfg["batch_size"], self.generators["batches"]):
            noise = draw_noise(self.params, self.generators["noise"]) if noisy else None
            self.params, loss = self._step(self.params, x, y, hyper, noise)
            total = total + loss
            n_batches += 1
        mean_loss = total / n_batches
        finite = torch.isfinite(mean_loss)
        particles_finite = torch.stack([torch.isfinite(p).all() for p in self.params.values()]).all()
        epoch = torch.tensor(self.epoch + 1, device=self.device)  # the epoch being completed, 1-based
        self._bad_loss_epoch = torch.where((self._bad_loss_epoch < 0) & ~finite, epoch, self._bad_loss_epoch)
        self._bad_particle_epoch = torch.where(
            (self._bad_particle_epoch < 0) & ~particles_finite, epoch, self._bad_particle_epoch
        )
        if self.adaptive():
            drmmd_now = self._train_objective(self.lmbda)
            self.lmbda = self.config["lmbda"] * torch.sqrt(torch.clamp(drmmd_now / self.drmmd_start, min=0.0))
        self.epoch += 1
        return mean_loss

    def run(
        self,
        on_metrics: Callable[[EpochMetrics], None] = lambda metrics: None,
        on_epoch: Callable[[int], None] = lambda epoch: None,
        should_stop: Callable[[], bool] = lambda: False,
        checkpoint_path: str | None = None,
    ) -> dict[str, float]:
        """Train until ``epochs``; log through ``on_metrics``; return {valid_mmd2, best_valid_mmd2}.

        ``should_stop()`` is polled after every epoch (host side): when true, a checkpoint is
        written to ``checkpoint_path`` and :class:`TrainingInterrupted` is raised.
        """
        cfg = self.config
        if self.adaptive() and self.drmmd_start is None:
            self.drmmd_start = self._train_objective(self.lmbda)
        if self.epoch == 0:
            on_metrics(self._log(loss=None, seconds=0.0))
        clock = EpochClock(self.device)
        while self.epoch < cfg["epochs"]:
            loss = self.run_epoch()
            clock.tick()
            on_epoch(self.epoch)
            if log_due(cfg, self.epoch):
                seconds = clock.read()
                self._check_finite()
                on_metrics(self._log(loss=loss, seconds=seconds))
            if cfg["checkpoint_every"] and self.epoch % cfg["checkpoint_every"] == 0 and checkpoint_path:
                self._check_finite()
                self.save_checkpoint(checkpoint_path)
            if should_stop():
                self._check_finite()
                if checkpoint_path:
                    self.save_checkpoint(checkpoint_path)
                raise TrainingInterrupted(f"stopped on request after epoch {self.epoch}", checkpoint_path)
        return {"valid_mmd2": self.history["valid_mmd2"][-1], "best_valid_mmd2": self.best_valid}

    def _log(self, loss, seconds: float) -> EpochMetrics:
        values = self.evaluate()
        if loss is None:  # epoch 0: the objective of the rule before any step, on the whole training set
            loss = self._train_objective(self.lmbda)
        values |= {
            "loss": float(loss),
            "noise_level": noise_at(self.config, self.epoch),
            "lmbda": float(self.lmbda),
            "epoch_seconds": seconds,
        }
        for name, value in values.items():
            if not math.isfinite(value):
                raise TrainingDiverged(f"non-finite {name} at epoch {self.epoch}; the run diverged")
        self.best_valid = min(self.best_valid, values["valid_mmd2"])
        return self._record(values)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str) -> None:
        """Particles, schedule state, every RNG state and the epoch, written atomically."""
        save_atomically(
            {
                "epoch": self.epoch,
                "config": self.config,
                "params": {k: v.detach().cpu() for k, v in self.params.items()},
                "lmbda": torch.as_tensor(self.lmbda).cpu(),
                "drmmd_start": None if self.drmmd_start is None else self.drmmd_start.cpu(),
                "best_valid": self.best_valid,
                "generators": {name: g.get_state() for name, g in self.generators.items()},
            },
            path,
        )

    def _load_checkpoint(self, path: str) -> None:
        if not os.path.isfile(path):
            raise config_module.ConfigError(f"config key 'resume_from': got {path!r}; allowed: an existing checkpoint file")
        state = torch.load(path, map_location="cpu", weights_only=False)
        differing = [
            key
            for key in self.config
            if key not in RESUMABLE_CHANGES and state["config"].get(key) != self.config[key]
        ]
        if differing:
            key = differing[0]
            raise config_module.ConfigError(
                f"config key {key!r}: got {self.config[key]!r} but the checkpoint {path!r} was written with "
                f"{state['config'].get(key)!r}; only {', '.join(RESUMABLE_CHANGES)} may change on resume"
            )
        self.epoch = state["epoch"]
        self.params = {k: v.to(device=self.device, dtype=self.dtype) for k, v in state["params"].items()}
        if self.adaptive():
            self.lmbda = state["lmbda"].to(device=self.device, dtype=self.dtype)
        self.drmmd_start = None if state["drmmd_start"] is None else state["drmmd_start"].to(self.device)
        self.best_valid = state["best_valid"]
        for name, generator in self.generators.items():
            try:
                generator.set_state(state["generators"][name])
            except RuntimeError as error:
                raise config_module.ConfigError(
                    f"config key 'device': the checkpoint {path!r} holds random states of another device type "
                    f"({error}); resume on the device it was written on"
                ) from error
