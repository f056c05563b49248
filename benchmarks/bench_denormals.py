"""Seconds per dense epoch with denormal floats kept and flushed to zero, and how far the two runs
end apart: what :func:`studentteacher.threads.flush_denormals` (set by every experiment run) buys.

    python benchmarks/bench_denormals.py [--methods sgd noise_injection drmmd drmmd_noise]
                                         [--epochs 40] [--threads 1] [--n-particles 1000] [--json FILE]

For each method (named config ``drmmd_paper``, seed 1; ``drmmd_noise`` = DrMMD with noise
injection) two fresh processes, one after the other, train ``--epochs`` epochs from the same seed:
one as torch starts (denormals kept), one after ``flush_denormals()``. Each times its epochs after
two warm-up epochs (median of the epochs). Prints seconds per epoch, the ratio kept / flushed, and
the largest difference between the two runs' final parameters (0.0 = bitwise equal). Never asserts.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TIMER = """
import json, statistics, sys, time
import torch
from studentteacher.threads import flush_denormals
if sys.argv[2] == "flushed":
    flush_denormals()
torch.set_num_threads(int(sys.argv[4]))
import yaml
from studentteacher.training import Trainer
config = yaml.safe_load(open(sys.argv[5]))
method = sys.argv[1]
config.update(method="drmmd", drmmd_noise=True) if method == "drmmd_noise" else config.update(method=method)
trainer = Trainer({**config, "n_particles": int(sys.argv[7]), "seed": 1, "device": "cpu"})
seconds = []
for epoch in range(int(sys.argv[3])):
    start = time.perf_counter()
    trainer.run_epoch()
    seconds.append(time.perf_counter() - start)
torch.save(trainer.params_of(0), sys.argv[6])
print(json.dumps({"seconds_per_epoch": statistics.median(seconds[2:])}))
"""


def measure(method: str, mode: str, args: argparse.Namespace, params: Path) -> float:
    config = REPO / "experiments" / "configs" / "drmmd_paper.yaml"
    done = subprocess.run([sys.executable, "-c", TIMER, method, mode, str(args.epochs), str(args.threads), str(config),
                           str(params), str(args.n_particles)], capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds_per_epoch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["sgd", "noise_injection", "drmmd", "drmmd_noise"])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-particles", type=int, default=1000)
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args()
    import tempfile

    import torch

    rows = []
    print(f"{'method':<16} {'kept s/epoch':>12} {'flushed':>9} {'ratio':>7} {'max |param diff|':>17}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for method in args.methods:
            paths = {mode: Path(folder) / f"{method}-{mode}.pt" for mode in ("kept", "flushed")}
            seconds = {mode: measure(method, mode, args, path) for mode, path in paths.items()}
            kept, flushed = (torch.load(paths[mode]) for mode in ("kept", "flushed"))
            difference = max(float((kept[key] - flushed[key]).abs().max()) for key in kept)
            row = {"method": method, "kept_seconds": seconds["kept"], "flushed_seconds": seconds["flushed"],
                   "ratio": seconds["kept"] / seconds["flushed"], "max_param_difference": difference}
            rows.append(row)
            print(f"{method:<16} {row['kept_seconds']:>12.3f} {row['flushed_seconds']:>9.3f} {row['ratio']:>6.2f}x "
                  f"{difference:>17.3g}", flush=True)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({
            "benchmark": "denormals", "device": "cpu", "torch": torch.__version__, "threads": args.threads,
            "epochs": args.epochs, "n_particles": args.n_particles, "date": datetime.date.today().isoformat(), "machine": platform.processor()
            or platform.machine(), "config": "drmmd_paper", "rows": rows}, indent=1) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
