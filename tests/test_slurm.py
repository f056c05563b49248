"""Sweeps on a real single-node SLURM (``scripts/slurm_up.sh`` brings one up; no mocks).

Skipped with the reason when ``sinfo`` is missing or the node is not idle. Every sweep and
observer directory here has spaces and quotes in its path. Tasks are tiny real runs of the
``student_teacher`` experiment; the whole module takes about a minute and a half on 2 cores.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from studentteacher import sweep as sw

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parent.parent
SLURM_UP = REPO / "scripts" / "slurm_up.sh"
TINY = {"epochs": 2, "n_particles": 10, "n_train": 100, "n_valid": 100, "batch_size": 50, "d_in": 5,
        "log_every": 1, "device": "cpu"}
ODD = "it's a \"slurm\" dir"
WAIT = 300  # seconds a sweep may take to drain


def _slurm_problem() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM is not installed (no sinfo/sbatch on PATH); run scripts/slurm_up.sh as root"
    done = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True)
    states = done.stdout.split()
    if done.returncode != 0 or "idle" not in states:
        detail = done.stderr.strip() or ", ".join(states) or "no nodes"
        return f"no idle SLURM node (sinfo: {detail}); run scripts/slurm_up.sh as root"
    return None


@pytest.fixture(scope="module", autouse=True)
def slurm_available():
    problem = _slurm_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture
def odd_dir(tmp_path, monkeypatch):
    directory = tmp_path / ODD
    directory.mkdir()
    monkeypatch.chdir(directory)  # array tasks run here too (the script cds to the submit directory)
    monkeypatch.delenv("STUDENTTEACHER_RUNS", raising=False)
    return directory


def write_sweep(directory: Path, name: str, **spec) -> sw.Sweep:
    spec = {"experiment": "student_teacher", "base": dict(TINY), **spec}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return sw.load(path)


def wait_for_jobs(job_ids: list[str], timeout: float = WAIT) -> None:
    """Until SLURM holds no pending or running task of these jobs."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = subprocess.run(["squeue", "--noheader", "--array", f"--jobs={','.join(job_ids)}", "--format=%i %T"],
                              capture_output=True, text=True)
        if done.returncode == 0 and not done.stdout.strip():
            return
        if done.returncode != 0 and "Invalid job id" in done.stderr:
            return  # already purged
        time.sleep(0.5)
    raise AssertionError(f"jobs {job_ids} still queued after {timeout} s:\n{done.stdout}")


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def states(sweep: sw.Sweep) -> list[str]:
    return [s.state for s in sw.status(sweep)]


def test_six_task_sweep_runs_to_completion(odd_dir):
    sweep = write_sweep(odd_dir, "six", grid={"method": ["sgd", "drmmd"]}, seeds=[1, 2, 3])
    (submission,) = sw.submit(sweep, {"time": "10"})
    assert re.fullmatch(r"\d+", submission.job_id) and submission.indices == list(range(6))
    # the script on disk is the renderer's output for exactly these arguments
    expected = sw.render_script(sweep_name="six", job_name="sweep-six", array="0-5", offset=0,
                                options={"time": "10"}, python=sys.executable, workdir=str(odd_dir),
                                sweep_file=str(sweep.path), observer=str(sweep.observer))
    assert submission.script.parent == sweep.observer / "slurm"
    assert submission.script.read_text() == expected
    assert "missing" not in states(sweep), "submitted tasks show as queued/running, never missing"
    assert sw.submit(sweep) == [], "queued tasks are not submitted twice"
    wait_for_jobs([submission.job_id])
    assert states(sweep) == ["completed"] * 6
    assert [s.attempts for s in sw.status(sweep)] == [1] * 6
    logs = sorted(p.name for p in (sweep.observer / "slurm").glob("*.out"))
    assert logs == [f"{submission.job_id}_{t}.out" for t in range(6)], "logs are named %A_%a"
    assert "sweep task 3 " in (sweep.observer / "slurm" / f"{submission.job_id}_3.out").read_text()
    records = [json.loads(line) for line in (sweep.observer / "slurm" / "submissions.jsonl").read_text().splitlines()]
    assert [(r["job_id"], r["offset"], r["indices"]) for r in records] == [(submission.job_id, 0, list(range(6)))]
    assert sw.submit(sweep) == [], "nothing left to submit"
    assert sw.main(["status", str(sweep.path)]) == 0


def test_failed_and_cancelled_tasks_are_resubmitted_with_the_same_config(odd_dir):
    # index 2 runs long enough to be cancelled mid-run (about 6 s); index 5 diverges (lr 1e30).
    base = {k: v for k, v in TINY.items() if k not in ("epochs", "log_every")} | {"checkpoint_every": 1}
    sweep = write_sweep(odd_dir, "resubmit", base=base, zip=[{"lr": [0.1, 0.05, 0.1, 0.02, 0.01, 1e30],
                                                   "epochs": [2, 2, 300, 2, 2, 2],
                                                   "log_every": [1, 1, 50, 1, 1, 1]}], seeds=[4])
    (first,) = sw.submit(sweep)
    # a checkpoint file shows the training loop (and its stop handler) is running
    wait_until((sweep.observer / "00002-1" / "checkpoint.pt").exists, WAIT, "task 2 to train")
    subprocess.run(["scancel", f"{first.job_id}_2"], check=True)
    wait_for_jobs([first.job_id])
    statuses = sw.status(sweep)
    assert [s.state for s in statuses] == ["completed", "completed", "interrupted", "completed", "completed", "failed"]
    assert "diverged" in statuses[5].detail
    assert "stopped on request" in (sweep.observer / "slurm" / f"{first.job_id}_2.out").read_text()

    (second,) = sw.submit(sweep)
    assert second.indices == [2, 5] and "#SBATCH --array=2,5" in second.text
    wait_for_jobs([second.job_id])
    statuses = sw.status(sweep)
    assert [s.attempts for s in statuses] == [1, 1, 2, 1, 1, 2], "exactly those two ran again, once each"
    assert (statuses[2].state, statuses[2].detail) == ("completed", "resumed from 00002-1")
    assert statuses[5].state == "failed", "a diverging config diverges again"
    for index in (2, 5):
        configs = [json.loads((sweep.observer / f"{index:05d}-{a}" / "config.json").read_text()) for a in (1, 2)]
        configs[1].pop("resume_from"), configs[0].pop("resume_from")
        assert configs[0] == configs[1] and configs[0]["seed"] == 4, f"index {index}: same config and seed"


def test_sbatch_errors_are_loud(odd_dir):
    sweep = write_sweep(odd_dir, "loud", seeds=[1])
    with pytest.raises(sw.SubmitError, match=r"sbatch failed \(exit 1\).*(?s:.*)stderr: .*[Pp]artition"):
        sw.submit(sweep, {"partition": "no_such_partition"})
    assert sw.status(sweep)[0].state == "missing"


@pytest.fixture
def max_array_size_4():
    """The cluster restarted with MaxArraySize = 4 (scripts/slurm_up.sh), restored afterwards."""
    if os.geteuid() != 0:
        pytest.skip("changing MaxArraySize restarts slurmctld through scripts/slurm_up.sh, which needs root")
    before = sw.max_array_size()
    env = {**os.environ, "SLURM_MAX_ARRAY_SIZE": "4"}
    subprocess.run(["bash", str(SLURM_UP)], env=env, check=True, capture_output=True)
    try:
        assert sw.max_array_size() == 4
        yield
    finally:
        env["SLURM_MAX_ARRAY_SIZE"] = str(before)
        subprocess.run(["bash", str(SLURM_UP)], env=env, check=True, capture_output=True)


def test_arrays_larger_than_max_array_size_are_split(odd_dir, max_array_size_4):
    sweep = write_sweep(odd_dir, "ten", grid={"lr": [0.1, 0.05, 0.02, 0.01, 0.005]}, seeds=[1, 2])
    submissions = sw.submit(sweep)
    assert [(s.offset, s.indices) for s in submissions] == [(0, [0, 1, 2, 3]), (4, [4, 5, 6, 7]), (8, [8, 9])]
    assert ["#SBATCH --array=0-3" in s.text for s in submissions] == [True, True, False]
    assert "#SBATCH --array=0-1" in submissions[2].text and "INDEX_OFFSET=8" in submissions[2].text
    wait_for_jobs([s.job_id for s in submissions])
    statuses = sw.status(sweep)
    assert [(s.state, s.attempts) for s in statuses] == [("completed", 1)] * 10, "every index exactly once"
    ran = sorted(json.loads((sweep.observer / f"{i:05d}-1" / "run.json").read_text())["meta"]["sweep"]["index"]
                 for i in range(10))
    assert ran == list(range(10))


def test_time_limit_signal_reaches_python_and_the_task_resumes(odd_dir):
    """``#SBATCH --signal=B:USR2@120`` signals the batch shell only; ``exec`` makes that python.

    ``scancel --batch --signal=USR2`` delivers exactly that signal now instead of 120 s before
    the time limit: the run checkpoints and ends INTERRUPTED, and the resubmission resumes it.
    """
    base = {**TINY, "epochs": 300, "log_every": 50, "checkpoint_every": 1}
    sweep = write_sweep(odd_dir, "usr2", base=base, seeds=[1])
    (first,) = sw.submit(sweep, {"time": "30"})
    wait_until((sweep.observer / "00000-1" / "checkpoint.pt").exists, WAIT, "the task to train")
    subprocess.run(["scancel", "--batch", "--signal=USR2", f"{first.job_id}_0"], check=True)
    wait_for_jobs([first.job_id])
    (state,) = sw.status(sweep)
    assert state.state == "interrupted"
    assert "stopped on request" in (sweep.observer / "slurm" / f"{first.job_id}_0.out").read_text()
    (second,) = sw.submit(sweep, {"time": "30"})
    wait_for_jobs([second.job_id])
    (state,) = sw.status(sweep)
    assert (state.state, state.attempts, state.detail) == ("completed", 2, "resumed from 00000-1")


def test_batched_submission_runs_groups_of_compatible_tasks(odd_dir):
    # 2 methods x 3 seeds: with --batch 2 the seeds of one method share an array task, never the methods.
    sweep = write_sweep(odd_dir, "batched", grid={"method": ["sgd", "drmmd"]}, seeds=[1, 2, 3])
    (submission,) = sw.submit(sweep, {"time": "10"}, batch=2)
    assert submission.groups == [[0, 1], [2], [3, 4], [5]]
    assert "#SBATCH --array=0-3" in submission.text and "TASK_GROUPS=(0,1 2 3,4 5)" in submission.text
    assert "missing" not in states(sweep), "every index of a queued group shows as queued/running"
    wait_for_jobs([submission.job_id])
    assert states(sweep) == ["completed"] * 6
    assert "sweep tasks 3,4 " in (sweep.observer / "slurm" / f"{submission.job_id}_2.out").read_text()
    replica = json.loads((sweep.observer / "00004-1" / "info.json").read_text())["replica"]
    assert replica == {"index": 1, "of": 2}, "index 4 ran as the second replica of a batch"
    record = json.loads((sweep.observer / "slurm" / "submissions.jsonl").read_text().splitlines()[0])
    assert record["groups"] == [[0, 1], [2], [3, 4], [5]] and sorted(record["indices"]) == list(range(6))
