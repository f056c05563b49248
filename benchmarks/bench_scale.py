"""Scale: time and peak memory against N, for the student and for the 2-D flows.

    python benchmarks/bench_scale.py [--device cpu] [--student-sizes 1000 10000 100000]
                                     [--flow-sizes 1000 3000 10000] [--flows drmmd drmmd_adaptive]
                                     [--budget-gb 4] [--json FILE]

Each point runs in a fresh Python process (so that its peak memory is its own):

* student: one ``Trainer`` (sgd, ``readout=particle``, float32, the default data sizes) with N
  particles; seconds per epoch (median of 3 after a warm-up epoch) and peak memory;
* flow: a three-ring flow with N = M points (float64, Gaussian bandwidth 0.15): the seconds of the
  target-side factorisation, seconds per step (median of 3 after one step) and peak memory,
  printed against ``--budget-gb``.

Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA, the process's max RSS on the CPU
(which includes about 0.3 GB of Python and torch). Never asserts.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time

import torch

from bench_training import peak_memory_mb, synchronize, timed


def _peak_gb(device: torch.device) -> float:
    return peak_memory_mb(device) / 1024


def measure_student(n_particles: int, device: torch.device) -> dict:
    from studentteacher.training import Trainer

    trainer = Trainer(dict(method="sgd", readout="particle", n_particles=n_particles, seed=0, device=str(device),
                           epochs=10**9))  # fmt: skip
    seconds = timed(trainer.run_epoch, device, repeats=3)
    return dict(kind="student", n=n_particles, seconds_per_epoch=seconds, peak_gb=_peak_gb(device))


def measure_flow(name: str, size: int, device: torch.device) -> dict:
    from studentteacher import flows, toys
    from studentteacher.kernels import get_kernel

    toy = toys.make_toy("three_rings", size, size - size % 3, seed=0, dtype=torch.float64, device=device)
    start = time.perf_counter()
    flow = flows.make_flow(name, toy.target, get_kernel("gaussian", 0.15), 0.1, 1e-3 if name == "drmmd" else 0.1)
    synchronize(device)
    setup = time.perf_counter() - start
    state = {"particles": toy.source, "step": 0}

    def step():
        first, velocity = flows.flow_velocity(flow, state["particles"], state["step"])
        state["particles"] = flows.euler_step(state["particles"], first, velocity)
        state["step"] += 1

    seconds = timed(step, device, repeats=3)
    finite = bool(torch.isfinite(state["particles"]).all())
    return dict(kind="flow", flow=name, n=size, m=size - size % 3, setup_seconds=setup, seconds_per_step=seconds,
                peak_gb=_peak_gb(device), finite=finite)  # fmt: skip


def run_point(point: dict) -> dict:
    """Run one point in a fresh interpreter and return its JSON line."""
    completed = subprocess.run([sys.executable, __file__, "--point", json.dumps(point)], capture_output=True, text=True)
    if completed.returncode != 0:
        return dict(point, error=completed.stderr.strip().splitlines()[-1] if completed.stderr.strip() else "failed")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--student-sizes", type=int, nargs="*", default=[1000, 10000, 100000])
    parser.add_argument("--flow-sizes", type=int, nargs="*", default=[1000, 3000, 10000])
    parser.add_argument("--flows", nargs="*", default=["drmmd", "drmmd_adaptive"])
    parser.add_argument("--budget-gb", type=float, default=4.0)
    parser.add_argument("--json", default=None)
    parser.add_argument("--point", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.point:  # child process: one measurement, one JSON line
        point = json.loads(args.point)
        device = torch.device(point["device"])
        if point["kind"] == "student":
            result = measure_student(point["n"], device)
        else:
            result = measure_flow(point["flow"], point["n"], device)
        print(json.dumps(dict(result, device=point["device"])))
        return

    rows = []
    print(f"student, particle readout, sgd, float32, {args.device}")
    print(f"{'N':>8s} {'s/epoch':>10s} {'peak GB':>8s}")
    for size in args.student_sizes:
        row = run_point(dict(kind="student", n=size, device=args.device))
        rows.append(row)
        if "error" in row:
            print(f"{size:8d} error: {row['error']}", flush=True)
        else:
            print(f"{size:8d} {row['seconds_per_epoch']:10.4f} {row['peak_gb']:8.2f}", flush=True)
    print(f"\n2-D flows on three rings, float64, {args.device}; memory budget {args.budget_gb:g} GB")
    print(f"{'flow':16s} {'N=M':>6s} {'setup s':>8s} {'s/step':>9s} {'peak GB':>8s} {'in budget':>9s}")
    for name in args.flows:
        for size in args.flow_sizes:
            row = run_point(dict(kind="flow", flow=name, n=size, device=args.device))
            rows.append(row)
            if "error" in row:
                print(f"{name:16s} {size:6d} error: {row['error']}", flush=True)
                continue
            row["within_budget"] = row["peak_gb"] <= args.budget_gb
            print(f"{name:16s} {size:6d} {row['setup_seconds']:8.2f} {row['seconds_per_step']:9.4f} "
                  f"{row['peak_gb']:8.2f} {'yes' if row['within_budget'] else 'NO':>9s}", flush=True)  # fmt: skip
    device = torch.device(args.device)
    report = dict(
        benchmark="scale",
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        torch=torch.__version__, threads=torch.get_num_threads(), date=datetime.datetime.now().isoformat(timespec="seconds"),
        budget_gb=args.budget_gb, rows=rows,
    )  # fmt: skip
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
