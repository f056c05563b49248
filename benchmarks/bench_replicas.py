"""Wall time of R batched replicas relative to one run, per update rule (or per 2-D flow).

    python benchmarks/bench_replicas.py [--device cpu] [--readout particle] [--replicas 1 4 10 16]
                                        [--methods sgd drmmd] [--epochs 3] [--repeats 5] [--json FILE]
    python benchmarks/bench_replicas.py --problem flow [--flows mmd drmmd kale] [--n-particles 300]

Student-teacher: for each rule, one run measures the seconds per epoch of a plain
:class:`~studentteacher.training.Trainer` and of a :class:`~studentteacher.training.BatchedTrainer`
of R seeds, timed alternately (medians of ``--repeats`` after a warm-up), so that a busy shared
machine slows both alike. Flows (three rings, N = M, float64,
the named configs' step and lambda): seconds per flow step (first variation, velocity, move; no
logged metrics) of one flow and of one batched flow of R seeds. Prints ``t(R) / t(1)`` (R
sequential runs would give R) with the peak memory. Never asserts.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time

import torch

from bench_flows import SETTINGS as FLOW_SETTINGS
from bench_training import peak_memory_mb, synchronize
from studentteacher import flows, toys
from studentteacher.kernels import get_kernel
from studentteacher.training import BatchedTrainer, Trainer



def paired_medians(single, batched, device, repeats: int) -> tuple[float, float]:
    """Median seconds of ``single()`` and of ``batched()``, timed alternately (after one warm-up
    call each) so that both see the same state of a shared machine."""
    samples: tuple[list[float], list[float]] = ([], [])
    for function in (single, batched):
        function()
    for _ in range(repeats):
        for function, times in zip((single, batched), samples):
            synchronize(device)
            start = time.perf_counter()
            function()
            synchronize(device)
            times.append(time.perf_counter() - start)
    return statistics.median(samples[0]), statistics.median(samples[1])


def flow_steps(name: str, replicas: int, size: int, device: torch.device):
    """A function running ``steps`` flow steps of flow ``name`` over ``replicas`` seeds (batched when R > 1)."""
    toy_list = [toys.make_toy("three_rings", size, size, seed, torch.float64, device) for seed in range(replicas)]
    step_size, lmbda = FLOW_SETTINGS[name]
    kernel = get_kernel("gaussian", 0.15)
    streams = [toys.generators(seed, 3)[2] for seed in range(replicas)]
    if replicas == 1:
        target, source, streams = toy_list[0].target, toy_list[0].source, streams[0]
    else:
        target, source = torch.stack([t.target for t in toy_list]), torch.stack([t.source for t in toy_list])
    flow = flows.make_flow(name, target, kernel, step_size, lmbda, noise_level=0.1, noise_until=10**9)
    state = {"particles": source, "step": 0}

    def steps(count: int) -> None:
        for _ in range(count):
            first, velocity = flows.flow_velocity(flow, state["particles"], state["step"], streams)
            state["particles"] = flows.euler_step(state["particles"], first, velocity)
            state["step"] += 1

    return steps


def flow_rows(args, device: torch.device) -> list[dict]:
    rows = []
    print(f"{'flow':16s} {'R':>4s} {'s/step':>10s} {'t(R)/t(1)':>10s} {'peak MB':>9s}")
    for name in args.flows:
        single = flow_steps(name, 1, args.n_particles, device)
        for replicas in args.replicas:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            batched = flow_steps(name, replicas, args.n_particles, device)
            one, seconds = (t / args.steps for t in paired_medians(
                lambda: single(args.steps), lambda: batched(args.steps), device, args.repeats))
            row = dict(flow=name, replicas=replicas, seconds_per_step=seconds, single_seconds=one, ratio=seconds / one,
                       peak_mb=peak_memory_mb(device))
            rows.append(row)
            print(f"{name:16s} {replicas:4d} {seconds:10.5f} {row['ratio']:10.2f} {row['peak_mb']:9.1f}")
    return rows


def student_rows(args, device: torch.device) -> list[dict]:
    base = dict(readout=args.readout, n_particles=args.n_particles, device=args.device, dtype=args.dtype, epochs=10**9)
    rows = []
    print(f"{'method':16s} {'R':>4s} {'s/epoch':>10s} {'t(R)/t(1)':>10s} {'peak MB':>9s}")
    for method in args.methods:
        single = Trainer(dict(base, method=method, seed=0))
        for replicas in args.replicas:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            batched = BatchedTrainer([dict(base, method=method, seed=seed) for seed in range(replicas)])
            one, seconds = (t / args.epochs for t in paired_medians(
                lambda: [single.run_epoch() for _ in range(args.epochs)],
                lambda: [batched.run_epoch() for _ in range(args.epochs)], device, args.repeats))
            row = dict(method=method, replicas=replicas, seconds_per_epoch=seconds, single_seconds=one,
                       ratio=seconds / one, peak_mb=peak_memory_mb(device))
            rows.append(row)
            print(f"{method:16s} {replicas:4d} {seconds:10.5f} {row['ratio']:10.2f} {row['peak_mb']:9.1f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--problem", default="student", choices=["student", "flow"])
    parser.add_argument("--flows", nargs="+", default=["mmd", "drmmd", "drmmd_adaptive", "kale"], choices=list(FLOW_SETTINGS))
    parser.add_argument("--steps", type=int, default=50, help="flow steps per timed repeat")
    parser.add_argument("--readout", default="particle", choices=["particle", "dense"])
    parser.add_argument("--n-particles", type=int, default=None, help="N (default 1000; flows: N = M = 300)")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 4, 10, 16])
    parser.add_argument("--methods", nargs="+", default=["sgd", "noise_injection", "drmmd"])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed repeat")
    parser.add_argument("--repeats", type=int, default=5, help="alternating timed repeats (median)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    common = dict(device=device_name, torch=torch.__version__, threads=torch.get_num_threads(),
                  date=datetime.date.today().isoformat())
    if args.problem == "flow":
        args.n_particles = args.n_particles or 300
        report = dict(benchmark="replicas-flow", **common, n_particles=args.n_particles, dtype="float64",
                      rows=flow_rows(args, device))
    else:
        args.n_particles = args.n_particles or 1000
        report = dict(benchmark="replicas", **common, readout=args.readout, n_particles=args.n_particles,
                      dtype=args.dtype, rows=student_rows(args, device))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
