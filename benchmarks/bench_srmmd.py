"""SrMMD and HrMMD flows: seconds per step against N for the dense (Cholesky) and the conjugate-gradient
solve of the witness's linear system, the CG iterations, and peak memory.

    python benchmarks/bench_srmmd.py                      # N = M = 100 .. 1600, CPU (cuda if present)
    python benchmarks/bench_srmmd.py --quick --json /tmp/srmmd.json

Each step solves an N C x N C system that moves with the particles (C = d = 2 for ``srmmd``,
C = 1 + d = 3 for ``hrmmd``, alpha 0.8): ``linear_solver=dense`` factors it, O((N C)^3) time and
O((N C)^2) memory; ``cg`` runs conjugate gradients with matrix-free O(N^2 d) products to the relative
residual sqrt(eps). Problem: the ``mog`` toy (4 Gaussians at (+-2, +-2)) at its first step, N = M,
Gaussian kernel sigma 1, lambda 0.1, float64, witness velocity. A step is the first variation plus
the velocity (no metrics). The two solvers are timed interleaved from the same particles, one step
each per round, after a warm-up step each; printed: the median seconds per step of each, the ratio
dense / cg (> 1: CG is faster) and the CG iterations of that step. Peak memory of one step is measured
in a fresh process per (flow, N, solver): ``torch.cuda.max_memory_allocated`` on CUDA, on the CPU the
peak resident memory of the step above the resident memory before it (Linux: ``/proc/self/status``
VmHWM after resetting it through ``/proc/self/clear_refs``). Nothing is asserted.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from studentteacher import flows, toys
from studentteacher.kernels import get_kernel
from studentteacher.threads import flush_denormals

FLUSHED = flush_denormals()  # as every run does, before the OpenMP workers start
SOLVERS = ("dense", "cg")
LMBDA, BANDWIDTH, STEP = 0.1, 1.0, 0.1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _flow(name: str, solver: str, size: int, device: torch.device):
    """(flow, particles ``[N, 2]``): the ``mog`` toy with N = M = ``size``, on ``device``."""
    toy = toys.make_toy("mog", size, size, seed=0, device=device)
    flow = flows.make_flow(name, toy.target, get_kernel("gaussian", BANDWIDTH), STEP, LMBDA, linear_solver=solver)
    return flow, toy.source


def _step(flow, particles) -> torch.Tensor:
    """One Euler step's work: the first variation and the velocity -> the moved particles ``[N, 2]``."""
    first, velocity = flows.flow_velocity(flow, particles, 0)
    return flows.euler_step(particles, first, velocity)


def time_solvers(name: str, size: int, device: torch.device, repeats: int) -> dict:
    """Median seconds per step of each solver (interleaved rounds) and the CG iterations of one step."""
    built = {solver: _flow(name, solver, size, device) for solver in SOLVERS}
    samples = {solver: [] for solver in SOLVERS}
    for solver, (flow, particles) in built.items():
        _step(flow, particles)  # warm-up
    cg_flow, cg_particles = built["cg"]
    before = cg_flow.cg_iterations
    _step(cg_flow, cg_particles)
    iterations = cg_flow.cg_iterations - before
    for _ in range(repeats):
        for solver, (flow, particles) in built.items():
            _sync(device)
            start = time.perf_counter()
            _step(flow, particles)
            _sync(device)
            samples[solver].append(time.perf_counter() - start)
    seconds = {solver: statistics.median(values) for solver, values in samples.items()}
    return {"seconds_per_step": seconds, "dense_over_cg": seconds["dense"] / seconds["cg"], "cg_iterations": iterations}


def peak_memory_child(name: str, size: int, solver: str, device: str) -> None:
    """In a fresh process: print the peak memory (MiB) of one step beyond what was held before it."""
    device = torch.device(device)
    flow, particles = _flow(name, solver, size, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        held = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        _step(flow, particles)
        torch.cuda.synchronize(device)
        print((torch.cuda.max_memory_allocated(device) - held) / 2**20)
        return
    Path("/proc/self/clear_refs").write_text("5")  # Linux: the peak RSS (VmHWM) restarts from the RSS now
    held = _status_kib("VmRSS")
    _step(flow, particles)
    print((_status_kib("VmHWM") - held) / 1024)


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field (VmRSS: resident now, VmHWM: its peak), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_memory_mb(name: str, size: int, solver: str, device: torch.device) -> float:
    """:func:`peak_memory_child` in a fresh Python process."""
    command = [sys.executable, __file__, "--memory-point", name, str(size), solver, str(device)]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 400, 800, 1600], help="N = M")
    parser.add_argument("--flows", nargs="+", default=["srmmd", "hrmmd"], choices=["srmmd", "hrmmd"])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (medians)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--json", type=Path, default=None, help="default: benchmarks/results/srmmd-<device>.json")
    parser.add_argument("--memory-point", nargs=4, metavar=("FLOW", "N", "SOLVER", "DEVICE"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.memory_point:
        name, size, solver, device = arguments.memory_point
        peak_memory_child(name, int(size), solver, device)
        return
    if arguments.quick:
        arguments.sizes, arguments.repeats = [20, 40], 1
    device = torch.device(arguments.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    path = arguments.json or Path(__file__).parent / "results" / f"srmmd-{device.type}.json"
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "dtype": "float64",
              "flush_denormals": FLUSHED, "device": str(device),
              "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                              else platform.processor() or "cpu"),
              "problem": {"toy": "mog", "kernel": "gaussian", "bandwidth": BANDWIDTH, "lmbda": LMBDA, "hrmmd_alpha":
                          flows.SPEC["hrmmd_alpha"].default, "velocity": "witness"},
              "rows": []}  # fmt: skip
    print(f"{device}: seconds per step (median of {arguments.repeats}), dense / cg, CG iterations, peak MiB")
    for name in arguments.flows:
        for size in arguments.sizes:
            row = {"flow": name, "n": size, **time_solvers(name, size, device, arguments.repeats)}
            row["peak_mb"] = {solver: peak_memory_mb(name, size, solver, device) for solver in SOLVERS}
            seconds, peak = row["seconds_per_step"], row["peak_mb"]
            print(f"  {name:5s} N = M = {size:5d}: dense {seconds['dense'] * 1e3:9.2f} ms"
                  f"  cg {seconds['cg'] * 1e3:9.2f} ms"
                  f"  dense/cg {row['dense_over_cg']:6.2f}x  cg iterations {row['cg_iterations']:4d}"
                  f"  peak dense {peak['dense']:8.1f}  cg {peak['cg']:8.1f}", flush=True)  # fmt: skip
            report["rows"].append(row)
    report["load_average_at_end"] = os.getloadavg()  # other work on the machine skews the CPU numbers
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
