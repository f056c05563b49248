"""Sacred experiment ``dmmd``: the noise-adaptive MMD gradient flow (Galashov, De Bortoli, Gretton,
ICLR 2025; DESIGN §7, :mod:`studentteacher.dmmd`).

    python experiments/dmmd.py with swiss_roll -F /tmp/dmmdruns
    python experiments/dmmd.py with swiss_roll discriminator_from=/tmp/dmmdruns/1/discriminator.pt sampler=approximate

With no observer flag (-F/--file_storage, -s/--sql, -m/--mongo_db) the run is stored by a
FileStorageObserver in ``$STUDENTTEACHER_RUNS`` (default ``./runs``). The config is validated before
any work (:func:`studentteacher.dmmd.validate_dmmd_config`: one message naming the key and the
allowed values, no run directory). A run trains the discriminator (or loads it from
``discriminator_from``, whose target, schedule and kernel it then keeps), then samples.

Metrics: training (step = Adam step, every ``log_every`` steps and the last) ``loss`` and
``disc_mmd2_t0.10`` ... ``disc_mmd2_t0.90`` (MMD_u^2 between data and noised data at t = 0.1, ...,
0.9); sampling (step = sampler step, at the start and after each noise level) ``noise_level`` (the
level just done; 1 at the start) and, for the 2-D targets, ``sample_w1``, ``sample_w2``,
``sample_mmd2`` against the held-out sample, for the digits ``sample_fd``, ``sample_class_entropy``,
``sample_class_coverage``; at the last sampler step ``train_seconds_per_step`` (0 for a loaded
discriminator) and ``sample_seconds`` (the sampler's stepping time). Artifacts: ``discriminator.pt``
(weights, architecture, settings, config),
``samples.npz`` (levels, snapshots [T + 1, N, d], held-out data, final particles, training
curves), ``samples.png`` and ``sampling.gif`` (figures/dmmd_pictures.py). The result holds the final
sample metrics, ``train_seconds_per_step`` and ``sample_seconds``. A diverging run fails (FAILED)
after saving what it has; SIGTERM or SIGUSR2 ends it INTERRUPTED at the next log step or level,
artifacts saved. ``sweep run --batch R`` runs R seeds of a sweep one after the other.
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from sacred import Experiment
from sacred.observers import FileStorageObserver
from sacred.utils import SacredInterrupt, apply_backspaces_and_linefeeds

from studentteacher.dmmd import run as dmmd_run
from studentteacher.dmmd import validate_dmmd_config
from studentteacher.replica_runs import STOP_SIGNALS, RunInterrupted
from studentteacher.training import set_threads_from_allocation

FIGURES = Path(__file__).resolve().parent.parent / "figures"
if str(FIGURES) not in sys.path:  # the pictures are drawn by figures/dmmd_pictures.py, from any cwd
    sys.path.append(str(FIGURES))
import dmmd_pictures  # noqa: E402

ex = Experiment("dmmd")
ex.captured_out_filter = apply_backspaces_and_linefeeds


@ex.config
def config():
    target = "three_rings"  # three_rings | mog | swiss_roll | digits (studentteacher.dmmd.targets)
    n_train = 3000  # training points of a 2-D target (digits: the fixed split of studentteacher.digits)
    n_eval = 900  # held-out points of a 2-D target = the particle_flow target with n_target = n_eval, same seed
    hidden, layers, features, embedding = 256, 2, 64, 32  # the discriminator phi(x, t): an MLP on [x, e(t)]
    train_steps = 2000  # Adam steps of the discriminator
    batch_size = 256  # clean points per step, split over levels_per_step noise levels t ~ U[0, 1]
    levels_per_step = 4
    lr = 3e-3
    l2_weight = 0.1  # l2 ("variance") penalty on the witness
    gp_weight = 1.0  # gradient penalty (|grad f| - 1)^2 at interpolates (1, not WGAN-GP's 10: dmmd/training.py)
    kernel = "linear"  # linear | rbf: the kernel on the features
    rbf_bandwidth = 1.0  # rbf only
    schedule = "cosine"  # cosine (alpha_1 = 0 exactly) | vp_linear (Song et al. 2021, alpha_1 = 6.6e-3)
    levels = 10  # noise levels T of the sampler: t = 1, 0.9, ..., 0.1
    steps_per_level = 40  # Euler steps N_s per level
    step_size = 0.02  # eta
    sampler = "interacting"  # interacting (O(N)) | approximate (particles alone) | pairwise (Grams, the reference)
    n_particles = 1000
    discriminator_from = None  # path of a discriminator.pt: sample from it without training
    device = "auto"  # "auto": cuda if available, else cpu
    dtype = "float32"
    log_every = 100  # training steps between logs


@ex.named_config
def three_rings():
    # Three rings (d = 2): 3000 training points, 2000 Adam steps, 1000 particles, 10 levels x 40 steps of 0.01.
    target, n_train, n_eval, train_steps = "three_rings", 3000, 900, 2000
    levels, steps_per_level, step_size, n_particles = 10, 40, 0.01, 1000


@ex.named_config
def mog():
    # Mixture of 4 Gaussians at (+-2, +-2) (d = 2): 10 levels x 40 steps of 0.02.
    target, n_train, n_eval, train_steps = "mog", 3000, 900, 2000
    levels, steps_per_level, step_size, n_particles = 10, 40, 0.02, 1000


@ex.named_config
def swiss_roll():
    # Swiss roll (d = 2): 10 levels x 40 steps of 0.02.
    target, n_train, n_eval, train_steps = "swiss_roll", 3000, 900, 2000
    levels, steps_per_level, step_size, n_particles = 10, 40, 0.02, 1000


@ex.named_config
def digits():
    # 8x8 digits (d = 64, scaled to [-1, 1]): 3000 Adam steps, 500 particles, 10 levels x 40 steps of 0.02.
    target, train_steps, n_particles = "digits", 3000, 500
    levels, steps_per_level, step_size = 10, 40, 0.02


@ex.config_hook
def validate(config, command_name, logger):
    """Reject a bad config before the run starts (no run directory, no work)."""
    if command_name == "main":
        validate_dmmd_config({"seed": 0, **config})  # Sacred adds the seed after the hooks
    return {}


class _Stopped(Exception):
    """A stop signal arrived; raised at the next training log step or noise level."""


def _save_artifacts(_run, setup, training, trajectory) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        torch.save(dmmd_run.discriminator_artifact(setup), directory / "discriminator.pt")
        paths = [directory / "discriminator.pt"]
        arrays = {"held_out": setup.data.held_out.detach().cpu().numpy()}
        if training is not None:
            arrays.update(losses=np.asarray(training.losses), log_steps=np.asarray(training.log_steps),
                          level_mmd2=np.asarray(training.level_mmd2), eval_levels=np.asarray(training.eval_levels))
        if trajectory is not None and trajectory.snapshots:
            snapshots = torch.stack(trajectory.snapshots).numpy()  # (S, N, d)
            arrays.update(levels=np.asarray(trajectory.levels[: len(snapshots) - 1]), snapshots=snapshots,
                          particles=snapshots[-1])  # fmt: skip
            title = f"DMMD ({setup.config['sampler']}, {setup.config['kernel']} kernel) on {setup.config['target']}"
            paths += dmmd_pictures.save_pictures(directory, arrays["held_out"], snapshots, arrays["levels"], title)
        np.savez_compressed(directory / "samples.npz", **arrays)
        for path in [*paths, directory / "samples.npz"]:
            _run.add_artifact(str(path), name=path.name)


def _training_logger(_run, stop_requested):
    def log(step: int, loss: float, curve: list[float]) -> None:
        _run.log_scalar("loss", loss, step)
        for level, value in zip(dmmd_run.EVAL_LEVELS, curve):
            _run.log_scalar(dmmd_run.level_metric(level), value, step)
        if stop_requested:
            raise _Stopped(f"stopped on request at training step {step}")

    return log


def _level_logger(_run, setup, progress: dict, stop_requested):
    def log(k: int, level: float, particles) -> None:
        step = k * setup.config["steps_per_level"]
        _run.log_scalar("noise_level", 1.0 if k == 0 else level, step)
        progress["metrics"] = dmmd_run.sample_metrics(setup.data, particles)
        for name, value in progress["metrics"].items():
            _run.log_scalar(name, value, step)
        if stop_requested and k < setup.config["levels"]:
            raise _Stopped(f"stopped on request after noise level {k}")

    return log


@ex.main
def main(_config, _run):
    _run.info["threads"] = set_threads_from_allocation()
    setup = dmmd_run.setup_dmmd(dict(_config))
    stop_requested, progress, training, trajectory = [], {}, None, None
    previous = {sig: signal.signal(sig, lambda signum, frame: stop_requested.append(signum)) for sig in STOP_SIGNALS}
    try:
        training = dmmd_run.train(setup, on_log=_training_logger(_run, stop_requested))
        trajectory = dmmd_run.sample(setup, on_level=_level_logger(_run, setup, progress, stop_requested))
    except _Stopped as stop:
        _save_artifacts(_run, setup, training, trajectory)
        raise RunInterrupted(str(stop)) from stop
    except FloatingPointError:
        _save_artifacts(_run, setup, training, trajectory)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _save_artifacts(_run, setup, training, trajectory)
    timing = {"train_seconds_per_step": training.seconds_per_step if training is not None else 0.0,
              "sample_seconds": trajectory.seconds}  # fmt: skip
    for name, value in timing.items():  # also as metrics, so that results tables (figures) can read them
        _run.log_scalar(name, value, setup.config["levels"] * setup.config["steps_per_level"])
    return {**progress["metrics"], **timing}


def run_replicas(run_options: list[dict]) -> list[str]:
    """One Sacred run per entry of ``run_options`` (``ex.run`` keyword arguments, plus an optional
    ``observers`` list for that run alone), one after the other (what ``sweep run --batch`` calls);
    each run's final status."""
    own, statuses = list(ex.observers), []
    for options in run_options:
        options = dict(options)
        ex.observers[:] = options.pop("observers", own)
        try:
            statuses.append(ex.run(**options).status)
        except SacredInterrupt as interrupt:
            statuses.append(interrupt.STATUS)
        except Exception:  # Sacred has marked the run FAILED and printed why
            statuses.append("FAILED")
        finally:
            ex.observers[:] = own
    return statuses


OBSERVER_FLAGS = ("-F", "--file_storage", "-s", "--sql", "-m", "--mongo_db")

if __name__ == "__main__":
    if not any(arg in OBSERVER_FLAGS or arg.startswith(tuple(f + "=" for f in OBSERVER_FLAGS)) for arg in sys.argv):
        ex.observers.append(FileStorageObserver(os.environ.get("STUDENTTEACHER_RUNS", "runs")))
    ex.run_commandline()
