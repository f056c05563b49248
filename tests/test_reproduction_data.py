"""The committed full-scale data (reproduction/runs): every run loads, is COMPLETED (or FAILED for a
reason the report discusses), has exactly the config its sweep index says, and the figure scripts
redraw from it.

The data is what REPRODUCTION.md reports; a run that finished with a different config (an edited
sweep file, a stale named config) would make the report about something else, so the config of
every committed run is resolved again from its sweep file and compared key by key.
"""
from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from studentteacher import config as st_config
from studentteacher import dmmd, flows, results
from studentteacher.sweep import spec, tasks

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "reproduction" / "runs"
SWEEPS = REPO / "experiments" / "sweeps" / "figures"
# figure script -> the sweeps it reads (as figures/reproduce.sh's map), in the order of its --runs
FIGURES = {
    "drmmd_student_teacher": ["drmmd_student_teacher", "drmmd_student_teacher_seeds", "drmmd_student_teacher_30k",
                              "srmmd_student_teacher"],
    "mmd_flow_student_teacher": ["mmd_flow_student_teacher", "drmmd_student_teacher"],
    "diffusion_fixed_noise": ["diffusion_fixed_noise", "drmmd_student_teacher", "mmd_flow_student_teacher"],
    "drmmd_lambda_ablation": ["drmmd_lambda_ablation", "drmmd_student_teacher"],
    "readout_ablation": ["readout_ablation", "drmmd_student_teacher", "mmd_flow_student_teacher"],
    "three_rings": ["three_rings"],
    "adaptive_lambda": ["three_rings"],
    "three_rings_lambda": ["three_rings_lambda"],
    "mmd_flow_gaussians": ["mmd_flow_gaussians"],
    "adaptive_bandwidth": ["adaptive_bandwidth"],
    "dmmd_discriminator": ["dmmd"],
    "dmmd_samples": ["dmmd", "dmmd_baselines", "dmmd_baselines_adaptive"],
    "dmmd_choices": ["dmmd", "dmmd_choices"],
    "dmmd_samplers": ["dmmd_samplers"],
    "srmmd_toys": ["srmmd_toys"],
}
# experiment -> the config key of its last logged step (a dmmd run logs training and sampling steps)
LAST_STEP = {"student_teacher": "epochs", "particle_flow": "steps"}
# how a run executes, not what it computes (runs from before the key was added have none; a resumed
# attempt names the checkpoint it continues)
EXECUTION_KEYS = ("threads", "resume_from")
# keys a config may leave out, with the value it then has (a run from before the key was added has none)
ADDED_FLOW_KEYS = ("checkpoint_every", "resume_from", "threads", "dim", "source_distance", "velocity", "linear_solver",
                   "hrmmd_alpha")  # fmt: skip
OPTIONAL_KEYS = {"particle_flow": {key: flows.SPEC[key].default for key in ADDED_FLOW_KEYS},
                 "student_teacher": {"hrmmd_alpha": st_config.SPEC["hrmmd_alpha"].default}}
# experiment -> what a stored config from before keys were added means today (dmmd: the keys' values then and
# the sampler's name today)
EARLIER_CONFIGS = {"dmmd": dmmd.config_of_earlier_run}
# sweep -> the failure its runs may end with, a result REPRODUCTION.md reports (section 8: bandwidth 1 in
# d = 50 at the common step throws particles away and the run-away rule fails the run)
EXPECTED_FAILURES = {"adaptive_bandwidth": "FlowDivergedError: flow diverged"}


def failure_reason(run_dir: str) -> str:
    """The last line of a run's fail_trace ('' if it has none)."""
    trace = json.loads((Path(run_dir) / "run.json").read_text()).get("fail_trace") or [""]
    return trace[-1].strip()


def committed_run_dirs() -> dict[str, list[Path]]:
    """sweep stem -> the run directories committed in git (a run still going here is not)."""
    listed = subprocess.run(["git", "ls-files", "--", str(DATA)], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.split()
    dirs = {(REPO / path).parent for path in listed if path.endswith("/run.json")}
    by_stem: dict[str, list[Path]] = {}
    for run_dir in sorted(dirs):
        by_stem.setdefault(run_dir.parent.name, []).append(run_dir)
    return by_stem


def committed_checkpoints() -> set[Path]:
    """The run directories whose checkpoint.pt is committed (runs a later session resumes)."""
    listed = subprocess.run(["git", "ls-files", "--", str(DATA)], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.split()
    return {(REPO / path).parent for path in listed if path.endswith("/checkpoint.pt")}


RUN_DIRS = committed_run_dirs()
RESUMABLE = committed_checkpoints()
COMMITTED = sorted(RUN_DIRS)


def test_every_committed_sweep_folder_has_a_sweep_file():
    assert COMMITTED, f"no committed runs under {DATA}"
    assert [stem for stem in COMMITTED if not (SWEEPS / f"{stem}.yaml").is_file()] == []


@pytest.mark.parametrize("stem", COMMITTED)
def test_committed_runs_load_completed_with_their_sweep_config(stem):
    sweep = spec.load(SWEEPS / f"{stem}.yaml", observer=DATA / stem)
    df = results.load_runs(RUN_DIRS[stem])
    table = results.runs(df)
    assert len(table) == len(RUN_DIRS[stem]), "every committed run directory loads"
    latest = table.sort_values("attempt").groupby("sweep_index").tail(1)
    failed = latest[latest["status"] != "COMPLETED"]
    unexpected = [run_dir for run_dir, status in zip(failed["run_dir"], failed["status"])
                  if not (status == "INTERRUPTED" and Path(run_dir) in RESUMABLE)
                  and (status != "FAILED" or stem not in EXPECTED_FAILURES
                       or EXPECTED_FAILURES[stem] not in failure_reason(run_dir))]  # fmt: skip
    assert unexpected == [], ("only COMPLETED runs, FAILED for the reason the report discusses, or INTERRUPTED "
                              "with its checkpoint committed (a run longer than a session, resumed by the next)")
    earlier = table.drop(latest.index)
    assert set(earlier["status"]) <= {"INTERRUPTED"}, "an earlier attempt is one the latest resumed"
    joined = results.join_attempts(df)
    assert len(results.runs(joined)) == len(latest), "the attempts of an index join into one run"
    for _, run in table.iterrows():
        index = int(run["sweep_index"])
        expected = tasks.resolved_config(sweep, index)
        stored = json.loads((Path(run["run_dir"]) / "config.json").read_text())
        stored = EARLIER_CONFIGS.get(sweep.experiment, dict)({**OPTIONAL_KEYS.get(sweep.experiment, {}), **stored})
        wrong = {key: (stored.get(key), value) for key, value in expected.items()
                 if stored.get(key) != value and key not in EXECUTION_KEYS}
        assert wrong == {}, f"{run['run_dir']}: (committed, sweep) differ"
    completed = set(latest.loc[latest["status"] == "COMPLETED", "sweep_index"])
    for index, steps in joined[joined["sweep_index"].isin(completed)].groupby("sweep_index")["step"]:
        expected = tasks.resolved_config(sweep, int(index))
        assert steps.min() == 0, f"index {index}: its attempts join into one curve from step 0 (in any clone)"
        if sweep.experiment in LAST_STEP:
            assert steps.max() == expected[LAST_STEP[sweep.experiment]], f"index {index} logged to its end"


@pytest.mark.parametrize("figure", sorted(FIGURES))
def test_each_figure_redraws_from_the_committed_data(figure, tmp_path, monkeypatch):
    present = [stem for stem in FIGURES[figure] if stem in COMMITTED]
    if FIGURES[figure][0] not in present:
        pytest.skip(f"no committed full-scale runs of {FIGURES[figure][0]} yet: run its sweep (REPRODUCTION.md's status table) and commit the runs")
    monkeypatch.syspath_prepend(str(REPO / "figures"))
    module = importlib.import_module(figure)
    runs = tmp_path / "runs"
    for stem in present:  # the committed runs only, not one still going in this checkout
        for run_dir in RUN_DIRS[stem]:
            shutil.copytree(run_dir, runs / stem / run_dir.name)
    try:
        module.main(["--runs", *(str(runs / stem) for stem in present), "--out", str(tmp_path)])
    except SystemExit as refusal:  # the committed runs of its sweep are not yet the ones it draws
        if not str(refusal).startswith("no run to draw"):
            raise
        pytest.skip(f"{figure}: {refusal}")
    assert sorted(p.suffix for p in tmp_path.glob("*.png")), f"{figure} drew no PNG"
    sys.modules.pop(figure, None)
