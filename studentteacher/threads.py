"""How a run uses the CPU: the ``threads`` config key ("auto" or a count), and denormals flushed.

``"auto"`` is ``SLURM_CPUS_PER_TASK`` where SLURM sets it (the allocation), else ``OMP_NUM_THREADS``
where the user sets it, else 1 for work on *tiny tensors* (tiny tensors, e.g. the particle readout: the
experiment says which), else the cores this process may run on that are idle now:
``max(1, usable cores - busy cores)``, at most :data:`AUTO_MAX`, with the busy cores read from
``/proc/stat`` over :data:`SAMPLE_SECONDS` (the 1-minute load average where that cannot be read:
it lags, and right after other work ends it still counts those cores busy). Measured on 2-core
machines (``benchmarks/bench_threads.py``, ratios to one thread under the same load; torch's OpenMP
threads waiting passively, as this package sets). Intel Xeon (AVX-512), 2026-12-02: the particle
readout's epoch is 1.44x slower with 2 threads than with 1 on an idle machine (the threads wake for
tensors too small to share), 0.95-1.2x with 1-2 busy cores; the dense paper config is 0.62x
(faster) with 2 threads when idle, 1.02x with one busy core. AMD EPYC (AVX2), 2026-12-03: particle
1.44x idle; dense 0.64-0.85x idle over two runs (spinning threads: 0.54-0.77x), 1.03x with one busy core. Under load
"auto" stayed within 0.78-1.13x of one thread on both, where torch's own default (every core,
threads spinning before they sleep) was 1.7-3.7x slower than one thread (AMD, 1-2 busy cores).
The choice is made once, at the start of a run, and
recorded in ``info.json``.

:func:`flush_denormals` sets the CPU to flush denormal floats to zero (|x| < 1.2e-38 in float32,
2.2e-308 in float64, become 0). The Gaussian features exp(-u^2 / sigma^2) of particles far from
the data underflow into that range, and each operation on a denormal costs ~100 cycles: on the
2-core test machine a dense ``drmmd_paper`` epoch took 0.65-0.69 s on one thread with denormals
and 0.17-0.21 s without. A flushed value was below any logged digit; runs of sgd, noise injection
and DrMMD were bitwise equal with and without it over 60 dense epochs, and DrMMD with noise
injection was equal for 30 epochs, then drifted apart from one rounding-level difference as it
does under any change of thread count or BLAS (its dynamics amplify rounding).
"""
from __future__ import annotations

import os
import time

import torch

AUTO = "auto"
AUTO_MAX = 8
#: The most threads a run may ask for: more than the cores of any machine this runs on (torch takes a C int).
THREADS_MAX = 1024
SAMPLE_SECONDS = 0.2


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a cgroup or taskset limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs from ``/proc/stat`` (None where it cannot be read)."""
    try:
        with open("/proc/stat") as stat:
            fields = [float(value) for value in stat.readline().split()[1:9]]  # guest time is in user
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores() -> float:
    """Cores busy now: the busy share of all CPUs over :data:`SAMPLE_SECONDS` times their count
    (``/proc/stat``), else the 1-minute load average."""
    first = _cpu_times()
    if first is not None:
        time.sleep(SAMPLE_SECONDS)
        second = _cpu_times()
        if second is not None and second[1] > first[1]:
            return (second[0] - first[0]) / (second[1] - first[1]) * (os.cpu_count() or 1)
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def idle_cores() -> int:
    """Usable cores minus the busy ones (rounded), at least 1."""
    return max(1, usable_cores() - round(busy_cores()))


def check_threads(value) -> int | str:
    """A ``threads`` config value as given (``"auto"`` or an integer 1 .. :data:`THREADS_MAX`; an
    integral float becomes an int), else ValueError naming the key and what is allowed."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value == AUTO or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= THREADS_MAX):
        return value
    raise ValueError(f"config key 'threads': got {value!r}; allowed: {AUTO!r} or an integer >= 1 and <= {THREADS_MAX}")


def choose_threads(requested: int | str = AUTO, tiny_tensors: bool = False) -> int:
    """The thread count for ``requested`` (a positive count, or "auto": see the module docstring;
    ``tiny_tensors``: the run's tensors are too small to share between threads)."""
    if requested != AUTO:
        return int(requested)
    for variable in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        value = os.environ.get(variable, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1 if tiny_tensors else min(idle_cores(), AUTO_MAX)


def apply_threads(requested: int | str = AUTO, tiny_tensors: bool = False) -> int:
    """``torch.set_num_threads(choose_threads(requested, tiny_tensors))``; returns the count set."""
    threads = choose_threads(requested, tiny_tensors)
    torch.set_num_threads(threads)
    return threads


def flush_denormals() -> bool:
    """Flush denormal floats to zero on the CPU (module docstring) for the calling thread and the
    threads it starts afterwards (torch's OpenMP workers, if not started yet); True if the CPU
    supports it."""
    return bool(torch.set_flush_denormal(True))
