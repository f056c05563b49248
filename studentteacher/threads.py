"""How many CPU threads a run uses: the ``threads`` config key ("auto" or a count).

``"auto"`` is ``SLURM_CPUS_PER_TASK`` where SLURM sets it (the allocation), else ``OMP_NUM_THREADS``
where the user sets it, else the cores this process may run on that are not already busy:
``max(1, usable cores - round(1-minute load average))``, at most :data:`AUTO_MAX`. torch's own
default (every core) waits on each core in turn when other processes share them: on a 2-core
machine with two busy processes an epoch took 3-20x longer with 2 threads than with 1
(``benchmarks/bench_threads.py``), while on an idle machine 2 threads run the dense paper configs
~1.7x faster. The choice is made once, at the start of a run, and recorded in ``info.json``.

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

import torch

AUTO = "auto"
AUTO_MAX = 8


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a cgroup or taskset limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def idle_cores() -> int:
    """Usable cores minus the 1-minute load average (rounded), at least 1."""
    try:
        busy = round(os.getloadavg()[0])
    except OSError:
        busy = 0
    return max(1, usable_cores() - busy)


def check_threads(value) -> int | str:
    """A ``threads`` config value as given (``"auto"`` or an integer >= 1; an integral float becomes an
    int), else ValueError naming the key and what is allowed."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value == AUTO or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError(f"config key 'threads': got {value!r}; allowed: {AUTO!r} or an integer >= 1")


def choose_threads(requested: int | str = AUTO) -> int:
    """The thread count for ``requested`` (a positive count, or "auto": see the module docstring)."""
    if requested != AUTO:
        return int(requested)
    for variable in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        value = os.environ.get(variable, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return min(idle_cores(), AUTO_MAX)


def apply_threads(requested: int | str = AUTO) -> int:
    """``torch.set_num_threads(choose_threads(requested))``; returns the count set."""
    threads = choose_threads(requested)
    torch.set_num_threads(threads)
    return threads


def flush_denormals() -> bool:
    """Flush denormal floats to zero on the CPU (module docstring) for the calling thread and the
    threads it starts afterwards (torch's OpenMP workers, if not started yet); True if the CPU
    supports it."""
    return bool(torch.set_flush_denormal(True))
