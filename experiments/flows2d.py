"""Sacred experiment ``particle_flow``: 2-D particle flows of kernel divergences (:mod:`studentteacher.flows`).

    python experiments/flows2d.py with three_rings_drmmd steps=2000 -F /tmp/flowruns

Observers, flags, checks before work, stop signals and replica groups are the helper's
(:mod:`experiments.runs`): with no observer flag the run is stored in ``$STUDENTTEACHER_RUNS`` (default
``./runs``). Metrics (step = flow step):
``divergence``, ``mmd2``, ``w1``, ``w2``, ``lmbda``, ``step_size``, ``bandwidth``, ``mean_gap``; artifacts: ``trajectory.npz``
(metrics, snapshot steps, snapshots [S, N, d], target, final particles), ``snapshots.png``,
``flow.gif``. The result is ``{"w1", "w2", "mmd2", "divergence"}`` at the last step (distances to the
target points it flowed to) and, on DMMD's 2-D targets (three_rings, mog, swiss_roll), ``sample_w1``,
``sample_w2``, ``sample_mmd2`` against the held-out sample of its seed (n_target points it never saw)
and their floor ``sample_w1_floor`` ... (an exact sample of N points; :mod:`studentteacher.held_out`),
also logged at the last step. A non-finite
value or particles that ran away (:mod:`studentteacher.flows.run`) fail the run (Sacred marks it
FAILED) after saving what was logged; SIGTERM or SIGUSR2 (a SLURM time limit, ``scancel``) ends it
INTERRUPTED before the next step, artifacts saved and ``checkpoint.pt`` written into the run
directory (also every ``checkpoint_every`` steps); ``with ... resume_from=RUN_DIR/checkpoint.pt``
continues it exactly (a sweep resumes an interrupted task so).

    python experiments/flows2d.py with three_rings_mmd replicas=5 seed=1

runs R = 5 replicas (seeds 1..5) as one batched flow (:mod:`studentteacher.flows`), each its own
Sacred run with the metrics and artifacts of its plain run; a replica that diverges fails alone.
``sweep run --batch R`` batches sweep tasks that differ only in :data:`studentteacher.flows.REPLICA_KEYS`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from experiments.runs import Batch, ExperimentRuns, RunInterrupted  # first: it quiets Sacred's import warning
from experiments import flow_pictures

import numpy as np
from sacred import Experiment

from studentteacher import flows, held_out, preflight, toys
from studentteacher.progress import RunProgress
from studentteacher.replicas import check_compatible

ex = Experiment("particle_flow")
ex.add_config(flows.DEFAULTS)  # the key spec's defaults (studentteacher/flows/config.py; docs/contract.md)
for named in sorted((Path(__file__).resolve().parent / "configs" / "particle_flow").glob("*.yaml")):
    ex.add_named_config(named.stem, str(named))


@ex.config
def derived_defaults(flow, lmbda, steps):
    # the defaults that follow from other keys (a value given on the command line wins): the step 0.1 (kale:
    # 0.1 * lmbda), metric logs every max(1, steps // 200) steps and snapshots every max(1, steps // 20)
    step_size = flows.default_step_size(flow, lmbda)
    log_every = flows.default_period(steps, 200)
    snapshot_every = flows.default_period(steps, 20)


def _save_npz(path: Path, trajectory: flows.FlowTrajectory, toy: toys.Toy) -> None:
    arrays = {name: values.numpy() for name, values in trajectory.metrics().items()}
    arrays["snapshot_steps"] = np.asarray(trajectory.snapshot_steps, dtype=np.int64)
    if trajectory.snapshots:
        arrays["snapshots"] = trajectory.snapshot_tensor().numpy()  # (S, N, d)
    arrays["target"] = toy.target.detach().cpu().numpy()  # (M, d)
    if trajectory.particles is not None:
        arrays["particles"] = trajectory.particles.detach().cpu().numpy()  # (N, d)
    np.savez_compressed(path, **arrays)


def picture_title(config: dict) -> str:
    """The run's settings, e.g. 'drmmd flow on three_rings: N = 300, M = 300, gaussian sigma 0.15, step 0.1,
    lambda 0.001, seed 1': lambda, alpha, the velocity and the noise where the flow takes them (its ``options``)."""
    config = {**flows.DEFAULTS, **config}  # a stored config from before a key was added has its default
    options = flows.FLOWS[config["flow"]].options
    settings = f", lambda {config['lmbda']:g}" if "lmbda" in options else ""
    settings += f", alpha {config['hrmmd_alpha']:g}" if "hrmmd_alpha" in options else ""
    settings += f", {config['velocity']} velocity" if "velocity" in options else ""
    if "noise_level" in options:
        settings += f", noise {config['noise_level']:g} until step {config['noise_until']}"
    floor = " floor" if "floor" in options else ""
    target = config["target"]
    if target == "gaussian_nd":
        target += f" (d = {config['dim']}, |mu_0| = {config['source_distance']:g}; first two coordinates)"
    return (f"{config['flow']} flow on {target}: N = {config['n_particles']}, M = {config['n_target']}, "
            f"{config['kernel']} sigma{floor} {config['bandwidth']:g}, step {config['step_size']:g}{settings}, "
            f"seed {config['seed']}")


def _save_pictures(directory: Path, trajectory: flows.FlowTrajectory, toy: toys.Toy, title: str) -> list[Path]:
    if not trajectory.snapshots:
        return []
    target = toy.target.detach().cpu().numpy()[:, :2]  # (M, d) -> its first two coordinates when d > 2
    snapshots = trajectory.snapshot_tensor().numpy()[..., :2]  # (S, N, d)
    return flow_pictures.save_pictures(directory, target, snapshots, trajectory.snapshot_steps, title)


def _save_artifacts(_run, trajectory, toy) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        _save_npz(directory / "trajectory.npz", trajectory, toy)
        pictures = _save_pictures(directory, trajectory, toy, picture_title(dict(_run.config)))
        for path in [directory / "trajectory.npz", *pictures]:
            _run.add_artifact(str(path), name=path.name)


def check_before_work(config: dict) -> None:
    """What a validated config may still fail on here: the ``resume_from`` checkpoint, the memory."""
    flows.checked_checkpoint(config)
    preflight.check_flow(config)


def _result(trajectory: flows.FlowTrajectory) -> dict[str, float]:
    final = trajectory.records[-1]
    return {"w1": final.w1, "w2": final.w2, "mmd2": final.mmd2, "divergence": final.divergence}


def _held_out_scores(run, config: dict, trajectory: flows.FlowTrajectory) -> dict[str, float]:
    """The final particles against the held-out sample of the run's seed (points it did not flow to) and
    the floor, an exact sample of as many points (``sample_w1``, ``sample_w1_floor``, ...;
    studentteacher.held_out: DMMD's 2-D targets), logged at the last step; {} for another target."""
    scores = held_out.final_scores(config["target"], trajectory.particles, config["n_target"], config["seed"])
    for name, value in scores.items():
        run.log_scalar(name, value, config["steps"])
    return scores


#: The metrics a progress line shows.
PROGRESS_METRICS = ("divergence", "mmd2", "w1")


def _log_into(runs: list, progress: RunProgress):
    def log(record: flows.FlowRecord) -> None:
        for name in flows.METRICS:
            runs[record.replica].log_scalar(name, float(getattr(record, name)), record.step)
        progress.note({name: getattr(record, name) for name in PROGRESS_METRICS}, record.replica)

    return log


def _start_progress(setup: flows.FlowSetup, runs: list) -> RunProgress:
    """The steps' progress (:mod:`studentteacher.progress`), after saying what a resumed flow resumes."""
    done = setup.resume[0].step if setup.resume else 0
    progress = RunProgress("step", setup.config["steps"], done)
    if setup.resume:
        progress.resuming([run._id for run in runs], setup.config["resume_from"])
    return progress


def train(batch: Batch) -> None:
    """Advance the runs of ``batch`` as one flow (batched when R > 1); each run gets its metrics, its
    artifacts and its own outcome: one that diverges fails alone, and on SIGTERM/SIGUSR2 every other
    one ends INTERRUPTED at the next log step, artifacts saved."""
    check_compatible(batch.configs, flows.REPLICA_KEYS)
    setup = flows.setup_flow(batch.configs)
    runs, failed = batch.runs, set()
    progress = _start_progress(setup, runs)

    def on_failure(error: flows.FlowDivergedError) -> None:
        replica = error.replica or 0
        failed.add(replica)
        _save_artifacts(runs[replica], error.trajectory, setup.toys[replica])
        batch.finish(replica, error)

    try:
        trajectories = setup.run(on_log=_log_into(runs, progress), on_failure=on_failure,
                                 should_stop=batch.should_stop, on_step=progress.update,
                                 checkpoint_paths=batch.checkpoint_paths, before_checkpoint=batch.flush)  # fmt: skip
    except flows.FlowInterrupted as stop:
        for run, path in zip(runs, stop.checkpoint_paths):
            run.info["checkpoint"] = path
        trajectories, outcome = stop.trajectories, RunInterrupted(f"{stop}; checkpoint: checkpoint.pt")
    else:
        outcome = None
    finally:
        progress.close()
    for replica, trajectory in enumerate(trajectories):
        if replica not in failed:
            _save_artifacts(runs[replica], trajectory, setup.toys[replica])
            config, run = setup.configs[replica], runs[replica]
            batch.finish(replica, outcome or {**_result(trajectory), **_held_out_scores(run, config, trajectory)})


runs = ExperimentRuns(ex, train, flows.validate_flow_config, check_before_work,
                     checkpoint_config=lambda path: flows.load_checkpoint(path).config)
run_replicas = runs.run_replicas

if __name__ == "__main__":
    runs.run_as_script()
