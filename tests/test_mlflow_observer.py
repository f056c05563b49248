"""The MLflow observer (experiments/mlflow_observer.py) and the back-fill (studentteacher/results/mlflow_import.py)
against a real MLflow store (SQLite), read back with MlflowClient.

One module fixture runs, through the real command lines, each beside its FileStorage observer:
a COMPLETED training run (``--mlflow URI``), a FAILED one (lr = 1e30 diverges), an INTERRUPTED one
(SIGTERM once it is running, huge epoch count), two batched replicas (``with replicas=2``), a 2-D flow
run and a sweep task (both through ``$STUDENTTEACHER_MLFLOW``). Every expected value is read from the
run's FileStorage files with the json module. Then the back-fill imports the same run directories into
a second store, twice.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow", reason="the MLflow observer needs mlflow (pip install -e '.[test]')")

REPO = Path(__file__).resolve().parent.parent
TINY = ["n_particles=4", "n_train=40", "n_valid=40", "batch_size=20", "log_every=1", "device=cpu", "d_in=5"]
FLOW_TINY = ["steps=6", "n_particles=9", "n_target=9", "log_every=1", "snapshot_every=3", "device=cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
ENV.pop("STUDENTTEACHER_MLFLOW", None)
SWEEP = """experiment: student_teacher
base: {epochs: 3, n_particles: 4, n_train: 40, n_valid: 40, batch_size: 20, d_in: 5, log_every: 1, device: cpu}
grid: {method: [sgd, drmmd]}
seeds: [1]
"""

from experiments.mlflow_observer import MlflowObserver  # noqa: E402
from studentteacher.results.mlflow_import import import_runs  # noqa: E402
from studentteacher.results.mlflow_mapping import millis  # noqa: E402
from studentteacher.results.mlflow_store import MlflowStore  # noqa: E402


def start(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env or ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def train(observer: Path, uri: str, *updates: str) -> subprocess.Popen:
    return start([str(REPO / "experiments" / "train.py"), "with", *TINY, *updates, "-F", str(observer), "--mlflow", uri])


def finish(process: subprocess.Popen, expect_ok: bool = True) -> str:
    output, _ = process.communicate(timeout=300)
    assert (process.returncode == 0) == expect_ok, output
    return output


def load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(uri, root): the store and the FileStorage folders of the module's runs."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    MlflowStore(uri)  # create the tables once, before the runs race to
    env = {**ENV, "STUDENTTEACHER_MLFLOW": uri}
    (root / "tiny.yaml").write_text(SWEEP)
    completed = train(root / "completed", uri, "method=noise_injection", "epochs=6", "seed=1")
    failed = train(root / "failed", uri, "method=sgd", "lr=1e30", "epochs=50", "seed=2")
    replicas = train(root / "replicas", uri, "method=sgd", "epochs=5", "replicas=2", "seed=4")
    flow = start([str(REPO / "experiments" / "flows2d.py"), "with", *FLOW_TINY, "seed=5", "-F", str(root / "flow")], env)
    sweep = start(["-m", "studentteacher.sweep", "run", str(root / "tiny.yaml"), "--index", "1",
                   "--observer", str(root / "sweep")], env)  # fmt: skip
    # the interrupted run: SIGTERM once it trains (its first heartbeat wrote metrics.json: main() and its
    # signal handlers are in place, and the observer has written a first batch)
    interrupted = train(root / "interrupted", uri, "method=sgd", "epochs=10000000", "log_every=25", "seed=3")
    deadline, metrics = time.time() + 240, root / "interrupted" / "1" / "metrics.json"
    while not (metrics.exists() and "train_mmd2" in metrics.read_text()):
        assert time.time() < deadline and interrupted.poll() is None, "the interrupted run never started training"
        time.sleep(0.2)
    time.sleep(1.0)
    interrupted.send_signal(signal.SIGTERM)
    finish(completed)
    finish(failed, expect_ok=False)
    finish(replicas)
    finish(flow)
    finish(sweep)
    finish(interrupted, expect_ok=False)
    return uri, root


def mlflow_runs(uri: str) -> dict:
    """{FileStorage run directory: MLflow Run} of every active run in the store."""
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
    return {run.data.tags["studentteacher.run_dir"]: run for run in runs}


def run_dirs(root: Path) -> list[Path]:
    return sorted(path.parent.resolve() for path in root.glob("*/run.json"))


def check_against_file_storage(client, run, run_dir: Path) -> None:
    """Every param, every metric point (step, value, time), the status and the artifacts of ``run``
    equal what FileStorage has in ``run_dir``."""
    sacred = load(run_dir / "run.json")
    config = load(run_dir / "config.json")
    metrics = load(run_dir / "metrics.json")
    where = f"{run_dir}: "
    # params: every config key (flat configs here), seed included
    assert run.data.params == {key: str(value) for key, value in config.items()}, where + "params"
    assert run.data.params["seed"] == str(config["seed"])
    # metrics: every point with its step and time
    assert set(run.data.metrics) == set(metrics), where + "metric names"
    for name, record in metrics.items():
        history = sorted(client.get_metric_history(run.info.run_id, name), key=lambda m: (m.step, m.timestamp))
        assert [m.step for m in history] == record["steps"], where + name
        for point, value in zip(history, record["values"]):
            assert point.value == value or (math.isnan(point.value) and math.isnan(value)), where + name
        assert [m.timestamp for m in history] == [millis(t) for t in record["timestamps"]], where + name
    # status
    status = sacred["status"]
    assert run.data.tags["sacred.status"] == status, where + "sacred.status"
    assert run.info.status == {"COMPLETED": "FINISHED", "FAILED": "FAILED", "INTERRUPTED": "KILLED"}[status], where
    assert run.info.end_time is not None, where + "end time"
    if status == "FAILED":
        reason = run.data.tags["sacred.fail_reason"]
        assert reason and reason in "".join(sacred["fail_trace"]), where + "fail reason"
    # tags: host, versions, the run's identity
    assert run.data.tags["host.hostname"] == sacred["host"]["hostname"]
    assert run.data.tags["host.python_version"] == sacred["host"]["python_version"]
    assert run.data.tags["version.sacred"] == "0.8.7"
    if "studentteacher.imported" not in run.data.tags:  # live: the versions installed where it ran
        assert run.data.tags["version.torch"] and run.data.tags["version.mlflow"] == mlflow.__version__
    assert run.data.tags["sacred.id"] == run_dir.name
    assert run.info.run_name == sacred["meta"]["name"], where + "run name: the readable name of the tables"
    # artifacts: byte for byte
    stored = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert set(sacred["artifacts"]) <= stored, where + f"artifacts {sorted(stored)}"
    for name in sacred["artifacts"]:
        folder = run_dir.parent / "downloaded" / run.info.run_id
        folder.mkdir(parents=True, exist_ok=True)
        local = client.download_artifacts(run.info.run_id, name, str(folder))
        assert Path(local).read_bytes() == (run_dir / name).read_bytes(), where + name


def test_completed_failed_and_interrupted_runs(store):
    uri, root = store
    client, runs = mlflow.MlflowClient(uri), mlflow_runs(uri)
    statuses = {}
    for folder in ("completed", "failed", "interrupted"):
        (run_dir,) = run_dirs(root / folder)
        check_against_file_storage(client, runs[str(run_dir)], run_dir)
        statuses[folder] = runs[str(run_dir)].info.status
    assert statuses == {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
    (failed,) = run_dirs(root / "failed")
    assert "diverged" in runs[str(failed)].data.tags["sacred.fail_reason"].lower() or \
        "non-finite" in runs[str(failed)].data.tags["sacred.fail_reason"].lower()
    (interrupted,) = run_dirs(root / "interrupted")
    assert len(load(interrupted / "metrics.json")["train_mmd2"]["steps"]) > 1, "the interrupted run logged a curve"
    experiment = client.get_experiment(runs[str(failed)].info.experiment_id)
    assert experiment.name == "student_teacher"
    assert experiment.artifact_location.endswith("/mlruns_artifacts/student_teacher")


def test_batched_replicas_are_two_mlflow_runs(store):
    uri, root = store
    client, runs = mlflow.MlflowClient(uri), mlflow_runs(uri)
    replicas = run_dirs(root / "replicas")
    assert len(replicas) == 2
    for run_dir in replicas:
        check_against_file_storage(client, runs[str(run_dir)], run_dir)
    assert {runs[str(d)].data.params["seed"] for d in replicas} == {"4", "5"}
    assert len({runs[str(d)].info.run_id for d in replicas}) == 2


def test_flow_run_and_sweep_task_from_the_environment_variable(store):
    uri, root = store
    client, runs = mlflow.MlflowClient(uri), mlflow_runs(uri)
    (flow,) = run_dirs(root / "flow")
    check_against_file_storage(client, runs[str(flow)], flow)
    stored = {artifact.path for artifact in client.list_artifacts(runs[str(flow)].info.run_id)}
    assert {"trajectory.npz", "snapshots.png", "flow.gif"} <= stored
    assert client.get_experiment(runs[str(flow)].info.experiment_id).name == "particle_flow"
    (task,) = run_dirs(root / "sweep")
    run = runs[str(task)]
    check_against_file_storage(client, run, task)
    assert client.get_experiment(run.info.experiment_id).name == "tiny"  # the sweep's name
    assert (run.data.tags["sweep.name"], run.data.tags["sweep.index"], run.data.tags["sweep.attempt"]) == ("tiny", "1", "1")
    assert run.info.run_name.startswith("student_teacher") and run.data.params["method"] == "drmmd"


def test_backfill_is_complete_and_idempotent(store, tmp_path):
    uri, root = store
    live = mlflow_runs(uri)
    folders = [root / name for name in ("completed", "failed", "interrupted", "replicas", "flow", "sweep")]
    # into the store the runs went to live: every run is there already
    summary = import_runs(folders, uri)
    assert summary.imported == [] and len(summary.skipped) == len(live) == 7, str(summary)
    # into a new store: everything, equal to the live copies; then again: nothing
    fresh = f"sqlite:///{tmp_path / 'imported.db'}"
    first = import_runs(folders, fresh)
    assert len(first.imported) == 7 and not first.skipped and not first.unreadable, str(first)
    client, imported = mlflow.MlflowClient(fresh), mlflow_runs(fresh)
    assert set(imported) == set(live)
    for run_dir, run in imported.items():
        check_against_file_storage(client, run, Path(run_dir))
        assert run.data.params == live[run_dir].data.params
        assert client.get_experiment(run.info.experiment_id).name == \
            mlflow.MlflowClient(uri).get_experiment(live[run_dir].info.experiment_id).name
    second = import_runs(folders, fresh)
    assert second.imported == [] and len(second.skipped) == 7, str(second)
    assert len(mlflow_runs(fresh)) == 7
    # a run whose status changed since (running then, completed now) is replaced, not duplicated
    copy = tmp_path / "moving" / "1"
    shutil.copytree(root / "completed" / "1", copy)
    running = {**load(copy / "run.json"), "status": "RUNNING"}
    (copy / "run.json").write_text(json.dumps(running))
    assert len(import_runs(tmp_path / "moving", fresh).imported) == 1
    assert mlflow_runs(fresh)[str(copy.resolve())].info.status == "RUNNING"
    (copy / "run.json").write_text(json.dumps({**running, "status": "COMPLETED"}))
    again = import_runs(tmp_path / "moving", fresh)
    assert len(again.replaced) == 1 and len(mlflow_runs(fresh)) == 8
    assert mlflow_runs(fresh)[str(copy.resolve())].info.status == "FINISHED"


def test_import_command_line(store, tmp_path):
    uri, root = store
    target = f"sqlite:///{tmp_path / 'cli.db'}"
    command = [sys.executable, str(REPO / "experiments" / "mlflow_observer.py"), "import", str(root / "sweep"),
               "--uri", target]
    first = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "imported 1 runs" in first.stdout and first.stderr == "", first.stdout + first.stderr
    second = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert "imported 0 runs" in second.stdout and "skipped 1 already present" in second.stdout, second.stdout


def test_a_store_that_cannot_be_reached_fails_the_run_at_start(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    process = train(tmp_path / "runs", f"sqlite:///{tmp_path / 'a_file' / 'x.db'}", "epochs=2", "seed=1")
    output = finish(process, expect_ok=False)
    (run_dir,) = run_dirs(tmp_path / "runs")
    run = load(run_dir / "run.json")
    assert run["status"] == "FAILED" and "a_file" in "".join(run["fail_trace"]), output
    assert not (run_dir / "metrics.json").exists() or load(run_dir / "metrics.json") == {}, "it failed before training"


@pytest.mark.slow
def test_bench_observer_runs_end_to_end(tmp_path):
    """benchmarks/bench_observer.py at a tiny size writes its JSON (times are printed, never asserted)."""
    path = tmp_path / "observer.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_observer.py"), "--epochs", "2", "--repeats",
                           "1", "--set", "device=cpu", *TINY[:4], "d_in=5", "--json", str(path)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(path.read_text())
    assert [row["mlflow"] for row in report["rows"]] == [False, True]
    assert report["summary"]["epoch_ms_with_mlflow"] > 0 and report["rows"][1]["write_seconds"] >= 0
    assert "overhead per epoch" in done.stdout


def test_metrics_wait_in_the_buffer_while_the_store_fails(store, monkeypatch):
    """The observer's own events, in process: a write that fails keeps its points (one warning) for the
    next heartbeat; the end writes the rest, the outputs and the status."""
    uri, _ = store
    observer = MlflowObserver(uri)
    start = datetime.datetime(2026, 1, 2, 3, 4, 5)
    observer.started_event({"name": "unit_buffer", "mainfile": "x.py"}, "main", {"hostname": "h"}, start,
                           {"seed": 1, "lr": 0.1, "nested": {"a": [1, 2]}}, {}, "1")  # fmt: skip
    times = [start + datetime.timedelta(seconds=s) for s in range(4)]
    observer.log_metrics({"loss": {"steps": [0, 1, 2], "values": [3.0, 2.0, float("nan")], "timestamps": times[:3]}}, {})
    working = observer.store.log_batch

    def locked(*args, **kwargs):
        raise OSError("database is locked")

    monkeypatch.setattr(observer.store, "log_batch", locked)
    with pytest.warns(RuntimeWarning, match="kept and tried again at the next heartbeat"):
        observer.heartbeat_event({}, "", times[2], None)
    assert len(observer.pending) == 3
    monkeypatch.setattr(observer.store, "log_batch", working)
    observer.log_metrics({"loss": {"steps": [3], "values": [0.5], "timestamps": times[3:]}}, {})
    observer.heartbeat_event({"threads": 1}, "captured output\n", times[3], None)
    assert observer.pending == []
    observer.completed_event(times[3], {"valid_mmd2": 0.5})
    client = mlflow.MlflowClient(uri)
    run = client.get_run(observer.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["sacred.status"] == "COMPLETED"
    assert run.data.params == {"seed": "1", "lr": "0.1", "nested.a": "[1, 2]"}
    history = sorted(client.get_metric_history(observer.run_id, "loss"), key=lambda m: m.step)
    assert [m.step for m in history] == [0, 1, 2, 3] and [m.value for m in history][:2] == [3.0, 2.0]
    assert math.isnan(history[2].value) and history[3].value == 0.5
    assert [m.timestamp for m in history] == [millis(t) for t in times]
    assert run.data.tags["result.valid_mmd2"] == "0.5"
    assert {a.path for a in client.list_artifacts(observer.run_id)} == {"cout.txt", "info.json", "result.json"}
