"""The Sacred experiment particle_flow, run through its real command line.

Each run is a fresh Python process (imports of torch, Sacred, matplotlib and POT dominate its
time), so only one completed, one failed and one rejected run are in the fast set.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import import_script

from studentteacher import flows

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "flows2d.py"
METRICS = {"divergence", "mmd2", "w1", "w2", "lmbda", "step_size", "bandwidth", "mean_gap"}
# a completed run on a 2-D target of DMMD: against its held-out sample, and the floor (studentteacher.held_out)
HELD_OUT = {"sample_w1", "sample_w2", "sample_mmd2", "sample_w1_floor", "sample_w2_floor", "sample_mmd2_floor"}


def _run(tmp_path, *updates, observer=True):
    command = [sys.executable, str(SCRIPT), "with", *updates]
    if observer:
        command += ["-F", str(tmp_path / "runs")]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment)


def _strict(constant):
    raise ValueError(f"non-standard JSON constant {constant}")


def _read(run_directory: Path, name: str):
    return json.loads((run_directory / name).read_text(), parse_constant=_strict)


def test_three_ring_drmmd_completes_with_metrics_and_artifacts(tmp_path):
    done = _run(tmp_path, "three_rings_drmmd", "steps=40", "n_particles=30", "n_target=30", "log_every=10",
                "snapshot_every=20", "seed=3")  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = tmp_path / "runs" / "1"
    info = _read(run, "run.json")
    assert info["status"] == "COMPLETED"
    assert set(info["result"]) == {"w1", "w2", "mmd2", "divergence"} | HELD_OUT
    metrics = _read(run, "metrics.json")
    assert set(metrics) == METRICS | HELD_OUT
    assert metrics["w1"]["steps"] == [0, 10, 20, 30, 40] and metrics["sample_w1"]["steps"] == [40]
    assert metrics["sample_w1"]["values"][0] != pytest.approx(metrics["w1"]["values"][-1]), "other points"
    assert metrics["step_size"]["values"][0] == pytest.approx(1e-4)  # lambda * step = 1e-3 * 0.1
    assert {"trajectory.npz", "snapshots.png", "flow.gif"} <= set(info["artifacts"])
    for name in ("trajectory.npz", "snapshots.png", "flow.gif"):
        assert (run / name).stat().st_size > 0, name
    config = _read(run, "config.json")
    assert config["flow"] == "drmmd" and config["lmbda"] == 1e-3 and config["seed"] == 3
    saved = np.load(run / "trajectory.npz")  # the distance of the means, recomputed from the snapshots
    gaps = np.linalg.norm(saved["snapshots"].mean(axis=1) - saved["target"].mean(axis=0), axis=1)
    logged = dict(zip(metrics["mean_gap"]["steps"], metrics["mean_gap"]["values"]))
    assert list(saved["snapshot_steps"]) == [0, 20, 40] and gaps.min() > 0.01
    assert [logged[step] for step in (0, 20, 40)] == pytest.approx(gaps.tolist(), rel=1e-12)


@pytest.mark.slow
def test_default_observer_goes_to_env_directory(tmp_path):
    runs = tmp_path / "elsewhere"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "with", "target=gaussian_1d", "flow=mmd_noise", "bandwidth=2.0", "steps=5",
         "n_particles=20", "n_target=20", "noise_level=10.0", "noise_until=3", "log_every=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "STUDENTTEACHER_RUNS": str(runs)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _read(runs / "1", "run.json")["status"] == "COMPLETED"


def test_forced_divergence_fails_with_earlier_metrics_kept(tmp_path):
    done = _run(tmp_path, "flow=mmd", "step_size=1e300", "steps=20", "n_particles=30", "n_target=30",
                "log_every=1")  # fmt: skip
    assert done.returncode != 0
    assert "diverged at step 1" in done.stderr
    run = tmp_path / "runs" / "1"
    assert _read(run, "run.json")["status"] == "FAILED"
    metrics = _read(run, "metrics.json")
    assert metrics["w1"]["steps"] == [0] and set(metrics) == METRICS
    assert (run / "trajectory.npz").exists()


@pytest.mark.parametrize(
    "update, key",
    [("bandwidth=-1.0", "bandwidth"),
     pytest.param("kernel=rbf", "kernel", marks=pytest.mark.slow),
     pytest.param("lmbda=0", "lmbda", marks=pytest.mark.slow)],
)  # fmt: skip
def test_bad_config_fails_before_any_work(tmp_path, update, key):
    done = _run(tmp_path, update)
    assert done.returncode != 0
    assert f"config key '{key}'" in done.stderr
    assert not (tmp_path / "runs").exists(), "no run may be started for a bad config"


# ----------------------------------------------------------------------------- batched replicas
TINY_FLOW = ["n_particles=24", "n_target=24", "steps=20", "log_every=5", "snapshot_every=10"]


def _runs_by_seed(folder: Path) -> dict[int, Path]:
    return {_read(d, "config.json")["seed"]: d for d in folder.iterdir() if d.name.isdigit()}


def test_replicas_are_separate_runs_equal_to_plain_runs(tmp_path):
    common = ["target=gaussian", "flow=mmd_noise", "noise_level=0.5", "noise_until=10", "bandwidth=1.0", *TINY_FLOW]
    done = _run(tmp_path, *common, "replicas=2", "seed=7")
    assert done.returncode == 0, done.stderr
    batched = _runs_by_seed(tmp_path / "runs")
    assert sorted(batched) == [7, 8]
    plain = subprocess.run([sys.executable, str(SCRIPT), "with", *common, "seed=8", "-F", str(tmp_path / "plain")],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    plain_metrics = _read(tmp_path / "plain" / "1", "metrics.json")
    replica_metrics = _read(batched[8], "metrics.json")
    for name in METRICS:
        assert replica_metrics[name]["steps"] == plain_metrics[name]["steps"] == [0, 5, 10, 15, 20]
        assert replica_metrics[name]["values"] == [pytest.approx(v, rel=1e-10, abs=1e-14) for v in plain_metrics[name]["values"]]
    for run_dir in batched.values():
        info = _read(run_dir, "run.json")
        assert info["status"] == "COMPLETED" and set(info["result"]) == {"w1", "w2", "mmd2", "divergence"}
        assert {"trajectory.npz", "snapshots.png", "flow.gif"} <= set(info["artifacts"])


def test_a_diverging_replica_is_failed_alone(tmp_path):
    experiment = import_script(SCRIPT, "flows2d_experiment")
    updates = [dict(flow="mmd", n_particles=30, n_target=30, steps=6, log_every=1, snapshot_every=3, seed=seed,
                    step_size=step_size) for seed, step_size in ((1, 0.1), (2, 1e300), (3, 0.1))]  # fmt: skip
    options = {"--file_storage": str(tmp_path), "--capture": "no"}
    statuses = experiment.run_replicas([dict(config_updates=u, options=dict(options)) for u in updates])
    assert statuses == ["COMPLETED", "FAILED", "COMPLETED"]
    runs = _runs_by_seed(tmp_path)
    failed = _read(runs[2], "run.json")
    assert "diverged at step 1 (replica 1)" in "".join(failed["fail_trace"])
    assert _read(runs[2], "metrics.json")["w1"]["steps"] == [0]
    assert "trajectory.npz" in failed["artifacts"]
    for seed in (1, 3):
        assert _read(runs[seed], "run.json")["status"] == "COMPLETED"
        assert _read(runs[seed], "metrics.json")["w1"]["steps"] == [0, 1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("replicas", [1, 2])
def test_sigterm_interrupts_the_flow_runs_with_artifacts(tmp_path, replicas):
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "with", "flow=mmd", "n_particles=30", "n_target=30", "steps=10000000",
         "log_every=50", f"replicas={replicas}", "seed=1", "-F", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and len(list(tmp_path.glob("*/metrics.json"))) < replicas:
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    runs = _runs_by_seed(tmp_path)
    assert sorted(runs) == list(range(1, 1 + replicas))
    for run_dir in runs.values():
        info = _read(run_dir, "run.json")
        assert info["status"] == "INTERRUPTED", stderr
        assert "trajectory.npz" in info["artifacts"] and _read(run_dir, "metrics.json")["w1"]["steps"][0] == 0
        assert (run_dir / "checkpoint.pt").exists() and "checkpoint" in _read(run_dir, "info.json")


# ----------------------------------------------------------------------------- reliability
ISSUE_KALE = ["target=three_rings", "flow=kale", "n_particles=60", "n_target=60", "steps=1500", "bandwidth=0.15",
              "seed=3"]  # fmt: skip


def test_runaway_kale_flow_fails_and_its_default_step_flows(tmp_path):
    """Regression (the issue's command ended COMPLETED with W1 rising from 0.69 to 8.8): at its old
    step 0.1 the flow fails naming the step and how far the particles ran; with the default step
    (0.1 * lambda for kale) the same command completes and W1 falls."""
    failed = _run(tmp_path, *ISSUE_KALE, "step_size=0.1", "log_every=50")
    assert failed.returncode != 0 and "the particles ran away" in failed.stderr
    run = tmp_path / "runs" / "1"
    assert _read(run, "run.json")["status"] == "FAILED" and (run / "trajectory.npz").exists()
    done = _run(tmp_path, *ISSUE_KALE)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "runs" / "2"
    assert _read(run, "config.json")["step_size"] == pytest.approx(1e-4)
    w1 = _read(run, "metrics.json")["w1"]["values"]
    assert w1[-1] < 0.9 * w1[0]


def test_sigterm_then_resume_from_the_checkpoint_equals_the_uninterrupted_run(tmp_path):
    """Regression (2-D flows restarted from step 0 after an interruption), through the experiment:
    SIGTERM writes checkpoint.pt into the run directory; a run with resume_from continues it, and its
    metrics.json and trajectory.npz equal those of an uninterrupted flow (bitwise, float64)."""
    common = ["target=gaussian", "flow=mmd_noise", "noise_level=0.5", "noise_until=3000", "bandwidth=1.0",
              "n_particles=24", "n_target=24", "log_every=100", "snapshot_every=1000", "seed=5"]  # fmt: skip
    process = subprocess.Popen([sys.executable, str(SCRIPT), "with", *common, "steps=10000000", "-F", str(tmp_path / "a")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and not (tmp_path / "a" / "1" / "metrics.json").exists():
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    first = tmp_path / "a" / "1"
    assert _read(first, "run.json")["status"] == "INTERRUPTED", stderr
    assert _read(first, "info.json")["checkpoint"] == str(first / "checkpoint.pt")
    stopped_at = torch.load(first / "checkpoint.pt", weights_only=False)["step"]
    steps = (stopped_at // 100 + 3) * 100
    resumed = _run(tmp_path, *common, f"steps={steps}", f"resume_from={first / 'checkpoint.pt'}", observer=False)
    assert resumed.returncode == 0, resumed.stderr
    run = tmp_path / "runs" / "1"
    config = {key: value for key, value in _read(run, "config.json").items() if key != "resume_from"}
    (expected,) = flows.setup_flow([config]).run()
    metrics, logged = expected.metrics(), _read(run, "metrics.json")
    after = metrics["step"] >= stopped_at  # the checkpoint holds steps 0 .. stopped_at - 1 (a stop on a log step: 4)
    assert logged["w1"]["steps"] == metrics["step"][after].long().tolist() and len(logged["w1"]["steps"]) in (3, 4)
    for name in METRICS:
        assert logged[name]["values"] == metrics[name][after].tolist(), name
    arrays = np.load(run / "trajectory.npz")
    assert arrays["step"].tolist() == metrics["step"].tolist() and arrays["step"][0] == 0
    assert (arrays["w1"] == metrics["w1"].numpy()).all() and (arrays["particles"] == expected.particles.numpy()).all()


def test_resume_without_repeating_the_config_takes_it_and_the_seed_from_the_checkpoint(tmp_path):
    """Regression: resuming a flow without repeating its seed drew a new one (and the checkpoint refused it)."""
    first = _run(tmp_path, "flow=mmd_noise", "noise_level=0.5", "n_particles=21", "n_target=21", "steps=200",
                 "log_every=50", "checkpoint_every=100", "seed=7")  # fmt: skip
    assert first.returncode == 0, first.stderr
    checkpoint = tmp_path / "runs" / "1" / "checkpoint.pt"
    resumed = _run(tmp_path, f"resume_from={checkpoint}", "steps=300")
    assert resumed.returncode == 0, resumed.stderr
    before, after = _read(tmp_path / "runs" / "1", "config.json"), _read(tmp_path / "runs" / "2", "config.json")
    assert after["seed"] == 7 and {k: v for k, v in after.items() if k not in ("steps", "resume_from")} == {
        k: v for k, v in before.items() if k not in ("steps", "resume_from")}
    assert _read(tmp_path / "runs" / "2", "metrics.json")["w1"]["steps"] == [200, 250, 300]
