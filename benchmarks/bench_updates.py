"""Seconds per epoch of each update rule: the package against a reference-style baseline.

    python benchmarks/bench_updates.py [--repeats 5] [--epochs-per-repeat 2] [--rules sgd ksd ...]
                                       [--ksd-baseline-batches 3] [--threads T] [--quick] [--json FILE]

For each rule (sgd, noise_injection, diffusion, ksd, drmmd) one run times, interleaved in the
same process (so that the load of a shared machine hits all three alike), after one warm-up epoch
each, the median over ``--repeats`` of the seconds per epoch of

* ``package dense``: :meth:`studentteacher.training.Trainer.run_epoch` with ``readout="dense"``
  (the papers' model);
* ``baseline``: :class:`baseline_reference.ReferenceTrainer.run_epoch`, the same
  model and the same step written in the style of the papers' public code (per-sample Dataset +
  DataLoader, ``nn.Module``, autograd, KSD Jacobian by one backward pass per sample);
* ``package particle``: ``Trainer.run_epoch`` with ``readout="particle"`` (the mean-field model);

and prints ``speed-up = baseline / package dense`` and ``dense / particle``. Before timing it
checks once, in float64 on a small problem with the same initial weights (noise rules with noise
0), that one step of the baseline and of the package give the same weights, and prints the
largest difference. Reference settings: N = 1000, H = 3, d = 50, B = 100, 1000 training samples,
float32, torch's default number of CPU threads. Results (with device, torch version, CPU count,
date) go to ``benchmarks/results/updates-cpu.json``. Times are never asserted.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from baseline_reference import ReferenceTrainer, student_from_package, student_to_package  # beside this script
from studentteacher.training import Trainer

RULES = ("sgd", "noise_injection", "diffusion", "ksd", "drmmd")
TARGETS = {"ksd": 50.0, "other": 1.5, "dense_over_particle": 10.0}
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "updates-cpu.json"


def package_config(rule: str, n_particles: int, readout: str, dtype: str = "float32", **extra) -> dict:
    config = dict(
        method=rule, n_particles=n_particles, readout=readout, d_in=50, hidden=3, d_out=1, n_train=1000,
        n_valid=100, batch_size=100, lr=0.1, noise_level=1.0, lmbda=0.1, ksd_reg=1e-6, dtype=dtype,
        device="cpu", seed=0,
    )
    return config | extra


# ------------------------------------------------------------------------------ agreement check
def agreement(rules, n_particles: int = 20, hidden: int = 3, d_in: int = 5, batch: int = 10) -> dict[str, float]:
    """Max |package step - baseline step| over all weights, one step per rule, float64, noise 0.

    The package's step is one :meth:`Trainer.run_epoch` with ``n_train = batch_size`` (one batch,
    the whole set in shuffled order), the baseline's one :meth:`ReferenceTrainer.step` on the
    same inputs, from the same initial weights.
    """
    diffs = {}
    for rule in rules:
        cfg = package_config(rule, n_particles, "dense", dtype="float64", noise_level=0.0)
        cfg |= dict(hidden=hidden, d_in=d_in, n_train=batch, n_valid=batch, batch_size=batch)
        trainer = Trainer(cfg)
        x, y = trainer.train_set.x, trainer.train_set.y
        start = {k: v.clone() for k, v in trainer.params.items()}
        trainer.run_epoch()  # n_train = batch_size: one epoch is one step on the whole set
        ours = trainer.params
        reference = ReferenceTrainer(
            student_from_package(start), x, y, rule, lr=cfg["lr"], noise_level=0.0, lmbda=cfg["lmbda"],
            ksd_reg=cfg["ksd_reg"], batch_size=batch,
        )
        reference.step(x, y)
        theirs = student_to_package(reference.student)
        moved = max(float((ours[k] - start[k]).abs().max()) for k in ours)
        diffs[rule] = {
            "max_abs_diff": max(float((ours[k] - theirs[k]).abs().max()) for k in ours),
            "step_size": moved,
        }
    return diffs


# ------------------------------------------------------------------------------ timing
def epoch_seconds(run_epoch, epochs: int) -> float:
    start = time.perf_counter()
    for _ in range(epochs):
        loss = run_epoch()
    float(loss)  # the package returns a device tensor: read it so that all work is done
    return (time.perf_counter() - start) / epochs


def time_rule(rule: str, n_particles: int, repeats: int, epochs: int, ksd_baseline_batches: int = 0) -> dict:
    """Median s/epoch of package dense, baseline, package particle, interleaved per repeat.

    With ``ksd_baseline_batches = k > 0`` the KSD baseline runs only k batches of each epoch and
    its time is scaled by (batches per epoch) / k: its cost per batch does not depend on the batch
    (B backward passes and a B x P Jacobian product each), and a whole epoch takes minutes.
    """
    dense = Trainer(package_config(rule, n_particles, "dense"))
    particle = Trainer(package_config(rule, n_particles, "particle"))
    cfg = dense.config
    baseline = ReferenceTrainer(
        student_from_package(dense.params), dense.train_set.x, dense.train_set.y, rule, lr=cfg["lr"],
        noise_level=cfg["noise_level"], lmbda=cfg["lmbda"], ksd_reg=cfg["ksd_reg"], batch_size=cfg["batch_size"],
    )
    batches_per_epoch = -(-cfg["n_train"] // cfg["batch_size"])
    baseline_run, scale = baseline.run_epoch, 1.0
    if rule == "ksd" and 0 < ksd_baseline_batches < batches_per_epoch:
        baseline_run = lambda: baseline.run_epoch(max_batches=ksd_baseline_batches)  # noqa: E731
        scale = batches_per_epoch / ksd_baseline_batches
    runners = {"package_dense": dense.run_epoch, "baseline": baseline_run, "package_particle": particle.run_epoch}
    scales = {"package_dense": 1.0, "baseline": scale, "package_particle": 1.0}
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for run_epoch in runners.values():  # warm-up
        epoch_seconds(run_epoch, 1)
    for _ in range(repeats):
        for name, run_epoch in runners.items():
            samples[name].append(scales[name] * epoch_seconds(run_epoch, epochs))
    return {
        **summarize(samples),
        "baseline_extrapolated_from_batches": ksd_baseline_batches if scale != 1.0 else None,
    }


def summarize(samples: dict[str, list[float]]) -> dict:
    """Medians (the reported numbers) and minima (best of the repeats: the least disturbed by other
    processes on a shared machine) of the s/epoch samples, and the ratios of each."""
    medians = {name: statistics.median(values) for name, values in samples.items()}
    minima = {name: min(values) for name, values in samples.items()}
    return {
        **{f"{name}_s_per_epoch": value for name, value in medians.items()},
        **{f"{name}_s_per_epoch_min": value for name, value in minima.items()},
        "samples": samples,
        "speed_up": medians["baseline"] / medians["package_dense"],
        "dense_over_particle": medians["package_dense"] / medians["package_particle"],
        "speed_up_min": minima["baseline"] / minima["package_dense"],
        "dense_over_particle_min": minima["package_dense"] / minima["package_particle"],
    }


def target_for(rule: str) -> float:
    return TARGETS["ksd"] if rule == "ksd" else TARGETS["other"]


def targets_met(results: dict) -> dict:
    met = {}
    for rule, r in results.items():
        met[rule] = {}
        for stat in ("", "_min"):
            met[rule][f"speed_up{stat}"] = r[f"speed_up{stat}"] >= target_for(rule)
            met[rule][f"dense_over_particle{stat}"] = r[f"dense_over_particle{stat}"] >= TARGETS["dense_over_particle"]
    return met


def print_table(results: dict, stat: str = "") -> None:
    """The table of ``results``; ``stat = ""`` for medians, ``"_min"`` for the best of the repeats."""
    header = ("rule", "package dense s/epoch", "baseline s/epoch", "speed-up", "package particle s/epoch", "dense/particle")
    rows = [header]
    for rule, r in results.items():
        speed_up, ratio = r[f"speed_up{stat}"], r[f"dense_over_particle{stat}"]
        rows.append(
            (
                rule,
                f"{r[f'package_dense_s_per_epoch{stat}']:.4f}",
                f"{r[f'baseline_s_per_epoch{stat}']:.4f}",
                f"{speed_up:.1f}x (target {target_for(rule):g}x: {'met' if speed_up >= target_for(rule) else 'MISSED'})",
                f"{r[f'package_particle_s_per_epoch{stat}']:.4f}",
                f"{ratio:.1f}x (target {TARGETS['dense_over_particle']:g}x: "
                f"{'met' if ratio >= TARGETS['dense_over_particle'] else 'MISSED'})",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths)))
        if index == 0:
            print("-+-".join("-" * width for width in widths))


def report_agreement(rules: list[str]) -> tuple[dict, float, float, bool]:
    """The float64 baseline-vs-package agreement per rule, printed: (per-rule diffs, largest diff,
    largest diff relative to the step, whether it is below 1e-8)."""
    diffs = agreement(rules)
    worst = max(d["max_abs_diff"] for d in diffs.values())
    relative = max(d["max_abs_diff"] / max(d["step_size"], 1e-300) for d in diffs.values())
    agrees = relative < 1e-8
    print(f"baseline agrees with package: {'yes' if agrees else 'no'} (max diff {worst:.2e}; "
          f"relative to the step {relative:.2e}; float64, N=20, H=3, d=5, B=10, dense, noise 0)")
    for rule, d in diffs.items():
        print(f"  {rule:16s} max |diff| {d['max_abs_diff']:.2e}  (largest weight change {d['step_size']:.2e})")
    return diffs, worst, relative, agrees


def report_timings(args) -> dict:
    """Seconds per epoch of each rule (package dense and particle, baseline), printed; per rule."""
    print(f"\ntiming: N={args.n_particles}, H=3, d=50, B=100, n_train=1000, float32, CPU, "
          f"{args.repeats} repeats x {args.epochs_per_repeat} epochs, median s/epoch")
    results = {}
    for rule in args.rules:
        results[rule] = time_rule(rule, args.n_particles, args.repeats, args.epochs_per_repeat, args.ksd_baseline_batches)
        r = results[rule]
        note = ""
        if r["baseline_extrapolated_from_batches"]:
            note = f"  (baseline: {r['baseline_extrapolated_from_batches']} batches per repeat, scaled to an epoch)"
        print(f"  {rule}: dense {r['package_dense_s_per_epoch']:.4f}  baseline {r['baseline_s_per_epoch']:.4f}  "
              f"particle {r['package_particle_s_per_epoch']:.4f}{note}", flush=True)
    print("\nmedian over the repeats:")
    print_table(results)
    print("\nbest of the repeats (least disturbed by other processes):")
    print_table(results, "_min")
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per rule (median reported)")
    parser.add_argument("--epochs-per-repeat", type=int, default=2, help="epochs in one timed repeat")
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    parser.add_argument("--n-particles", type=int, default=1000, help="N (reference: 1000)")
    parser.add_argument("--ksd-baseline-batches", type=int, default=3,
                        help="time the KSD baseline on this many batches per epoch and scale up (0: whole epochs)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="smoke run: N = 100, 2 repeats of 1 epoch")
    parser.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_particles, args.repeats, args.epochs_per_repeat = 100, 2, 1
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    diffs, worst, relative, agrees = report_agreement(args.rules)
    results = report_timings(args)
    report = {
        "benchmark": "bench_updates",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": "cpu",
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "settings": {
            "n_particles": args.n_particles, "hidden": 3, "d_in": 50, "batch_size": 100, "n_train": 1000,
            "dtype": "float32", "repeats": args.repeats, "epochs_per_repeat": args.epochs_per_repeat,
            "quick": args.quick, "noise_level": 1.0, "lmbda": 0.1, "lr": 0.1,
            "ksd_baseline_batches": args.ksd_baseline_batches,
        },
        "agreement": {"agrees": agrees, "max_abs_diff": worst, "max_relative_diff": relative, "per_rule": diffs},
        "targets": TARGETS,
        "results": results,
        "targets_met": targets_met(results),
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path}")
    return report


if __name__ == "__main__":
    main()
