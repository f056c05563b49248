"""A figure script given runs it cannot draw says which and why; its labels come from the data.

Real runs of a few epochs (experiments/train.py, the default particle readout): an sgd run, which
figures/mmd_flow_student_teacher.py draws, and a DrMMD run, which it does not.
"""
from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = "mmd_flow_student_teacher"
TINY = ["epochs=4", "n_particles=4", "n_train=40", "n_valid=40", "batch_size=20", "log_every=1", "device=cpu",
        "d_in=5", "seed=1"]


def train(observer: Path, *updates: str) -> None:
    command = [sys.executable, str(REPO / "experiments" / "train.py"), "with", *TINY, *updates, "-F", str(observer)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """method -> the folder METHOD_runs holding one tiny run of it (run id 1)."""
    root = tmp_path_factory.mktemp("figure_runs")
    for method in ("sgd", "drmmd"):
        train(root / f"{method}_runs", f"method={method}")
    return {method: root / f"{method}_runs" for method in ("sgd", "drmmd")}


def draw(*runs: Path, out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "figures" / f"{SCRIPT}.py"), "--runs", *map(str, runs), "--out", str(out)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_runs_the_figure_does_not_draw_are_named_with_what_it_draws(runs, tmp_path):
    done = draw(runs["sgd"], runs["drmmd"], out=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "note: left out 1 run(s) this figure does not draw (drmmd_runs/1): it draws methods sgd, noise_injection, " \
           "diffusion, ksd" in done.stderr
    assert (tmp_path / f"{SCRIPT}.png").is_file()


def test_a_figure_given_only_runs_it_cannot_draw_refuses(runs, tmp_path):
    done = draw(runs["drmmd"], out=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("no run to draw: this figure draws methods sgd")
    assert "drmmd_runs/1" in done.stderr and not list(tmp_path.glob("*.png"))


def test_the_title_names_the_readout_of_the_runs(runs, tmp_path, monkeypatch):
    """Regression: particle-readout runs were titled "dense readout"."""
    monkeypatch.syspath_prepend(str(REPO / "figures"))
    common = importlib.import_module("common")
    script = importlib.import_module(SCRIPT)
    titles, save = [], common.save

    def save_and_record(fig, out, name):
        titles.append(fig.get_suptitle())
        return save(fig, out, name)

    monkeypatch.setattr(common, "save", save_and_record)
    script.main(["--runs", str(runs["sgd"]), "--out", str(tmp_path)])
    assert len(titles) == 1 and "particle readout" in titles[0] and "dense" not in titles[0], titles


@pytest.fixture
def common_module(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "figures"))
    return importlib.import_module("common")


def test_a_legend_lists_only_configs_with_a_completed_run(runs, tmp_path, common_module):
    failed = tmp_path / "drmmd_failed"
    shutil.copytree(runs["drmmd"], failed)
    record = json.loads((failed / "1" / "run.json").read_text())
    (failed / "1" / "run.json").write_text(json.dumps({**record, "status": "FAILED"}))
    order = ["ksd", "drmmd", "sgd"]
    assert common_module.drawn_order(common_module.load([runs["sgd"], runs["drmmd"]], "student_teacher"), "method",
                                     order) == ["drmmd", "sgd"]
    assert common_module.drawn_order(common_module.load([runs["sgd"], failed], "student_teacher"), "method",
                                     order) == ["sgd"]


def test_the_seed_count_names_the_configs_with_fewer_seeds(runs, tmp_path, common_module):
    train(tmp_path / "sgd_seed2", "method=sgd", "seed=2")
    df = common_module.load([runs["sgd"], tmp_path / "sgd_seed2", runs["drmmd"]], "student_teacher")
    assert common_module.seeds_text(df) == "mean +- 1 sd over 2 seeds"
    assert common_module.seeds_text(df, by="method") == "mean +- 1 sd over 2 seeds (drmmd: 1 seed)"
    assert common_module.seeds_text(df, by=["readout", "method"]) == "mean +- 1 sd over 2 seeds (particle drmmd: 1 seed)"
    assert common_module.seeds_text(df[df["method"] == "sgd"], by="method") == "mean +- 1 sd over 2 seeds"


def test_a_long_title_is_wrapped_to_the_figure_width(common_module, tmp_path):
    fig = common_module.plt.figure(figsize=(4, 2))
    common_module.finish(fig, tmp_path, "wrapped", "a title word " * 20 + "\nsecond line")
    title = fig.get_suptitle()
    width = 4 * common_module.TITLE_CHARS_PER_INCH
    assert title.splitlines()[-1] == "second line" and len(title.splitlines()) > 2
    assert max(len(line) for line in title.splitlines()) <= width
    assert title.replace("\n", " ").split() == ("a title word " * 20 + "second line").split()
