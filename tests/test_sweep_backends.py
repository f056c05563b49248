"""Sweep backends: the registry and the local backend (tasks as processes on this machine).

Every task is a real tiny run of the ``student_teacher`` experiment in its own process (a few
seconds each, mostly start-up); paths have spaces and quotes, as in tests/test_sweep.py.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from studentteacher import sweep as sw

TINY = {"epochs": 2, "n_particles": 10, "n_train": 100, "n_valid": 100, "batch_size": 50, "d_in": 5,
        "log_every": 1, "device": "cpu"}
ODD = "it's a \"local\" dir"


@pytest.fixture
def odd_dir(tmp_path, monkeypatch):
    directory = tmp_path / ODD
    directory.mkdir()
    monkeypatch.chdir(directory)
    monkeypatch.delenv("STUDENTTEACHER_RUNS", raising=False)
    return directory


def write_sweep(directory: Path, name: str, **spec) -> Path:
    spec = {"experiment": "student_teacher", "base": dict(TINY), **spec}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def most_at_once(tasks) -> int:
    """The largest number of the tasks' processes alive at one time."""
    events = sorted([(t.started, 1) for t in tasks] + [(t.started + t.seconds, -1) for t in tasks])
    alive = most = 0
    for _, change in events:
        alive += change
        most = max(most, alive)
    return most


# ------------------------------------------------------------------------------ registry


def test_unknown_backend_and_options_are_errors_listing_the_valid_ones(odd_dir, capsys):
    with pytest.raises(sw.SweepError, match=r"unknown backend 'pbs'; valid backends: slurm, local"):
        sw.make_backend("pbs")
    with pytest.raises(sw.SweepError, match=r"unknown submit option 'partition'; valid options: parallel, threads "
                                            r"\(backend local\)"):
        sw.make_backend("local", {"partition": "debug"})
    with pytest.raises(sw.SweepError, match=r"submit option 'parallel': got '0'; allowed: a positive integer"):
        sw.make_backend("local", {"parallel": "0"})
    with pytest.raises(sw.SweepError, match=r"unknown submit option 'parallel'; valid options: partition, time, mem, "
                                            r"gpus, cpus_per_task, requeue \(backend slurm\)"):
        sw.make_backend("slurm", {"parallel": 2})
    path = write_sweep(odd_dir, "registry", seeds=[1])
    assert sw.main(["submit", str(path), "--backend", "pbs"]) == sw.EXIT_INVALID
    assert "unknown backend 'pbs'; valid backends: slurm, local" in capsys.readouterr().err
    assert sw.main(["submit", str(path), "--parallel", "2", "--dry-run"]) == sw.EXIT_INVALID
    assert "unknown submit option 'parallel'" in capsys.readouterr().err, "slurm (the default) has no --parallel"
    assert not (odd_dir / "runs").exists()


def test_submit_without_sbatch_suggests_the_local_backend(odd_dir, capsys, monkeypatch):
    which = shutil.which

    def without_sbatch(name, *args, **kwargs):
        return None if name == "sbatch" else which(name, *args, **kwargs)

    monkeypatch.setattr(shutil, "which", without_sbatch)
    path = write_sweep(odd_dir, "nosbatch", seeds=[1])
    assert sw.main(["submit", str(path)]) == sw.EXIT_FAILED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sbatch is not on PATH" in err and "--backend local" in err, err


def test_local_dry_run_prints_the_commands_and_runs_nothing(odd_dir, capsys):
    path = write_sweep(odd_dir, "dry", grid={"lr": [0.1, 0.2]}, seeds=[1, 2])
    assert sw.main(["submit", str(path), "--backend", "local", "--batch", "2", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"# would run: {sys.executable} -m studentteacher.sweep run")
                                   for line in lines)
    assert "--indices 0,1 --validate task" in lines[0] and "--indices 2,3 --validate task" in lines[1]
    assert not (odd_dir / "runs").exists()


# ------------------------------------------------------------------------------ local backend


def test_local_backend_runs_a_six_task_sweep_two_at_a_time(odd_dir, capsys):
    path = write_sweep(odd_dir, "six", grid={"method": ["sgd", "drmmd"]}, seeds=[1, 2, 3])
    sweep = sw.load(path)
    tasks = sw.submit(sweep, {"parallel": "2"}, backend="local")
    assert [t.indices for t in tasks] == [[i] for i in range(6)]
    assert [t.outcome for t in tasks] == ["completed"] * 6, [t.log.read_text()[-2000:] for t in tasks]
    assert most_at_once(tasks) == 2
    out = capsys.readouterr().out
    assert sorted(line.split(":")[0] for line in out.splitlines()) == [f"task {i}" for i in range(6)]
    assert sw.main(["status", str(path), "--json"]) == 0
    statuses = json.loads(capsys.readouterr().out)
    assert [(s["state"], s["attempts"], s["run_id"]) for s in statuses] == [
        ("completed", 1, f"{i:05d}-1") for i in range(6)]
    for index in range(6):  # one CPU thread per task by default
        assert json.loads((sweep.observer / f"{index:05d}-1" / "info.json").read_text())["threads"] == 1
    assert not (sweep.observer / "local" / "queue.json").exists()
    assert sw.main(["submit", str(path), "--backend", "local", "--parallel", "2"]) == 0
    assert "nothing to submit" in capsys.readouterr().out


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_a_stop_signal_reaches_the_running_tasks_and_the_next_submit_resumes(odd_dir):
    # three long tasks, two at a time: SIGTERM stops both (they checkpoint) and the third never starts
    path = write_sweep(odd_dir, "stop", base={**TINY, "epochs": 300, "log_every": 50, "checkpoint_every": 1},
                       seeds=[1, 2, 3])
    sweep = sw.load(path)
    command = [sys.executable, "-m", "studentteacher.sweep", "submit", str(path), "--backend", "local",
               "--parallel", "2"]
    submit = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: all((sweep.observer / f"{i:05d}-1" / "checkpoint.pt").exists() for i in (0, 1)), 120,
                  "the first two tasks to train")
        waiting = sw.status(sweep)[2]
        assert (waiting.state, waiting.detail) == ("queued", f"local submit (pid {submit.pid}): waiting")
        submit.send_signal(signal.SIGTERM)
        stdout, stderr = submit.communicate(timeout=120)
    finally:
        submit.kill()
    assert submit.returncode == sw.EXIT_INTERRUPTED, stdout + stderr
    assert "task 0: interrupted" in stdout and "stopped by SIGTERM" in stdout
    assert [s.state for s in sw.status(sweep)] == ["interrupted", "interrupted", "missing"]
    log = next((sweep.observer / "local").glob("00000-*.out")).read_text()
    assert "stopped on request" in log, "the training run's own handler got the forwarded SIGTERM"
    assert sw.main(["submit", str(path), "--backend", "local", "--parallel", "2"]) == sw.EXIT_COMPLETED
    statuses = sw.status(sweep)
    assert [(s.state, s.detail) for s in statuses] == [
        ("completed", "resumed from 00000-1"), ("completed", "resumed from 00001-1"), ("completed", "")]


def test_failed_task_makes_local_submit_exit_1(odd_dir, capsys):
    path = write_sweep(odd_dir, "fails", grid={"lr": [0.1, 1e30]}, seeds=[1])  # lr 1e30 diverges
    assert sw.main(["submit", str(path), "--backend", "local", "--parallel", "2", "--threads", "1"]) == sw.EXIT_FAILED
    out = capsys.readouterr().out
    assert "task 0: completed" in out and "task 1: failed" in out and "1 completed, 1 failed" in out
