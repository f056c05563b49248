"""The local backend: run a sweep's tasks on this machine, N at a time.

    python -m studentteacher.sweep submit FILE --backend local [--parallel N] [--threads T] [--batch R]

Each task is a child process ``python -m studentteacher.sweep run FILE --observer DIR --index I
--validate task`` (``--indices I,J,..`` for a group of ``--batch R``), started in the current
directory with ``T`` CPU threads (``OMP_NUM_THREADS``/``MKL_NUM_THREADS``, default 1; an
inherited ``SLURM_CPUS_PER_TASK`` is dropped so it does not override T). At most ``N`` (default
1) run at once, in index order. Each child's output goes to ``<observer>/local/<index>-<time>.out``.

**submit blocks** until every task has ended and prints one line per finished task. Its exit
status is 0 when every task completed, 1 when any failed (or was invalid, or was killed), 3
when one was interrupted. SIGINT (Ctrl-C), SIGTERM and SIGUSR2 stop it: no further task starts,
the running ones get SIGTERM (SIGUSR2 for SIGUSR2; children run in their own session, so a
terminal's Ctrl-C reaches them only this way), training runs checkpoint and end INTERRUPTED,
submit waits for them and exits 3. The next ``submit`` resumes them, as for SLURM.

While it runs, ``<observer>/local/queue.json`` lists the unfinished tasks and the submitting
process; ``status`` shows those not yet running as ``queued`` as long as that process lives.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..spec import Sweep
from ..tasks import EXIT_COMPLETED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, batch_groups, exit_status
from .base import Backend, Option

FORWARD = {signal.SIGINT: signal.SIGTERM, signal.SIGTERM: signal.SIGTERM, signal.SIGUSR2: signal.SIGUSR2}
OUTCOMES = {EXIT_COMPLETED: "completed", EXIT_FAILED: "failed", EXIT_INVALID: "invalid", EXIT_INTERRUPTED: "interrupted"}
POLL_SECONDS = 0.2


@dataclass
class LocalTask:
    """One child process: the sweep indices it runs, its command line and log, and how it ended."""

    indices: list[int]
    command: list[str]
    log: Path
    process: subprocess.Popen | None = field(default=None, repr=False)
    started: float = 0.0
    seconds: float = 0.0
    returncode: int | None = None
    stopped: bool = False  # a stop signal was passed on to it

    @property
    def outcome(self) -> str:
        """completed / failed / invalid / interrupted / killed by SIG... / exit N (None: not run)."""
        code = self.returncode
        if code is None:
            return "not run"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return OUTCOMES.get(code, f"exit {code}")

    def describe(self) -> str:
        """One line: which tasks, how they ended, how long it took, where the log is."""
        which = f"task {self.indices[0]}" if len(self.indices) == 1 else f"tasks {','.join(map(str, self.indices))}"
        return f"{which}: {self.outcome} in {self.seconds:.1f} s (log: {self.log})"


def queue_file(sweep: Sweep) -> Path:
    """Where a running local submit lists its unfinished tasks."""
    return sweep.observer / "local" / "queue.json"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalBackend(Backend):
    """Child processes on this machine; options: ``parallel`` (tasks at once), ``threads`` (CPU threads per task)."""

    name = "local"
    OPTIONS = {
        "parallel": Option(r"[1-9]\d*", "a positive integer: how many tasks run at once (default 1)"),
        "threads": Option(r"[1-9]\d*", "a positive integer: CPU threads per task (default 1)"),
    }

    def __init__(self, **options):
        """Options ``parallel`` and ``threads`` (default 1 each)."""
        super().__init__(**options)
        self.parallel = int(self.options.get("parallel", 1))
        self.threads = int(self.options.get("threads", 1))
        self.stop_signal: int | None = None
        self.running: list[LocalTask] = []

    def _tasks(self, sweep: Sweep, indices: list[int], batch: int) -> list[LocalTask]:
        """The child processes to run, in index order (not started)."""
        groups = batch_groups(sweep, indices, batch) if batch > 1 else [[index] for index in indices]
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        tasks = []
        for group in groups:
            which = ["--index", str(group[0])] if len(group) == 1 else ["--indices", ",".join(map(str, group))]
            command = [sys.executable, "-m", "studentteacher.sweep", "run", str(sweep.path),
                       "--observer", str(sweep.observer), *which, "--validate", "task"]
            tasks.append(LocalTask(group, command, sweep.observer / "local" / f"{group[0]:05d}-{stamp}.out"))
        return tasks

    def _environment(self) -> dict[str, str]:
        """The children's environment: this one with ``threads`` CPU threads."""
        environment = {key: value for key, value in os.environ.items() if key != "SLURM_CPUS_PER_TASK"}
        return environment | {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
                              "PYTHONUNBUFFERED": "1"}

    def _start(self, task: LocalTask) -> None:
        """Start ``task``'s process, its output to its log, in a session of its own."""
        with open(task.log, "w") as log:
            task.process = subprocess.Popen(task.command, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=self._environment(),
                                            start_new_session=True)
        task.started = time.monotonic()

    def _write_queue(self, sweep: Sweep, tasks: list[LocalTask]) -> None:
        """Write :func:`queue_file` (atomically): this process and the unfinished tasks."""
        unfinished = [task for task in tasks if task.returncode is None]
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "waiting": [i for task in unfinished if task.process is None for i in task.indices],
                  "started": [i for task in unfinished if task.process is not None for i in task.indices]}
        path = queue_file(sweep)
        path.with_suffix(".tmp").write_text(json.dumps(record))
        os.replace(path.with_suffix(".tmp"), path)

    def _on_signal(self, signum, frame) -> None:
        """Stop starting tasks; pass the stop on to the running ones."""
        self.stop_signal = signum
        self._forward()

    def _forward(self) -> None:
        """Pass the stop signal on to each running task once."""
        for task in self.running:
            if not task.stopped:
                task.stopped = True
                task.process.send_signal(FORWARD[self.stop_signal])

    def _reap(self) -> list[LocalTask]:
        """The running tasks that have ended (their returncode and time set), removed from ``running``."""
        ended = [task for task in self.running if task.process.poll() is not None]
        for task in ended:
            task.returncode, task.seconds = task.process.returncode, time.monotonic() - task.started
            self.running.remove(task)
        return ended

    def _run_all(self, sweep: Sweep, tasks: list[LocalTask]) -> None:
        """Run ``tasks``, ``parallel`` at a time, until all ended or a stop signal came and the running ones ended."""
        waiting, self.running = list(tasks), []
        (sweep.observer / "local").mkdir(parents=True, exist_ok=True)
        try:
            while self.running or (waiting and self.stop_signal is None):
                while waiting and len(self.running) < self.parallel and self.stop_signal is None:
                    self._start(waiting[0])
                    self.running.append(waiting.pop(0))
                    self._write_queue(sweep, tasks)
                if self.stop_signal is not None:
                    self._forward()  # a task started as the signal came
                time.sleep(POLL_SECONDS)
                for task in self._reap():
                    print(task.describe(), flush=True)
                    self._write_queue(sweep, tasks)
        finally:
            queue_file(sweep).unlink(missing_ok=True)

    def submit(self, sweep: Sweep, indices: list[int], batch: int = 1, dry_run: bool = False) -> list[LocalTask]:
        """Run the tasks here (blocking, see the module docstring); the :class:`LocalTask` of each
        child, those never started with returncode None. A dry run starts nothing."""
        tasks = self._tasks(sweep, indices, batch)
        if dry_run:
            return tasks
        catch = threading.current_thread() is threading.main_thread()
        saved = {signum: signal.signal(signum, self._on_signal) for signum in FORWARD} if catch else {}
        try:
            self._run_all(sweep, tasks)
        finally:
            for signum, handler in saved.items():
                signal.signal(signum, handler)
        return tasks

    def report(self, submissions: list[LocalTask], dry_run: bool = False) -> str:
        """The commands of a dry run, else a count per outcome (and why it stopped early)."""
        if dry_run:
            return "\n".join(f"# would run: {shlex.join(task.command)} > {shlex.quote(str(task.log))}"
                             for task in submissions)
        counts: dict[str, int] = {}
        for task in submissions:
            counts[task.outcome] = counts.get(task.outcome, 0) + len(task.indices)
        line = f"{sum(counts.values())} tasks: " + ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
        if self.stop_signal is not None:
            line += f"; stopped by {signal.Signals(self.stop_signal).name}"
        return line

    def exit_status(self, submissions: list[LocalTask]) -> int:
        """0 all completed, 1 any failed, 3 interrupted (a task, or submit by a stop signal)."""
        codes = [EXIT_INTERRUPTED if task.returncode is None else task.returncode for task in submissions]
        return exit_status(codes + ([EXIT_INTERRUPTED] if self.stop_signal is not None else []))

    @classmethod
    def queued(cls, sweep: Sweep) -> dict[int, str]:
        """The unfinished tasks of a local submit that is still running (on this host)."""
        try:
            record = json.loads(queue_file(sweep).read_text())
        except (OSError, ValueError):
            return {}
        if record.get("host") != socket.gethostname() or not _alive(int(record.get("pid", 0))):
            return {}
        detail = f"local submit (pid {record['pid']})"
        return {**{i: f"{detail}: waiting" for i in record.get("waiting", [])},
                **{i: f"{detail}: started" for i in record.get("started", [])}}
