"""How an experiment script's runs are checked, started, trained and stored: :class:`ExperimentRuns`."""
from __future__ import annotations

import contextlib
import pdb
import sys
from pathlib import Path
from typing import Callable

from sacred import SETTINGS, Experiment
from sacred.initialize import create_run
from sacred.randomness import get_seed
from sacred.observers import FileStorageObserver
from sacred.utils import SacredInterrupt, apply_backspaces_and_linefeeds, print_filtered_stacktrace

from experiments.mlflow_observer import use_mlflow
from studentteacher import results
from studentteacher.progress import progress_seconds
from studentteacher.sweep.tasks import EXIT_COMPLETED
from studentteacher.threads import apply_threads, flush_denormals

from . import storage
from .command_line import OBSERVER_OPTIONS, CommandLine, UsageError, parse_command_line, refuse, refuse_flags, report
from .replica_groups import ACTIVE_GROUPS, Batch, ReplicaGroup, deliver
from .stop_signals import STOP, ignore_stop_signals, stop_signals
from .storage import RunStorageError, RunStore, final_status, flush, storage_errors
from .sweep_entry import run_tasks

SETTINGS.CAPTURE_MODE = "sys"  # keep sys.stderr a terminal for the progress bars
#: Denormals flushed before torch starts its OpenMP workers, so that they inherit it (3-4x faster
#: dense epochs; :func:`studentteacher.threads.flush_denormals`); recorded in each run's info.json.
FLUSHED_DENORMALS = flush_denormals()
#: Seconds between Sacred heartbeats (metrics reach metrics.json, run.json gets a heartbeat time);
#: recorded in run.json as ``meta.beat_interval``, which ``sweep status`` reads to call a run dead.
BEAT_SECONDS = 5.0
#: Keys left out of a run's default name: they change how a run is carried out, not what it computes.
UNNAMED_KEYS = ("seed", "replicas", "resume_from", "threads")
#: Keys that hold integers though their defaults are not ints (None, "auto"): :meth:`ExperimentRuns.whole_numbers`.
INTEGER_KEYS = ("seed", "threads")
#: Sacred's config hook validates each config it sees (a run started by ``ex.run`` directly).
DIRECT = object()


class ExperimentRuns:
    """How an experiment script's runs are checked, started, trained and stored (module docstring).

    ``train(batch)`` trains the runs of a :class:`Batch` (one run, or R replicas) and gives each its
    outcome with ``batch.finish``. ``validate(config)`` checks a resolved config, once per run (in
    :meth:`prepare`; Sacred's config hook for a run started by ``ex.run`` directly) and returns it
    completed (or None); ``preflight(config)`` checks the completed config against the machine and
    files (memory, the ``resume_from`` checkpoint); both raise ValueError naming the key.
    ``checkpoint_config(path)`` reads the config a checkpoint was written with (None: ``resume_from``
    takes nothing from the checkpoint); ``preflight`` refuses the keys that may not differ from it.
    ``checkpoints``: whether ``train`` writes checkpoints (False: a batch's runs list none in info.json).
    ``one_thread(config)``: whether the run's tensors are so small that one thread is fastest (``threads``
    "auto" then takes one, :mod:`studentteacher.threads`).
    """

    def __init__(self, ex: Experiment, train: Callable[[Batch], None], validate: Callable[[dict], object],
                 preflight: Callable[[dict], object] = lambda config: None,
                 checkpoint_config: Callable[[str], dict] | None = None,
                 one_thread: Callable[[dict], bool] = lambda config: False, checkpoints: bool = True):
        self.ex, self.train, self.validate, self.preflight = ex, train, validate, preflight
        self.checkpoint_config, self.checkpoints, self.one_thread = checkpoint_config, checkpoints, one_thread
        ex.captured_out_filter = apply_backspaces_and_linefeeds
        use_mlflow(ex)  # --mlflow URI / $STUDENTTEACHER_MLFLOW: an MLflow copy of each run, next to FileStorage

        #: What Sacred's config hook validates with: :data:`DIRECT` (a run started by ``ex.run`` directly),
        #: the (config, completed config) pairs of one command (:meth:`checked`), or None (not at all).
        self.hook_validated: list[tuple[dict, dict]] | object | None = DIRECT
        #: Every (config, completed config) pair validated so far: a run's main function trains the
        #: completed (frozen) config of its own, which the library then takes as checked.
        self.completed: list[tuple[dict, dict]] = []

        def check_config(config, command_name, logger):
            """Reject a bad config before Sacred does (its own message for an unknown key says less) and
            before the run starts; Sacred adds the seed after the hooks."""
            if command_name == "main" and self.hook_validated is not None:
                config = {"seed": 0, **config}
                if self.hook_validated is DIRECT:
                    self.checked(config, [])
                else:
                    self.checked(config, self.hook_validated)
            return {}

        def main(_config, _run):
            return self.main(self.completed_config(dict(_config)), _run)

        ex.config_hook(check_config)
        ex.main(main)

    # ------------------------------------------------------------------ inside a run
    def main(self, config: dict, run):
        """The experiment's main function: join the active replica group, or train this run alone."""
        group = ACTIVE_GROUPS.get(id(self.ex))
        if group is not None:
            return group.join(config, run)
        outcomes: dict[int, object] = {}
        self.start_batch(Batch([config], [run], lambda replica, outcome: outcomes.setdefault(replica, outcome)))
        return deliver(run, outcomes.get(0, RuntimeError("the experiment's train function gave no outcome")))

    def start_batch(self, batch: Batch) -> None:
        """Threads (the config's ``threads``) and denormals flushed, both recorded in info.json,
        heartbeats, then ``train(batch)``."""
        failed_writes = [error for run in batch.runs for error in storage_errors(run)]
        if failed_writes:  # its sources could not be stored: nothing it would compute could be either
            for replica in range(len(batch.runs)):
                batch.finish(replica, RunStorageError(f"{failed_writes[0]}; the run did not start"))
            return
        flushed = flush_denormals() and FLUSHED_DENORMALS  # this thread, and the workers started after import
        threads = apply_threads(batch.configs[0].get("threads", "auto"), tiny_tensors=self.one_thread(batch.configs[0]))
        for run in batch.runs:
            run.info["threads"] = threads
            run.info["flush_denormals"] = flushed
            flush(run)  # serialises the heartbeat timer with the flushes after checkpoints
        self.train(batch)

    def create(self, plan: dict):
        """A Sacred run of ``plan`` (``ex.run`` keyword arguments and ``observers``), not started yet."""
        plan = dict(plan)
        saved = list(self.ex.observers)
        self.ex.observers[:] = plan.pop("observers", saved)  # a run copies them when it is created
        try:
            with self._hook_validating(None):  # prepare() validated it
                return self.ex._create_run(**plan)  # ex.run = _create_run + run(); split to tell creation errors apart
        finally:
            self.ex.observers[:] = saved

    @contextlib.contextmanager
    def _hook_validating(self, validated: list[tuple[dict, dict]] | None):
        """Inside this block Sacred's config hook validates with ``validated`` (None: not at all)."""
        saved, self.hook_validated = self.hook_validated, validated
        try:
            yield
        finally:
            self.hook_validated = saved

    # ------------------------------------------------------------------ before any run
    def whole_numbers(self, updates: dict, named_configs: list[str]) -> dict:
        """``updates`` with each integral float (``epochs=1e3``) made an int where the key holds integers
        (its default is an int, or it is one of :data:`INTEGER_KEYS`): the run stores and uses 1000, as
        if it had been given so, in every experiment and in sweeps; any other float is left to the
        validation (``epochs=1.5`` is refused)."""
        integral = [key for key, value in updates.items() if isinstance(value, float) and value.is_integer()]
        if not integral:
            return updates
        defaults = self.resolve({}, named_configs)
        holds_int = [key for key in integral if key in INTEGER_KEYS
                     or (isinstance(defaults.get(key), int) and not isinstance(defaults.get(key), bool))]  # fmt: skip
        return {**updates, **{key: int(updates[key]) for key in holds_int}}

    def resolve(self, updates: dict, named_configs: list[str],
                validated: list[tuple[dict, dict]] | None = None) -> dict:
        """The config Sacred would run (defaults < named configs < updates, hooks run; integral floats of
        integer keys made ints, :meth:`whole_numbers`); ValueError with Sacred's or the validator's
        message, or naming a key the experiment does not know. ``validated``: the hook validates the
        config into these pairs (:meth:`checked`); None: it is not validated."""
        updates = self.whole_numbers(updates, named_configs)
        try:
            with self._hook_validating(validated):
                run = create_run(self.ex, self.ex.default_command, config_updates=updates,
                                 named_configs=list(named_configs))  # fmt: skip
        except Exception as error:  # Sacred's errors (an unknown named config, config scope errors), the hooks'
            raise ValueError(str(error)) from error
        added = sorted(run.config_modifications.added)
        if added:
            known = ", ".join(sorted(key for key in run.config if key not in added))
            raise ValueError(f"unknown config key {added[0]!r} for experiment {self.ex.path!r}; known keys: {known}")
        return dict(run.config)

    def run_name(self, named_configs: list[str], config: dict) -> str:
        """The experiment, its named configs and the config values that differ from them (but
        :data:`UNNAMED_KEYS`), e.g. ``student_teacher drmmd_paper lr=0.05``; a resumed run keeps the
        name of the run it resumes."""
        if config.get("resume_from"):
            run = results.read_run_json(Path(config["resume_from"]).parent)
            if (run.get("meta") or {}).get("name"):
                return run["meta"]["name"]
        base = self.resolve({}, named_configs)
        changed = [f"{key}={value}" for key, value in config.items()
                   if key not in UNNAMED_KEYS and value != base.get(key)]  # fmt: skip
        return " ".join([self.ex.path, *named_configs, *changed])

    def replica_updates(self, updates: dict, named_configs: list[str], config: dict) -> list[dict]:
        """The config updates of each run a command line starts: ``replicas`` runs with the seeds
        seed .. seed+R-1, or, with ``resume_from``, the seeds and configs of the checkpoints."""
        if config.get("resume_from") and self.checkpoint_config is not None:
            return self.resumed_updates(updates, named_configs, config)
        return [{**updates, "seed": config["seed"] + r} for r in range(config["replicas"])]

    def resumed_updates(self, updates: dict, named_configs: list[str], config: dict) -> list[dict]:
        """Each run's updates when resuming: the checkpoint's config and seed, then the keys the command
        line sets (itself or through named configs; :meth:`preflight` refuses those that may not change)."""
        replicas, path = config["replicas"], config["resume_from"]
        paths = [path] if replicas == 1 else batch_checkpoints(path, replicas)
        given = set(updates)
        for name in named_configs:
            given |= set(self.ex.named_configs[name]()) if name in self.ex.named_configs else set()
        plans = []
        for replica, checkpoint in enumerate(paths):
            stored = self.checkpoint_config(checkpoint)
            kept = {key: value for key, value in stored.items() if key not in ("replicas", "resume_from")}
            chosen = {key: config[key] for key in given if key != "seed"}
            seed = config["seed"] + replica if "seed" in given else stored["seed"]
            plans.append({**kept, **chosen, "seed": seed, "replicas": replicas, "resume_from": checkpoint})
        return plans

    def checked(self, config: dict, validated: list[tuple[dict, dict]]) -> dict:
        """``config`` as :meth:`validate` completes it; ``validated`` holds the (config, completed config)
        pairs a command already validated, so that each distinct config is validated once."""
        for known, complete in validated:
            if known == config:
                return complete
        complete = self.validate(config)
        complete = config if complete is None else complete  # some validators return None
        validated.append((config, complete))
        self.completed.append((config, complete))
        return complete

    def completed_config(self, config: dict) -> dict:
        """The completed config of a run's ``config`` as its validation returned it (``config`` itself
        when none did: the library then checks it)."""
        for known, complete in reversed(self.completed):
            if known == config:
                return complete
        return config

    def prepare(self, plans: list[dict], validated: list[tuple[dict, dict]] | None = None) -> list[dict]:
        """Check every run of ``plans`` before any starts: its resolved config (:meth:`checked`, once;
        ``validated`` as there, :meth:`preflight`) and its FileStorage folder; name it and set its
        heartbeat. ValueError naming the key (or the flag, or the environment variable) of the first
        problem; the plans, completed."""
        progress_seconds()  # $STUDENTTEACHER_PROGRESS, read by every run's progress
        validated = [] if validated is None else validated
        for plan in plans:
            plan["config_updates"] = self.whole_numbers(plan["config_updates"], plan.get("named_configs", []))
            config = self.resolve(plan["config_updates"], plan.get("named_configs", []), validated)
            self.preflight(self.checked(config, validated))
            for observer in plan.get("observers", []):
                problem = isinstance(observer, FileStorageObserver) and results.runs_dir_problem(observer.basedir)
                if problem:
                    raise UsageError(f"observer folder: {problem}")
            options = plan.setdefault("options", {})
            options["--beat-interval"] = float(options.get("--beat-interval") or BEAT_SECONDS)
            meta = plan.setdefault("meta_info", {})
            meta["beat_interval"] = options["--beat-interval"]
            meta.setdefault("name", self.run_name(plan.get("named_configs", []), config))
        return plans

    def observers(self, cli: CommandLine) -> list:
        """New observers for one run of ``cli``: ``-F DIR``'s RunStore, or the default RunStore unless
        another observer flag is given, and :func:`environment_observers`."""
        if cli.file_storage:
            stores = [RunStore(cli.file_storage)]
        elif any(cli.options.get(flag) for flag in OBSERVER_OPTIONS):
            stores = []
        else:
            stores = [RunStore(results.default_runs_dir())]
        return stores + ([] if cli.options.get("--unobserved") else storage.environment_observers())

    def plans(self, cli: CommandLine) -> list[dict]:
        """Every run a ``main`` command line starts, checked (:meth:`prepare`); ValueError if one cannot run."""
        seeded = cli.updates if "seed" in cli.updates else {**cli.updates, "seed": get_seed()}  # as Sacred draws it
        validated = []  # each distinct config of this command validated once, here and in prepare()
        config = self.resolve(seeded, cli.named_configs, validated)
        refuse_flags(cli.options, config["replicas"])
        if config["replicas"] > 1:
            cli.options["--capture"] = "no"  # replicas run in threads: Sacred's stdout capture is process-wide
        plans = [dict(config_updates=updates, named_configs=list(cli.named_configs), options=dict(cli.options),
                      meta_info={"name": cli.name} if cli.name else {}, observers=self.observers(cli))
                 for updates in self.replica_updates(cli.updates, cli.named_configs, config)]  # fmt: skip
        return self.prepare(plans, validated)

    # ------------------------------------------------------------------ running
    def execute(self, plans: list[dict]) -> list[str]:
        """Run the prepared plans: one in this thread, several as a :class:`ReplicaGroup`; final statuses."""
        if len(plans) > 1:
            return ReplicaGroup(self, len(plans)).run(plans)
        try:
            run = self.create(plans[0])
        except Exception as error:  # Sacred refused to create the run (-e on a dirty tree, a missing driver)
            raise UsageError(str(error)) from error
        try:
            run()
        except (SacredInterrupt, KeyboardInterrupt) as interrupt:
            print(f"interrupted: {interrupt or type(interrupt).__name__}", file=sys.stderr)
        except Exception:
            if run.debug:
                raise
            if run.pdb:
                pdb.post_mortem(sys.exc_info()[2])
            if storage_errors(run):  # a full disk: the reason, not a traceback
                print(f"error: the run could not be stored: {'; '.join(dict.fromkeys(storage_errors(run)))}",
                      file=sys.stderr)
            else:
                print_filtered_stacktrace()
        return [final_status(run)]

    def run_replicas(self, run_options: list[dict]) -> list[str]:
        """Run one Sacred run per entry of ``run_options`` (``ex.run`` keyword arguments; ``observers`` or
        an ``--file_storage`` option for that run alone) as one batch; each run's final status."""
        plans = []
        for options in run_options:
            plan = {**options, "options": dict(options.get("options", {}))}
            folder = plan["options"].pop("--file_storage", None)
            plan.setdefault("observers", [RunStore(folder)] if folder else [])
            plans.append(plan)
        with stop_signals():
            return self.execute(self.prepare(plans))

    def run_tasks(self, named_configs: list[str], observer_dir: Path, tasks: list[dict],
                  validated: list[tuple[dict, dict]] | None = None) -> list[tuple[str, Path | None]]:
        """A sweep's tasks as runs of this experiment (:func:`.sweep_entry.run_tasks`)."""
        return run_tasks(self, named_configs, observer_dir, tasks, validated)

    def command_line(self, argv: list[str], until_exit: bool = False) -> int:
        """Run the script's command line (``argv`` without the program name); the exit status.
        ``until_exit``: the process ends with it, so the stop handlers stay (:func:`stop_signals`)."""
        try:
            cli = parse_command_line(self.ex, argv)
        except UsageError as error:
            return refuse(error)
        if cli.help or cli.command != self.ex.default_command:  # Sacred's own commands and help
            self.ex.run_commandline([self.ex.path, *map(str, argv)])
            return EXIT_COMPLETED
        with stop_signals(restore=not until_exit):
            try:
                statuses = self.execute(self.plans(cli))
            except ValueError as error:
                return refuse(error)
            if STOP() and all(status == "COMPLETED" for status in statuses):
                print("note: a stop signal arrived after the work was done; the run completed", file=sys.stderr)
        return report(statuses)

    def run_as_script(self) -> None:
        """``sys.exit`` with the exit status of this process's command line. The stop signals are
        ignored from then on: Python's shutdown puts back their default handlers, which would end a
        process whose runs are already stored (exit 143 with the run COMPLETED)."""
        status = self.command_line(sys.argv[1:], until_exit=True)
        ignore_stop_signals()
        sys.exit(status)


def batch_checkpoints(path: str, replicas: int) -> list[str]:
    """The checkpoints of the batch whose replica 0 wrote ``path`` (its run's info.json lists them)."""
    info = results.read_info_json(Path(path).parent)
    replica, paths = info.get("replica") or {}, info.get("batch_checkpoints") or []
    if replica.get("index") != 0 or replica.get("of") != replicas or len(paths) != replicas:
        written = (f"replica {replica['index']} of {replica['of']}" if "of" in replica else
                   "a plain run (or a run whose info.json does not list its batch)")
        raise UsageError(
            f"config key 'resume_from': got {path!r} with replicas = {replicas}; allowed: replica 0's checkpoint of "
            f"a batch of {replicas} (this one was written by {written}); a replica's checkpoint also resumes alone, "
            f"with replicas=1"
        )
    return paths

