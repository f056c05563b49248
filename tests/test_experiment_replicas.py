"""Batched replicas through the experiment: one Sacred run per replica, like plain runs."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import import_script

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "experiments" / "train.py")
TINY = ["epochs=4", "n_particles=20", "n_train=100", "n_valid=50", "batch_size=50", "log_every=1"]


def load(path: Path):
    with open(path) as handle:
        return json.load(handle)


def runs_by_seed(folder: Path):
    runs = {}
    for run_dir in folder.iterdir():
        if run_dir.name.isdigit():
            runs[load(run_dir / "config.json")["seed"]] = run_dir
    return runs


def metric_values(run_dir: Path):
    return {k: v["values"] for k, v in load(run_dir / "metrics.json").items() if k != "epoch_seconds"}


def test_replicas_are_separate_runs_equal_to_plain_runs(tmp_path):
    common = [*TINY, "dtype=float64", "method=noise_injection"]
    done = subprocess.run([sys.executable, TRAIN, "with", *common, "replicas=3", "seed=5", "-F", str(tmp_path / "batched")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    batched = runs_by_seed(tmp_path / "batched")
    assert sorted(batched) == [5, 6, 7]
    plain = subprocess.run([sys.executable, TRAIN, "with", *common, "seed=6", "-F", str(tmp_path / "plain")],
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr
    (plain_dir,) = runs_by_seed(tmp_path / "plain").values()
    for name, series in metric_values(plain_dir).items():
        assert metric_values(batched[6])[name] == [pytest.approx(v, rel=1e-10, abs=1e-14) for v in series], name
    for seed, run_dir in batched.items():
        run = load(run_dir / "run.json")
        assert run["status"] == "COMPLETED" and set(run["result"]) == {"valid_mmd2", "best_valid_mmd2"}
        assert (run_dir / "result.npz").is_file()


def test_a_diverging_replica_is_failed_alone(tmp_path):
    train = import_script(TRAIN, "train_experiment")
    updates = [dict(n_particles=20, n_train=100, n_valid=50, batch_size=50, epochs=4, log_every=1, seed=seed, lr=lr)
               for seed, lr in ((1, 0.1), (2, 1e30), (3, 0.1))]
    options = {"--file_storage": str(tmp_path), "--capture": "no"}
    statuses = train.run_replicas([dict(config_updates=u, options=dict(options)) for u in updates])
    assert statuses == ["COMPLETED", "FAILED", "COMPLETED"]
    runs = runs_by_seed(tmp_path)
    failed = load(runs[2] / "run.json")
    assert failed["status"] == "FAILED" and "non-finite" in "".join(failed["fail_trace"])
    assert load(runs[2] / "metrics.json")["train_mmd2"]["steps"] == [0]
    for seed in (1, 3):
        assert load(runs[seed] / "run.json")["status"] == "COMPLETED"
        assert load(runs[seed] / "metrics.json")["train_mmd2"]["steps"] == [0, 1, 2, 3, 4]


def test_sigterm_interrupts_every_replica_with_checkpoints(tmp_path):
    process = subprocess.Popen(
        [sys.executable, TRAIN, "with", *TINY[1:], "epochs=1000000", "replicas=2", "seed=1", "-F", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None and len(list(tmp_path.glob("*/metrics.json"))) < 2:
        time.sleep(0.1)
    time.sleep(2.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    for run_dir in runs_by_seed(tmp_path).values():
        assert load(run_dir / "run.json")["status"] == "INTERRUPTED", stderr
        assert (run_dir / "checkpoint.pt").is_file()
