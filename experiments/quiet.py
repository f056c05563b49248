"""Quiet entry points: hide the library noise that is not the user's business, nothing else.

Every entry point (``train.py``, ``flows2d.py``, ``dmmd.py``, the sweep's ``sacred_runs.py``, ``mlflow_observer.py``)
calls :func:`quiet` first, before it imports Sacred. What it hides, by exact message or logger name:

* Sacred 0.8.7 imports ``pkg_resources`` (``sacred/dependencies.py``), which makes setuptools print
  ``UserWarning: pkg_resources is deprecated as an API`` at every start. setup.cfg pins
  ``setuptools<81`` so the module is still there; the warning says nothing about the user's run.
* matplotlib announces ``Animation.save using <class ...PillowWriter>`` at INFO level whenever a flow
  saves ``flow.gif``; Sacred's log handler prints INFO, so every flow run showed it.

Every other warning still shows (a diverging run, a deprecated config key, a bad config).
"""
from __future__ import annotations

import logging
import warnings


def quiet() -> None:
    """Install the two narrow filters of the module docstring (idempotent)."""
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    logging.getLogger("matplotlib.animation").setLevel(logging.WARNING)
