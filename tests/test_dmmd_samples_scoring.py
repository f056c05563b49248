"""figures/dmmd_samples.py scores a particle-flow baseline that logged no held-out metrics (a run from before
them) from its logged final particles, and gets the numbers a run logs today; it never reports a flow's
distances to the target it flowed to.

One tiny real run of experiments/flows2d.py on the mixture of Gaussians (a target with a held-out sample);
"a run from before" is that run with its held-out metrics removed from metrics.json (a data layout the
figure reads, made by hand: no such run can be produced with today's code).
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = ("sample_w1", "sample_w2", "sample_mmd2", "sample_w1_floor", "sample_w2_floor", "sample_mmd2_floor")


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory) -> Path:
    """The observer folder of one completed flow on ``mog`` with its held-out metrics logged (run id 1)."""
    root = tmp_path_factory.mktemp("baseline")
    command = [sys.executable, str(REPO / "experiments" / "flows2d.py"), "with", "flow=mmd", "target=mog", "steps=30",
               "n_particles=40", "n_target=36", "bandwidth=1.0", "log_every=10", "seed=2", "device=cpu",
               "-F", str(root / "runs")]  # fmt: skip
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return root / "runs"


@pytest.fixture
def figure(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "figures"))
    yield importlib.import_module("dmmd_samples")
    sys.modules.pop("dmmd_samples", None)


def finals(figure, runs: Path) -> dict[str, float]:
    """metric -> last value of the one run under ``runs``, as the figure's table reads them."""
    df = figure._tidy(type("Args", (), {"runs": [str(runs)]})())
    last = df.sort_values("step").groupby("metric").tail(1)
    return dict(zip(last["metric"], last["value"]))


def test_a_run_without_held_out_metrics_is_scored_as_a_run_logs_them(logged_run, figure, tmp_path):
    earlier = tmp_path / "runs"
    shutil.copytree(logged_run, earlier)
    metrics_file = earlier / "1" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    logged = {name: metrics.pop(name)["values"][-1] for name in HELD_OUT}
    metrics_file.write_text(json.dumps(metrics))
    scored, as_logged = finals(figure, earlier), finals(figure, logged_run)
    for name, value in logged.items():
        short = name.removeprefix("sample_")  # the table's names: w1, w2, mmd2, w1_floor
        key = short if short in scored else name
        assert scored[key] == pytest.approx(value, rel=1e-12), name
        assert as_logged[key] == pytest.approx(value, rel=1e-12), name
    assert scored["w1_ratio"] == pytest.approx(logged["sample_w1"] / logged["sample_w1_floor"], rel=1e-12)
    # the flow's own distances to the points it flowed to are not what the table shows
    assert scored["w1"] != pytest.approx(metrics["w1"]["values"][-1])


def test_the_panel_draws_the_held_out_sample_of_the_seed(logged_run, figure):
    from studentteacher import held_out

    run = {"run_dir": str(logged_run / "1"), "target": "mog", "n_target": 36, "seed": 2}
    points, particles = figure.final_particles(run)
    assert points.shape == (36, 2) and particles.shape == (40, 2)
    assert (points == held_out.held_out_sample("mog", 36, 2).numpy()).all()
