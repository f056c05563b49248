"""An experiment script's command line: Sacred's parser, the flags refused with a reason, the exit status."""
from __future__ import annotations

import sys
from dataclasses import dataclass

from docopt import DocoptExit, docopt
from sacred import Experiment
from sacred.arg_parser import get_config_updates

from studentteacher.sweep.tasks import EXIT_COMPLETED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, exit_status

STATUS_EXIT = {"COMPLETED": EXIT_COMPLETED, "QUEUED": EXIT_COMPLETED, "INTERRUPTED": EXIT_INTERRUPTED}


class UsageError(ValueError):
    """A command line, observer or flag that cannot work; the message says why."""



SQL_REASON = ("Sacred 0.8.7's SqlObserver cannot store this experiment: its run table keeps the result as one "
              "float (ours is a dict) and it has no table for metrics, so every logged value would be lost; use "
              "-F DIR (FileStorage, the default) or -m MONGO_URL")
#: Sacred's flags that cannot work with ``replicas > 1`` (R runs in one process, in threads), and why.
REFUSED = {
    "-i/--id": "one run id cannot name the R runs of a batch",
    "-q/--queue": "a queued run never starts, and replicas train only once all of them have started",
    "-D/--pdb": "post-mortem debugging needs the failing run in the main thread, and replicas end in threads "
                "(debug one replica with replicas=1 seed=SEED+r)",
    "-C/--capture": "Sacred's sys and fd capture of stdout is process-wide: the R runs share one process and "
                    "their outputs would mix (only -C no)",
}  # fmt: skip
OBSERVER_OPTIONS = ("--mongo_db", "--tiny_db", "--s3", "--unobserved")


@dataclass
class CommandLine:
    """A parsed command line: the command, config updates, named configs, Sacred's options (those the
    helper passes on), and what the helper handles itself: ``-n NAME``, ``-F DIR``, help."""

    command: str
    updates: dict
    named_configs: list[str]
    options: dict
    name: str | None = None
    file_storage: str | None = None
    help: bool = False


def _unknown_flag(ex: Experiment, argv: list[str]) -> str | None:
    """The first argument that looks like a flag Sacred does not have (``--name`` or ``-x``), if any."""
    flags = {flag for option in ex.all_cli_options for flag in option.get_flags() if flag}
    for arg in map(str, argv):
        name = arg.split("=")[0]
        if (name.startswith("--") or (len(name) == 2 and name[0] == "-")) and name not in flags:
            return name
    return None


def parse_command_line(ex: Experiment, argv: list[str]) -> CommandLine:
    """Sacred's own parser (docopt) on ``argv`` (no program name); UsageError for what cannot work."""
    unknown = _unknown_flag(ex, argv)
    if unknown:
        flags = sorted("/".join(flag for flag in option.get_flags() if flag) for option in ex.all_cli_options)
        raise UsageError(f"unknown flag {unknown}; Sacred's flags: {', '.join(flags)}")
    try:
        args = docopt(ex.get_usage()[2], [str(arg) for arg in argv], default_help=False)
    except DocoptExit as error:
        problem = str(error).strip().splitlines()[0]
        raise UsageError(f"cannot read the command line {' '.join(argv)!r}: {problem} (see --help)") from None
    options = {key: value for key, value in args.items() if key.startswith("--")}
    for key, value in options.items():  # docopt keeps the '=' of '-F=DIR'
        if isinstance(value, str) and value.startswith("="):
            options[key] = value[1:]
    if options.pop("--sql", None):
        raise UsageError(f"-s: {SQL_REASON}")
    updates, named = get_config_updates(args["UPDATE"])
    return CommandLine(command=args["COMMAND"] or ex.default_command, updates=updates, named_configs=named,
                       name=options.pop("--name", None), file_storage=options.pop("--file_storage", None),
                       options=options, help=bool(args["help"] or args["--help"]))  # fmt: skip


def refuse_flags(options: dict, replicas: int) -> None:
    """UsageError for a flag of :data:`REFUSED` given with ``replicas`` > 1."""
    for flags, reason in REFUSED.items() if replicas > 1 else ():
        value = options.get(flags.split("/")[1])
        if value and not (flags == "-C/--capture" and value == "no"):
            raise UsageError(f"{flags} cannot be used with replicas = {replicas}: {reason}")


def refuse(error: Exception) -> int:
    print(f"error: {error}", file=sys.stderr)
    return EXIT_INVALID

def report(statuses: list[str]) -> int:
    """Print the statuses of a batch (one run reports itself); the exit status."""
    if len(statuses) > 1:
        print(f"replicas: {', '.join(statuses)}", file=sys.stderr)
    return exit_status([STATUS_EXIT.get(status, EXIT_FAILED) for status in statuses])
