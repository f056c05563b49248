"""What the MLflow observer costs a training run: seconds per epoch with and without it.

    python benchmarks/bench_observer.py [--epochs 1000] [--repeats 3] [--set KEY=VALUE ...] [--json FILE]

Runs ``experiments/train.py`` (the default config: sgd, particle readout, N = 1000, d = 50, a metric
log every 10 epochs, on the CPU unless ``--set device=...``) ``--repeats`` times without and with
``--mlflow sqlite:///...`` (FileStorage in both), interleaved (off/on, then on/off, ...) so that a
change of load on the machine hits both alike. Per run: the median of the logged ``epoch_seconds``
(the training loop's own time per epoch, averaged over each log interval; it includes logging, and
the heartbeat thread's writes compete with it for the interpreter), the run's wall time, and for the
MLflow runs the seconds the observer spent writing (the tag ``studentteacher.mlflow_write_seconds``;
mostly in Sacred's heartbeat thread). The store is created before the first run (MLflow's one-time
table creation, ~8 s here, is not a per-run cost). Prints the medians over repeats and the overhead
per epoch (on - off); never asserts.
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
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
from studentteacher import results


def run_once(folder: Path, epochs: int, settings: list[str], uri: str | None) -> dict:
    """One training run; its epoch time, wall time and (with MLflow) write time."""
    observer = folder / f"runs-{len(list(folder.glob('runs-*')))}"
    command = [sys.executable, str(REPO / "experiments" / "train.py"), "with", f"epochs={epochs}", "seed=1",
               *settings, "-F", str(observer)]  # fmt: skip
    if uri:
        command += ["--mlflow", uri]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("STUDENTTEACHER_MLFLOW", None)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    process_seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"training run failed:\n{done.stderr[-3000:]}")
    table = results.load_runs(observer)
    run = results.runs(table).iloc[0]
    epoch = table[table["metric"] == "epoch_seconds"]["value"]
    row = {"mlflow": bool(uri), "epoch_seconds": float(epoch.median()), "wall_seconds": float(run["wall_seconds"]),
           "process_seconds": process_seconds, "write_seconds": None}
    if uri:
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        (stored,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                       filter_string=f"tags.`studentteacher.run_dir` = '{run['run_dir']}'")
        row["write_seconds"] = float(stored.data.tags["studentteacher.mlflow_write_seconds"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", nargs="*", default=["device=cpu"], metavar="KEY=VALUE",
                        help="config updates for every run (default: device=cpu)")
    parser.add_argument("--json", help="write the rows and medians here")
    args = parser.parse_args()
    from studentteacher.results.mlflow_store import MlflowStore

    with tempfile.TemporaryDirectory(prefix="bench_observer-") as scratch:
        folder = Path(scratch)
        uri = f"sqlite:///{folder / 'mlruns.db'}"
        MlflowStore(uri)  # the tables, once
        rows = []
        for repeat in range(args.repeats):
            order = (None, uri) if repeat % 2 == 0 else (uri, None)
            for variant in order:
                row = run_once(folder, args.epochs, list(args.set), variant)
                rows.append({"repeat": repeat, **row})
                print(f"repeat {repeat} {'mlflow ' if variant else 'file   '} epoch {row['epoch_seconds'] * 1e3:8.3f} ms"
                      f"  wall {row['wall_seconds']:7.2f} s" + (f"  writes {row['write_seconds']:.3f} s"
                                                                if variant else ""), flush=True)  # fmt: skip

    def median(key: str, mlflow: bool) -> float:
        return statistics.median(row[key] for row in rows if row["mlflow"] == mlflow)

    off, on = median("epoch_seconds", False), median("epoch_seconds", True)
    writes = median("write_seconds", True)
    summary = {
        "epoch_ms_file_storage": off * 1e3, "epoch_ms_with_mlflow": on * 1e3,
        "overhead_ms_per_epoch": (on - off) * 1e3, "ratio": on / off,
        "write_ms_per_epoch": writes / args.epochs * 1e3,
        "wall_s_file_storage": median("wall_seconds", False), "wall_s_with_mlflow": median("wall_seconds", True),
    }  # fmt: skip
    print(f"\n{args.epochs} epochs, {args.repeats} repeats, medians ({platform.node()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}):")
    print(f"  epoch, FileStorage only      {summary['epoch_ms_file_storage']:8.3f} ms")
    print(f"  epoch, FileStorage + MLflow  {summary['epoch_ms_with_mlflow']:8.3f} ms   ratio {summary['ratio']:.3f}")
    print(f"  overhead per epoch           {summary['overhead_ms_per_epoch']:+8.3f} ms")
    print(f"  observer's writes per epoch  {summary['write_ms_per_epoch']:8.3f} ms (heartbeat thread + end)")
    print(f"  run wall time                {summary['wall_s_file_storage']:.2f} s -> {summary['wall_s_with_mlflow']:.2f} s")
    if args.json:
        import torch

        Path(args.json).write_text(json.dumps({
            "benchmark": "observer", "epochs": args.epochs, "repeats": args.repeats, "settings": args.set,
            "rows": rows, "summary": summary, "torch": torch.__version__, "cpus": os.cpu_count(),
            "load": os.getloadavg(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
        }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
