"""Progress where no terminal is (studentteacher/progress.py): the pace and format of the lines, then
each experiment and a sweep task as real processes whose output goes to a pipe or a log file, their
runs stored by Sacred's FileStorage."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from studentteacher import sweep as sw
from studentteacher.progress import ENV, RunProgress, progress_seconds

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["epochs=9", "n_particles=20", "n_train=100", "n_valid=50", "batch_size=50", "log_every=2", "seed=5"]
FLOW = ["steps=40", "n_particles=12", "n_target=12", "log_every=10", "device=cpu", "seed=2"]
DMMD = ["target=mog", "n_train=200", "n_eval=100", "hidden=16", "features=8", "embedding=4", "train_steps=6",
        "batch_size=16", "log_every=3", "levels=2", "steps_per_level=3", "n_particles=40", "device=cpu", "seed=4"]
LINE = re.compile(r"progress: (?P<unit>[a-z ]+) (?P<done>\d+)/(?P<total>\d+) \| (?:(?P<metrics>.*) \| )?"
                  r"(?P<rate>[\d.]+) (?P=unit)s/s \| (?P<left>\d+:\d\d:\d\d) left")


def script(name: str, *args: str, tmp_path: Path, progress: str | None = None) -> subprocess.CompletedProcess:
    """Run ``experiments/<name>`` with stdout and stderr to pipes (no terminal)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    environment.pop(ENV, None)
    if progress is not None:
        environment[ENV] = progress
    return subprocess.run([sys.executable, str(REPO / "experiments" / name), *args], capture_output=True, text=True,
                          cwd=tmp_path, env=environment, timeout=300)  # fmt: skip


def progress_lines(output: str) -> list[re.Match]:
    lines = [line for line in output.splitlines() if line.startswith("progress:")]
    matches = [LINE.fullmatch(line) for line in lines]
    assert all(matches), f"a progress line out of format in:\n{output}"
    return matches


def metrics_of(line: re.Match) -> dict[str, str]:
    words = line["metrics"].split()
    return dict(zip(words[::2], words[1::2]))


def stored(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def shown(metrics: dict, name: str, step: int) -> str:
    """Metric ``name`` of a run's metrics.json at ``step`` as a progress line shows it."""
    return f"{metrics[name]['values'][metrics[name]['steps'].index(step)]:.4g}"


# ------------------------------------------------------------------------------ the lines


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_after_the_first_unit_then_at_the_pace_and_at_the_end(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setenv(ENV, "10")
    clock = Clock()
    progress = RunProgress("epoch", 100, clock=clock)
    progress.note({"train_mmd2": 0.5, "valid_mmd2": 0.25})
    for done, now in [(1, 0.5), (2, 1.0), (15, 10.4), (20, 10.5), (40, 15.0), (100, 50.0)]:
        clock.now = now
        progress.update(done)
    assert sys.stderr.getvalue().splitlines() == [
        "progress: epoch 1/100 | train_mmd2 0.5 valid_mmd2 0.25 | 2 epochs/s | 0:00:50 left",
        "progress: epoch 20/100 | train_mmd2 0.5 valid_mmd2 0.25 | 1.9 epochs/s | 0:00:42 left",
        "progress: epoch 100/100 | train_mmd2 0.5 valid_mmd2 0.25 | 2 epochs/s | 0:00:00 left",
    ]


def test_a_resumed_run_says_so_and_counts_only_its_own_units(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.delenv(ENV, raising=False)
    clock = Clock()
    progress = RunProgress("step", 1000, done=142, clock=clock)
    progress.resuming(["00003-2"], "runs/x/00003-1/checkpoint.pt")
    progress.note({"w1": 0.5}, replica=0)
    progress.note({"w1": 0.25}, replica=1)
    clock.now = 0.5
    progress.update(142)  # the resumed step itself: nothing done yet
    clock.now = 2.0
    progress.update(150)
    assert sys.stderr.getvalue().splitlines() == [
        "resuming run 00003-2 from step 142 of 1000 (checkpoint runs/x/00003-1/checkpoint.pt)",
        "progress: step 150/1000 | w1 0.25..0.5 | 4 steps/s | 0:03:32 left",
    ]


def test_zero_prints_nothing(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setenv(ENV, "0")
    progress = RunProgress("epoch", 3, done=1)
    progress.resuming([2], "c.pt")
    progress.update(2)
    progress.update(3)
    assert sys.stderr.getvalue() == ""


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf", "30s"])
def test_bad_values_are_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    with pytest.raises(ValueError) as error:
        progress_seconds()
    assert str(error.value) == (f"environment variable 'STUDENTTEACHER_PROGRESS': got {value!r}; allowed: a number "
                                "of seconds >= 0 between progress lines (0: no progress output)")


def test_default_and_given_pace(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert progress_seconds() == 30.0
    monkeypatch.setenv(ENV, " 2.5 ")
    assert progress_seconds() == 2.5


# ------------------------------------------------------------------------------ the experiments


def test_piped_training_run_prints_progress_lines_then_a_resumed_one_says_what_it_resumes(tmp_path):
    runs = tmp_path / "runs"
    first = script("train.py", "with", *TRAIN, "epochs=4", "checkpoint_every=4", "-F", str(runs), tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    lines = progress_lines(first.stderr)
    assert [(line["unit"], int(line["done"]), int(line["total"])) for line in lines] == [("epoch", 1, 4),
                                                                                          ("epoch", 4, 4)]
    metrics = stored(runs / "1")
    assert metrics_of(lines[0]) == {name: shown(metrics, name, 0) for name in ("train_mmd2", "valid_mmd2")}
    assert metrics_of(lines[-1]) == {name: shown(metrics, name, 4) for name in ("train_mmd2", "valid_mmd2")}
    assert float(lines[0]["rate"]) > 0 and lines[-1]["left"] == "0:00:00"

    checkpoint = runs / "1" / "checkpoint.pt"
    resumed = script("train.py", "with", "epochs=9", f"resume_from={checkpoint}", "-F", str(runs), tmp_path=tmp_path,
                     progress="0.000001")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    said = resumed.stderr.splitlines()
    assert f"resuming run 2 from epoch 4 of 9 (checkpoint {checkpoint})" in said
    lines = progress_lines(resumed.stderr)
    assert said.index(f"resuming run 2 from epoch 4 of 9 (checkpoint {checkpoint})") < said.index(lines[0][0])
    assert [int(line["done"]) for line in lines] == [5, 6, 7, 8, 9], "a line every epoch at this pace"
    assert lines[0]["metrics"] is None, "no metric logged yet in this process"
    metrics = stored(runs / "2")
    assert metrics_of(lines[1]) == {name: shown(metrics, name, 6) for name in ("train_mmd2", "valid_mmd2")}
    assert metrics_of(lines[-1]) == {name: shown(metrics, name, 9) for name in ("train_mmd2", "valid_mmd2")}


def test_piped_flow_prints_progress_lines_and_its_resume(tmp_path):
    runs = tmp_path / "runs"
    first = script("flows2d.py", "with", *FLOW, "checkpoint_every=20", "-F", str(runs), tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    lines = progress_lines(first.stderr)
    assert [(line["unit"], int(line["done"]), int(line["total"])) for line in lines] == [("step", 1, 40),
                                                                                          ("step", 40, 40)]
    metrics = stored(runs / "1")
    assert metrics_of(lines[-1]) == {name: shown(metrics, name, 40) for name in ("divergence", "mmd2", "w1")}

    checkpoint = runs / "1" / "checkpoint.pt"  # written at the start of step 40
    resumed = script("flows2d.py", "with", "steps=60", f"resume_from={checkpoint}", "-F", str(runs),
                     tmp_path=tmp_path)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming run 2 from step 40 of 60 (checkpoint {checkpoint})" in resumed.stderr.splitlines()
    assert [int(line["done"]) for line in progress_lines(resumed.stderr)] == [41, 60]


def test_piped_dmmd_run_prints_progress_of_training_and_sampling(tmp_path):
    runs = tmp_path / "runs"
    done = script("dmmd.py", "with", *DMMD, "-F", str(runs), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = progress_lines(done.stderr)
    assert [(line["unit"], int(line["done"]), int(line["total"])) for line in lines] == [
        ("training step", 3, 6), ("training step", 6, 6), ("sampler step", 3, 6), ("sampler step", 6, 6)]
    metrics = stored(runs / "1")
    assert metrics_of(lines[1]) == {"loss": shown(metrics, "loss", 6)}
    assert metrics_of(lines[3]) == {name: shown(metrics, name, 6) for name in ("sample_mmd2", "sample_w1", "sample_w2")}


@pytest.mark.parametrize("name, args", [("train.py", TRAIN), ("flows2d.py", FLOW), ("dmmd.py", DMMD)])
def test_a_bad_progress_setting_is_refused_before_any_run(tmp_path, name, args):
    done = script(name, "with", *args, "-F", str(tmp_path / "runs"), tmp_path=tmp_path, progress="often")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and lines == [
        "error: environment variable 'STUDENTTEACHER_PROGRESS': got 'often'; allowed: a number of seconds >= 0 "
        "between progress lines (0: no progress output)"], done.stderr  # fmt: skip
    assert not (tmp_path / "runs").exists()


def test_quiet_run_prints_no_progress(tmp_path):
    done = script("train.py", "with", *TRAIN, "-F", str(tmp_path / "runs"), tmp_path=tmp_path, progress="0")
    assert done.returncode == 0 and "progress" not in done.stderr, done.stderr


# ------------------------------------------------------------------------------ a sweep task


def test_a_sweep_tasks_log_has_progress_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV, raising=False)
    base = {"epochs": 3, "n_particles": 10, "n_train": 100, "n_valid": 100, "batch_size": 50, "d_in": 5,
            "log_every": 1, "device": "cpu"}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"experiment": "student_teacher", "base": base, "seeds": [1]}))
    assert sw.main(["submit", str(path), "--backend", "local"]) == sw.EXIT_COMPLETED
    observer = tmp_path / "runs" / "tiny"
    (log,) = (observer / "local").glob("00000-*.out")
    lines = progress_lines(log.read_text())
    assert [(int(line["done"]), int(line["total"])) for line in lines] == [(1, 3), (3, 3)]
    metrics = stored(observer / "00000-1")
    assert metrics_of(lines[-1]) == {name: shown(metrics, name, 3) for name in ("train_mmd2", "valid_mmd2")}
