"""Sweeps without SLURM: expansion order, errors, run by index, status, resubmission attempts.

Every task here is a real run of the Sacred experiment ``student_teacher`` (experiments/train.py)
with a tiny config, so each takes about a second.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from studentteacher import sweep as sw

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden" / "array.sbatch"
TINY = {"epochs": 2, "n_particles": 10, "n_train": 100, "n_valid": 100, "batch_size": 50, "d_in": 5,
        "log_every": 1, "device": "cpu"}
# Paths with spaces and both kinds of quotes; every test that writes files runs under one.
ODD = "it's a \"sweep\" dir"


def write_sweep(directory: Path, name: str = "tiny", **spec) -> Path:
    spec.setdefault("experiment", "student_teacher")
    spec.setdefault("base", dict(TINY))
    spec.setdefault("seeds", [1, 2])
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture
def odd_dir(tmp_path, monkeypatch):
    """A working directory whose path has spaces and quotes; relative observers land in it."""
    directory = tmp_path / ODD
    directory.mkdir()
    monkeypatch.chdir(directory)
    monkeypatch.delenv("STUDENTTEACHER_RUNS", raising=False)
    return directory


def cli(*args) -> int:
    return sw.main([str(a) for a in args])


# ------------------------------------------------------------------------------ expansion order


def test_index_order_is_grid_then_zip_then_seed(odd_dir):
    grid = {"method": ["sgd", "drmmd"], "noise_level": [0.0, 0.5, 1.0]}
    zips = [{"lmbda": [0.01, 0.1], "lr": [0.05, 0.1]}]
    seeds = [7, 8, 9]
    sweep = sw.load(write_sweep(odd_dir, grid=grid, zip=zips, seeds=seeds))
    assert len(sweep) == 2 * 3 * 2 * 3
    position = 0
    for method in grid["method"]:  # grid: the last key varies fastest
        for noise in grid["noise_level"]:
            for z in range(2):
                for s, seed in enumerate(seeds):
                    grid_position = grid["method"].index(method) * 3 + grid["noise_level"].index(noise)
                    index = (grid_position * 2 + z) * 3 + s  # the contract's formula
                    assert index == position
                    expected = {**TINY, "method": method, "noise_level": noise,
                                "lmbda": zips[0]["lmbda"][z], "lr": zips[0]["lr"][z], "seed": seed}
                    assert sweep.config_updates(index) == expected, f"index {index}"
                    position += 1
    assert sweep.varied_keys == ["method", "noise_level", "lmbda", "lr", "seed"]


def test_two_zip_groups_are_crossed_first_group_slowest(odd_dir):
    zips = [{"lmbda": [0.1, 1.0], "lr": [0.1, 0.2]}, {"noise_level": [0.0, 1.0, 2.0]}]
    sweep = sw.load(write_sweep(odd_dir, zip=zips, seeds=[1]))
    got = [(sweep.tasks[i]["lmbda"], sweep.tasks[i]["noise_level"]) for i in range(len(sweep))]
    assert got == [(0.1, 0.0), (0.1, 1.0), (0.1, 2.0), (1.0, 0.0), (1.0, 1.0), (1.0, 2.0)]


def test_expansion_is_deterministic_and_list_json_matches(odd_dir, capsys):
    path = write_sweep(odd_dir, grid={"lr": [0.1, 0.2], "hidden": [2, 3]}, seeds=[3, 1, 2])
    assert cli("list", path, "--json") == 0
    first = json.loads(capsys.readouterr().out)
    assert first == [sw.load(path).config_updates(i) for i in range(12)]
    assert cli("list", path, "--json") == 0
    assert json.loads(capsys.readouterr().out) == first
    assert [c["seed"] for c in first[:3]] == [3, 1, 2], "seeds keep the file's order"
    assert cli("count", path) == 0
    assert capsys.readouterr().out.strip() == "12"


def test_default_observer_is_runs_slash_stem_in_cwd_or_env(odd_dir, monkeypatch):
    path = write_sweep(odd_dir / "sweeps", name="my sweep")
    assert sw.load(path).observer == odd_dir / "runs" / "my sweep"
    monkeypatch.setenv("STUDENTTEACHER_RUNS", str(odd_dir / "elsewhere"))
    assert sw.load(path).observer == odd_dir / "elsewhere" / "my sweep"
    assert sw.load(path, observer="x y").observer == odd_dir / "x y"
    explicit = write_sweep(odd_dir, name="explicit", observer="out/here")
    assert sw.load(explicit).observer == odd_dir / "out" / "here"


# ------------------------------------------------------------------------------ errors


def test_zip_lists_of_different_lengths_are_an_error(odd_dir):
    path = write_sweep(odd_dir, zip=[{"lmbda": [0.1, 1.0, 10.0], "lr": [0.1, 0.2]}])
    with pytest.raises(sw.SweepError, match=r"zip group 0: all lists must have the same length, got lmbda: 3, lr: 2"):
        sw.load(path)


@pytest.mark.parametrize("spec, message", [
    ({"grid": {"lr": 0.1}}, r"grid key 'lr' must be a non-empty list"),
    ({"grid": {"lr": []}}, r"grid key 'lr' must be a non-empty list"),
    ({"grid": {"seed": [1, 2]}}, r"set the seed with the top-level 'seeds' list"),
    ({"grid": {"lr": [0.1]}, "zip": [{"lr": [0.2]}]}, r"key 'lr' appears in both grid and zip group 0"),
    ({"base": {"lr": 0.1}, "grid": {"lr": [0.2]}}, r"key 'lr' appears in both base and grid"),
    ({"seeds": []}, r"'seeds' must be a non-empty list of integers"),
    ({"seeds": [1, 1]}, r"'seeds' has repeated values"),
    ({"experiment": "nope"}, r"'experiment' must be one of student_teacher, particle_flow, dmmd, got 'nope'"),
    ({"grids": {}}, r"unknown key 'grids'; allowed keys: experiment, named_config, base, grid, zip, seeds, observer"),
])
def test_malformed_sweep_files_name_the_key(odd_dir, spec, message):
    with pytest.raises(sw.SweepError, match=message):
        sw.load(write_sweep(odd_dir, **spec))


def test_invalid_config_is_reported_with_index_and_key(odd_dir, capsys):
    # noise_decay must be <= 1: only the second grid value is invalid, indices 2 and 3 (2 seeds).
    path = write_sweep(odd_dir, grid={"noise_decay": [0.5, 2.0]})
    with pytest.raises(sw.SweepError) as error:
        sw.validate(sw.load(path))
    text = str(error.value)
    assert "2 of 4 configs are invalid" in text
    assert "indices 2-3 (noise_decay=2.0, seed=1, ...)" in text, "one problem, once, with the indices it affects"
    assert "config key 'noise_decay'" in text and "index 0" not in text and "index 1" not in text
    # the command line refuses to run any index of an invalid sweep, and nothing is written
    assert cli("run", path, "--index", 0) == sw.EXIT_INVALID
    assert "indices 2-3" in capsys.readouterr().err
    assert cli("run", path, "--index", 3, "--validate", "task") == sw.EXIT_INVALID
    assert "index 3 (noise_decay=2.0, seed=2)" in capsys.readouterr().err
    assert not (odd_dir / "runs").exists()


def test_unknown_key_and_unknown_named_config_are_reported(odd_dir):
    with pytest.raises(sw.SweepError, match=r"indices 0-1 .*'lrr'.*did you mean 'lr'"):
        sw.validate(sw.load(write_sweep(odd_dir, name="a", grid={"lrr": [0.1]})))
    with pytest.raises(sw.SweepError, match=r"indices 0-1 .*no_such_config"):
        sw.validate(sw.load(write_sweep(odd_dir, name="b", named_config="no_such_config")))


def test_index_out_of_range(odd_dir):
    sweep = sw.load(write_sweep(odd_dir))
    with pytest.raises(sw.SweepError, match=r"index 2 is out of range: .* has indices 0 \.\. 1"):
        sweep.config_updates(2)


def test_ready_sweep_files_are_valid():
    files = sorted((REPO / "experiments" / "sweeps").glob("*.yaml"))
    assert {f.stem for f in files} >= {"smoke", "drmmd_lambda", "noise_injection", "n_particles", "readout",
                                       "three_rings_drmmd"}
    for path in files:
        sweep = sw.load(path)
        configs = sw.validate(sweep)
        assert len(configs) == len(sweep) and len(sweep) > 0, path.name
        if path.stem != "smoke":
            assert len(sweep.seeds) == 5, path.name
    lam = sw.load(REPO / "experiments" / "sweeps" / "drmmd_lambda.yaml")
    assert sorted({c["lmbda"] for c in lam.tasks}) == [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]
    assert {c["drmmd_noise"] for c in lam.tasks} == {False, True}


# ------------------------------------------------------------------------------ run and status


def test_run_every_index_once_then_status(odd_dir, capsys):
    path = write_sweep(odd_dir, grid={"method": ["sgd", "drmmd"]}, seeds=[1, 2])
    sweep = sw.load(path)
    assert cli("status", path, "--json") == 0
    assert [s["state"] for s in json.loads(capsys.readouterr().out)] == ["missing"] * 4
    for index in range(4):
        assert cli("run", path, "--index", index) == sw.EXIT_COMPLETED
    runs = sorted(p.name for p in sweep.observer.iterdir() if sw.RUN_ID.match(p.name))
    assert runs == ["00000-1", "00001-1", "00002-1", "00003-1"], "one directory per index, no numeric ids"
    for index in range(4):
        run = json.loads((sweep.observer / f"{index:05d}-1" / "run.json").read_text())
        config = json.loads((sweep.observer / f"{index:05d}-1" / "config.json").read_text())
        assert run["meta"]["sweep"]["index"] == index
        assert {k: config[k] for k in sweep.config_updates(index)} == sweep.config_updates(index)
        assert set(run["result"]) == {"valid_mmd2", "best_valid_mmd2"}
    assert cli("status", path, "--json") == 0
    statuses = json.loads(capsys.readouterr().out)
    assert [(s["index"], s["state"], s["attempts"]) for s in statuses] == [(i, "completed", 1) for i in range(4)]
    assert cli("status", path) == 0
    assert "4 tasks: 4 completed" in capsys.readouterr().out
    # collect: one row per run, summary over the two seeds of each method
    runs, summary = sw.collect(sweep)
    assert list(runs["index"]) == [0, 1, 2, 3]
    assert list(summary[("valid_mmd2", "count")]) == [2, 2]
    assert cli("collect", path) == 0
    assert "valid_mmd2" in capsys.readouterr().out

    # a rerun of the same index keeps the earlier attempt and status reads the latest
    assert cli("run", path, "--index", 1) == sw.EXIT_COMPLETED
    assert (sweep.observer / "00001-1" / "run.json").exists() and (sweep.observer / "00001-2" / "run.json").exists()
    by_index = {s.index: s for s in sw.status(sweep)}
    assert (by_index[1].attempts, by_index[1].run_id) == (2, "00001-2")


def test_particle_flow_sweep_runs_and_collects(odd_dir, capsys):
    base = {"steps": 5, "n_particles": 30, "n_target": 30, "device": "cpu"}
    path = write_sweep(odd_dir, experiment="particle_flow", named_config="three_rings_drmmd", base=base,
                       grid={"lmbda": [0.1, 1.0]}, seeds=[1])
    for index in range(2):
        assert cli("run", path, "--index", index) == sw.EXIT_COMPLETED
    sweep = sw.load(path)
    assert [(s.state, s.run_id) for s in sw.status(sweep)] == [("completed", "00000-1"), ("completed", "00001-1")]
    runs, summary = sw.collect(sweep)
    assert {"w1", "w2", "mmd2", "divergence"} <= set(runs.columns)
    assert list(summary.index) == [0.1, 1.0]
    bad = write_sweep(odd_dir, name="bad", experiment="particle_flow", base=base, grid={"bandwidth": [0.1, -1.0]},
                      seeds=[1])
    with pytest.raises(sw.SweepError, match=r"index 1 \(bandwidth=-1.0, seed=1\): config key 'bandwidth'"):
        sw.validate(sw.load(bad))
    assert cli("run", bad, "--index", 1, "--validate", "task") == sw.EXIT_INVALID
    assert "config key 'bandwidth'" in capsys.readouterr().err


def test_failed_run_reports_its_reason(odd_dir, capsys):
    path = write_sweep(odd_dir, grid={"lr": [0.1, 1e30]}, seeds=[1])  # lr 1e30 diverges at epoch 1
    assert cli("run", path, "--index", 0) == sw.EXIT_COMPLETED
    assert cli("run", path, "--index", 1) == sw.EXIT_FAILED
    capsys.readouterr()
    assert cli("status", path, "--json") == 0
    first, second = json.loads(capsys.readouterr().out)
    assert first["state"] == "completed"
    assert second["state"] == "failed" and "TrainingDiverged" in second["detail"] and "diverged" in second["detail"]


def test_collect_shows_a_configuration_whose_runs_all_failed(odd_dir, capsys):
    """Regression (issue 16): `sweep collect` dropped a configuration whose runs all failed."""
    path = write_sweep(odd_dir, grid={"lr": [0.1, 1e30]}, seeds=[1, 2])  # lr 1e30 diverges at epoch 1
    for index in range(4):
        cli("run", path, "--index", index)
    runs, summary = sw.collect(sw.load(path))
    assert list(runs["status"]) == ["COMPLETED", "COMPLETED", "FAILED", "FAILED"]
    failed = summary.loc[1e30, "valid_mmd2"]
    assert (failed["count"], failed["n_runs"], failed["excluded"]) == (0, 2, "FAILED: 2")
    capsys.readouterr()
    assert cli("collect", path) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("1.000000e+30")]
    assert len(rows) == 2, "one row in the block of each metric (valid_mmd2, train_mmd2)"
    for row in rows:  # lr, mean, sd, count, n_runs, seeds, excluded, names
        assert row[3:5] == ["0", "2"] and row[6:8] == ["FAILED:", "2"], row


def test_collect_says_so_when_every_run_failed_before_logging_a_metric(odd_dir, capsys):
    """Regression: `sweep collect` printed nothing at all when no run had logged a metric."""
    path = write_sweep(odd_dir, grid={"lr": [1e30]}, seeds=[1])  # lr 1e30 diverges at epoch 1
    assert cli("run", path, "--index", 0) == sw.EXIT_FAILED
    # A diverging run logs epoch 0 first; what a run that fails before its first log leaves is
    # Sacred's empty metrics.json (its last heartbeat stores no metric): written here by hand.
    (sw.load(path).observer / "00000-1" / "metrics.json").write_text("{}")
    runs, summary = sw.collect(sw.load(path))
    assert list(runs["status"]) == ["FAILED"] and summary.empty
    capsys.readouterr()
    assert cli("collect", path) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"runs: {sw.load(path).observer} (runs/<file stem> of the current folder)"
    assert out[1] == "no run logged any of valid_mmd2, train_mmd2; one row per run:"
    assert out[2].split() == ["index", "lr", "seed", "run_id", "status"]
    assert out[3].split() == ["0", "1.000000e+30", "1", "00000-1", "FAILED"]


def _wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _running(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "run.json").read_text()).get("status") == "RUNNING"
    except (OSError, ValueError):
        return False


def test_sigterm_interrupts_and_rerun_resumes_from_checkpoint(odd_dir):
    # a checkpoint every epoch: its file shows the training loop (and its stop handler) is running
    long = {**TINY, "epochs": 300, "log_every": 50, "checkpoint_every": 1}
    path = write_sweep(odd_dir, base=long, seeds=[1])
    sweep = sw.load(path)
    command = [sys.executable, "-m", "studentteacher.sweep", "run", str(path), "--index", "0"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_dir = sweep.observer / "00000-1"
    _wait_for(lambda: (run_dir / "checkpoint.pt").exists(), 60, "the training loop to run")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == sw.EXIT_INTERRUPTED, stderr
    assert "stopped on request" in stderr, "the experiment's own handler checkpointed and stopped"
    (state,) = sw.status(sweep)
    assert state.state == "interrupted"
    assert sw.submit(sweep, dry_run=True)[0].indices == [0], "interrupted tasks are resubmitted"
    assert sw.main(["run", str(path), "--index", "0"]) == sw.EXIT_COMPLETED
    (state,) = sw.status(sweep)
    assert (state.state, state.run_id, state.detail) == ("completed", "00000-2", "resumed from 00000-1")
    attempts = [json.loads((sweep.observer / f"00000-{a}" / "run.json").read_text()) for a in (1, 2)]
    took = [dt.datetime.fromisoformat(r["stop_time"]) - dt.datetime.fromisoformat(r["start_time"]) for r in attempts]
    assert state.seconds == pytest.approx(sum(t.total_seconds() for t in took)) and min(took).total_seconds() > 0
    assert "wall time of all attempts" in sw.format_status(sweep, [state]), "the time of both attempts is shown"


def test_status_time_of_short_runs_is_not_zero():
    """Regression: local tasks of a few tenths of a second read "0 s"."""
    from studentteacher.sweep.status import _duration_text

    assert [_duration_text(t) for t in (None, 0.0, 0.043, 0.34, 3.24, 42.4, 750.0)] == [
        "-", "0 s", "0.043 s", "0.34 s", "3.2 s", "42 s", "12.5 min"]


def test_killed_run_is_dead_once_its_heartbeat_is_stale_and_resumes(odd_dir):
    path = write_sweep(odd_dir, base={**TINY, "epochs": 300, "log_every": 50, "checkpoint_every": 10}, seeds=[1])
    sweep = sw.load(path)
    process = subprocess.Popen([sys.executable, "-m", "studentteacher.sweep", "run", str(path), "--index", "0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: (sweep.observer / "00000-1" / "checkpoint.pt").exists(), 60, "a periodic checkpoint")
    process.kill()  # no chance to record anything
    process.wait()
    assert sw.status(sweep, stale_after=3600)[0].state == "running"
    time.sleep(1.1)
    dead = sw.status(sweep, stale_after=1)[0]
    assert dead.state == "dead" and "last heartbeat" in dead.detail
    assert [s.indices for s in sw.submit(sweep, dry_run=True, stale_after=1)] == [[0]]
    assert cli("run", path, "--index", 0) == sw.EXIT_COMPLETED
    (state,) = sw.status(sweep)
    assert (state.state, state.attempts, state.detail) == ("completed", 2, "resumed from 00000-1")


# ------------------------------------------------------------------------------ array scripts


def test_array_spec_and_split():
    assert sw.array_spec([0, 1, 2, 3, 7, 9, 10]) == "0-3,7,9-10"
    assert sw.array_spec([5]) == "5"
    assert sw.split_array(list(range(10)), 4) == [(0, [0, 1, 2, 3]), (4, [0, 1, 2, 3]), (8, [0, 1])]
    assert sw.split_array([1, 4, 1000, 1003, 2500], 1001) == [(0, [1, 4, 1000]), (1001, [2]), (2002, [498])]
    assert sw.split_array([5, 2], 1001) == [(0, [2, 5])], "task id = sweep index when it fits"


GOLDEN_ARGS = dict(
    sweep_name="it's \"a\" sweep", job_name="sweep-it_s__a__sweep", array="0-3,7", offset=8,
    options={"partition": "debug", "time": "00:10:00", "mem": "1G", "cpus_per_task": 2, "requeue": True},
    python="/opt/py env/bin/python", workdir="/home/me/my \"work\" dir",
    sweep_file="/home/me/it's a sweep.yaml", observer="/home/me/runs/it's \"a\" sweep",
)


def test_rendered_script_matches_golden_file():
    assert sw.render_script(**GOLDEN_ARGS) == GOLDEN.read_text()


def test_rendered_script_quotes_paths_and_computes_the_index(tmp_path):
    """Run the rendered script with bash (no SLURM): a fake python prints its arguments."""
    directory = tmp_path / ODD
    directory.mkdir()
    fake_python = directory / "py thon"
    fake_python.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\"\npwd\n")
    fake_python.chmod(0o755)
    args = {**GOLDEN_ARGS, "python": str(fake_python), "workdir": str(directory), "options": {}}
    script = directory / "task.sbatch"
    script.write_text(sw.render_script(**args))
    assert "#SBATCH --partition" not in script.read_text()
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_JOB_ID": "12"}
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, check=True)
    lines = done.stdout.splitlines()
    assert lines[1:] == ["-m", "studentteacher.sweep", "run", args["sweep_file"], "--observer", args["observer"],
                         "--index", "11", "--validate", "task", str(directory)]


def test_submit_options_are_validated_with_the_full_list(odd_dir, capsys):
    with pytest.raises(sw.SweepError, match=r"unknown submit option 'qos'; valid options: partition, time, mem, "
                                            r"gpus, cpus_per_task, requeue"):
        sw.check_options({"qos": "high"})
    with pytest.raises(sw.SweepError, match=r"submit option 'time': got '10 min'; allowed: a SLURM time"):
        sw.check_options({"time": "10 min"})
    with pytest.raises(sw.SweepError, match=r"submit option 'partition'"):
        sw.check_options({"partition": "debug; rm -rf /"})
    path = write_sweep(odd_dir)
    with pytest.raises(SystemExit):
        cli("submit", path, "--qos", "high")
    err = capsys.readouterr().err
    assert "unrecognized arguments: --qos high; valid options:" in err and "--cpus-per-task" in err
    assert cli("submit", path, "--dry-run", "--time", "ten") == sw.EXIT_INVALID
    assert "submit option 'time'" in capsys.readouterr().err


def test_dry_run_prints_and_writes_nothing(odd_dir, capsys):
    path = write_sweep(odd_dir)
    assert cli("submit", path, "--dry-run", "--time", "5", "--requeue") == 0
    out = capsys.readouterr().out
    assert "#SBATCH --array=0-1" in out and "#SBATCH --time=5" in out and "#SBATCH --requeue" in out
    assert "# would run: sbatch --parsable" in out
    assert not (odd_dir / "runs").exists()


def test_interrupted_flow_task_resumes_from_its_checkpoint(odd_dir):
    """Regression (2-D flows restarted from step 0): particle_flow has resume_from now, so a flow task
    stopped by SIGTERM (checkpoint.pt in its run directory) resumes from it, as training tasks do."""
    base = {"target": "gaussian", "flow": "mmd_noise", "noise_level": 0.5, "noise_until": 100, "bandwidth": 1.0,
            "n_particles": 24, "n_target": 24, "steps": 20000, "log_every": 1000, "snapshot_every": 10000,
            "checkpoint_every": 500, "device": "cpu"}  # fmt: skip
    path = write_sweep(odd_dir, name="flow", experiment="particle_flow", base=base, seeds=[1])
    sweep = sw.load(path)
    process = subprocess.Popen([sys.executable, "-m", "studentteacher.sweep", "run", str(path), "--index", "0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    first = sweep.observer / "00000-1"
    _wait_for(lambda: (first / "checkpoint.pt").exists(), 60, "a periodic flow checkpoint")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == sw.EXIT_INTERRUPTED, stderr
    assert sw.status(sweep)[0].state == "interrupted"
    assert cli("run", path, "--index", 0) == sw.EXIT_COMPLETED
    (state,) = sw.status(sweep)
    assert (state.state, state.run_id, state.detail) == ("completed", "00000-2", "resumed from 00000-1")
    resumed = json.loads((sweep.observer / "00000-2" / "config.json").read_text())
    assert resumed["resume_from"] == str(first / "checkpoint.pt")
