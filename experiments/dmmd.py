"""Sacred experiment ``dmmd``: the noise-adaptive MMD gradient flow (Galashov, De Bortoli, Gretton,
ICLR 2025; :mod:`studentteacher.dmmd`).

    python experiments/dmmd.py with swiss_roll -F /tmp/dmmdruns
    python experiments/dmmd.py with swiss_roll discriminator_from=/tmp/dmmdruns/1/discriminator.pt sampler=approximate

Config keys, their defaults and checks: :data:`studentteacher.dmmd.SPEC`. Observers, flags, checks
before work, stop signals and run names are the helper's (:mod:`experiments.runs`): with no observer
flag the run is stored in ``$STUDENTTEACHER_RUNS`` (default ``./runs``). A run trains the
discriminator (or loads it from ``discriminator_from``, whose target, schedule and kernel it then
keeps), then samples.

Metrics: training (step = Adam step, every ``log_every`` steps and the last) ``loss`` and
``disc_mmd2_t0.10`` ... ``disc_mmd2_t0.90`` (MMD_u^2 between data and noised data at t = 0.1, ...,
0.9); sampling (step = sampler step, at the start and after each noise level) ``noise_level`` (the
level just done; 1 at the start) and, for the 2-D targets, ``sample_w1``, ``sample_w2``,
``sample_mmd2`` against the held-out sample (a separately seeded draw no method saw), for the digits
``sample_fd``, ``sample_class_entropy``, ``sample_class_coverage``; at the last sampler step
``train_seconds_per_step`` (0 for a loaded discriminator), ``sample_seconds`` (the sampler's stepping
time), ``recording_seconds`` (that of the interacting run the approximate sampler replays; else 0),
``feature_variance_top1`` .. ``top3`` (the learned features' variance in their top 1-3 directions) and,
for the 2-D targets, the floor ``sample_w1_floor``, ``sample_w2_floor``, ``sample_mmd2_floor`` (an
exact sample of N points against the same held-out points; studentteacher.held_out). A metric is
logged only when finite: a non-finite one fails the run, naming it. Artifacts: ``discriminator.pt``
(weights, architecture, settings, config), ``samples.npz`` (levels, snapshots [T + 1, N, d], held-out
data, final particles, training curves), ``samples.png`` and ``sampling.gif`` (``flow_pictures.py``).
The result holds the final sample metrics and those of the last sampler step. A
diverging run fails (FAILED) after saving what it has; SIGTERM or SIGUSR2 ends it INTERRUPTED at the
next training log step or noise level, artifacts saved (there is no checkpoint to resume from).

``replicas=R`` (and ``sweep run --batch R``) runs R seeds one after the other, each its own Sacred run:
a DMMD run is not batched.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from experiments.runs import Batch, ExperimentRuns, RunInterrupted  # first: it quiets Sacred's import warning
from experiments import flow_pictures

import numpy as np
import torch
from sacred import Experiment

from studentteacher import preflight
from studentteacher.keys import defaults
from studentteacher.dmmd import SPEC, validate_dmmd_config
from studentteacher.dmmd import run as dmmd_run
from studentteacher.progress import RunProgress

ex = Experiment("dmmd")
ex.add_config(defaults(SPEC))


#: The named configs, one per target at the scale of the figures (experiments/sweeps/figures/dmmd.yaml):
#: 3000 training points (the digits: their fixed split), 900 held out, 2000 Adam steps, N = 1000
#: particles, T = 10 levels x 40 Euler steps of 0.02; the three rings take steps of 0.01, the digits
#: (d = 64, scaled to [-1, 1]) 3000 Adam steps and 500 particles.
SCALE = dict(n_train=3000, n_eval=900, train_steps=2000, levels=10, steps_per_level=40, step_size=0.02,
             n_particles=1000)  # fmt: skip
NAMED_CONFIGS = {
    "three_rings": dict(target="three_rings", step_size=0.01),
    "mog": dict(target="mog"),  # 4 Gaussians at (+-2, +-2)
    "swiss_roll": dict(target="swiss_roll"),
    "digits": dict(target="digits", train_steps=3000, n_particles=500),
}
for name, values in NAMED_CONFIGS.items():
    ex.add_named_config(name, {**SCALE, **values})


def check_before_work(config: dict) -> None:
    """What a validated (completed) config may still fail on here: the memory."""
    preflight.check_dmmd(config)


class _Stopped(Exception):
    """A stop signal arrived; raised at the next training log step or noise level."""


def _save_artifacts(run, setup, training, trajectory) -> None:
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
            paths += flow_pictures.save_sampling_pictures(directory, arrays["held_out"], snapshots, arrays["levels"],
                                                          title)  # fmt: skip
        np.savez_compressed(directory / "samples.npz", **arrays)
        for path in [*paths, directory / "samples.npz"]:
            run.add_artifact(str(path), name=path.name)


def _log_finite(run, metrics: dict[str, float], step: int) -> None:
    """Log ``metrics`` at ``step``, or raise FloatingPointError naming the first non-finite one (nothing of
    it logged): a diverged run ends FAILED with that reason and no NaN or inf in metrics.json."""
    for name, value in metrics.items():
        if not np.isfinite(value):
            raise FloatingPointError(f"the run diverged: {name} is {value} at step {step}")
    for name, value in metrics.items():
        run.log_scalar(name, value, step)


def _training_logger(run, progress: RunProgress, should_stop):
    def log(step: int, loss: float, curve: list[float]) -> None:
        levels = {dmmd_run.level_metric(level): value for level, value in zip(dmmd_run.EVAL_LEVELS, curve)}
        _log_finite(run, {"loss": loss, **levels}, step)
        progress.note({"loss": loss})
        progress.update(step)
        if should_stop():
            raise _Stopped(f"stopped on request at training step {step}")

    return log


def _level_logger(run, setup, latest: dict, progress: RunProgress, should_stop):
    def log(k: int, level: float, particles) -> None:
        step = k * setup.config["steps_per_level"]
        latest["metrics"] = dmmd_run.sample_metrics(setup.data, particles)
        _log_finite(run, {"noise_level": 1.0 if k == 0 else level, **latest["metrics"]}, step)
        progress.note(latest["metrics"])
        progress.update(step)
        if should_stop() and k < setup.config["levels"]:
            raise _Stopped(f"stopped on request after noise level {k}")

    return log


def _run_one(config: dict, run, should_stop):
    """Train (or load) and sample for one run; its outcome: the result, or the exception it ends with
    (RunInterrupted on a stop request, FloatingPointError when it diverged), artifacts saved."""
    setup = dmmd_run.setup_dmmd(config)
    latest, training, trajectory = {}, None, None
    try:
        if not setup.loaded:
            with RunProgress("training step", setup.config["train_steps"]) as progress:
                training = dmmd_run.train(setup, on_log=_training_logger(run, progress, should_stop))
        with RunProgress("sampler step", setup.config["levels"] * setup.config["steps_per_level"]) as progress:
            trajectory = dmmd_run.sample(setup, on_level=_level_logger(run, setup, latest, progress, should_stop))
        final = {"train_seconds_per_step": training.seconds_per_step if training is not None else 0.0,
                 "sample_seconds": trajectory.seconds, "recording_seconds": trajectory.recording_seconds,
                 **dmmd_run.spectrum_metrics(setup), **dmmd_run.floor_metrics(setup)}  # fmt: skip
        # also as metrics, so that results tables (figures) can read them
        _log_finite(run, final, setup.config["levels"] * setup.config["steps_per_level"])
    except (_Stopped, FloatingPointError) as stop:
        _save_artifacts(run, setup, training, trajectory)
        return RunInterrupted(str(stop)) if isinstance(stop, _Stopped) else stop
    _save_artifacts(run, setup, training, trajectory)
    return {**latest["metrics"], **final}


def train(batch: Batch) -> None:
    """Run the runs of ``batch`` one after the other, each with its own outcome; after a stop signal
    the run in progress ends INTERRUPTED (artifacts saved) and the runs not started end INTERRUPTED."""
    for replica, (config, run) in enumerate(zip(batch.configs, batch.runs)):
        if batch.should_stop():
            batch.finish(replica, RunInterrupted("stopped on request before the run started"))
            continue
        try:
            outcome = _run_one(config, run, batch.should_stop)
        except Exception as error:  # this run fails alone; the batch's other runs still go
            outcome = error
        batch.finish(replica, outcome)


runs = ExperimentRuns(ex, train, validate_dmmd_config, check_before_work, checkpoints=False)
run_replicas = runs.run_replicas

if __name__ == "__main__":
    runs.run_as_script()
