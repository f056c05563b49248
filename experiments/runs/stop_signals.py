"""SIGTERM and SIGUSR2 as a stop request (:data:`STOP`) that the training loops poll."""
from __future__ import annotations

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


class StopRequest:
    """The stop signals received while :func:`stop_signals` is active; true once one arrived."""

    def __init__(self):
        self.received: list[int] = []
        self.depth = 0

    def __call__(self) -> bool:
        return bool(self.received)

    def note(self, signum, frame) -> None:
        self.received.append(signum)


STOP = StopRequest()


@contextlib.contextmanager
def stop_signals(restore: bool = True):
    """SIGTERM and SIGUSR2 set :data:`STOP` (instead of ending the process) while the block runs.

    Re-entrant: an inner block shares the outer one's request. Outside the main thread no handler can
    be set, and the block only yields the request. ``restore=False`` keeps the handlers when the block
    ends, for a process that ends with it: a signal during its last writes must not kill a run that
    is already stored as COMPLETED.
    """
    owner = STOP.depth == 0 and threading.current_thread() is threading.main_thread()
    if STOP.depth == 0:
        STOP.received.clear()
    saved = {sig: signal.signal(sig, STOP.note) for sig in STOP_SIGNALS} if owner else {}
    STOP.depth += 1
    try:
        yield STOP
    finally:
        STOP.depth -= 1
        for sig, handler in saved.items() if restore else ():
            signal.signal(sig, handler)


def ignore_stop_signals() -> None:
    """Ignore SIGTERM and SIGUSR2 until the process ends (called once its work is stored)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
