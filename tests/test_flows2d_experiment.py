"""The Sacred experiment particle_flow, run through its real command line.

Each run is a fresh Python process (imports of torch, Sacred, matplotlib and POT dominate its
time), so only one completed, one failed and one rejected run are in the fast set.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "flows2d.py"
METRICS = {"divergence", "mmd2", "w1", "w2", "lmbda", "step_size"}


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
    assert set(info["result"]) == {"w1", "w2", "mmd2", "divergence"}
    metrics = _read(run, "metrics.json")
    assert set(metrics) == METRICS
    assert metrics["w1"]["steps"] == [0, 10, 20, 30, 40]
    assert metrics["step_size"]["values"][0] == pytest.approx(1e-4)  # lambda * step = 1e-3 * 0.1
    assert {"trajectory.npz", "snapshots.png", "flow.gif"} <= set(info["artifacts"])
    for name in ("trajectory.npz", "snapshots.png", "flow.gif"):
        assert (run / name).stat().st_size > 0, name
    config = _read(run, "config.json")
    assert config["flow"] == "drmmd" and config["lmbda"] == 1e-3 and config["seed"] == 3


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
