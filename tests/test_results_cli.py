"""``python -m studentteacher.results table|plot|overlay`` on a small real sweep (4 tiny runs)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from studentteacher import results

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sweep_runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    sweep_file = root / "tiny.yaml"
    sweep_file.write_text(
        "experiment: student_teacher\n"
        "base: {epochs: 4, n_particles: 4, n_train: 40, n_valid: 40, batch_size: 20, log_every: 1, d_in: 5,"
        " device: cpu}\n"
        "grid: {method: [sgd, drmmd]}\n"
        "seeds: [1, 2]\n"
        f"observer: {root / 'runs'}\n"
    )
    for index in range(4):
        done = subprocess.run([sys.executable, "-m", "studentteacher.sweep", "run", str(sweep_file), "--index",
                               str(index)], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    return root / "runs"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studentteacher.results", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_plot_draws_a_png_and_prints_the_table_it_drew(sweep_runs, tmp_path):
    out = tmp_path / "curves.png"
    done = cli("plot", str(sweep_runs), "--metric", "valid_mmd2", "--by", "method", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.is_file() and out.stat().st_size > 10_000
    table = results.final_table(results.load_runs(sweep_runs), ["method"], "valid_mmd2").set_index("method")
    for method in ("sgd", "drmmd"):
        line = next(line for line in done.stdout.splitlines() if line.strip().startswith(method))
        assert f"{table.loc[method, 'mean']:.4g}" in line and " 2 " in line


def test_table_at_an_epoch_and_overlay_of_named_runs(sweep_runs, tmp_path):
    done = cli("table", str(sweep_runs), "--metric", "train_mmd2", "--by", "method", "--how", "at", "--at", "2")
    assert done.returncode == 0, done.stderr
    table = results.final_table(results.load_runs(sweep_runs), ["method"], "train_mmd2", how="at", at=2)
    assert f"{table['mean'].iloc[0]:.4g}" in done.stdout
    out = tmp_path / "overlay.png"
    done = cli("overlay", str(sweep_runs / "00000-1"), str(sweep_runs / "00003-1"), "--metric", "loss", "--out", str(out))
    assert done.returncode == 0 and out.stat().st_size > 10_000, done.stderr


def test_bad_input_is_one_line_and_exit_2(sweep_runs):
    done = cli("table", str(sweep_runs), "--metric", "nope")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: metric 'nope' was not logged") and "valid_mmd2" in done.stderr
    done = cli("table", str(sweep_runs), "--metric", "valid_mmd2", "--how", "at")
    assert done.returncode == 2 and "at=EPOCH" in done.stderr
