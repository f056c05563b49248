"""studentteacher: student-teacher networks as particle systems of kernel-divergence gradient flows.

Importing the package makes OpenMP's idle threads sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE``,
unless the environment sets it) when torch is imported after it, as in every experiment and sweep
task: with other processes on the same cores, spinning threads made a 2-thread run 1.3-3.7x slower
than a 1-thread run, sleeping ones 0.6-1.3x (``benchmarks/bench_threads.py``, 2026-12-03). See
:mod:`studentteacher.threads` for the thread count.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
