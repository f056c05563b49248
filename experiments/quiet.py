"""Quiet entry points: hide the library noise that is not the user's business, nothing else.

The two modules that import Sacred first, :mod:`experiments.runs` (which every experiment script and
sweep task imports first) and :mod:`experiments.mlflow_observer`, call :func:`quiet` before they import
it. What it hides, by exact message or logger name:

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
