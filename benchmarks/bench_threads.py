"""Seconds per epoch under three loads for each CPU thread policy: what the ``threads`` default is
chosen from (issue: a run next to two busy processes was 20x slower with torch's default threads).

    python benchmarks/bench_threads.py [--configs particle dense] [--policies 1 2 2-passive auto]
                                       [--loads 0 1 2] [--json FILE]

For each (config, load, policy) a fresh process builds the run's :class:`Trainer`, takes two
warm-up epochs, then times ``--epochs`` epochs (median of three chunks). ``load`` = the number of
busy single-threaded torch processes (a matrix-product loop each) started beside it, the case of
sweep tasks or other experiments sharing the machine. Policies: ``torch-default`` (what a run got
before this package set a default: torch imported first with ``OMP_WAIT_POLICY`` unset, so OpenMP
keeps its own spin-then-sleep policy, and torch's thread count, one per core), ``1`` / ``2``
threads (``torch.set_num_threads``, OpenMP threads waiting actively, ``OMP_WAIT_POLICY=ACTIVE``),
``2-passive`` (2 threads, ``OMP_WAIT_POLICY=PASSIVE``: idle threads sleep instead of spinning),
``auto`` (the package's defaults: passive waiting and
:func:`studentteacher.threads.choose_threads` with the experiment's ``tiny_tensors`` rule,
:func:`studentteacher.config.has_tiny_tensors`). Prints seconds per epoch and the ratio
to one thread under the same load; never asserts. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = {
    "particle": {"readout": "particle", "n_particles": 1000, "method": "sgd"},  # the README's first command
    "dense": {"readout": "dense", "n_particles": 1000, "method": "drmmd", "lmbda": 0.1},  # drmmd_paper
}
EPOCHS = {"particle": 40, "dense": 6}
LOAD = "import torch\ntorch.set_num_threads(1)\na = torch.randn(600, 600)\nwhile True:\n    a = torch.tanh(a @ a)\n"
TIMER = """
import statistics, sys, time, json
if sys.argv[2] == "torch":  # torch first: its OpenMP starts with the wait policy unset
    import torch
from studentteacher.threads import apply_threads, flush_denormals  # else the package first: its wait policy
import torch
flush_denormals()  # as every run does (every policy: this benchmark compares threads alone)
from studentteacher.config import has_tiny_tensors
if sys.argv[2] == "torch":
    threads = torch.get_num_threads()
else:
    threads = apply_threads(sys.argv[2], tiny_tensors=has_tiny_tensors(json.loads(sys.argv[1])))
from studentteacher.training import Trainer
trainer = Trainer({**json.loads(sys.argv[1]), "seed": 1, "device": "cpu"})
epochs = int(sys.argv[3])
for _ in range(2):
    trainer.run_epoch()
chunks = []
for _ in range(3):
    start = time.perf_counter()
    for _ in range(epochs):
        trainer.run_epoch()
    chunks.append((time.perf_counter() - start) / epochs)
print(json.dumps({"seconds": statistics.median(chunks), "threads": threads}))
"""


def measure(config: str, policy: str, load: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "SLURM_CPUS_PER_TASK"):
        env.pop(name, None)
    threads = {"torch-default": "torch", "1": "1", "2": "2", "2-passive": "2", "auto": "auto"}[policy]
    if policy not in ("auto", "torch-default"):  # "auto" = the package's defaults (passive waiting, thread count from the load)
        env["OMP_WAIT_POLICY"] = "PASSIVE" if policy == "2-passive" else "ACTIVE"
    loaders = [subprocess.Popen([sys.executable, "-c", LOAD], env={**env, "OMP_NUM_THREADS": "1"}) for _ in range(load)]
    try:
        time.sleep(1.0 if load else 0.0)
        done = subprocess.run([sys.executable, "-c", TIMER, json.dumps(CONFIGS[config]), threads, str(EPOCHS[config])],
                              env=env, capture_output=True, text=True, timeout=900, check=True)
    finally:
        for process in loaders:
            process.kill()
            process.wait()
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--policies", nargs="+", default=["1", "torch-default", "2", "2-passive", "auto"],
                        choices=["1", "torch-default", "2", "2-passive", "auto"])
    parser.add_argument("--loads", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    rows = []
    print(f"{'config':<9} {'load':>4} {'policy':<10} {'threads':>7} {'s/epoch':>9} {'vs 1 thread':>11}", flush=True)
    for config in args.configs:
        for load in args.loads:
            one = None
            for policy in args.policies:
                result = measure(config, policy, load)
                one = result["seconds"] if policy == "1" else one
                ratio = result["seconds"] / one if one else float("nan")
                rows.append({"config": config, "load": load, "policy": policy, **result, "vs_one_thread": ratio})
                print(f"{config:<9} {load:>4} {policy:<10} {result['threads']:>7} {result['seconds']:>9.4f} "
                      f"{ratio:>10.2f}x", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "benchmark": "threads", "date": datetime.date.today().isoformat(), "host": platform.node(),
            "cpus": os.cpu_count(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
