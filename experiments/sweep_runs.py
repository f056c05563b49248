"""The Sacred side of sweeps: the only place :mod:`studentteacher.sweep` meets Sacred.

The sweep package imports this file lazily (from ``experiments/`` in a checkout, from the installed
package ``studentteacher_experiments`` otherwise) and calls two functions:

* :func:`resolve_config` -- the config Sacred would run for some updates and named configs;
* :func:`run_tasks` -- sweep tasks as Sacred runs, each stored by a :class:`SweepObserver` in
  ``<observer>/<index:05d>-<attempt>``.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import traceback
from pathlib import Path

# quiet start (experiments/quiet.py, beside this file); the MLflow observer comes with the scripts' `use_mlflow(ex)`
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))
from quiet import quiet  # noqa: E402

quiet()
from sacred.initialize import create_run  # noqa: E402
from sacred.observers import FileStorageObserver  # noqa: E402
from sacred.serializer import flatten  # noqa: E402
from sacred.utils import SacredInterrupt  # noqa: E402

from studentteacher.results import sweep_attempts  # noqa: E402

HERE = Path(__file__).resolve().parent
SCRIPTS = {"student_teacher": "train.py", "particle_flow": "flows2d.py"}
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)
_MODULES: dict[str, object] = {}


def experiment_module(name: str):
    """The imported script of experiment ``name`` (once per process): it defines the Sacred
    experiment ``ex`` and ``run_replicas(run_options)``."""
    if name not in _MODULES:
        script = HERE / SCRIPTS[name]
        module_name = f"studentteacher_experiment_{script.stem}"
        spec = importlib.util.spec_from_file_location(module_name, script)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        _MODULES[name] = module
    return _MODULES[name]


def resolve_config(name: str, config_updates: dict, named_configs: list[str]) -> dict:
    """The full config Sacred would run: defaults < named configs < updates (config hooks run).

    Raises ValueError with Sacred's message (an unknown key or named config, a config hook's
    complaint) or naming a key the experiment does not know.
    """
    ex = experiment_module(name).ex
    try:
        run = create_run(ex, ex.default_command, config_updates=config_updates, named_configs=list(named_configs))
    except Exception as err:  # Sacred's own errors (unknown named config, config scope errors, hooks)
        raise ValueError(str(err)) from err
    added = sorted(run.config_modifications.added)
    if added:
        known = ", ".join(sorted(k for k in run.config if k not in added))
        raise ValueError(f"unknown config key {added[0]!r} for experiment {name!r}; known keys: {known}")
    return dict(run.config)


class SweepObserver(FileStorageObserver):
    """A FileStorageObserver that stores task ``index`` in ``<basedir>/<index:05d>-<attempt>``.

    The attempt number is the next free one; the directory is reserved with ``mkdir`` (atomic),
    so concurrent tasks and resubmissions never share or overwrite a run directory. JSON files
    are written atomically (temporary file + rename) so ``status`` never reads half a file.
    """

    def __init__(self, basedir: Path, index: int):
        super().__init__(basedir)
        self.index = index

    def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):
        attempt = 1 + max((a for i, a, _ in sweep_attempts(self.basedir) if i == self.index), default=0)
        while True:
            meta_info.setdefault("sweep", {})["attempt"] = attempt
            try:
                run_id = f"{self.index:05d}-{attempt}"
                return super().started_event(ex_info, command, host_info, start_time, config, meta_info, run_id)
            except FileExistsError:
                attempt += 1

    def save_json(self, obj, filename):
        target = os.path.join(self.dir, filename)
        temporary = target + ".tmp"
        with open(temporary, "w") as f:
            json.dump(flatten(obj), f, sort_keys=True, indent=2)
            f.flush()
        os.replace(temporary, target)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")


def _run_one(ex, named_configs: list[str], task: dict, observer: SweepObserver) -> str:
    """One Sacred run of ``ex`` observed by ``observer`` alone; its status.

    SIGTERM and SIGUSR2 raise KeyboardInterrupt (-> INTERRUPTED) unless the experiment installs
    its own handlers (the training experiment checkpoints first); a failure's traceback goes to
    stderr.
    """
    saved_observers = list(ex.observers)
    saved_handlers = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for signum, handler in saved_handlers.items():
        if handler in (signal.SIG_DFL, None):
            signal.signal(signum, _raise_interrupt)
    ex.observers[:] = [observer]
    status = "COMPLETED"
    try:
        ex.run(config_updates=task["config_updates"], named_configs=list(named_configs),
               meta_info=task["meta"], options={"--capture": "sys"})
    except (KeyboardInterrupt, SacredInterrupt):
        status = "INTERRUPTED"
        traceback.print_exc()
    except Exception:
        status = "FAILED"
        traceback.print_exc()
    finally:
        ex.observers[:] = saved_observers
        for signum, handler in saved_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    return status


def run_tasks(name: str, named_configs: list[str], observer_dir: Path, tasks: list[dict]) -> list[tuple[str, Path | None]]:
    """Run sweep tasks of experiment ``name`` as Sacred runs; (status, run directory) per task.

    Each task is a dict with ``index``, ``config_updates`` and ``meta`` (the run's ``meta_info``).
    One task runs in this process (:func:`_run_one`); several run as one batched computation
    (the script's ``run_replicas``), each still its own run. The status is what the run ended
    with as seen here (COMPLETED, FAILED or INTERRUPTED); the run directory is None when the run
    never started.
    """
    module = experiment_module(name)
    observers = [SweepObserver(observer_dir, task["index"]) for task in tasks]
    if len(tasks) == 1:
        statuses = [_run_one(module.ex, named_configs, tasks[0], observers[0])]
    else:
        statuses = module.run_replicas([
            dict(config_updates=task["config_updates"], named_configs=list(named_configs), meta_info=task["meta"],
                 options={"--capture": "no"}, observers=[observer])
            for task, observer in zip(tasks, observers)
        ])  # fmt: skip
    return [(status, Path(observer.dir) if observer.dir else None) for status, observer in zip(statuses, observers)]
