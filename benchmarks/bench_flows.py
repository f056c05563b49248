"""Steps per second of the 2-D particle flows (three rings, N = M, float64), and the adaptive-DrMMD
eigendecomposition path against a per-step ``torch.linalg.solve`` path.

    python benchmarks/bench_flows.py                      # N = M in 300 1000 3000, CPU (+ CUDA if present)
    python benchmarks/bench_flows.py --sizes 300 --steps 5

One flow step = first variation + velocity (:func:`studentteacher.flows.flow_velocity`) + the move;
the logged metrics (OT) are not included. Each measurement: one warm-up step, then ``--steps`` timed
steps, best of ``--repeats``. For adaptive DrMMD two ratios are printed, both measured in the same
run: whole steps (eigh path / solve path, steps per second) and the lambda-dependent solves alone
(two (K_XX + M lambda I)^{-1} v per step: two O(M^2) products against two O(M^3) LU solves). The
one-off eigendecomposition is reported apart. Numbers go to ``--output`` (``benchmarks/run_all.sh``:
``benchmarks/results/flows-<device>.json``).
Nothing is asserted.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

import torch

from studentteacher import divergences, flows, toys
from studentteacher.kernels import get_kernel

SETTINGS = {  # flow -> (step_size, lmbda), the three-ring named configs
    "mmd": (0.1, 1e-3),
    "mmd_noise": (0.1, 1e-3),
    "drmmd": (0.1, 1e-3),
    "drmmd_adaptive": (0.1, 0.1),
    "kale": (1e-4, 1e-3),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_steps(flow, particles: torch.Tensor, steps: int, repeats: int, device: torch.device) -> float:
    """Best-of-``repeats`` seconds per step after one warm-up step."""
    generator = toys.generators(0, 1, device)[0]
    first, velocity = flows.flow_velocity(flow, particles, 0, generator)
    particles = flows.euler_step(particles, first, velocity)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for step in range(1, steps + 1):
            first, velocity = flows.flow_velocity(flow, particles, step, generator)
            particles = flows.euler_step(particles, first, velocity)
        _sync(device)
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def _time_solves(k_xx: torch.Tensor, eigh: divergences.GramEigh, repeats: int, device: torch.device):
    """Seconds for the two lambda-dependent solves of one adaptive step: (eigh path, solve path)."""
    size = k_xx.shape[0]
    v = torch.linspace(-1.0, 1.0, size, dtype=k_xx.dtype, device=device)  # (M,)
    identity = torch.eye(size, dtype=k_xx.dtype, device=device)

    def spectral():
        rotated = eigh.rotate(v)
        return eigh.solve_rotated(rotated, 0.1), eigh.solve_rotated(rotated, 0.05)

    def direct():
        return torch.linalg.solve(k_xx + size * 0.1 * identity, v), torch.linalg.solve(k_xx + size * 0.05 * identity, v)

    timings = []
    for function in (spectral, direct):
        function()
        best = float("inf")
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            for _ in range(5):
                function()
            _sync(device)
            best = min(best, (time.perf_counter() - start) / 5)
        timings.append(best)
    return timings


def bench_device(device: torch.device, sizes, flow_names, steps: int, repeats: int) -> list[dict]:
    rows = []
    kernel = get_kernel("gaussian", 0.15)
    for size in sizes:
        n_target = size - size % 3
        toy = toys.make_toy("three_rings", size, n_target, seed=0, dtype=torch.float64, device=device)
        row = {"device": str(device), "n": size, "m": n_target, "steps_per_second": {}}
        for name in flow_names:
            step_size, lmbda = SETTINGS[name]
            flow = flows.make_flow(name, toy.target, kernel, step_size, lmbda, noise_level=1.0, noise_until=10**9)
            row["steps_per_second"][name] = 1.0 / _time_steps(flow, toy.source, steps, repeats, device)
            print(f"  {device} N=M={size:5d} {name:15s} {row['steps_per_second'][name]:10.3g} steps/s", flush=True)
        if "drmmd_adaptive" in flow_names:
            solve_flow = flows.AdaptiveDrMMDFlow(toy.target, kernel, 0.1, 0.1, solver="solve")
            solve_rate = 1.0 / _time_steps(solve_flow, toy.source, steps, repeats, device)
            row["steps_per_second"]["drmmd_adaptive_solve"] = solve_rate
            row["adaptive_step_ratio"] = row["steps_per_second"]["drmmd_adaptive"] / solve_rate
            k_xx = kernel(toy.target, toy.target)  # (M, M)
            _sync(device)
            start = time.perf_counter()
            eigh = divergences.GramEigh(k_xx)
            _sync(device)
            row["eigh_seconds"] = time.perf_counter() - start
            spectral, direct = _time_solves(k_xx, eigh, repeats, device)
            row["solve_seconds"] = {"eigh_path": spectral, "linalg_solve_path": direct}
            row["adaptive_solve_ratio"] = direct / spectral
            print(f"  {device} N=M={size:5d} drmmd_adaptive (solve path) {solve_rate:7.3g} steps/s; ratio "
                  f"{row['adaptive_step_ratio']:.1f}x per step, {row['adaptive_solve_ratio']:.0f}x on the solves; "
                  f"eigh once {row['eigh_seconds']:.2f} s", flush=True)  # fmt: skip
        rows.append(row)
    return rows


def print_table(rows: list[dict], flow_names) -> None:
    names = list(flow_names) + (["drmmd_adaptive_solve"] if "drmmd_adaptive" in flow_names else [])
    header = f"{'device':8s} {'N=M':>6s} " + " ".join(f"{name:>20s}" for name in names)
    print("\nsteps per second (float64, three rings)\n" + header)
    for row in rows:
        cells = " ".join(f"{row['steps_per_second'].get(name, float('nan')):20.3g}" for name in names)
        print(f"{row['device']:8s} {row['n']:6d} {cells}")
    if "drmmd_adaptive" in flow_names:
        print("\nadaptive DrMMD: eigendecomposition path vs per-step torch.linalg.solve path")
        print(f"{'device':8s} {'M':>6s} {'step ratio':>12s} {'solve ratio':>12s} {'eigh once [s]':>14s}")
        for row in rows:
            print(f"{row['device']:8s} {row['m']:6d} {row['adaptive_step_ratio']:11.1f}x "
                  f"{row['adaptive_solve_ratio']:11.0f}x {row['eigh_seconds']:14.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 1000, 3000])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flows", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda if available")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "flows.json")
    arguments = parser.parse_args()
    devices = arguments.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    for device in devices:
        rows += bench_device(torch.device(device), arguments.sizes, arguments.flows, arguments.steps, arguments.repeats)
    print_table(rows, arguments.flows)
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "devices": {d: (torch.cuda.get_device_name(0) if d.startswith("cuda") else platform.processor() or "cpu")
                    for d in devices},  # fmt: skip
        "cpu_threads": torch.get_num_threads(),
        "load_average_at_end": os.getloadavg(),  # other work on the machine skews the CPU numbers
        "steps": arguments.steps,
        "repeats": arguments.repeats,
        "rows": rows,
    }
    arguments.output.write_text(json.dumps(report, indent=2))
    print(f"\nwritten {arguments.output}")


if __name__ == "__main__":
    main()
