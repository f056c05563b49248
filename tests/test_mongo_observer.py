"""``-m URL``: the documents Sacred's own MongoObserver writes for our training run.

This checks the **layout** (what Omniboard and pymongo queries read), not a MongoDB server: no
server can be installed here, so ``experiments/train.py`` runs through its real command line
(``... with ... -m localhost:27017:studentteacher``) in a subprocess whose ``pymongo.MongoClient`` is
a ``mongomock`` client with GridFS support (``mongomock.gridfs.enable_gridfs_integration()``); the
subprocess dumps the database to JSON at exit. Checked: one document per run in ``runs`` (config,
status, result, host, experiment with its sources as GridFS ids, artifacts as GridFS ids, the
metric index in ``info.metrics``), one document per metric in ``metrics`` (every step and value of
the run's ``log_scalar``), and the GridFS files (the source of train.py, ``result.npz``) byte for byte.
"""
from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mongomock", reason="the MongoDB layout test needs mongomock (pip install -e '.[test]')")
pytest.importorskip("pymongo", reason="Sacred's MongoObserver needs pymongo (a dependency of mongomock's GridFS support)")

REPO = Path(__file__).resolve().parent.parent
TINY = ["n_particles=4", "n_train=40", "n_valid=40", "batch_size=20", "log_every=1", "device=cpu", "d_in=5"]
FAKE_SERVER = r"""
import base64, json, runpy, sys
import gridfs, mongomock, mongomock.gridfs, pymongo

mongomock.gridfs.enable_gridfs_integration()
client = mongomock.MongoClient()
pymongo.MongoClient = lambda *args, **kwargs: client  # what `-m URL` connects to
dump, script = sys.argv[1], sys.argv[2]
sys.argv = sys.argv[2:]
code = 0
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as stop:
    code = stop.code or 0
finally:
    database = client["studentteacher"]
    layout = {name: list(database[name].find()) for name in database.list_collection_names()}
    files = gridfs.GridFS(database)
    layout["gridfs"] = {str(entry._id): {"filename": entry.filename, "data": base64.b64encode(entry.read()).decode()}
                        for entry in files.find({})}
    with open(dump, "w") as handle:
        json.dump(layout, handle, default=str)
sys.exit(code)
"""


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("mongo")
    dump = folder / "database.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "STUDENTTEACHER_RUNS": str(folder / "runs")}
    env.pop("STUDENTTEACHER_MLFLOW", None)
    done = subprocess.run(
        [sys.executable, "-c", FAKE_SERVER, str(dump), str(REPO / "experiments" / "train.py"), "with", *TINY,
         "method=sgd", "epochs=4", "seed=7", "-m", "localhost:27017:studentteacher"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (folder / "runs").exists(), "-m replaces the default FileStorage observer"
    return json.loads(dump.read_text())


def gridfs_bytes(layout: dict, file_id: str) -> bytes:
    return base64.b64decode(layout["gridfs"][str(file_id)]["data"])


def test_runs_collection(layout):
    (run,) = layout["runs"]
    assert run["_id"] == 1 and run["status"] == "COMPLETED"
    assert run["experiment"]["name"] == "student_teacher"
    assert run["config"]["seed"] == 7 and run["config"]["epochs"] == 4 and run["config"]["n_particles"] == 4
    assert set(run["result"]) == {"valid_mmd2", "best_valid_mmd2"}
    assert run["host"]["hostname"] and run["command"] == "main"
    assert run["start_time"] and run["stop_time"] and run["heartbeat"]
    assert {"threads", "device", "metrics"} <= set(run["info"])


def test_metrics_collection(layout):
    (run,) = layout["runs"]
    metrics = {document["name"]: document for document in layout["metrics"]}
    expected = {"train_mmd2", "valid_mmd2", "loss", "noise_level", "lmbda", "epoch_seconds"}
    assert set(metrics) == expected
    assert {entry["name"] for entry in run["info"]["metrics"]} == expected, "the run indexes its metric documents"
    assert {entry["id"] for entry in run["info"]["metrics"]} == {str(document["_id"]) for document in metrics.values()}
    for name, document in metrics.items():
        assert document["run_id"] == 1, name
        assert document["steps"] == [0, 1, 2, 3, 4], name  # log_every=1: epoch 0 (before training) .. 4
        assert len(document["values"]) == len(document["timestamps"]) == 5, name
    assert metrics["valid_mmd2"]["values"][-1] == pytest.approx(run["result"]["valid_mmd2"])


def test_sources_and_artifacts_in_gridfs(layout):
    (run,) = layout["runs"]
    sources = {Path(name).name: file_id for name, file_id in run["experiment"]["sources"]}
    assert "train.py" in sources
    assert gridfs_bytes(layout, sources["train.py"]) == (REPO / "experiments" / "train.py").read_bytes()
    artifacts = {artifact["name"]: artifact["file_id"] for artifact in run["artifacts"]}
    assert set(artifacts) == {"result.npz"}
    with np.load(io.BytesIO(gridfs_bytes(layout, artifacts["result.npz"]))) as arrays:
        assert arrays["history_valid_mmd2"][-1] == pytest.approx(run["result"]["valid_mmd2"])
        assert arrays["particles_W"].shape[0] == 4  # n_particles
