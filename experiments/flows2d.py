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


@ex.config
def config():
    target = "three_rings"  # three_rings | mog | gaussian | gaussian_1d | gaussian_nd | swiss_roll | spiral
    # a key of studentteacher.flows.FLOWS: mmd | mmd_noise | drmmd | drmmd_adaptive | kale | mmd_adaptive_bandwidth
    # | srmmd | hrmmd
    flow = "mmd"
    # gaussian | laplace | imq | energy | gaussian_scaled (bandwidth convention: studentteacher.kernels);
    # srmmd and hrmmd take gaussian or imq
    kernel = "gaussian"
    bandwidth = 0.15  # mmd_adaptive_bandwidth (kernel gaussian_scaled): the floor of the adaptive bandwidth
    dim = 2  # gaussian_nd only: the dimension d
    source_distance = 4.0  # gaussian_nd only: |mu_0|, the distance of the source's mean from the target's
    n_particles = 300
    n_target = 300
    steps = 1000
    lmbda = 1e-3
    # mmd/mmd_noise/kale/srmmd/hrmmd: gamma itself; drmmd: gamma = lmbda * step_size (studentteacher/flows/drmmd.py)
    step_size = flows.default_step_size(flow, lmbda)  # 0.1; kale: 0.1 * lmbda (studentteacher/flows/kale.py)
    noise_level = 0.0  # mmd_noise: beta_n = noise_level while step < noise_until, then 0
    noise_until = 0
    # srmmd/hrmmd (studentteacher/flows/srmmd.py): move along grad f ("witness", the authors' code) or along the
    # exact Wasserstein gradient of the divergence ("gradient"); the N d system per step by Cholesky ("dense")
    # or conjugate gradients ("cg"); hrmmd: alpha, the weight of ||grad f||^2 (1 - alpha: of ||f||^2) under mu
    velocity = "witness"
    linear_solver = "dense"
    hrmmd_alpha = 0.8
    dtype = "float64"
    device = "auto"  # "auto": cuda if available, else cpu
    # flow steps between metric logs and between snapshots (the last step is always both); a steps value
    # that is not an integer is left to the validation, which names it
    log_every = max(1, steps // 200) if isinstance(steps, int) else 1
    snapshot_every = max(1, steps // 20) if isinstance(steps, int) else 1
    replicas = 1  # > 1 on the command line: seeds seed, seed+1, ... as one batched flow, one run each
    threads = "auto"  # CPU threads: "auto" (studentteacher.threads) or a count
    checkpoint_every = 0  # flow steps between checkpoints (0: only on SIGTERM/SIGUSR2)
    resume_from = None  # a checkpoint.pt to continue from (only steps, log/snapshot/checkpoint periods, device differ)


@ex.named_config
def three_rings_mmd():
    # MMD flow on three rings, N = M = 300, Gaussian sigma = 0.15, step 0.1 (step 1 oscillates).
    target, flow, kernel, bandwidth = "three_rings", "mmd", "gaussian", 0.15
    n_particles, n_target, dtype = 300, 300, "float64"
    steps, step_size = 100_000, 0.1


@ex.named_config
def three_rings_drmmd():
    # DrMMD flow, lambda = 1e-3, step 0.1: effective rate gamma = lambda * step = 1e-4.
    target, flow, kernel, bandwidth = "three_rings", "drmmd", "gaussian", 0.15
    n_particles, n_target, dtype = 300, 300, "float64"
    steps, step_size, lmbda = 100_000, 0.1, 1e-3


@ex.named_config
def three_rings_drmmd_adaptive():
    # Adaptive DrMMD, lambda_0 = 0.1, step 0.1: gamma_n = max(lambda_n * 0.1, 1e-4).
    target, flow, kernel, bandwidth = "three_rings", "drmmd_adaptive", "gaussian", 0.15
    n_particles, n_target, dtype = 300, 300, "float64"
    steps, step_size, lmbda = 100_000, 0.1, 0.1


@ex.named_config
def three_rings_kale():
    # KALE flow, lambda = 1e-3, rate 1e-4: the KALE step is not multiplied by lambda, so step = 1e-4.
    target, flow, kernel, bandwidth = "three_rings", "kale", "gaussian", 0.15
    n_particles, n_target, dtype = 300, 300, "float64"
    steps, step_size, lmbda = 100_000, 1e-4, 1e-3


@ex.named_config
def gaussian_nd_adaptive_bandwidth():
    # Galashov et al. (2025), Prop. 3.1: N(mu_0, I) -> N(0, I) in R^10, |mu_0| = 6.5, scaled Gaussian kernel with
    # alpha_n = max(alpha*(mu_n), 1); step 729 = 3^(d/2 + 1), half the stable step of the mean at the floor
    # (experiments/sweeps/figures/adaptive_bandwidth.yaml).
    target, flow, kernel, bandwidth = "gaussian_nd", "mmd_adaptive_bandwidth", "gaussian_scaled", 1.0
    dim, source_distance = 10, 6.5
    n_particles, n_target, dtype = 300, 300, "float64"
    steps, step_size = 1000, 729.0


@ex.named_config
def gaussians_mmd_noise():
    # Arbel et al. (2019): 1-D N(10, 0.5) -> N(0, 1), sigma = 2, step 0.1, noise 10 for 5000 steps, N = M = 1000.
    target, flow, kernel, bandwidth = "gaussian_1d", "mmd_noise", "gaussian", 2.0
    n_particles, n_target, dtype = 1000, 1000, "float64"
    steps, step_size, noise_level, noise_until = 20_000, 0.1, 10.0, 5000


@ex.named_config
def gaussians_mmd():
    # The Gaussian setting of ``gaussians_mmd_noise`` without noise injection.
    target, flow, kernel, bandwidth = "gaussian_1d", "mmd", "gaussian", 2.0
    n_particles, n_target, dtype = 1000, 1000, "float64"
    steps, step_size = 20_000, 0.1


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
    lambda 0.001, seed 1'."""
    config = {**flows.SOBOLEV_OPTIONS, **config}
    with_lmbda = ("drmmd", "drmmd_adaptive", "kale", "srmmd", "hrmmd")
    lmbda = f", lambda {config['lmbda']:g}" if config["flow"] in with_lmbda else ""
    if config["flow"] == "hrmmd":
        lmbda += f", alpha {config['hrmmd_alpha']:g}"
    if config["flow"] in ("srmmd", "hrmmd"):
        lmbda += f", {config['velocity']} velocity"
    noise = (f", noise {config['noise_level']:g} until step {config['noise_until']}"
             if config["flow"] == "mmd_noise" else "")
    floor = " floor" if config["flow"] == "mmd_adaptive_bandwidth" else ""
    target = config["target"]
    if target == "gaussian_nd":
        target += f" (d = {config['dim']}, |mu_0| = {config['source_distance']:g}; first two coordinates)"
    return (f"{config['flow']} flow on {target}: N = {config['n_particles']}, M = {config['n_target']}, "
            f"{config['kernel']} sigma{floor} {config['bandwidth']:g}, step {config['step_size']:g}{lmbda}{noise}, "
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
