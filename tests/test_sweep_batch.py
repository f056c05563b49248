"""`sweep run --batch R`: tasks trained as batched replicas, each still its own sweep run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "experiments" / "sweeps" / "smoke.yaml")


def sweep(*args, cwd):
    return subprocess.run([sys.executable, "-m", "studentteacher.sweep", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def valid_curve(run_dir: Path):
    return json.loads((run_dir / "metrics.json").read_text())["valid_mmd2"]["values"]


def test_batched_tasks_match_plain_tasks(tmp_path):
    batched = sweep("run", SMOKE, "--index", "2", "--batch", "2", "--observer", str(tmp_path / "b"), cwd=tmp_path)
    assert batched.returncode == 0, batched.stderr
    for index in (2, 3):
        plain = sweep("run", SMOKE, "--index", str(index), "--observer", str(tmp_path / "p"), cwd=tmp_path)
        assert plain.returncode == 0, plain.stderr
        run_dir = tmp_path / "b" / f"{index:05d}-1"
        assert json.loads((run_dir / "run.json").read_text())["status"] == "COMPLETED"
        assert valid_curve(run_dir) == pytest.approx(valid_curve(tmp_path / "p" / f"{index:05d}-1"), rel=1e-5)
    status = sweep("status", SMOKE, "--observer", str(tmp_path / "b"), "--json", cwd=tmp_path)
    states = {entry["index"]: entry["state"] for entry in json.loads(status.stdout)}
    assert states == {0: "missing", 1: "missing", 2: "completed", 3: "completed"}


def test_incompatible_tasks_are_refused_naming_the_key(tmp_path):
    done = sweep("run", SMOKE, "--index", "1", "--batch", "2", "--observer", str(tmp_path / "b"), cwd=tmp_path)
    assert done.returncode == 2
    assert "tasks 1..2 cannot be batched" in done.stderr and "method='drmmd'" in done.stderr
    assert not list((tmp_path / "b").glob("0000*"))


FLOW_SWEEP = """\
experiment: particle_flow
base: {target: three_rings, flow: drmmd, n_particles: 30, n_target: 30, steps: 10, log_every: 5,
       snapshot_every: 5, device: cpu}
grid: {lmbda: [0.001, 0.01]}
seeds: [1, 2]
"""


def w1_curve(run_dir: Path):
    return json.loads((run_dir / "metrics.json").read_text())["w1"]["values"]


def test_batched_flow_tasks_match_plain_tasks(tmp_path):
    path = tmp_path / "flows.yaml"
    path.write_text(FLOW_SWEEP)
    batched = sweep("run", str(path), "--index", "1", "--batch", "2", "--observer", str(tmp_path / "b"), cwd=tmp_path)
    assert batched.returncode == 0, batched.stderr  # tasks 1 and 2: lambda 0.001 seed 2, lambda 0.01 seed 1
    for index in (1, 2):
        plain = sweep("run", str(path), "--index", str(index), "--observer", str(tmp_path / "p"), cwd=tmp_path)
        assert plain.returncode == 0, plain.stderr
        run_dir = tmp_path / "b" / f"{index:05d}-1"
        assert json.loads((run_dir / "run.json").read_text())["status"] == "COMPLETED"
        assert w1_curve(run_dir) == pytest.approx(w1_curve(tmp_path / "p" / f"{index:05d}-1"), rel=1e-10)


def test_sweep_tasks_use_the_cpus_of_their_slurm_allocation(tmp_path):
    """An array task runs `sweep run`: each experiment sets torch's threads from SLURM_CPUS_PER_TASK."""
    path = tmp_path / "flows.yaml"
    path.write_text(FLOW_SWEEP)
    environment = {**os.environ, "SLURM_CPUS_PER_TASK": "3", "OMP_NUM_THREADS": "1"}
    for sweep_file, observer in ((SMOKE, tmp_path / "train"), (str(path), tmp_path / "flow")):
        done = subprocess.run([sys.executable, "-m", "studentteacher.sweep", "run", sweep_file, "--index", "0",
                               "--observer", str(observer)], capture_output=True, text=True, cwd=tmp_path,
                              timeout=300, env=environment)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads((observer / "00000-1" / "info.json").read_text())["threads"] == 3
