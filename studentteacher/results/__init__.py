"""Logged runs (Sacred FileStorage directories) -> one tidy pandas table, and its summaries.

:mod:`.reading` finds and reads run directories into the tidy table (its docstring lists the columns);
:mod:`.tables` reduces it (one row per run, attempts joined, final values per config, curves);
:mod:`.cli` is ``python -m studentteacher.results``; :mod:`.mlflow_store` and :mod:`.mlflow_import`
copy runs into an MLflow store. No plotting at import, no Sacred import.
"""
from .reading import (
    HOW, RESERVED, RUN_COLUMNS, RUN_ID, RUNS_ENV, SWEEP_RUN_ID, TIDY_COLUMNS, UnreadableRun, default_runs_dir,
    fail_reason, find_run_dirs, flatten, load_runs, read_info_json, read_run, read_run_json, run_name,
    runs_dir_problem, sweep_attempts,
)
from .tables import check_logged, curves, final_table, join_attempts, per_run, runs

__all__ = [
    "HOW", "RESERVED", "RUN_COLUMNS", "RUN_ID", "RUNS_ENV", "SWEEP_RUN_ID", "TIDY_COLUMNS", "UnreadableRun",
    "check_logged", "curves", "default_runs_dir", "fail_reason", "final_table", "find_run_dirs", "flatten",
    "join_attempts", "load_runs", "per_run", "read_info_json", "read_run", "read_run_json", "run_name", "runs",
    "runs_dir_problem", "sweep_attempts",
]
