"""``python -m studentteacher.sweep``: the command line (:func:`studentteacher.sweep.cli.main`).

Once it returns, the stop signals are ignored: Python's shutdown puts back their default handlers,
which would end a process whose runs are already stored (exit 143 with the run COMPLETED).
"""
import signal
import sys

from .cli import main

status = main()
for stop_signal in (signal.SIGTERM, signal.SIGUSR2):
    signal.signal(stop_signal, signal.SIG_IGN)
sys.exit(status)
