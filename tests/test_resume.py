"""Resuming runs: the seed and the config come from the checkpoint; a replica resumes alone or with its batch.

The interrupted batch is a real process stopped by SIGTERM; the resumed runs and the uninterrupted
references go through :meth:`ExperimentRuns.command_line` in this process (float64: the resumed
metrics equal the uninterrupted run's).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import import_script

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "experiments" / "train.py"
TINY = ["n_particles=10", "n_train=40", "n_valid=20", "batch_size=20", "log_every=1", "d_in=5", "dtype=float64",
        "method=noise_injection", "noise_decay_every=2"]  # fmt: skip


@pytest.fixture(scope="module")
def train():
    return import_script(TRAIN, "resume_train").runs


def load(run_dir: Path, name: str):
    return json.loads((run_dir / name).read_text())


def run_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def curves(run_dir: Path) -> dict[str, dict[int, float]]:
    metrics = load(run_dir, "metrics.json")
    return {name: dict(zip(m["steps"], m["values"])) for name, m in metrics.items() if name != "epoch_seconds"}


def straight(train, folder: Path, seed: int, epochs: int) -> dict[str, dict[int, float]]:
    assert train.command_line(["with", *TINY, f"seed={seed}", f"epochs={epochs}", "-F", str(folder)]) == 0
    return curves(run_dirs(folder)[-1])


def assert_continues(run_dir: Path, reference: dict, first: int, last: int) -> None:
    got = curves(run_dir)
    for name, points in got.items():
        assert sorted(points) == list(range(first, last + 1)), name
        assert [points[e] for e in range(first, last + 1)] == pytest.approx(
            [reference[name][e] for e in range(first, last + 1)], rel=1e-10, abs=1e-14), name


def test_plain_resume_without_the_seed_takes_it_from_the_checkpoint(train, tmp_path):
    """Regression: resuming without repeating the seed drew a new one and left a FAILED run."""
    assert train.command_line(["with", *TINY, "epochs=3", "checkpoint_every=3", "-F", str(tmp_path / "a")]) == 0
    (first,) = run_dirs(tmp_path / "a")
    checkpoint = first / "checkpoint.pt"
    assert train.command_line(["with", f"resume_from={checkpoint}", "epochs=6", "-F", str(tmp_path / "a")]) == 0
    first, resumed = run_dirs(tmp_path / "a")
    assert [load(d, "run.json")["status"] for d in (first, resumed)] == ["COMPLETED", "COMPLETED"]
    assert load(resumed, "config.json")["seed"] == load(first, "config.json")["seed"]
    assert load(resumed, "run.json")["meta"]["name"] == load(first, "run.json")["meta"]["name"], "reads as one run"
    reference = straight(train, tmp_path / "straight", load(first, "config.json")["seed"], 6)
    assert_continues(resumed, reference, 4, 6)


@pytest.fixture(scope="module")
def interrupted_batch(tmp_path_factory) -> tuple[Path, int]:
    """A replicas=2 run (seeds 5, 6) stopped by SIGTERM after a few checkpoints; (folder, checkpoint epoch)."""
    folder = tmp_path_factory.mktemp("batch")
    process = subprocess.Popen([sys.executable, str(TRAIN), "with", *TINY, "epochs=1000000", "checkpoint_every=1",
                                "replicas=2", "seed=5", "-F", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and len(list(folder.glob("*/checkpoint.pt"))) < 2:
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 3, stderr  # interrupted
    epochs = {torch.load(d / "checkpoint.pt", weights_only=False)["epoch"] for d in run_dirs(folder)}
    assert len(epochs) == 1 and all(load(d, "run.json")["status"] == "INTERRUPTED" for d in run_dirs(folder))
    return folder, epochs.pop()


def test_a_replica_of_an_interrupted_batch_resumes_alone(train, tmp_path, interrupted_batch):
    """Regression: a replica's checkpoint could not be resumed (seed mismatch with replicas=2, count with 1)."""
    folder, epoch = interrupted_batch
    second = next(d for d in run_dirs(folder) if load(d, "config.json")["seed"] == 6)
    out = tmp_path / "alone"
    assert train.command_line(["with", f"resume_from={second / 'checkpoint.pt'}", f"epochs={epoch + 3}",
                               "-F", str(out)]) == 0  # fmt: skip
    (resumed,) = run_dirs(out)
    config = load(resumed, "config.json")
    assert (config["seed"], config["replicas"], load(resumed, "run.json")["status"]) == (6, 1, "COMPLETED")
    assert_continues(resumed, straight(train, tmp_path / "straight", 6, epoch + 3), epoch + 1, epoch + 3)


def test_an_interrupted_batch_resumes_as_a_batch_from_replica_zeros_checkpoint(train, tmp_path, interrupted_batch):
    folder, epoch = interrupted_batch
    first = next(d for d in run_dirs(folder) if load(d, "config.json")["seed"] == 5)
    out = tmp_path / "batch"
    assert train.command_line(["with", "replicas=2", f"resume_from={first / 'checkpoint.pt'}", f"epochs={epoch + 3}",
                               "-F", str(out)]) == 0  # fmt: skip
    resumed = {load(d, "config.json")["seed"]: d for d in run_dirs(out)}
    assert sorted(resumed) == [5, 6]
    for seed, run_dir in resumed.items():
        assert load(run_dir, "run.json")["status"] == "COMPLETED"
        assert Path(load(run_dir, "config.json")["resume_from"]).parent.parent == folder
        assert_continues(run_dir, straight(train, tmp_path / f"straight{seed}", seed, epoch + 3), epoch + 1, epoch + 3)
