"""How a run uses the CPU (studentteacher.threads): the thread count "auto" picks, and denormal floats
flushed to zero (checked in fresh processes: both are process state)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

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
