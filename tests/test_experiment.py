"""The student-teacher experiment through its real command line and Sacred's real observers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAIN = str(ROOT / "experiments" / "train.py")
TINY = ["epochs=3", "n_particles=20", "n_train=100", "n_valid=50", "batch_size=50", "log_every=1"]
METRICS = {"train_mmd2", "valid_mmd2", "loss", "noise_level", "lmbda", "epoch_seconds"}


def train(*args, cwd=None, env=None, timeout=120):
    return subprocess.run(
        [sys.executable, TRAIN, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def load(run_dir: Path, name: str):
    with open(run_dir / name) as handle:
        return json.load(handle)


def run_dirs(folder: Path):
    return sorted((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def values(metrics):
    return {name: entry["values"] for name, entry in metrics.items() if name != "epoch_seconds"}


@pytest.mark.parametrize("method", ["sgd", "noise_injection", "diffusion", "ksd", "drmmd"])
def test_each_method_completes_and_is_reproducible(tmp_path, method):
    extra = ["drmmd_noise=True"] if method == "drmmd" else []
    for _ in range(2):
        done = train("with", f"method={method}", *TINY, *extra, "seed=7", "-F", str(tmp_path))
        assert done.returncode == 0, done.stderr
    first, second = run_dirs(tmp_path)
    run = load(first, "run.json")
    assert run["status"] == "COMPLETED"
    assert set(run["result"]) == {"valid_mmd2", "best_valid_mmd2"}
    config = load(first, "config.json")
    assert config["method"] == method and config["seed"] == 7
    metrics = load(first, "metrics.json")
    assert set(metrics) == METRICS
    assert metrics["valid_mmd2"]["steps"] == [0, 1, 2, 3]
    assert all(isinstance(v, float) for v in metrics["train_mmd2"]["values"])
    assert values(metrics) == values(load(second, "metrics.json"))
    assert (first / "result.npz").is_file()


def test_default_observer_directory_from_environment(tmp_path):
    env = dict(os.environ, STUDENTTEACHER_RUNS=str(tmp_path / "store"))
    done = train("with", *TINY, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    (only,) = run_dirs(tmp_path / "store")
    assert load(only, "run.json")["status"] == "COMPLETED"
    assert len((only / "cout.txt").read_text()) < 2000


def test_named_config_is_applied(tmp_path):
    done = train("with", "drmmd_paper", *TINY, "-F", str(tmp_path))
    assert done.returncode == 0, done.stderr
    config = load(run_dirs(tmp_path)[0], "config.json")
    assert (config["method"], config["readout"], config["lmbda"], config["epochs"]) == ("drmmd", "dense", 0.1, 3)


def test_sql_observer_is_refused_with_the_reason(tmp_path):
    database = tmp_path / "runs.db"
    done = train("with", *TINY, "-s", f"sqlite:///{database}")
    assert done.returncode != 0
    assert "SqlObserver cannot store this experiment" in done.stderr
    assert not database.exists()


def test_divergence_fails_with_reason_and_keeps_metrics(tmp_path):
    done = train("with", *TINY, "lr=1e30", "-F", str(tmp_path))
    assert done.returncode != 0
    (run_dir,) = run_dirs(tmp_path)
    run = load(run_dir, "run.json")
    assert run["status"] == "FAILED"
    assert "TrainingDiverged: non-finite loss at epoch 1" in "".join(run["fail_trace"])
    metrics = load(run_dir, "metrics.json")
    assert metrics["train_mmd2"]["steps"] == [0] and metrics["train_mmd2"]["values"][0] > 0
    assert (run_dir / "result.npz").is_file()


@pytest.mark.parametrize(
    "bad,key",
    [("method=adam", "'method'"), ("lr=-1", "'lr'"), ("lmbda=0", "'lmbda'"), ("batch_size=500", "'batch_size'"),
     ("dtype=float16", "'dtype'"), ("methd=sgd", "'methd'"), ("device=cuda", "'device'")],
)
def test_bad_config_fails_before_any_run(tmp_path, bad, key):
    if bad == "device=cuda" and os.environ.get("CUDA_VISIBLE_DEVICES", "") not in ("", "-1"):
        pytest.skip("a CUDA device may be present")
    done = train("with", *TINY, bad, "-F", str(tmp_path / "store"))
    assert done.returncode != 0
    assert f"config key {key}" in done.stderr
    assert not (tmp_path / "store").exists() or not run_dirs(tmp_path / "store")


def test_sigterm_interrupts_with_checkpoint_and_resume_matches(tmp_path):
    config = ["n_particles=50", "n_train=200", "n_valid=100", "batch_size=50", "log_every=1", "dtype=float64",
              "method=noise_injection", "noise_decay_every=3", "seed=11"]
    stopped_dir = tmp_path / "stopped"
    process = subprocess.Popen(
        [sys.executable, TRAIN, "with", *config, "epochs=1000000", "-F", str(stopped_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    run_file = stopped_dir / "1" / "run.json"
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None and not run_file.exists():
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert load(stopped_dir / "1", "run.json")["status"] == "INTERRUPTED", stderr
    checkpoint = stopped_dir / "1" / "checkpoint.pt"
    assert checkpoint.is_file()
    assert load(stopped_dir / "1", "metrics.json")["train_mmd2"]["steps"][0] == 0

    import torch

    stopped_at = torch.load(checkpoint, weights_only=False)["epoch"]
    horizon = f"epochs={stopped_at + 5}"
    straight = train("with", *config, horizon, "-F", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    reference = values(load(run_dirs(tmp_path / "straight")[0], "metrics.json"))
    resumed = train("with", *config, horizon, f"resume_from={checkpoint}", "-F", str(tmp_path / "resumed"))
    assert resumed.returncode == 0, resumed.stderr
    resumed_dir = run_dirs(tmp_path / "resumed")[0]
    assert load(resumed_dir, "config.json")["resume_from"] == str(checkpoint)
    after = load(resumed_dir, "metrics.json")
    assert after["train_mmd2"]["steps"] == list(range(stopped_at + 1, stopped_at + 6))
    for name, series in values(after).items():
        assert series == reference[name][stopped_at + 1 :], name


def test_eight_concurrent_runs_get_distinct_directories(tmp_path):
    processes = [
        subprocess.Popen([sys.executable, TRAIN, "with", *TINY, f"seed={i}", "-F", str(tmp_path)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for i in range(8)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    dirs = run_dirs(tmp_path)
    assert [p.name for p in dirs] == [str(i) for i in range(1, 9)]
    assert sorted(load(p, "config.json")["seed"] for p in dirs) == list(range(8))
    assert all(load(p, "run.json")["status"] == "COMPLETED" for p in dirs)
