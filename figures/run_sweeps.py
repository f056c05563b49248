"""Run the sweep files behind the figures here, in one process (used by ``figures/reproduce.sh``).

    python figures/run_sweeps.py FILE [FILE ...]

For each sweep file: validate every config once, then run, one after the other, the tasks whose
state (``python -m studentteacher.sweep status``) is missing, interrupted or dead, with
:func:`studentteacher.sweep.run_task`, exactly what ``python -m studentteacher.sweep run FILE
--index I`` runs, minus one interpreter start-up per task. Completed tasks are not rerun (run it
again to finish an interrupted reproduction); failed tasks are not rerun either (a diverged run
diverges again with the same seed), they are reported and stay in the figures as FAILED. Runs go
to the sweep's observer directory: ``$STUDENTTEACHER_RUNS/<file stem>`` (``runs/<file stem>``
without the variable). Exit status 0 when every task ended completed or failed (a figure can be
drawn), 3 when one was interrupted: a stop signal (SIGTERM, SIGUSR2) interrupts the running task
and ends the whole run, it does not go on to the next task.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from studentteacher import sweep as sweeps

TO_RUN = ("missing", "interrupted", "dead")


def run_file(path: str) -> tuple[int, int, int]:
    """Run the open tasks of one sweep file; return (ran, failed, interrupted) counts."""
    sweep = sweeps.load(path)
    sweeps.validate(sweep)
    states = sweeps.status(sweep)
    todo = [s.index for s in states if s.state in TO_RUN]
    failed_before = [s.index for s in states if s.state == "failed"]
    print(f"{sweep.path.name}: {len(sweep)} tasks, {len(todo)} to run -> {sweep.observer}", flush=True)
    if failed_before:
        print(f"  not rerun (failed before): indices {failed_before}", flush=True)
    failed = interrupted = 0
    for index in todo:
        start = time.perf_counter()
        state, run_dir = sweeps.run_task(sweep, index, validate_all=False)
        failed += state == "FAILED"
        interrupted += state == "INTERRUPTED"
        print(f"  task {index:>3} {sweep.describe(index)}: {state} "
              f"in {time.perf_counter() - start:.1f} s ({run_dir.name if run_dir else '-'})", flush=True)
        if state == "INTERRUPTED":  # a stop signal (SIGTERM, SIGUSR2, Ctrl-C): stop here, not just this task
            print("  stopped: the task was interrupted; run again to resume", flush=True)
            break
    return len(todo), failed, interrupted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="sweep files (YAML)")
    parser.add_argument("--verbose", action="store_true", help="keep Sacred's INFO log lines")
    args = parser.parse_args(argv)
    if not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)
    any_interrupted = False
    for path in args.files:
        try:
            ran, failed, interrupted = run_file(path)
        except sweeps.SweepError as err:
            print(f"error: {err}", file=sys.stderr)
            return sweeps.EXIT_INVALID
        if failed:
            print(f"  {failed} task(s) FAILED (kept and flagged in the figures)", flush=True)
        if interrupted:
            any_interrupted = True
            break
    return sweeps.EXIT_INTERRUPTED if any_interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
