"""DMMD timings: discriminator training seconds per Adam step, and sampler seconds per Euler step
against the number of particles N for the interacting (O(N), mean features), the approximate (each
particle alone along a recorded trajectory of mean features: O(1) per sample), the self-potential
(O(N), no interaction) and the pairwise (O(N^2 + N M), explicit Grams) samplers, with the linear kernel.

    python benchmarks/bench_dmmd.py                       # d = 2 and 64, N in 250 .. 8000, CPU (+ CUDA if present)
    python benchmarks/bench_dmmd.py --quick --json /tmp/dmmd.json

Discriminator: H = 256 units, two hidden layers, F = 64 features, E = 32, batch 256 over 4 levels
(the ``dmmd`` experiment's defaults), one warm-up step, then ``--steps`` timed steps, best of
``--repeats``. Samplers: an untrained discriminator of the same size (the cost does not depend on
the weights), M = ``--data`` data points; the data side is prepared once per level and is timed
apart (``prepare_seconds``); the approximate sampler replays a recording of mean features (one per
step, of an interacting run of 1000 particles at the same level; its cost does not depend on the values).
Printed: pairwise / interacting per step at each N, the approximate sampler's cost per sample and
step (``seconds_per_sample_step``: the step time over N; flat in N when each sample costs O(1)), and
the growth of each sampler's step time from the smallest to the largest N against N's growth.
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

from studentteacher import dmmd
from studentteacher.threads import flush_denormals

FLUSHED = flush_denormals()  # as every run does (experiments/runs/), before the OpenMP workers start

SAMPLER_NAMES = ("interacting", "approximate", "self_potential", "pairwise")
REFERENCE_PARTICLES = 1000


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best(function, repeats: int, count: int, device: torch.device) -> float:
    """Best-of-``repeats`` seconds per call over ``count`` calls, after one warm-up call."""
    function()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(count):
            function()
        _sync(device)
        best = min(best, (time.perf_counter() - start) / count)
    return best


def _discriminator(dim: int, device, dtype) -> dmmd.Discriminator:
    return dmmd.Discriminator(dmmd.Architecture(dim=dim), torch.Generator().manual_seed(0), dtype).to(device)


def bench_training(dim: int, device, dtype, steps: int, repeats: int) -> float:
    """Seconds per Adam step of :func:`~studentteacher.dmmd.train_discriminator` (logging excluded)."""
    data = torch.randn(2000, dim, generator=torch.Generator().manual_seed(1), dtype=dtype).to(device)
    model, kernel = _discriminator(dim, device, dtype), dmmd.make_feature_kernel("linear")
    schedule = dmmd.make_schedule("cosine")
    settings = dmmd.TrainSettings(steps=steps, log_every=10**9, eval_levels=())
    generator = torch.Generator().manual_seed(2)
    run = lambda: dmmd.train_discriminator(model, kernel, data, schedule, settings, generator)  # noqa: E731
    return _best(run, repeats, 1, device) / steps


def bench_sampling(dim: int, sizes, device, dtype, data_size: int, steps: int, repeats: int) -> list[dict]:
    """One row per N: seconds per sampler step for each of :data:`SAMPLER_NAMES`, and per-level preparation."""
    model, kernel = _discriminator(dim, device, dtype).requires_grad_(False), dmmd.make_feature_kernel("linear")
    data = torch.randn(data_size, dim, generator=torch.Generator().manual_seed(3), dtype=dtype).to(device)
    reference = torch.randn(REFERENCE_PARTICLES, dim, generator=torch.Generator().manual_seed(5), dtype=dtype)
    reference = reference.to(device)  # (N_ref, d)
    with torch.no_grad():
        mean_feature = model(reference, 0.5).mean(0)  # (F,)
    recording = dmmd.ParticleSideTrajectory([0.5], steps, mean_feature.expand(steps, -1).clone())  # (S, F)
    rows = []
    for size in sizes:
        particles = torch.randn(size, dim, generator=torch.Generator().manual_seed(4), dtype=dtype).to(device)
        row = {"dim": dim, "n": size, "m": data_size, "seconds_per_step": {}, "prepare_seconds": {}}
        for name in SAMPLER_NAMES:
            sampler = dmmd.make_sampler(name, model, kernel, data, recording if name == "approximate" else None)
            row["prepare_seconds"][name] = _best(lambda: sampler.prepare(0.5), repeats, 1, device)
            prepared = sampler.prepare(0.5)
            step = lambda: sampler.step(particles, 0.5, prepared, 0.01, 0)  # noqa: E731
            row["seconds_per_step"][name] = _best(step, repeats, steps, device)
        row["pairwise_over_interacting"] = row["seconds_per_step"]["pairwise"] / row["seconds_per_step"]["interacting"]
        row["seconds_per_sample_step"] = row["seconds_per_step"]["approximate"] / size
        times = " ".join(f"{k} {v * 1e3:8.2f} ms" for k, v in row["seconds_per_step"].items())
        print(f"  d={dim:3d} N={size:6d} {times}  pairwise/interacting {row['pairwise_over_interacting']:.1f}x"
              f"  approximate per sample {row['seconds_per_sample_step'] * 1e6:.2f} us", flush=True)  # fmt: skip
        rows.append(row)
    return rows


def print_growth(rows: list[dict]) -> None:
    """Step time at the largest N over the smallest, per sampler, against N's own growth."""
    for dim in sorted({row["dim"] for row in rows}):
        mine = [row for row in rows if row["dim"] == dim]
        first, last = mine[0], mine[-1]
        growth = " ".join(f"{name} {last['seconds_per_step'][name] / first['seconds_per_step'][name]:.1f}x"
                          for name in SAMPLER_NAMES)  # fmt: skip
        print(f"d = {dim}: N x{last['n'] / first['n']:.0f} ({first['n']} -> {last['n']}): step time {growth}; "
              f"approximate per sample x{last['seconds_per_sample_step'] / first['seconds_per_sample_step']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 64])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 1000, 4000, 8000])
    parser.add_argument("--data", type=int, default=2000, help="data points M of the sampler")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda if available")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "dmmd.json")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.sizes, arguments.data, arguments.steps, arguments.repeats = [20, 40], 30, 1, 1
    devices = arguments.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "dtype": "float32",
              "flush_denormals": FLUSHED,
              "training": [], "sampling": []}  # fmt: skip
    for device in map(torch.device, devices):
        report.setdefault("devices", {})[str(device)] = (torch.cuda.get_device_name(device) if device.type == "cuda"
                                                          else platform.processor() or "cpu")  # fmt: skip
        for dim in arguments.dims:
            seconds = bench_training(dim, device, torch.float32, arguments.steps, arguments.repeats)
            report["training"].append({"device": str(device), "dim": dim, "seconds_per_step": seconds})
            print(f"{device} d={dim}: discriminator training {seconds * 1e3:.1f} ms per Adam step", flush=True)
            rows = bench_sampling(dim, arguments.sizes, device, torch.float32, arguments.data, arguments.steps,
                                  arguments.repeats)  # fmt: skip
            report["sampling"] += [{"device": str(device), **row} for row in rows]
        print_growth([row for row in report["sampling"] if row["device"] == str(device)])
    report["load_average_at_end"] = os.getloadavg()  # other work on the machine skews the CPU numbers
    arguments.json.parent.mkdir(parents=True, exist_ok=True)
    arguments.json.write_text(json.dumps(report, indent=2))
    print(f"\nwritten {arguments.json}")


if __name__ == "__main__":
    main()
