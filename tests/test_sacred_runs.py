"""The experiments' Sacred helper (experiments/runs/): flags, names, threads, observers.

Runs go through :meth:`ExperimentRuns.command_line` in this process (what ``python
experiments/train.py ...`` runs after its imports), with one run and with two replicas.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import import_script

from studentteacher import results

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "experiments" / "train.py"
FLOWS2D = ROOT / "experiments" / "flows2d.py"
TINY = ["epochs=2", "n_particles=10", "n_train=40", "n_valid=20", "batch_size=20", "log_every=1", "d_in=5"]
TINY_FLOW = ["steps=5", "n_particles=21", "n_target=21", "device=cpu"]  # three rings: n_target a multiple of 3


@pytest.fixture(scope="module")
def train():
    return import_script(TRAIN, "sacred_runs_train")


@pytest.fixture(scope="module")
def flows2d():
    return import_script(FLOWS2D, "sacred_runs_flows2d")


@pytest.fixture(autouse=True)
def one_thread():
    yield
    torch.set_num_threads(1)  # a run with threads=N sets this process's torch threads


def load(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / name).read_text())


def run_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)) if folder.exists() else []


def command(train, *argv) -> int:
    return train.runs.command_line([str(a) for a in argv])


@pytest.mark.parametrize("replicas", [1, 2])
def test_loglevel_flag_is_not_refused_as_a_replica_flag(train, tmp_path, capsys, caplog, replicas):
    """Regression: ``-l WARNING with ...`` said '-l is not supported with replicas > 1' with replicas = 1."""
    caplog.set_level(logging.INFO)  # without -l the run logs "Running command 'main'" etc. at INFO
    assert command(train, "-l", "WARNING", "with", *TINY, f"replicas={replicas}", "-F", tmp_path) == 0
    err = capsys.readouterr().err
    assert "not supported" not in err, err
    assert [r.getMessage() for r in caplog.records if r.name == "student_teacher" and r.levelno < logging.WARNING] == []
    assert [load(d, "run.json")["status"] for d in run_dirs(tmp_path)] == ["COMPLETED"] * replicas


@pytest.mark.parametrize("replicas", [1, 2])
def test_sacreds_flags_work_with_one_run_and_with_replicas(train, tmp_path, capsys, replicas):
    flags = ["-c", "a comment", "-f", "-d", "-p", "-b", "2", "-n", "my runs"]
    assert command(train, "with", *TINY, f"replicas={replicas}", "-F", tmp_path, *flags) == 0
    out = capsys.readouterr().out
    assert out.count("lr = 0.1") == replicas, "-p prints each run's config"
    for run_dir in run_dirs(tmp_path):
        run = load(run_dir, "run.json")
        assert run["status"] == "COMPLETED" and run["experiment"]["name"] == "student_teacher"
        assert run["meta"]["comment"] == "a comment" and run["meta"]["name"] == "my runs"
        assert run["meta"]["beat_interval"] == 2.0
    assert len(run_dirs(tmp_path)) == replicas


@pytest.mark.parametrize("replicas", [1, 2])
def test_unobserved_runs_store_nothing(train, tmp_path, monkeypatch, replicas):
    monkeypatch.setenv("STUDENTTEACHER_RUNS", str(tmp_path / "default"))
    assert command(train, "with", *TINY, f"replicas={replicas}", "-u") == 0
    assert not (tmp_path / "default").exists()


def test_loglevel_flag_quiets_a_2d_flow_run_and_stores_it(flows2d, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)  # without -l the run logs "Running command 'main'" etc. at INFO
    assert command(flows2d, "-l", "WARNING", "with", *TINY_FLOW, "-F", tmp_path) == 0
    assert "not supported" not in capsys.readouterr().err
    assert [r.getMessage() for r in caplog.records if r.name == "particle_flow"] == []
    assert [load(d, "run.json")["status"] for d in run_dirs(tmp_path)] == ["COMPLETED"]


def test_unobserved_2d_flow_run_stores_nothing(flows2d, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDENTTEACHER_RUNS", str(tmp_path / "default"))
    assert command(flows2d, "with", *TINY_FLOW, "-u") == 0
    assert not (tmp_path / "default").exists()


def test_enforce_clean_is_sacreds_check_not_a_refusal(train, tmp_path, capsys):
    code = command(train, "with", *TINY, "-e", "-F", tmp_path)
    err = capsys.readouterr().err
    assert (code == 0 and run_dirs(tmp_path)) or (code == 2 and "EnforceClean" in err and not run_dirs(tmp_path)), err


def test_default_name_is_the_experiment_and_its_changed_values(train, tmp_path):
    assert command(train, "with", *TINY, "method=drmmd", "lr=0.05", "seed=3", "-F", tmp_path) == 0
    assert command(train, "with", "drmmd_paper", *TINY, "readout=particle", "-F", tmp_path) == 0
    first, second = run_dirs(tmp_path)
    name = load(first, "run.json")["meta"]["name"]
    assert name.startswith("student_teacher ") and "method=drmmd" in name and "lr=0.05" in name
    assert "seed" not in name and "epochs=2" in name
    assert load(second, "run.json")["meta"]["name"].startswith("student_teacher drmmd_paper ")
    assert "method=" not in load(second, "run.json")["meta"]["name"], "values the named config sets stay unnamed"
    table = results.load_runs(tmp_path)
    assert set(table["name"]) == {name, load(second, "run.json")["meta"]["name"]}


def test_threads_key_sets_and_records_the_threads(train, tmp_path):
    assert command(train, "with", *TINY, "threads=2", "-F", tmp_path) == 0
    assert command(train, "with", *TINY, "replicas=2", "-F", tmp_path) == 0
    infos = [load(d, "info.json") for d in run_dirs(tmp_path)]
    assert infos[0]["threads"] == 2
    assert all(info["flush_denormals"] for info in infos), "denormals flushed in every run"
    assert [info["threads"] for info in infos[1:]] == [1, 1], "auto: OMP_NUM_THREADS=1 in the tests"


def test_observers_from_the_environment_join_every_run(train, tmp_path, monkeypatch):
    """The single place where extra observers come in (an MLflow observer will): every run gets its own."""
    from sacred.observers import RunObserver  # after the helper's warnings filter (the train fixture)

    seen = []

    class Recorder(RunObserver):
        def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):
            seen.append(("started", config["seed"]))

        def completed_event(self, stop_time, result):
            seen.append(("completed", result["valid_mmd2"] > 0))

    from experiments.runs import storage

    monkeypatch.setattr(storage, "environment_observers", lambda: [Recorder()])
    assert command(train, "with", *TINY, "replicas=2", "seed=4", "-F", tmp_path) == 0
    assert sorted(seen) == [("completed", True), ("completed", True), ("started", 4), ("started", 5)]
    assert len(run_dirs(tmp_path)) == 2, "beside the FileStorage, not instead of it"


def test_package_imports_neither_sacred_nor_matplotlib():
    """Every module of studentteacher imports with sacred and matplotlib blocked (Sacred only in experiments/)."""
    code = (
        "import importlib, pkgutil, sys\n"
        "sys.modules['sacred'] = None\n"
        "sys.modules['matplotlib'] = None\n"
        "import studentteacher\n"
        "names = [m.name for m in pkgutil.walk_packages(studentteacher.__path__, 'studentteacher.')\n"
        "         if not m.name.endswith('__main__')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 30
    assert not (ROOT / "studentteacher" / "replica_runs.py").exists()


def test_run_names_in_sweep_status_and_results_tables(tmp_path, capsys):
    import yaml

    from studentteacher.results import cli as results_cli
    from studentteacher import sweep as sw

    path = tmp_path / "named.yaml"
    base = dict(epochs=2, n_particles=10, n_train=40, n_valid=20, batch_size=20, log_every=1, d_in=5)
    path.write_text(yaml.safe_dump({"experiment": "student_teacher", "base": base, "grid": {"lr": [0.05]},
                                    "seeds": [1], "observer": str(tmp_path / "runs")}))  # fmt: skip
    assert sw.main(["run", str(path), "--index", "0"]) == 0
    (state,) = sw.status(sw.load(path))
    assert state.name.startswith("student_teacher ") and "lr=0.05" in state.name
    capsys.readouterr()
    assert sw.main(["status", str(path)]) == 0
    assert state.name in capsys.readouterr().out
    assert results_cli.main(["table", str(tmp_path / "runs"), "--metric", "valid_mmd2", "--by", "lr"]) == 0
    assert state.name in capsys.readouterr().out


DMMD = ROOT / "experiments" / "dmmd.py"
TINY_DMMD = ["n_train=90", "n_eval=30", "hidden=8", "features=4", "embedding=4", "train_steps=2", "batch_size=16",
             "levels=2", "steps_per_level=2", "n_particles=20", "device=cpu"]


@pytest.mark.parametrize("script, tiny, key", [(TRAIN, TINY, "epochs"), (FLOWS2D, TINY_FLOW, "steps"),
                                               (DMMD, TINY_DMMD, "train_steps")])  # fmt: skip
def test_an_integral_float_of_an_integer_key_is_stored_as_the_integer(tmp_path, script, tiny, key):
    """Regression: ``epochs=2.0`` ran and was stored as 2.0 (train.py, dmmd.py) and ``steps=2.0`` was refused
    (flows2d.py); every script now runs it as, and stores, the integer (``seed`` and ``threads`` too)."""
    argv = [a for a in tiny if not a.startswith(f"{key}=")] + [f"{key}=2.0", "seed=3.0", "threads=1.0"]
    done = subprocess.run([sys.executable, str(script), "with", *argv, "-F", str(tmp_path)], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    config = load(run_dir, "config.json")
    assert [(config[k], type(config[k])) for k in (key, "seed", "threads")] == [(2, int), (3, int), (1, int)]
    assert f"{key}=2 " in load(run_dir, "run.json")["meta"]["name"] + " "


def test_an_integral_float_in_a_sweep_is_stored_as_the_integer(tmp_path):
    """Regression: a flow sweep with ``steps: 5.0`` was refused, where the training sweep stored 5.0."""
    import yaml

    from studentteacher import sweep as sw

    path = tmp_path / "floats.yaml"
    base = {"steps": 5.0, "n_particles": 21, "n_target": 21, "device": "cpu"}
    path.write_text(yaml.safe_dump({"experiment": "particle_flow", "base": base, "seeds": [1],
                                    "observer": str(tmp_path / "runs")}))  # fmt: skip
    assert sw.main(["check", str(path)]) == 0
    assert sw.main(["run", str(path), "--index", "0"]) == 0
    config = load(tmp_path / "runs" / "00000-1", "config.json")
    assert (config["steps"], type(config["steps"])) == (5, int)
