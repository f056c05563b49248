"""Wall time of R batched replicas relative to one run, per update rule.

    python benchmarks/bench_replicas.py [--device cpu] [--readout particle] [--replicas 1 4 10 16]
                                        [--methods sgd drmmd] [--epochs 3] [--repeats 3] [--json FILE]

For each rule, one run measures (after warm-up, median of ``--repeats``) the seconds per epoch of
a plain :class:`~studentteacher.training.Trainer` and of a
:class:`~studentteacher.replicas.BatchedTrainer` of R seeds, and prints ``t(R) / t(1)`` (R
sequential runs would give R) with the peak memory. Never asserts.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform

import torch

from bench_training import peak_memory_mb, timed
from studentteacher.replicas import BatchedTrainer
from studentteacher.training import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--readout", default="particle", choices=["particle", "dense"])
    parser.add_argument("--n-particles", type=int, default=1000)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 4, 10, 16])
    parser.add_argument("--methods", nargs="+", default=["sgd", "noise_injection", "drmmd"])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    base = dict(readout=args.readout, n_particles=args.n_particles, device=args.device, dtype=args.dtype, epochs=10**9)
    rows = []
    print(f"{'method':16s} {'R':>4s} {'s/epoch':>10s} {'t(R)/t(1)':>10s} {'peak MB':>9s}")
    for method in args.methods:
        single = Trainer(dict(base, method=method, seed=0))
        one = timed(lambda: [single.run_epoch() for _ in range(args.epochs)], device, args.repeats) / args.epochs
        for replicas in args.replicas:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            batched = BatchedTrainer([dict(base, method=method, seed=seed) for seed in range(replicas)])
            seconds = timed(lambda: [batched.run_epoch() for _ in range(args.epochs)], device, args.repeats) / args.epochs
            row = dict(method=method, replicas=replicas, seconds_per_epoch=seconds, single_seconds=one,
                       ratio=seconds / one, peak_mb=peak_memory_mb(device))
            rows.append(row)
            print(f"{method:16s} {replicas:4d} {seconds:10.5f} {row['ratio']:10.2f} {row['peak_mb']:9.1f}")
    report = dict(benchmark="replicas", device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
                  torch=torch.__version__, threads=torch.get_num_threads(), date=datetime.date.today().isoformat(),
                  readout=args.readout, n_particles=args.n_particles, dtype=args.dtype, rows=rows)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
