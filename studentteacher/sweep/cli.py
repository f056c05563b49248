"""The command line ``python -m studentteacher.sweep COMMAND FILE ...`` (see the package docstring)."""
from __future__ import annotations

import argparse
import json
import sys

from experiments.registry import EXPERIMENTS

from .backends import BACKENDS, SubmitError, make_backend
from .runs_folder import nothing_found
from .spec import Sweep, SweepError, load
from .status import collect, format_status, runs_header, status
from .submit import submit
from .tasks import EXIT_COMPLETED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, exit_status, run_batch, validate


STALE_HELP = ("seconds without a heartbeat after which a RUNNING run is dead (default: 3 of the run's heartbeat "
              "intervals, 15 s for the experiments' runs)")


class _Parser(argparse.ArgumentParser):
    """argparse, but an unknown option is reported with the full list of valid ones."""

    def error(self, message):
        """Exit 2 with ``message``, plus the valid options for an unrecognized one."""
        valid = sorted({s for a in self._actions for s in a.option_strings})
        if "unrecognized arguments" in message and valid:
            message += "; valid options: " + ", ".join(valid)
        super().error(message)


def _backend_options() -> dict[str, tuple[str, object]]:
    """name -> (backend name, Option) of every backend's submit options."""
    return {name: (backend.name, option) for backend in BACKENDS.values() for name, option in backend.OPTIONS.items()}


def _add_run(sub: argparse.ArgumentParser) -> None:
    """Add the options of ``run`` to its subparser."""
    which = sub.add_mutually_exclusive_group(required=True)
    which.add_argument("--index", type=int, help="the task index")
    which.add_argument("--indices", help="comma-separated task indices, run as one batched computation")
    sub.add_argument("--batch", type=int, default=1,
                     help="with --index: run tasks INDEX .. INDEX+BATCH-1 as one batched computation (each "
                          "task stays its own run)")
    sub.add_argument("--validate", choices=("all", "task"), default="all",
                     help="validate every config of the sweep first (all, the default) or only this task's "
                          "(task: what array tasks do, since submit validated them all)")


def _add_submit(sub: argparse.ArgumentParser) -> None:
    """Add the options of ``submit`` (every backend's among them) to its subparser."""
    sub.add_argument("--backend", default="slurm", help=f"where the tasks run: {', '.join(BACKENDS)} (slurm)")
    sub.add_argument("--all", action="store_true", help="submit every index")
    sub.add_argument("--batch", type=int, default=1,
                     help="each backend task runs up to BATCH compatible indices as one batched computation")
    sub.add_argument("--dry-run", action="store_true", help="print what would run (scripts, commands) only")
    sub.add_argument("--stale-after", type=float, default=None, help=STALE_HELP)
    for name, (backend, option) in _backend_options().items():
        flag, description = "--" + name.replace("_", "-"), f"{option.description} (backend {backend})"
        if option.pattern is None:
            sub.add_argument(flag, action="store_true", default=None, help=description)
        else:
            sub.add_argument(flag, dest=name, help=description)


def _parser() -> argparse.ArgumentParser:
    """The parser; ``parser.commands`` maps each command to its subparser."""
    parser = _Parser(prog="python -m studentteacher.sweep",
                     description="Sweeps from YAML files; one task per index; SLURM array jobs or local processes.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    parser.commands = {}

    def command(name, help):
        """A new subparser with the arguments every command takes."""
        sub = commands.add_parser(name, help=help, description=help)
        parser.commands[name] = sub
        sub.add_argument("file", help="the sweep file (YAML)")
        sub.add_argument("--observer", help="observer directory (default: the file's, or runs/<file stem>)")
        return sub

    command("count", "print the number of tasks")
    command("list", "print index -> varied keys").add_argument(
        "--json", action="store_true", help="the full config updates per index, as JSON")
    command("check", "validate every config of the sweep")
    _add_run(command("run", "run one task in this process"))
    sub = command("status", "print the state of every index")
    sub.add_argument("--json", action="store_true", help="as JSON")
    sub.add_argument("--stale-after", type=float, default=None, help=STALE_HELP)
    _add_submit(command("submit", "submit the missing/failed/interrupted/dead indices to a backend "
                                  "(SLURM array jobs, or local processes)"))
    sub = command("collect", "print a table of the final metrics per config")
    sub.add_argument("--runs", action="store_true", help="also print one row per run")
    sub.add_argument("--metric", action="append", help="a metric to summarise (repeatable; default: the experiment's)")
    sub.add_argument("--how", choices=("last", "best"), default="last", help="the final value: last (default) or best")
    return parser


def _count(sweep: Sweep, args) -> int:
    """Print the number of tasks; 0."""
    print(len(sweep))
    return 0


def _list(sweep: Sweep, args) -> int:
    """Print index -> varied values (or every config update as JSON); 0."""
    if args.json:
        print(json.dumps([sweep.config_updates(i) for i in range(len(sweep))], indent=1))
    else:
        for index in range(len(sweep)):
            print(f"{index:>5}  {sweep.describe(index)}")
    return 0


def _check(sweep: Sweep, args) -> int:
    """Validate every config; 0 (an invalid one raises SweepError)."""
    validate(sweep)
    print(f"{sweep.path}: all {len(sweep)} configs are valid")
    return 0


def _run(sweep: Sweep, args) -> int:
    """Run the task(s); the exit status of their outcome (0 completed, 1 failed, 3 interrupted)."""
    if args.indices is not None:
        try:
            indices = [int(part) for part in args.indices.split(",")]
        except ValueError:
            raise SweepError(f"--indices must be comma-separated integers, got {args.indices!r}") from None
    elif args.batch < 1:
        raise SweepError(f"--batch must be >= 1, got {args.batch}")
    elif args.index + args.batch > len(sweep) and args.batch > 1:
        raise SweepError(f"--index {args.index} --batch {args.batch} asks for tasks {args.index} .. "
                         f"{args.index + args.batch - 1}, but the sweep {sweep.path} has {len(sweep)} tasks "
                         f"(0 .. {len(sweep) - 1})")
    else:
        indices = list(range(args.index, args.index + args.batch))
    outcomes = run_batch(sweep, indices, validate_all=args.validate == "all")
    for index, state, run_dir in outcomes:
        print(f"sweep task {index}: {state} ({run_dir})", file=sys.stderr)
    codes = {"COMPLETED": EXIT_COMPLETED, "INTERRUPTED": EXIT_INTERRUPTED}
    return exit_status([codes.get(state, EXIT_FAILED) for _, state, _ in outcomes])


def _status(sweep: Sweep, args) -> int:
    """Print the state of every index (table or JSON); 0."""
    statuses = status(sweep, args.stale_after)
    print(json.dumps([s.as_dict() for s in statuses], indent=1) if args.json else format_status(sweep, statuses))
    return 0


def _submit(sweep: Sweep, args) -> int:
    """Submit; the backend's exit status (slurm: 0; local: that of the tasks it ran)."""
    options = {name: getattr(args, name) for name in _backend_options() if getattr(args, name) is not None}
    runner = make_backend(args.backend, options)
    submissions = submit(sweep, backend=runner, all_indices=args.all, dry_run=args.dry_run,
                         stale_after=args.stale_after, batch=args.batch)
    if not submissions:
        print("nothing to submit: every index is completed, running or queued")
        return 0
    print(runner.report(submissions, args.dry_run))
    return runner.exit_status(submissions) if not args.dry_run else 0


def _collect(sweep: Sweep, args) -> int:
    """Print where the runs are read from, then the final tables of :func:`collect` (one block per
    metric), or, when no run logged any of the metrics (e.g. every run failed before its first log),
    say so and print the runs, or, without runs, where it looked and how to look elsewhere; 0."""
    runs, summary = collect(sweep, args.metric, args.how)
    print(runs_header(sweep))
    if runs.empty:
        print(nothing_found(sweep.observer, sweep.name))
        return 0
    if summary.empty:
        metrics = ", ".join(args.metric or EXPERIMENTS[sweep.experiment].metrics)
        print(f"no run logged any of {metrics}; one row per run:")
    if args.runs or summary.empty:
        print(runs.to_string(index=False), end="\n\n")
    for metric in summary.columns.get_level_values(0).unique():
        print(f"{metric} ({args.how} value; statistics over COMPLETED runs):")
        print(summary[metric].to_string(), end="\n\n")
    return 0


COMMANDS = {"count": _count, "list": _list, "check": _check, "run": _run, "status": _status, "submit": _submit,
            "collect": _collect}


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 for an invalid sweep file, config or option)."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the command's parser, which lists its own valid options
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return COMMANDS[args.command](load(args.file, observer=args.observer), args)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    except SubmitError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
