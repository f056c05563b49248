"""How a run uses the CPU (studentteacher.threads): the thread count "auto" picks, and denormal floats
flushed to zero (checked in fresh processes: both are process state)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from studentteacher import threads
from studentteacher.threads import check_threads, choose_threads


def python(code: str, **env: str) -> str:
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS")} | env  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_auto_takes_the_slurm_allocation_then_omp_num_threads():
    code = "from studentteacher.threads import choose_threads; print(choose_threads('auto'))"
    assert python(code, SLURM_CPUS_PER_TASK="3", OMP_NUM_THREADS="1") == "3"
    assert python(code, OMP_NUM_THREADS="2") == "2"
    assert int(python(code)) >= 1
    assert choose_threads(4) == 4


def test_auto_takes_one_thread_for_has_tiny_tensors_and_the_idle_cores_otherwise(monkeypatch):
    code = "from studentteacher.threads import choose_threads; print(choose_threads('auto', tiny_tensors=True))"
    assert python(code) == "1", "tiny tensors: one thread even on an idle machine"
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    for busy, expected in ((0.1, 4), (1.4, 3), (2.6, 1), (7.0, 1)):
        monkeypatch.setattr(threads, "busy_cores", lambda busy=busy: busy)
        assert choose_threads("auto") == expected, busy
        assert choose_threads("auto", tiny_tensors=True) == 1


def test_busy_cores_are_read_from_two_samples_of_proc_stat(monkeypatch):
    """The busy share of all CPUs between two readings, times their count (not the lagging load average)."""
    readings = iter([(100.0, 1000.0), (160.0, 1080.0)])  # 60 of 80 jiffies busy
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(readings))
    monkeypatch.setattr(threads.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    assert threads.busy_cores() == pytest.approx(1.5)
    monkeypatch.setattr(threads, "_cpu_times", lambda: None)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.7, 0.0, 0.0))
    assert threads.busy_cores() == 0.7, "the load average where /proc/stat cannot be read"


@pytest.mark.parametrize("value", [0, -1, "two", 1.5, True])
def test_bad_thread_counts_are_refused_naming_the_key(value):
    with pytest.raises(ValueError, match="config key 'threads'"):
        check_threads(value)


def test_flush_denormals_turns_denormal_floats_into_zero_in_later_threads_too():
    code = (
        "import threading, torch\n"
        "from studentteacher.threads import flush_denormals\n"
        "tiny = torch.tensor([1e-39, 1e-30])  # a float32 denormal and a normal number\n"
        "before = (tiny * 1.0).tolist()\n"
        "flushed = flush_denormals()\n"
        "seen = []\n"
        "thread = threading.Thread(target=lambda: seen.append((tiny * 1.0).tolist()))\n"
        "thread.start(); thread.join()\n"
        "print(before[0] > 0, flushed, (tiny * 1.0).tolist(), seen[0])\n"
    )
    assert python(code) == "True True [0.0, 1.0000000031710769e-30] [0.0, 1.0000000031710769e-30]"
