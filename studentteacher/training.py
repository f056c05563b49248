"""The epoch loop of the student-teacher problem, independent of Sacred.

One loop, :class:`TrainingLoop`, trains R >= 1 replicas: runs whose configs differ at most in
:data:`~studentteacher.replicas.REPLICA_KEYS` (seed, lr, lambda, noise schedule, initial scales).
Each replica (:class:`Replica`) has its own teacher, datasets, student and random streams, one
stream each from its seed, and draws its batch orders and noise with its own generators in the
order its run alone draws them. :class:`Trainer` is the plain run (R = 1) and
:class:`BatchedTrainer` trains R runs at once; both are this loop. How the particles are held
is the one difference (the layout):

* R = 1 (:class:`Single`): as a plain run holds them (``[N, ...]``), the rule's own step
  (compiled when the config asks), Python-float schedule values;
* R > 1 (:class:`Stacked`): a leading replica dimension (``[R, N, ...]``), the step mapped over it
  with ``torch.func.vmap``, per-replica schedule values ``[R]``. Replicas never mix (every product
  is per replica), so replica r follows the plain run of its config (float64: to rounding).

Schedules (DESIGN §2):

* noise: beta_t = noise_level * noise_decay ** floor(epoch / noise_decay_every);
* lambda: fixed, or, when the rule ``adapts_lambda`` and ``adaptive_lmbda`` is set,
  lambda_{n+1} = lmbda_0 sqrt(D_{n+1} / D_0) after every epoch, D_n = ``rule.objective`` (DrMMD)
  of the whole training set at lambda_n with the clean particles;
* the step size follows lambda in the adaptive case, as in the 2-D reference code:
  lr_n = max(lr * lambda_n / lmbda_0, 1e-4) (so lr_0 = lr). The DrMMD witness carries a factor
  (1 + lambda)/lambda, so the particles' speed lr_n (1 + lambda_n)/lambda_n stays bounded.

Metrics every ``log_every`` epochs (and at epoch 0 and the last epoch): ``train_mmd2`` and
``valid_mmd2`` (unhalved MMD2_hat over the whole sets, clean particles), ``loss`` (the mean batch
loss the rule optimised during the last epoch; at epoch 0 its objective on the training set),
``noise_level``, ``lmbda``, ``epoch_seconds``. The step never reads a value back to the host.
Failure rule: a non-finite loss or particle (tracked on the device, read at logging, checkpoint
and stop time) or metric, or a run-away replica, fails that replica with :class:`TrainingDiverged`
naming the epoch and the quantity, passed to ``on_failure`` (a plain run raises it); the other
replicas go on. Run-away, read at log epochs against the replica's epoch-0 yardsticks (which
checkpoints keep): ``train_mmd2`` above :data:`MMD2_GROWTH` (1e3) x its epoch-0 value, or the RMS
of all particle weights above :data:`SCALE_GROWTH` (1e4) x the larger of its epoch-0 value and the
teacher's. A run-away student under the quadexp features s(u) = exp(-u^2/sigma^2) in (0, 1] does
not overflow: a huge step throws its weights far out, s saturates at 0, the gradients vanish and
the weights freeze (the error stays at E|f_T|^2), so the weights tell, not the error, which is at
most d_out (MMD2_hat <= d_out) and starts at 0.09-0.44 in the papers' configs: the MMD rule
guards feature maps with a wider range and starts near the teacher. Neither fires on the papers'
configs: in the small sweeps (experiments/sweeps/figures/*_small.yaml) train_mmd2 rises at most
5.5 x its start (diffusion, which raises the error at first by design; all other rules at most
1.12 x) and the RMS weight ends at most 14 x the teacher's (diffusion: its noise stays, a random
walk of RMS beta sqrt(steps), sqrt(1 + 5 * 30 * 4/3) = 14 at that scale, about 115 at full scale:
beta_0 = 1 halved every 1000 epochs, 10 batches an epoch); the other rules stay below 1.2 x.
Checkpoints are per replica and have one format: a replica's checkpoint is a plain run's.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import torch

from . import config as config_module
from . import checkpoints
from .data import Dataset, labelled_dataset, make_generators
from .divergences import st_mmd2
from .networks import Architecture, Params, init_params, output
from .replicas import check_compatible
from .updates import StepHyper, draw_noise, rule_from_config

MIN_ADAPTIVE_LR = 1e-4
#: Run-away thresholds of the failure rule (module docstring): train_mmd2 over its epoch-0 value, and
#: the RMS particle weight over the larger of its epoch-0 value and the teacher's.
MMD2_GROWTH, SCALE_GROWTH = 1e3, 1e4
# keys that may differ between a checkpoint's run and the run resuming from it (how the run is carried
# out, not what it computes: a replica's checkpoint resumes alone or in a batch of another size)
RESUMABLE_CHANGES = ("epochs", "log_every", "checkpoint_every", "resume_from", "device", "allow_tf32", "compile",
                     "replicas", "threads")
CHECKPOINT_KEYS = ("epoch", "config", "params", "lmbda", "drmmd_start", "best_valid", "generators")


class TrainingDiverged(RuntimeError):
    """A non-finite loss, particle or metric; the message says at which epoch and which quantity."""


class TrainingInterrupted(Exception):
    """The loop stopped on request (a signal); ``checkpoint_paths[r]``: replica r's checkpoint, if written."""

    def __init__(self, message: str, checkpoint_paths: list[str | None]):
        super().__init__(message)
        self.checkpoint_paths = checkpoint_paths

    @property
    def checkpoint_path(self) -> str | None:
        """The checkpoint of a plain run (replica 0)."""
        return self.checkpoint_paths[0]


@dataclass
class EpochMetrics:
    epoch: int
    values: dict[str, float]


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


# ---------------------------------------------------------------------- one replica's own state
@dataclass
class Replica:
    """What one run owns beside its particles: config, random streams, teacher, datasets, log."""

    config: dict
    generators: dict[str, torch.Generator]
    teacher: Params
    train_set: Dataset
    valid_set: Dataset
    best_valid: float = math.inf
    history: dict[str, list[float]] = field(default_factory=dict)
    failed: bool = False
    yardsticks: tuple[float, float] | None = None  # epoch-0 train_mmd2 and weight scale (the run-away rule)

    def record(self, epoch: int, values: dict[str, float]) -> EpochMetrics:
        """Append ``values`` (and the epoch) to the history."""
        for name, value in values.items():
            self.history.setdefault(name, []).append(value)
        self.history.setdefault("epoch", []).append(float(epoch))
        return EpochMetrics(epoch, values)


@dataclass
class Progress:
    """What a checkpoint restores besides the random streams: epoch, particles, lambda_n, D_0."""

    epoch: int
    params: Params
    lmbda: torch.Tensor  # lambda_n (0-dim); the config's lmbda unless lambda adapts
    drmmd_start: torch.Tensor | None = None  # D_0 of the adaptive schedule


def start_replica(config: dict, arch: Architecture, device: torch.device, dtype: torch.dtype):
    """(Replica, Progress) of a validated ``config``: drawn from its seed, or resumed from ``resume_from``."""
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
    replica = Replica(config, generators, teacher, *datasets)
    params = init_params(
        arch, config["n_particles"], config["student_mean"], config["student_std"], generators["student"], **create
    )
    progress = Progress(0, params, torch.tensor(config["lmbda"], **create))
    if config["resume_from"] is not None:
        progress = load_checkpoint(config["resume_from"], replica, **create)
    return replica, progress


def read_checkpoint(path: str) -> dict:
    """The state a checkpoint holds; ConfigError naming ``resume_from`` and what is wrong with the file
    (missing, a directory, empty, truncated or corrupt, or not a student-teacher checkpoint)."""
    state = checkpoints.read_checkpoint(path, "student_teacher", CHECKPOINT_KEYS, config_module.SPEC)
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
    device = config_module.resolve_device(config["device"])
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


def load_checkpoint(path: str, replica: Replica, dtype: torch.dtype, device: torch.device) -> Progress:
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
    replica.yardsticks = state.get("yardsticks")  # None in older checkpoints: taken again at the resumed epoch
    return Progress(
        epoch=state["epoch"],
        params={key: value.to(device=device, dtype=dtype) for key, value in state["params"].items()},
        lmbda=torch.as_tensor(state["lmbda"]).to(device=device, dtype=dtype),
        drmmd_start=None if state["drmmd_start"] is None else state["drmmd_start"].to(device),
    )


# ---------------------------------------------------------------------- how R replicas are held
class Single:
    """One replica held as a plain run holds it: no replica dimension, Python-float schedule values,
    functions of one run applied as they are."""

    size = 1

    def __init__(self, dtype: torch.dtype, device: torch.device):
        self.dtype, self.device = dtype, device

    def stack(self, tensors: list):
        return tensors[0]

    def pick(self, value, replica: int):
        return value

    def stack_params(self, params: list[Params]) -> Params:
        return params[0]

    def pick_params(self, params: Params, replica: int) -> Params:
        return params

    def values(self, floats: list[float]):
        """Per-replica schedule values: the float itself."""
        return floats[0]

    def map(self, function, in_dims=0):
        return function

    def take(self, data: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Rows ``index: [B]`` of ``data: [n, ...]``."""
        return data[index]

    def zeros(self) -> torch.Tensor:
        return torch.zeros((), dtype=self.dtype, device=self.device)


class Stacked(Single):
    """R > 1 replicas on a leading dimension ``[R, ...]`` (the interface of :class:`Single`):
    per-replica schedule values ``[R]``, functions of one run mapped with ``torch.func.vmap``."""

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device):
        super().__init__(dtype, device)
        self.size = size
        self.rows = torch.arange(size, device=device)[:, None]  # (R, 1)

    def stack(self, tensors: list):
        return torch.stack(tensors)

    def pick(self, value, replica: int):
        return value[replica]

    def stack_params(self, params: list[Params]) -> Params:
        return {key: torch.stack([p[key] for p in params]) for key in params[0]}

    def pick_params(self, params: Params, replica: int) -> Params:
        return {key: value[replica] for key, value in params.items()}

    def values(self, floats: list[float]) -> torch.Tensor:
        return torch.tensor(floats, dtype=self.dtype, device=self.device)  # (R,)

    def map(self, function, in_dims=0):
        return torch.func.vmap(function, in_dims=in_dims)

    def take(self, data: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Rows ``index: [R, B]`` of ``data: [R, n, ...]``, per replica."""
        return data[self.rows, index]  # (R, B, ...)

    def zeros(self) -> torch.Tensor:
        return torch.zeros(self.size, dtype=self.dtype, device=self.device)


def _raise(replica: int, error: Exception) -> None:
    raise error


def _to_host(value: torch.Tensor) -> list[float]:
    """A 0-dim or ``[R]`` tensor as R Python floats (one read)."""
    return torch.atleast_1d(value).tolist()


@dataclass
class Member:
    """Replica r as a plain run shows it: its config, particles ``[N, ...]`` (now) and history."""

    config: dict
    params: Params
    history: dict[str, list[float]]


# ---------------------------------------------------------------------- the loop
class TrainingLoop:
    """R >= 1 compatible replicas trained together (module docstring); built by :class:`Trainer`
    (R = 1) or :class:`BatchedTrainer`."""

    def __init__(self, configs: list[dict]):
        if not configs:
            raise ValueError("a training loop needs at least one config")
        configs = [config_module.validate(config) for config in configs]
        check_compatible(configs)
        self.config = cfg = configs[0]
        if len(configs) > 1 and cfg["compile"] != "off":
            raise ValueError(f"config key 'compile': got {cfg['compile']!r}; allowed: 'off' for batched "
                             "replicas (their step is vmapped, not compiled)")  # fmt: skip
        self.device = config_module.resolve_device(cfg["device"])
        self.dtype = getattr(torch, cfg["dtype"])
        if self.device.type == "cuda":  # TF32 only when the config asks for it (PyTorch's default may differ)
            torch.backends.cuda.matmul.allow_tf32 = cfg["allow_tf32"]
        self.arch = Architecture(cfg["readout"], cfg["d_in"], cfg["hidden"], cfg["d_out"], cfg["bias"])
        self.rule = rule_from_config(cfg, self.arch)
        self.adaptive = self.rule.adapts_lambda and cfg["adaptive_lmbda"]
        size = len(configs)
        self.layout = Stacked(size, self.dtype, self.device) if size > 1 else Single(self.dtype, self.device)
        started = [start_replica(config, self.arch, self.device, self.dtype) for config in configs]
        self.replicas = [replica for replica, _ in started]
        self._hold([progress for _, progress in started])
        step = self.rule.step if cfg["compile"] == "off" else compile_step(self.rule, cfg["compile"], self.device)
        self._step = self.layout.map(step)
        self._step_noiseless = self.layout.map(step, in_dims=(0, 0, 0, 0, None))
        self._mmd2 = self.layout.map(lambda params, x, y: st_mmd2(output(self.arch, params, x), y))
        self._objective = self.layout.map(
            lambda params, x, y, lmbda: self.rule.objective(output(self.arch, params, x), y, lmbda)
        )
        self._bad_loss = torch.full((size,), -1, device=self.device)  # first non-finite epoch, or -1
        self._bad_particles = torch.full((size,), -1, device=self.device)

    def _hold(self, progress: list[Progress]) -> None:
        """Stack the replicas' particles, data and lambda_n as the layout holds them."""
        epochs = {p.epoch for p in progress}
        if len(epochs) != 1:
            raise ValueError(f"replicas must start at the same epoch, got {sorted(epochs)}")
        self.epoch = epochs.pop()
        stack = self.layout.stack
        self.params = self.layout.stack_params([p.params for p in progress])  # ([R], N, ...) each
        self.train_x = stack([r.train_set.x for r in self.replicas])  # ([R], n_train, d)
        self.train_y = stack([r.train_set.y for r in self.replicas])  # ([R], n_train, O)
        self.valid_x = stack([r.valid_set.x for r in self.replicas])
        self.valid_y = stack([r.valid_set.y for r in self.replicas])
        # lambda_n: a device tensor when adaptive (updated without a host sync), else the config's lmbda
        self.lmbda = stack([p.lmbda for p in progress]) if self.adaptive else self._config_values("lmbda")
        starts = [p.drmmd_start for p in progress]
        self.drmmd_start = None if any(s is None for s in starts) else stack(starts)  # D_0

    def _config_values(self, key: str):
        return self.layout.values([replica.config[key] for replica in self.replicas])

    def params_of(self, replica: int) -> Params:
        """Replica ``replica``'s particles as a plain run holds them (views)."""
        return self.layout.pick_params(self.params, replica)

    @property
    def members(self) -> list[Member]:
        return [Member(r.config, self.params_of(i), r.history) for i, r in enumerate(self.replicas)]

    # ------------------------------------------------------------------ schedules
    def lr(self):
        """The step sizes in force: lr, or max(lr * lambda_n / lmbda_0, 1e-4) when lambda adapts."""
        lr = self._config_values("lr")
        if not self.adaptive:
            return lr
        return torch.clamp(lr * self.lmbda / self._config_values("lmbda"), min=MIN_ADAPTIVE_LR)

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

    def _weight_scales(self) -> list[float]:
        """The RMS of each replica's particle weights (every coordinate of every tensor): R floats."""
        rows = [value.reshape(self.layout.size, -1) for value in self.params.values()]  # (R, n_k) each
        squares = sum(row.square().sum(1) for row in rows)  # (R,)
        return _to_host(torch.sqrt(squares / sum(row.shape[1] for row in rows)))

    def _problem(self, replica: Replica, values: dict[str, float], scale: float) -> str | None:
        """Why this log epoch fails ``replica`` (non-finite, or run-away: module docstring), or None.
        The first call takes the yardsticks (epoch 0, or the resumed epoch of an older checkpoint)."""
        failed = [name for name, value in values.items() if not math.isfinite(value)]
        if failed or not math.isfinite(scale):
            return f"non-finite {failed[0] if failed else 'particles'} at epoch {self.epoch}"
        if replica.yardsticks is None:
            teacher = torch.cat([value.reshape(-1) for value in replica.teacher.values()])
            replica.yardsticks = (values["train_mmd2"], max(scale, float(teacher.square().mean().sqrt())))
        start_mmd2, start_scale = replica.yardsticks
        if start_mmd2 > 0 and values["train_mmd2"] > MMD2_GROWTH * start_mmd2:
            return (f"run-away train_mmd2 at epoch {self.epoch}: {values['train_mmd2']:.4g} > {MMD2_GROWTH:g} x its "
                    f"epoch-0 value {start_mmd2:.4g}")  # fmt: skip
        if scale > SCALE_GROWTH * start_scale:
            return (f"run-away particles at epoch {self.epoch}: RMS weight {scale:.4g} > {SCALE_GROWTH:g} x "
                    f"{start_scale:.4g} (the larger of its epoch-0 value and the teacher's)")  # fmt: skip
        return None

    @torch.no_grad()
    def _log(self, loss: torch.Tensor | None, seconds: float, on_metrics, on_failure) -> None:
        """Evaluate and log every live replica; ``loss`` None (epoch 0): the rule's objective before any step."""
        train = _to_host(self._mmd2(self.params, self.train_x, self.train_y))
        valid = _to_host(self._mmd2(self.params, self.valid_x, self.valid_y))
        losses = _to_host(self.objective() if loss is None else loss)
        lmbdas = _to_host(self.lmbda) if self.adaptive else [replica.config["lmbda"] for replica in self.replicas]
        scales = self._weight_scales()
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
        checkpoints.save_atomically(
            {
                "epoch": self.epoch,
                "config": run.config,
                "params": {k: v.detach().cpu() for k, v in self.params_of(replica).items()},
                "lmbda": torch.as_tensor(lmbda).cpu(),
                "drmmd_start": start,
                "best_valid": run.best_valid,
                "yardsticks": run.yardsticks,
                "generators": {name: g.get_state() for name, g in run.generators.items()},
            },
            path,
        )


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
    """R replicas advanced together (R > 1 as one vmapped computation); ``members[r]``: replica r."""

    run = TrainingLoop.train
