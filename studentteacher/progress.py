"""Progress of a long run for whoever watches it: a bar on a terminal, a line at a steady pace elsewhere.

A run whose stderr is a terminal shows tqdm's bar there, with the latest metrics beside it. A run
whose stderr is not a terminal (piped, ``nohup``, a SLURM log file) prints one line on stderr after
its first unit of work (epoch, step), then one every :data:`ENV` seconds (default
:data:`DEFAULT_SECONDS`) and one at its last unit::

    progress: epoch 412/1000 | train_mmd2 0.03121 valid_mmd2 0.03342 | 41.2 epochs/s | 0:00:14 left

The rate counts the units this process did (not those a resumed run did before); the time left is
the units left at that rate. A resumed run first says what it resumes
(``resuming run 3 from epoch 142 of 1000 (checkpoint runs/2/checkpoint.pt)``).
``STUDENTTEACHER_PROGRESS=0`` prints nothing: no bar, no lines. Only output changes: a run computes
the same numbers with any setting.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import sys
import time
from typing import Callable

from tqdm import tqdm

ENV = "STUDENTTEACHER_PROGRESS"
DEFAULT_SECONDS = 30.0


def progress_seconds() -> float:
    """Seconds between progress lines from :data:`ENV` (unset or empty: :data:`DEFAULT_SECONDS`; 0: no
    progress output); ValueError naming the variable and what it allows."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return DEFAULT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"environment variable {ENV!r}: got {text!r}; allowed: a number of seconds >= 0 between "
                         "progress lines (0: no progress output)")
    return seconds


class RunProgress:
    """The progress of one run (or one batch of replicas) through ``total`` units named ``unit``,
    ``done`` of them done when it starts (a resumed run): :meth:`update` after each unit (or group of
    units), :meth:`note` with the latest metrics, :meth:`close` at the end (or use it as a context
    manager; module docstring)."""

    def __init__(self, unit: str, total: int, done: int = 0, clock: Callable[[], float] = time.monotonic):
        self.unit, self.total, self.start, self.clock = unit, total, done, clock
        self.seconds = progress_seconds()
        self.stream = sys.stderr
        self.started = clock()
        self.last_line: float | None = None  # when the last line was printed
        self.metrics: dict[str, dict[int, float]] = {}  # name -> replica -> latest value
        terminal = self.seconds > 0 and self.stream.isatty()
        self.bar = tqdm(total=total, initial=done, unit=unit, file=self.stream, mininterval=1.0,
                        dynamic_ncols=True) if terminal else None  # fmt: skip

    def say(self, text: str) -> None:
        """Print ``text`` as a line of its own (above the bar on a terminal), unless progress is off."""
        if self.seconds == 0:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def resuming(self, runs: list, checkpoint: str) -> None:
        """Say that ``runs`` (their ids) resume from ``checkpoint``, at the units done."""
        which = f"run {runs[0]}" if len(runs) == 1 else f"runs {', '.join(map(str, runs))}"
        self.say(f"resuming {which} from {self.unit} {self.start} of {self.total} (checkpoint {checkpoint})")

    def note(self, values: dict[str, float], replica: int = 0) -> None:
        """The latest ``values`` of one replica (shown as they are, or as min..max over the replicas)."""
        for name, value in values.items():
            self.metrics.setdefault(name, {})[replica] = value
        if self.bar is not None:
            self.bar.set_postfix_str(self._metric_text(), refresh=False)

    def update(self, done: int) -> None:
        """``done`` units are done: move the bar, or print a line when one is due."""
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            return
        if self.seconds == 0 or done <= self.start:
            return
        now = self.clock()
        if self.last_line is None or now - self.last_line >= self.seconds or done >= self.total:
            self.last_line = now
            print(self.line(done, now), file=self.stream, flush=True)

    def line(self, done: int, now: float) -> str:
        """The progress line at ``done`` units, ``now`` on the clock."""
        rate = (done - self.start) / max(now - self.started, 1e-9)  # units per second in this process
        left = dt.timedelta(seconds=round((self.total - done) / rate))
        metrics = self._metric_text()
        speed = f"{rate:.3g}" if rate < 100 else f"{rate:.0f}"
        return (f"progress: {self.unit} {done}/{self.total} | {metrics + ' | ' if metrics else ''}"
                f"{speed} {self.unit}s/s | {left} left")

    def _metric_text(self) -> str:
        parts = []
        for name, values in self.metrics.items():
            low, high = min(values.values()), max(values.values())
            parts.append(f"{name} {low:.4g}" if low == high else f"{name} {low:.4g}..{high:.4g}")
        return " ".join(parts)

    def close(self) -> None:
        """Close the bar (a line-printing run has nothing to close)."""
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
