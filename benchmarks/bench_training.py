"""Seconds per epoch of the training loop against the bare matrix products it needs.

    python benchmarks/bench_training.py [--device cuda] [--methods sgd drmmd] [--readout dense]
                                         [--n-particles 1000] [--epochs 20] [--compile MODE]
                                         [--json FILE]

For each method, one run measures (interleaved, after warm-up, median of ``--repeats``):

* ``epoch``: one epoch of :meth:`studentteacher.training.Trainer.run_epoch`;
* ``matmul``: the same ``torch.matmul`` shapes that epoch needs, timed alone (forward and
  backward products of every step; twice for the noise rules, which evaluate the features at
  a second set of particles), plus the noise draws for the noise rules;

and prints ``epoch / matmul`` (1.0 = at the hardware limit of these products), with the peak
memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the process's max RSS). ``--compile MODE``
also times the epoch with the step compiled (the config key ``compile``). Never asserts.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import statistics
import time

import torch

from studentteacher.training import Trainer


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device, repeats: int) -> float:
    """Median seconds of ``function()`` over ``repeats`` after one warm-up call."""
    function()
    synchronize(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        synchronize(device)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bare_products(trainer: Trainer):
    """A function doing the matrix products (and noise draws) of one epoch of ``trainer``'s rule."""
    cfg, params = trainer.config, trainer.params
    n, h, d = params["W"].shape
    o, batch = cfg["d_out"], cfg["batch_size"]
    steps = -(-cfg["n_train"] // batch)
    noisy = cfg["method"] in ("noise_injection", "diffusion") or (cfg["method"] == "drmmd" and cfg["drmmd_noise"])
    passes = 2 if cfg["method"] == "noise_injection" or (cfg["method"] == "drmmd" and cfg["drmmd_noise"]) else 1
    make = dict(dtype=trainer.dtype, device=trainer.device)
    x = torch.randn(batch, d, **make)
    w_flat = params["W"].reshape(n * h, d)
    delta_h = torch.randn(batch, n * h, **make)
    if cfg["readout"] == "dense":
        v_flat = params["V"].reshape(n * o, n * h)
        hidden = torch.randn(batch, n * h, **make)
        delta_u = torch.randn(batch, n * o, **make)

        def products():
            x @ w_flat.T  # (B, NH)
            hidden @ v_flat.T  # (B, N)
            delta_u.T @ hidden  # (N, NH)
            delta_u @ v_flat  # (B, NH)
            delta_h.T @ x  # (NH, d)
    else:
        def products():
            x @ w_flat.T
            delta_h.T @ x

    generator = torch.Generator(device=trainer.device).manual_seed(0)

    def epoch():
        for _ in range(steps):
            for _ in range(passes):
                products()
            if noisy:
                for value in params.values():
                    torch.randn(value.shape, generator=generator, **make)

    return epoch


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", nargs="+", default=["sgd", "noise_injection", "diffusion", "ksd", "drmmd"])
    parser.add_argument("--readout", default="dense", choices=["dense", "particle"])
    parser.add_argument("--n-particles", type=int, default=1000)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", default="off", choices=["off", "default", "reduce-overhead"],
                        help="also time the epoch with the step compiled in this mode (the config key compile)")
    parser.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    compiled_header = f" {'compiled s':>10s} {'ratio':>7s}" if args.compile != "off" else ""
    print(f"{'method':16s} {'s/epoch':>10s} {'matmul s':>10s} {'ratio':>7s} {'peak MB':>9s}{compiled_header}")
    for method in args.methods:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        trainer = Trainer(dict(method=method, readout=args.readout, n_particles=args.n_particles, seed=0,
                               device=args.device, dtype=args.dtype, epochs=10**9))
        epoch_time = timed(lambda: [trainer.run_epoch() for _ in range(args.epochs)], device, args.repeats) / args.epochs
        products = bare_products(trainer)
        matmul_time = timed(lambda: [products() for _ in range(args.epochs)], device, args.repeats) / args.epochs
        row = dict(method=method, seconds_per_epoch=epoch_time, matmul_seconds=matmul_time,
                   ratio=epoch_time / matmul_time, peak_mb=peak_memory_mb(device))
        compiled_columns = ""
        if args.compile != "off":  # compilation happens in the warm-up call of timed()
            compiled = Trainer(dict(trainer.config, compile=args.compile))
            compiled_time = timed(lambda: [compiled.run_epoch() for _ in range(args.epochs)], device,
                                  args.repeats) / args.epochs
            row |= dict(compile=args.compile, compiled_seconds_per_epoch=compiled_time,
                        compiled_ratio=compiled_time / matmul_time)
            compiled_columns = f" {compiled_time:10.5f} {row['compiled_ratio']:7.2f}"
        rows.append(row)
        print(f"{method:16s} {epoch_time:10.5f} {matmul_time:10.5f} {row['ratio']:7.2f} {row['peak_mb']:9.1f}"
              f"{compiled_columns}")
    report = dict(
        benchmark="training", device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        torch=torch.__version__, threads=torch.get_num_threads(), date=datetime.date.today().isoformat(),
        readout=args.readout, n_particles=args.n_particles, dtype=args.dtype, rows=rows,
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
