"""The MLflow web UI, as a person sees it: a small real sweep's runs, listed and drawn in a browser.

Runs two tiny tasks of a sweep through ``python -m studentteacher.sweep run`` with
``STUDENTTEACHER_MLFLOW`` set, serves the store with ``mlflow server`` on 127.0.0.1 (a free port),
opens it in headless Chromium (``--dump-dom`` for the text, ``--screenshot`` for the pictures, with
every host name but 127.0.0.1 unresolvable) and checks that the sweep's experiment and both runs are
listed and that a run's metric page renders. The screenshots are kept as the test's artifacts in
``$STUDENTTEACHER_TEST_ARTIFACTS`` (default ``tests/artifacts/``, not tracked; ``docs/mlflow_ui.png``
is one of them). The server is stopped at the end, whatever happened. About 100 s on 2 busy cores
(30 s of it the two sweep tasks). Skipped where mlflow or Chromium (Debian's ``chromium``;
``.ci/run`` installs it) is missing.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow", reason="the MLflow UI test needs mlflow (pip install -e '.[test]')")
BROWSER = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(BROWSER is None, reason="no headless browser: apt-get install -y chromium (as .ci/run does)"),
]

REPO = Path(__file__).resolve().parent.parent
SWEEP = """experiment: student_teacher
base: {epochs: 20, n_particles: 4, n_train: 40, n_valid: 40, batch_size: 20, d_in: 5, log_every: 1, device: cpu}
grid: {method: [sgd, drmmd]}
seeds: [1]
"""
ARTIFACTS = Path(os.environ.get("STUDENTTEACHER_TEST_ARTIFACTS", REPO / "tests" / "artifacts"))
SERVER_START_S = 180
PAGE_TRIES = 4  # page loads to wait for the charts (each PAGE_BUDGET_MS of virtual time)
CHART = "main-svg"  # the class of a drawn plotly chart
PAGE_BUDGET_MS = 20_000  # virtual time Chromium gives the page's scripts before it reads the page
BROWSER_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
    "--run-all-compositor-stages-before-draw",  # draw the page while its virtual time runs (lazy charts need it)
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--window-size=1600,1000",
    f"--virtual-time-budget={PAGE_BUDGET_MS}",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def browse(url: str, profile: Path, *what: str) -> str:
    """Chromium's ``--dump-dom`` text (or nothing, for ``--screenshot=...``) of ``url``."""
    done = subprocess.run([BROWSER, *BROWSER_FLAGS, f"--user-data-dir={profile}", *what, url],
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def wait_until_up(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + SERVER_START_S
    while time.time() < deadline:
        assert server.poll() is None, f"mlflow server stopped: {log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow server not up after {SERVER_START_S} s: {log.read_text()[-3000:]}")


def stop(server: subprocess.Popen) -> None:
    """The server and what it started (uvicorn, its job runner): its own process group."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(20)


def test_sweep_runs_are_listed_and_drawn_in_the_browser(tmp_path):
    started = time.perf_counter()
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    sweep_file = tmp_path / "ui_sweep.yaml"
    sweep_file.write_text(SWEEP)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "STUDENTTEACHER_MLFLOW": uri}
    for index in (0, 1):
        task = subprocess.run([sys.executable, "-m", "studentteacher.sweep", "run", str(sweep_file), "--index", str(index),
                               "--observer", str(tmp_path / "runs")], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert task.returncode == 0, task.stdout + task.stderr
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("ui_sweep")
    found = client.search_runs([experiment.experiment_id])
    runs = {run.data.tags["sacred.id"]: run.info.run_id for run in found}
    assert set(runs) == {"00000-1", "00001-1"}
    names = {run.data.tags["sacred.id"]: run.info.run_name for run in found}
    assert names["00001-1"].startswith("student_teacher ") and "method=drmmd" in names["00001-1"], names
    sweep_seconds = time.perf_counter() - started

    port, log = free_port(), tmp_path / "server.log"
    url = f"http://127.0.0.1:{port}"
    pictures = {
        "runs_and_curves.png": f"{url}/#/experiments/{experiment.experiment_id}/runs?compareRunsMode=CHART",
        "run_metrics.png": f"{url}/#/experiments/{experiment.experiment_id}/runs/{runs['00001-1']}/model-metrics",
    }
    with open(log, "w") as output:
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host",
                                   "127.0.0.1", "--port", str(port), "--workers", "1"], cwd=tmp_path, env=env,
                                  stdout=output, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        wait_until_up(url, server, log)
        profile = tmp_path / "browser-profile"
        experiments = browse(f"{url}/#/experiments", profile, "--dump-dom")
        assert "ui_sweep" in experiments, "the sweep's experiment is not listed"
        listing = browse(f"{url}/#/experiments/{experiment.experiment_id}/runs", profile, "--dump-dom")
        assert all(name in listing for name in names.values()), "the sweep's runs are not listed by their names"
        for name, page in pictures.items():
            # the charts load lazily (plotly): read the page until they are drawn, then take its picture
            loads = 1
            while CHART not in browse(page, profile, "--dump-dom"):
                assert loads < PAGE_TRIES, f"{name}: no metric chart drawn after {PAGE_TRIES} page loads"
                loads += 1
            browse(page, profile, f"--screenshot={tmp_path / name}")
            picture = (tmp_path / name).read_bytes()
            assert picture.startswith(b"\x89PNG") and len(picture) > 50_000, f"{name}: an empty page?"
        metrics_page = browse(pictures["run_metrics.png"], profile, "--dump-dom")
        assert "valid_mmd2" in metrics_page and "train_mmd2" in metrics_page, "the run's metric charts are missing"
    finally:
        stop(server)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    kept = [shutil.copy(tmp_path / name, ARTIFACTS / f"mlflow_ui_{name}") for name in pictures]
    print(json.dumps({"screenshots": [str(path) for path in kept], "sweep_s": round(sweep_seconds, 1),
                      "total_s": round(time.perf_counter() - started, 1)}))
