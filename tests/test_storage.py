"""No silent success: what a run stores and the status it reports agree.

* a disk that fills during the final writes fails the run with the reason (a real 200 KiB tmpfs,
  mounted by the test; skipped where mounting is not permitted);
* a run (student-teacher or 2-D flow) killed with SIGKILL has stored its metrics up to its latest
  checkpoint (metrics are flushed before every checkpoint), so its next attempt continues from what
  was logged;
* a stop signal that arrives while a finished flow writes its artifacts leaves it COMPLETED with
  exit status 0;
* ``sweep status`` calls a RUNNING run dead after 3 of its heartbeat intervals.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from studentteacher import sweep as sw
from studentteacher.sweep.status import _state_of, stale_limit

ROOT = Path(__file__).resolve().parents[1]
TRAIN, FLOWS = ROOT / "experiments" / "train.py", ROOT / "experiments" / "flows2d.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# about 1.7 MB of result.npz: more than the tmpfs holds, after a few KB of metrics
LARGE = {"n_particles": 3000, "epochs": 2, "n_train": 100, "n_valid": 50, "batch_size": 50, "log_every": 1}


def load(run_dir: Path, name: str):
    return json.loads((run_dir / name).read_text())


@pytest.fixture
def small_disk(tmp_path):
    """A 200 KiB tmpfs at tmp_path / 'disk', unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)], capture_output=True,
                             text=True)  # fmt: skip
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_during_the_final_writes_fails_the_run_with_the_reason(small_disk):
    """Regression: the run exited 0 with run.json COMPLETED while result.npz was truncated."""
    done = subprocess.run([sys.executable, str(TRAIN), "with", *(f"{k}={v}" for k, v in LARGE.items()),
                           "-F", str(small_disk)], capture_output=True, text=True, timeout=300, env=ENV)  # fmt: skip
    assert done.returncode == 1, done.stderr
    run = load(small_disk / "1", "run.json")
    assert run["status"] == "FAILED"
    assert "No space left on device while writing result.npz" in run["fail_trace"][-1]
    assert not (small_disk / "1" / "result.npz").exists(), "no truncated artifact is left"
    assert load(small_disk / "1", "metrics.json")["train_mmd2"]["steps"] == [0, 1, 2], "what was logged stays"


@pytest.mark.parametrize("free_kib", [20, 0])
def test_a_disk_too_full_for_the_sources_fails_the_run_in_one_line(small_disk, free_kib):
    """Regression: a raw OSError traceback and no run.json when Sacred could not copy the run's sources."""
    (small_disk / "filler").write_bytes(bytes((200 - free_kib) * 1024))
    tiny = ["epochs=2", "n_particles=10", "n_train=100", "n_valid=50", "batch_size=50"]
    done = subprocess.run([sys.executable, str(TRAIN), "with", *tiny, "-F", str(small_disk / "runs")],
                          capture_output=True, text=True, timeout=300, env=ENV)  # fmt: skip
    ours = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith(("INFO", "ERROR"))]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert ours == [ours[0]] and ours[0].startswith("error: the run could not be stored: No space left on device "
                                                    "while writing _sources"), done.stderr
    assert not [p for p in (small_disk / "runs" / "_sources").glob("*") if p.is_file()], "no truncated source copy"
    if free_kib:  # room for run.json: it says why the run failed, and where its sources are
        run = load(small_disk / "runs" / "1", "run.json")
        assert run["status"] == "FAILED" and "while writing _sources" in run["fail_trace"][-1]
        assert all(Path(small_disk / "runs", path).resolve().is_file() for _, path in run["experiment"]["sources"])


def test_a_full_disk_fails_a_sweep_task_and_status_says_so(small_disk, tmp_path, capsys):
    """Regression: through a sweep the run stayed RUNNING forever with an empty run.json.tmp."""
    path = tmp_path / "full.yaml"
    path.write_text(yaml.safe_dump({"experiment": "student_teacher", "base": LARGE, "seeds": [1],
                                    "observer": str(small_disk / "sweep")}))  # fmt: skip
    assert sw.main(["run", str(path), "--index", "0"]) == sw.EXIT_FAILED
    (state,) = sw.status(sw.load(path))
    assert state.state == "failed" and "No space left on device" in state.detail, state
    assert not list((small_disk / "sweep").glob("*/*.tmp"))


def killed_after_checkpoints(script: Path, config: list[str], folder: Path) -> tuple[dict, dict]:
    """Run ``script`` with a checkpoint every 20 steps and no Sacred heartbeat (-b 600), SIGKILL it
    about a second after its first checkpoint; (its last checkpoint, its metrics.json)."""
    process = subprocess.Popen([sys.executable, str(script), "with", *config, "checkpoint_every=20", "seed=1",
                                "-b", "600", "-F", str(folder)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=ENV)  # fmt: skip
    checkpoint = folder / "1" / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not checkpoint.exists():
        time.sleep(0.05)
    time.sleep(1.0)  # several more checkpoints
    process.kill()
    process.wait()
    return torch.load(checkpoint, weights_only=False), load(folder / "1", "metrics.json")


def test_sigkill_keeps_the_metrics_up_to_the_latest_checkpoint(tmp_path):
    """Regression: metrics reached metrics.json only at heartbeats, so a kill lost hundreds of points."""
    config = ["n_particles=10", "n_train=40", "n_valid=20", "batch_size=20", "d_in=5", "log_every=1",
              "epochs=100000000"]  # fmt: skip
    checkpoint, metrics = killed_after_checkpoints(TRAIN, config, tmp_path)
    epoch, steps = checkpoint["epoch"], metrics["valid_mmd2"]["steps"]
    assert epoch >= 40 and steps[: epoch + 1] == list(range(epoch + 1)), (epoch, steps[-1])


def test_sigkill_keeps_a_flows_metrics_up_to_its_latest_checkpoint(tmp_path):
    """Regression: a 2-D flow wrote checkpoints without flushing its logged metrics first."""
    config = ["flow=mmd", "n_particles=20", "n_target=30", "log_every=1", "snapshot_every=100000000",
              "steps=100000000"]  # fmt: skip
    checkpoint, metrics = killed_after_checkpoints(FLOWS, config, tmp_path)
    step, steps = checkpoint["step"], metrics["mmd2"]["steps"]  # the checkpoint holds steps 0 .. step - 1
    assert step >= 40 and steps[:step] == list(range(step)), (step, steps[-1])


def _finished_flow(folder: Path, scratch: Path) -> subprocess.Popen:
    """A 2-D flow of 120 steps with a snapshot each step: its flow.gif of 121 frames takes seconds, drawn in
    a temporary folder under ``scratch`` after ``snapshots.png``."""
    scratch.mkdir()
    return subprocess.Popen([sys.executable, str(FLOWS), "with", "flow=mmd", "n_particles=20", "n_target=30",
                             "steps=120", "snapshot_every=1", "log_every=120", "-F", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**ENV, "TMPDIR": str(scratch)})  # fmt: skip


def _assert_completed_after_stop(process: subprocess.Popen, folder: Path) -> None:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    run = load(folder / "1", "run.json")
    assert (process.returncode, run["status"]) == (0, "COMPLETED"), stderr
    assert {"trajectory.npz", "snapshots.png", "flow.gif"} <= set(run["artifacts"])


def test_a_stop_signal_while_a_finished_flow_stores_its_artifacts_completes_it(tmp_path):
    """Regression: a SIGTERM during the artifacts of a finished flow gave exit 143 with run.json COMPLETED."""
    scratch = tmp_path / "scratch"
    process = _finished_flow(tmp_path / "runs", scratch)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and not list(scratch.glob("*/snapshots.png")):
        time.sleep(0.01)
    assert process.poll() is None and not list(scratch.glob("*/flow.gif")), "the signal comes while the GIF is drawn"
    _assert_completed_after_stop(process, tmp_path / "runs")


# Runs the flow script as __main__ with one object that, when Python's shutdown clears __main__ (after it has put
# back the default signal handlers), touches a marker file and holds the process for a few seconds.
SLOW_SHUTDOWN = """
import pathlib, runpy, sys, time
class HeldShutdown:
    def __init__(self, marker):
        self.touch, self.sleep = pathlib.Path(marker).touch, time.sleep
    def __del__(self):
        self.touch()
        self.sleep(5)
held = HeldShutdown(sys.argv.pop(1))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_stop_signal_while_a_completed_run_shuts_down_leaves_exit_0(tmp_path):
    """Regression (CI, 2026-12-02): a SIGTERM while a COMPLETED run's process shut down ended it with -15."""
    marker, folder = tmp_path / "shutting-down", tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "-c", SLOW_SHUTDOWN, str(marker), str(FLOWS), "with", "flow=mmd",
                                "n_particles=20", "n_target=30", "steps=20", "-F", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and not marker.exists():
        time.sleep(0.01)
    assert process.poll() is None and marker.exists(), "the signal comes while the process shuts down"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert (process.returncode, load(folder / "1", "run.json")["status"]) == (0, "COMPLETED"), stderr


def test_a_run_is_dead_after_three_of_its_heartbeat_intervals():
    now = dt.datetime.utcnow()

    def state(age: float, beat: float | None, stale_after=None) -> str:
        run = {"status": "RUNNING", "heartbeat": (now - dt.timedelta(seconds=age)).isoformat(),
               "meta": {} if beat is None else {"beat_interval": beat}}  # fmt: skip
        return _state_of(run, stale_after, now)[0]

    assert stale_limit({"meta": {"beat_interval": 5.0}}) == 15.0 and stale_limit({}) == 30.0
    assert (state(14, 5.0), state(16, 5.0)) == ("running", "dead")
    assert (state(29, None), state(31, None)) == ("running", "dead"), "Sacred's 10 s beat without a record"
    assert (state(16, 5.0, stale_after=3600), state(2, 5.0, stale_after=1)) == ("running", "dead")


def test_writes_of_one_run_file_from_two_threads_never_fail(tmp_path):
    """Regression: Sacred writes run.json from the run's thread (artifacts) and from its heartbeat thread;
    both wrote one temporary file, and one rename failed (a FAILED run in the small figure sweeps)."""
    import threading

    from experiments.runs import RunStore

    store = RunStore(tmp_path)
    store.dir = str(tmp_path)

    def write() -> None:
        for step in range(300):
            store.save_json({"step": step, "values": list(range(300))}, "run.json")

    threads = [threading.Thread(target=write) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.errors == [] and load(tmp_path, "run.json")["values"] == list(range(300))
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
