"""studentteacher.results on run directories written by the real experiments (through their CLIs).

One module fixture writes, with tiny configs: a COMPLETED run, a FAILED one (lr = 1e30 diverges
at once), an INTERRUPTED one (SIGTERM 1 s after its run.json appears, with a huge epoch count), a
copy of the completed run whose metrics.json is truncated (corrupt), and a sweep run (run id
``00000-1``). Expected numbers are recomputed from metrics.json with the json module.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from studentteacher import results

REPO = Path(__file__).resolve().parent.parent
TINY = ["n_particles=4", "n_train=40", "n_valid=40", "batch_size=20", "log_every=1", "device=cpu", "d_in=5"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def train(observer: Path, *updates: str) -> subprocess.Popen:
    command = [sys.executable, str(REPO / "experiments" / "train.py"), "with", *TINY, *updates, "-F", str(observer)]
    return subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    plain, sweep_dir = root / "plain", root / "sweep"
    interrupted_dir = root / "interrupted"  # its own observer: its run.json is the one we wait for
    completed = train(plain, "method=noise_injection", "epochs=6", "seed=1")
    assert completed.wait(120) == 0, completed.stdout.read()
    failed = train(plain, "method=sgd", "lr=1e30", "epochs=50", "seed=2")
    interrupted = train(interrupted_dir, "method=sgd", "epochs=10000000", "seed=3")
    sweep = subprocess.Popen(
        [sys.executable, "-m", "studentteacher.sweep", "run", str(REPO / "experiments" / "sweeps" / "smoke.yaml"),
         "--index", "1", "--observer", str(sweep_dir)],
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while not (interrupted_dir / "1" / "run.json").exists():
        assert time.time() < deadline and interrupted.poll() is None, "the interrupted run never started"
        time.sleep(0.1)
    time.sleep(1.0)
    interrupted.send_signal(signal.SIGTERM)
    for process in (failed, interrupted, sweep):
        process.wait(120)
    assert failed.returncode != 0
    assert sweep.returncode == 0, sweep.stdout.read()
    # the corrupt run: a copy of the completed one with half of its metrics.json
    shutil.copytree(plain / "1", plain / "9")
    metrics = plain / "9" / "metrics.json"
    text = metrics.read_text()
    metrics.write_text(text[: len(text) // 2])
    # a run directory without run.json (a run that died while starting)
    (plain / "10").mkdir()
    return root


def load_quietly(*paths):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = results.load_runs(*paths)
    return df, [str(w.message) for w in caught]


def test_statuses_are_kept_and_flagged(runs_dir):
    df, _ = load_quietly(runs_dir / "plain", runs_dir / "interrupted")
    table = results.runs(df)
    table = table[table["run_id"] != "9"].set_index("seed")  # 9: the corrupt copy of seed 1
    assert table.loc[1, "status"] == "COMPLETED"
    assert table.loc[2, "status"] == "FAILED"
    assert table.loc[2, "fail_reason"], "a FAILED run carries the last line of its fail trace"
    assert table.loc[3, "status"] == "INTERRUPTED"
    assert set(df["experiment"]) == {"student_teacher"}
    # the failed run logged epoch 0 before diverging: its rows are there
    assert (df[(df["seed"] == 2) & (df["metric"] == "valid_mmd2")]["step"] == 0).any()


def test_corrupt_and_half_written_runs_warn_naming_the_directory(runs_dir):
    df, messages = load_quietly(runs_dir)
    corrupt = str((runs_dir / "plain" / "9").resolve())
    missing = str((runs_dir / "plain" / "10").resolve())
    assert any(corrupt in m and "metrics.json" in m for m in messages), messages
    assert any(missing in m and "run.json" in m for m in messages), messages
    # the corrupt run is kept (status, config) with no metric rows; the empty one is skipped
    kept = df[df["run_dir"] == corrupt]
    assert len(kept) == 1 and kept["metric"].isna().all() and kept["status"].iloc[0] == "COMPLETED"
    assert missing not in set(df["run_dir"])


def test_tidy_rows_match_metrics_json(runs_dir):
    df, _ = load_quietly(runs_dir / "plain")
    run_dir = runs_dir / "plain" / "1"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = df[df["run_dir"] == str(run_dir.resolve())]
    assert set(rows["metric"]) == set(metrics) >= {"train_mmd2", "valid_mmd2", "loss", "noise_level", "lmbda", "epoch_seconds"}
    for name, record in metrics.items():
        got = rows[rows["metric"] == name].sort_values("step")
        assert got["step"].tolist() == record["steps"], name
        assert got["value"].tolist() == pytest.approx(record["values"]), name
    config = json.loads((run_dir / "config.json").read_text())
    for key in ("method", "lr", "n_particles", "seed", "readout", "epochs"):
        assert rows[key].iloc[0] == config[key], key
    assert list(df.columns[-3:]) == ["metric", "step", "value"]


def test_sweep_run_ids(runs_dir):
    df, _ = load_quietly(runs_dir / "sweep")
    table = results.runs(df)
    assert table["run_id"].tolist() == ["00001-1"]
    assert table["sweep"].iloc[0] == "smoke" and table["sweep_index"].iloc[0] == 1 and table["attempt"].iloc[0] == 1
    assert table["status"].iloc[0] == "COMPLETED"


def test_final_table_against_hand_computation(runs_dir):
    df, _ = load_quietly(runs_dir / "plain", runs_dir / "interrupted", runs_dir / "sweep")
    hand = {}
    for run_dir in [runs_dir / "plain" / "1", runs_dir / "sweep" / "00001-1"]:
        metrics = json.loads((run_dir / "metrics.json").read_text())["valid_mmd2"]
        config = json.loads((run_dir / "config.json").read_text())
        last = metrics["values"][metrics["steps"].index(max(metrics["steps"]))]
        hand[config["method"]] = (last, min(metrics["values"]))
    for how, position in (("last", 0), ("best", 1)):
        table = results.final_table(df, ["method"], "valid_mmd2", how=how).set_index("method")
        # sgd: the sweep run (COMPLETED) + the FAILED and the INTERRUPTED run, both excluded and named
        assert table.loc["sgd", "count"] == 1 and table.loc["sgd", "n_runs"] == 3
        assert "FAILED: 1" in table.loc["sgd", "excluded"] and "INTERRUPTED: 1" in table.loc["sgd", "excluded"]
        assert table.loc["sgd", "mean"] == pytest.approx(hand["sgd"][position])
        assert math.isnan(table.loc["sgd", "sd"])
        # noise_injection: the completed run and its corrupt copy (no metrics: counted, not used)
        assert table.loc["noise_injection", "count"] == 1 and table.loc["noise_injection", "n_runs"] == 2
        assert "not logged: 1" in table.loc["noise_injection", "excluded"]
        assert table.loc["noise_injection", "mean"] == pytest.approx(hand["noise_injection"][position])
    # mean and sd over seeds of one group: every run's last value, by hand
    everything = results.final_table(df, [], "valid_mmd2", statuses=("COMPLETED", "INTERRUPTED"))
    values = []
    for run_dir in [runs_dir / "plain" / "1", runs_dir / "sweep" / "00001-1", runs_dir / "interrupted" / "1"]:
        metrics = json.loads((run_dir / "metrics.json").read_text())["valid_mmd2"]
        values.append(metrics["values"][metrics["steps"].index(max(metrics["steps"]))])
    mean = sum(values) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    assert everything.loc[0, "count"] == 3
    assert everything.loc[0, "mean"] == pytest.approx(mean) and everything.loc[0, "sd"] == pytest.approx(sd)


def test_bad_arguments_name_the_choices(runs_dir):
    df, _ = load_quietly(runs_dir / "plain")
    with pytest.raises(ValueError, match="logged metrics: .*valid_mmd2"):
        results.final_table(df, ["method"], "w1")
    with pytest.raises(ValueError, match="how must be one of last, best"):
        results.final_table(df, ["method"], "valid_mmd2", how="mean")
    with pytest.raises(KeyError, match="no column 'methd'"):
        results.final_table(df, ["methd"], "valid_mmd2")
    with pytest.raises(FileNotFoundError):
        results.load_runs(runs_dir / "nowhere")


def test_no_plotting_in_results():
    modules = ("__init__.py", "reading.py", "tables.py", "mlflow_store.py", "mlflow_import.py")
    source = "".join((REPO / "studentteacher" / "results" / name).read_text() for name in modules)
    assert "import matplotlib" not in source and "import seaborn" not in source and "import sacred" not in source
