"""The SLURM backend: ``sbatch --array`` over the chosen indices (the default backend).

The array script is rendered from ``templates/array.sbatch`` (task t runs index ``offset + t``)
or, with ``--batch R``, ``templates/array_batch.sbatch`` (task t runs the indices of group t as
one batched computation); ``slurm/*.sbatch`` in a checkout link to them. Arrays are split at the
cluster's MaxArraySize. Scripts, logs (``%A_%a.out``) and the submission records
(``submissions.jsonl``, which :meth:`SlurmBackend.queued` matches against ``squeue``) go to
``<observer>/slurm/``.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..spec import Sweep, SweepError
from ..tasks import batch_groups
from .base import Backend, Option, SubmitError
from .base import check_options as _check

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
TEMPLATE = TEMPLATES / "array.sbatch"
BATCH_TEMPLATE = TEMPLATES / "array_batch.sbatch"
DEFAULT_MAX_ARRAY_SIZE = 1001  # SLURM's default, for a dry run without scontrol
SUBMIT_OPTIONS: dict[str, Option] = {
    "partition": Option(r"[A-Za-z0-9_.,-]+", "a partition name (or comma-separated names)"),
    "time": Option(r"(\d+-)?\d+(:\d+){0,2}|UNLIMITED|INFINITE",
                   "a SLURM time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS"),
    "mem": Option(r"\d+[KMGT]?", "memory per node, e.g. 4000, 8G"),
    "gpus": Option(r"([A-Za-z0-9_-]+:)?\d+", "a GPU count, optionally typed (a100:1)"),
    "cpus_per_task": Option(r"[1-9]\d*", "a positive integer"),
    "requeue": Option(None, "true to let SLURM requeue a task after a node failure or preemption"),
}


def check_options(options: dict) -> dict:
    """Validated SLURM submit options (None values dropped); SweepError for unknown names and malformed values."""
    return _check(options, SUBMIT_OPTIONS, "slurm")


def sbatch_lines(options: dict) -> list[str]:
    """``#SBATCH`` lines for validated submit options, in :data:`SUBMIT_OPTIONS` order."""
    lines = []
    for name in SUBMIT_OPTIONS:
        value = options.get(name)
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        lines.append(f"#SBATCH {flag}" if value is True else f"#SBATCH {flag}={value}")
    return lines


def array_spec(task_ids: list[int]) -> str:
    """SLURM ``--array`` value for sorted task ids: runs become ranges (``0-3,7,9-10``)."""
    parts, start = [], None
    for position, task in enumerate(task_ids):
        if start is None:
            start = task
        if position + 1 == len(task_ids) or task_ids[position + 1] != task + 1:
            parts.append(str(start) if start == task else f"{start}-{task}")
            start = None
    return ",".join(parts)


def split_array(indices: list[int], max_array_size: int) -> list[tuple[int, list[int]]]:
    """Sweep indices split into (offset, task ids) chunks whose task ids are < ``max_array_size``.

    SLURM rejects array task ids >= MaxArraySize; each chunk is one submission whose task
    ``t`` runs sweep index ``offset + t``. Offsets are multiples of ``max_array_size``, so in
    the usual case (every index < MaxArraySize) the SLURM task id *is* the sweep index.
    """
    chunks: dict[int, list[int]] = {}
    for index in sorted(set(indices)):
        offset = index // max_array_size * max_array_size
        chunks.setdefault(offset, []).append(index - offset)
    return list(chunks.items())


def job_name(sweep: Sweep) -> str:
    """The SLURM job name: ``sweep-<file stem>`` with anything unusual replaced by ``_``."""
    return "sweep-" + re.sub(r"[^A-Za-z0-9_.-]", "_", sweep.name)


def render_script(*, sweep_name: str, job_name: str, array: str, options: dict, python: str, workdir: str,
                  sweep_file: str, observer: str, offset: int | None = None, groups: list[list[int]] | None = None,
                  template: Path | None = None) -> str:
    """The text of ``array.sbatch`` (task t runs index ``offset + t``) or, with ``groups``,
    ``array_batch.sbatch`` (task t runs the indices ``groups[t]`` as one batch), filled in: paths
    are shell-quoted, options become ``#SBATCH`` lines.

    Values that end up outside shell quoting (the job name, the array, the options) are checked
    to contain no whitespace or quotes; the sweep name appears only in a comment, so it may not
    contain a newline.
    """
    for name, value in [("job_name", job_name), ("array", array)]:
        if not re.fullmatch(r"[A-Za-z0-9_.,%-]+", value):
            raise SweepError(f"{name} {value!r} may contain only letters, digits and _ . , % -")
    if "\n" in sweep_name or "\r" in sweep_name:
        raise SweepError(f"sweep name {sweep_name!r} may not contain a line break")
    values = {
        "sweep_name": sweep_name,
        "job_name": job_name,
        "array": array,
        "sbatch_options": "\n".join(sbatch_lines(check_options(options))),
        **{key: shlex.quote(value) for key, value in
           [("python", python), ("workdir", workdir), ("sweep_file", sweep_file), ("observer", observer)]},
    }
    if groups is None:
        values["offset"] = str(int(offset))
    else:
        values["groups"] = " ".join(",".join(str(int(index)) for index in group) for group in groups)
    template = template or (TEMPLATE if groups is None else BATCH_TEMPLATE)
    text = template.read_text()
    placeholders = set(re.findall(r"\{\{(\w+)\}\}", text))
    if placeholders != set(values):
        raise SweepError(f"template {template}: placeholders {sorted(placeholders)} != {sorted(values)}")
    if not values["sbatch_options"]:
        text = text.replace("{{sbatch_options}}\n", "")
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)


def max_array_size() -> int:
    """The cluster's MaxArraySize, from ``scontrol show config``."""
    if shutil.which("scontrol") is None:
        raise SubmitError("scontrol is not on PATH: is SLURM installed? (scripts/slurm_up.sh sets up a local one)")
    done = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SubmitError(f"`scontrol show config` failed (exit {done.returncode}): {done.stderr.strip()}")
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", done.stdout, re.MULTILINE)
    if not match:
        raise SubmitError("`scontrol show config` does not list MaxArraySize")
    return int(match.group(1))


def log_dir(sweep: Sweep) -> Path:
    """Where array scripts, SLURM logs (``%A_%a.out``) and submission records go."""
    return sweep.observer / "slurm"


def _submissions(sweep: Sweep) -> list[dict]:
    """The sweep's submission records (one JSON object per sbatch call)."""
    path = log_dir(sweep) / "submissions.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def slurm_queue(sweep: Sweep) -> dict[int, str]:
    """Indices of this sweep that SLURM still has (pending or running): index -> 'SLURM job JOB_TASK STATE'.

    Read from this sweep's submission records and ``squeue``; empty without SLURM.
    """
    records = _submissions(sweep)
    if not records or shutil.which("squeue") is None:
        return {}
    tasks = {str(r["job_id"]): r for r in records}
    done = subprocess.run(["squeue", "--me", "--noheader", "--array", "--format=%F %K %T"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return {}
    queued = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in tasks and parts[1].isdigit():
            record, task = tasks[parts[0]], int(parts[1])
            covered = record["groups"][task] if "groups" in record else [int(record["offset"]) + task]
            for index in covered:
                queued[index] = f"SLURM job {parts[0]}_{parts[1]} {parts[2]}"
    return queued


@dataclass
class Submission:
    """One sbatch call: its job id (None in a dry run), index offset, sweep indices and script;
    for a batched submission, the indices of each array task (``groups[t]``)."""

    job_id: str | None
    offset: int
    indices: list[int]
    script: Path
    text: str
    command: list[str]
    groups: list[list[int]] | None = None


def _chunks(sweep: Sweep, indices: list[int], batch: int, limit: int) -> list[tuple[int, list[int], list | None]]:
    """(offset, array task ids, groups or None) of each array job for ``indices``."""
    if batch > 1:
        groups = batch_groups(sweep, indices, batch)
        return [(0, list(range(len(part))), part) for part in (groups[i:i + limit] for i in range(0, len(groups), limit))]
    return [(offset, task_ids, None) for offset, task_ids in split_array(indices, limit)]


def _sbatch(submission: Submission, logs: Path) -> None:
    """Write the script, submit it and record the job (``submission.job_id`` is set); SubmitError if sbatch fails."""
    logs.mkdir(parents=True, exist_ok=True)
    submission.script.write_text(submission.text)
    done = subprocess.run(submission.command, capture_output=True, text=True)
    match = re.fullmatch(r"(\d+)(;\S+)?", done.stdout.strip())
    if done.returncode != 0 or not match:
        raise SubmitError(f"sbatch failed (exit {done.returncode}) for {submission.script}:\n"
                          f"stdout: {done.stdout.strip()}\nstderr: {done.stderr.strip()}")
    submission.job_id = match.group(1)
    record = {"job_id": submission.job_id, "offset": submission.offset, "indices": submission.indices,
              "script": str(submission.script), "time": dt.datetime.now().isoformat(timespec="seconds")}
    if submission.groups is not None:
        record["groups"] = submission.groups
    with open(logs / "submissions.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


class SlurmBackend(Backend):
    """SLURM array jobs; options: ``partition``, ``time``, ``mem``, ``gpus``, ``cpus_per_task``, ``requeue``."""

    name = "slurm"
    OPTIONS = SUBMIT_OPTIONS

    def submit(self, sweep: Sweep, indices: list[int], batch: int = 1, dry_run: bool = False) -> list[Submission]:
        """One :class:`Submission` per array job (split at MaxArraySize); a dry run writes and submits nothing."""
        if not dry_run and shutil.which("sbatch") is None:
            raise SubmitError("sbatch is not on PATH: is SLURM installed? To run the tasks on this machine instead, "
                              "add --backend local (scripts/slurm_up.sh sets up a local SLURM)")
        limit = max_array_size() if shutil.which("scontrol") or not dry_run else DEFAULT_MAX_ARRAY_SIZE
        logs = log_dir(sweep)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        common = dict(sweep_name=sweep.name, job_name=job_name(sweep), options=self.options, python=sys.executable,
                      workdir=os.getcwd(), sweep_file=str(sweep.path), observer=str(sweep.observer))
        # Paths go to sbatch as arguments (no quoting rules of #SBATCH lines); % is SLURM's escape.
        output = str(logs).replace("%", "%%") + "/%A_%a.out"
        submissions = []
        for number, (offset, task_ids, groups) in enumerate(_chunks(sweep, indices, batch, limit)):
            script = logs / f"array-{stamp}-{number}.sbatch"
            covered = [offset + t for t in task_ids] if groups is None else [i for group in groups for i in group]
            text = render_script(array=array_spec(task_ids), offset=offset, groups=groups, **common)
            submission = Submission(None, offset, covered, script, text,
                                    ["sbatch", "--parsable", f"--output={output}", str(script)], groups)
            if not dry_run:
                _sbatch(submission, logs)
            submissions.append(submission)
        return submissions

    def report(self, submissions: list[Submission], dry_run: bool = False) -> str:
        """The scripts and sbatch commands of a dry run, else one line per job submitted."""
        if dry_run:
            return "\n".join(f"# would run: {shlex.join(s.command)}\n{s.text}" for s in submissions)
        return "\n".join(f"submitted job {s.job_id}: indices {array_spec(sorted(s.indices))}"
                         f"{'' if s.groups is None else f' in {len(s.groups)} batched tasks'} ({s.script})"
                         for s in submissions)

    @classmethod
    def queued(cls, sweep: Sweep) -> dict[int, str]:
        """:func:`slurm_queue`."""
        return slurm_queue(sweep)
