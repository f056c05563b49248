"""A sweep's tasks as Sacred runs of one experiment (:func:`run_tasks`, what :mod:`studentteacher.sweep` runs)."""
from __future__ import annotations

from pathlib import Path

from . import storage
from .stop_signals import stop_signals
from .storage import RunStore


def run_tasks(runs, named_configs: list[str], observer_dir: Path, tasks: list[dict],
              validated: list[tuple[dict, dict]] | None = None) -> list[tuple[str, Path | None]]:
    """Run sweep tasks as Sacred runs of ``runs`` (an experiment's :class:`.experiment_runs.ExperimentRuns`);
    (status, run directory) per task.

    Each task is a dict with ``index``, ``config_updates`` and ``meta`` (the run's ``meta_info``),
    stored by a :class:`RunStore` in ``<observer_dir>/<index:05d>-<attempt>``. Every task is checked
    before any starts (ValueError naming the index and the key); one task runs in this thread,
    several as one batch. The status is the one the run stored (COMPLETED, FAILED, INTERRUPTED).
    ``validated``: (config, completed config) pairs the sweep checked already (not validated again).
    """
    stores = [RunStore(observer_dir, task["index"]) for task in tasks]
    capture = "sys" if len(tasks) == 1 else "no"
    plans = [dict(config_updates=task["config_updates"], named_configs=list(named_configs), meta_info=task["meta"],
                  options={"--capture": capture}, observers=[store, *storage.environment_observers()])
             for task, store in zip(tasks, stores)]  # fmt: skip
    validated = [] if validated is None else validated
    with stop_signals():
        for task, plan in zip(tasks, plans):
            try:
                runs.prepare([plan], validated)
            except ValueError as error:
                raise ValueError(f"index {task['index']}: {error}") from error
        statuses = runs.execute(plans)
    return [(status, Path(store.dir) if store.dir else None) for status, store in zip(statuses, stores)]
