"""``python -m studentteacher.results table|plot|overlay`` on a small real sweep (4 tiny runs) and on
a real resumed run (two attempts) beside a plain one."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from studentteacher import results
from studentteacher.results import cli as results_cli

REPO = Path(__file__).resolve().parent.parent
TINY = ["n_particles=4", "n_train=40", "n_valid=40", "batch_size=20", "log_every=2", "device=cpu", "d_in=5",
        "method=noise_injection"]


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


def train(observer: Path, *updates: str) -> None:
    command = [sys.executable, str(REPO / "experiments" / "train.py"), "with", *TINY, *updates, "-F", str(observer)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def resumed_runs(tmp_path_factory) -> Path:
    """Runs 1 and 2: one run stopped at epoch 6 and resumed to 12 (seed 5); run 3: a plain 12-epoch run (seed 6)."""
    runs = tmp_path_factory.mktemp("resumed") / "runs"
    train(runs, "seed=5", "epochs=6", "checkpoint_every=6")
    train(runs, "seed=5", "epochs=12", f"resume_from={runs / '1' / 'checkpoint.pt'}")
    train(runs, "seed=6", "epochs=12")
    return runs


def drawn_legend(monkeypatch, argv: list[str]) -> list[str]:
    """The legend texts of the figure ``results_cli.main(argv)`` draws (and saves)."""
    figures, save = [], results_cli._save

    def save_and_record(fig, out):
        figures.append(fig)
        save(fig, out)

    monkeypatch.setattr(results_cli, "_save", save_and_record)
    assert results_cli.main(argv) == 0
    return [text.get_text() for text in figures[0].axes[0].get_legend().get_texts()]


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


@pytest.mark.parametrize("command", ["plot", "overlay"])
def test_a_metric_no_run_logged_is_refused_listing_the_logged_ones(sweep_runs, tmp_path, command):
    """Regression: plot and overlay said no run logged it, without the metrics the runs did log."""
    done = cli(command, str(sweep_runs), "--metric", "valid_mmd", "--out", str(tmp_path / "x.png"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "metric 'valid_mmd' was not logged by any run; logged metrics: " in done.stderr
    assert "train_mmd2" in done.stderr and "valid_mmd2" in done.stderr


def test_overlay_legend_marks_a_resumed_run_with_its_attempts(resumed_runs, tmp_path, monkeypatch):
    legend = drawn_legend(monkeypatch, ["overlay", str(resumed_runs), "--metric", "valid_mmd2",
                                        "--out", str(tmp_path / "overlay.png")])
    assert len(legend) == 2, legend  # the two attempts are one run
    resumed, = [label for label in legend if "runs/2," in label]
    plain, = [label for label in legend if "runs/3," in label]
    assert resumed.endswith("(resumed, 2 attempts)") and "resumed" not in plain


def test_plot_legend_and_table_count_the_resumed_runs_of_a_group(resumed_runs, tmp_path, monkeypatch, capsys):
    legend = drawn_legend(monkeypatch, ["plot", str(resumed_runs), "--metric", "valid_mmd2", "--by", "method",
                                        "--out", str(tmp_path / "plot.png")])
    assert legend == ["method=noise_injection (2 runs, 1 resumed)"]
    printed = capsys.readouterr()
    header, row = printed.out.splitlines()[-2:]
    assert dict(zip(header.split(), row.split()))["resumed"] == "1"
    assert "warning" not in printed.err  # the resumed run's resume_from and checkpoint_every are not settings


def test_plot_warns_when_runs_of_a_group_differ_in_another_config_key(sweep_runs, tmp_path):
    done = cli("plot", str(sweep_runs), "--metric", "valid_mmd2", "--out", str(tmp_path / "all.png"))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning")]
    assert warnings == ["warning: runs of one group differ in method (all runs); add method to --by to draw them apart"]
    done = cli("plot", str(sweep_runs), "--metric", "valid_mmd2", "--by", "method", "--out", str(tmp_path / "by.png"))
    assert done.returncode == 0 and "warning" not in done.stderr, done.stderr
