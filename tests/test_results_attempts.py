"""Attempts of one run read as one run (studentteacher.results.join_attempts), on real runs.

Runs are written by the real experiment CLI: a run stopped at epoch 6 with a checkpoint and a
second attempt resumed from it to epoch 12 must read as one curve equal to the uninterrupted
12-epoch run; repeated attempts of one sweep index count once in ``final_table``.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from studentteacher import results

REPO = Path(__file__).resolve().parent.parent
TINY = ["n_particles=4", "n_train=40", "n_valid=40", "batch_size=20", "log_every=2", "device=cpu", "d_in=5",
        "method=noise_injection", "seed=5", "dtype=float64"]


def train(observer: Path, *updates: str) -> None:
    command = [sys.executable, str(REPO / "experiments" / "train.py"), "with", *TINY, *updates, "-F", str(observer)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> tuple[Path, Path]:
    """(folder with the two attempts, folder with the uninterrupted run)."""
    root = tmp_path_factory.mktemp("attempts")
    train(root / "chain", "epochs=6", "checkpoint_every=6")
    train(root / "chain", "epochs=12", f"resume_from={root / 'chain' / '1' / 'checkpoint.pt'}")
    train(root / "whole", "epochs=12")
    return root / "chain", root / "whole"


def test_a_resumed_run_reads_as_one_curve_equal_to_the_uninterrupted_run(resumed):
    chain, whole = resumed
    joined = results.join_attempts(results.load_runs(chain))
    assert results.runs(joined)[["run_id", "attempts", "resumed"]].values.tolist() == [["2", 2, True]]
    reference = json.loads((whole / "1" / "metrics.json").read_text())["valid_mmd2"]
    curve = results.curves(results.load_runs(chain), "valid_mmd2").sort_values("step")
    assert curve["step"].tolist() == reference["steps"] == list(range(0, 13, 2))
    np.testing.assert_allclose(curve["value"].to_numpy(), reference["values"], rtol=0, atol=1e-12)


def test_attempts_join_after_the_runs_folder_is_moved(resumed, tmp_path):
    """Regression: resume_from holds an absolute path, so a cloned or moved folder (the committed
    reproduction data) read its resumed runs from the resume epoch on, in two pieces."""
    chain, _ = resumed
    moved = tmp_path / "elsewhere" / "chain"
    shutil.copytree(chain, moved)
    recorded = json.loads((moved / "2" / "config.json").read_text())["resume_from"]
    assert not recorded.startswith(str(moved)), "the copy must still name the old folder"
    joined = results.join_attempts(results.load_runs(moved))
    assert results.runs(joined)[["run_id", "attempts", "resumed"]].values.tolist() == [["2", 2, True]]
    original = results.curves(results.load_runs(chain), "valid_mmd2").sort_values("step")
    copied = results.curves(results.load_runs(moved), "valid_mmd2").sort_values("step")
    assert copied["step"].tolist() == list(range(0, 13, 2))
    np.testing.assert_array_equal(copied["value"].to_numpy(), original["value"].to_numpy())


def test_best_and_final_of_a_resumed_run_use_the_joined_curve(resumed):
    """Regression (how='best' read only the resumed attempt's metrics)."""
    chain, whole = resumed
    for how, extra in [("best", {}), ("last", {}), ("at", {"at": 4}), ("min", {"window": (0, 6)})]:
        mine = results.final_table(results.load_runs(chain), [], "valid_mmd2", how=how, **extra)
        reference = results.final_table(results.load_runs(whole), [], "valid_mmd2", how=how, **extra)
        assert mine["count"].tolist() == [1], how
        assert mine["mean"].iloc[0] == pytest.approx(reference["mean"].iloc[0], abs=1e-12), how
    values = json.loads((whole / "1" / "metrics.json").read_text())["valid_mmd2"]["values"]
    at4 = results.final_table(results.load_runs(chain), [], "valid_mmd2", how="at", at=4)
    assert at4["mean"].iloc[0] == pytest.approx(values[2], abs=1e-12)
    window = results.final_table(results.load_runs(chain), [], "valid_mmd2", how="min", window=(0, 6))
    assert window["mean"].iloc[0] == pytest.approx(min(values[:4]), abs=1e-12)


def test_how_arguments_are_checked(resumed):
    df = results.load_runs(resumed[1])
    with pytest.raises(ValueError, match="at=EPOCH"):
        results.final_table(df, [], "valid_mmd2", how="at")
    with pytest.raises(ValueError, match="window"):
        results.final_table(df, [], "valid_mmd2", how="last", window=(0, 2))


def test_repeated_sweep_attempts_count_once(tmp_path):
    """Regression: two COMPLETED attempts of one sweep index gave count 2 (sd 0.0) in final_table."""
    sweep_file = tmp_path / "tiny.yaml"
    sweep_file.write_text(
        "experiment: student_teacher\n"
        "base: {epochs: 3, n_particles: 4, n_train: 40, n_valid: 40, batch_size: 20, log_every: 1, d_in: 5,"
        " device: cpu}\n"
        "seeds: [1]\n"
        f"observer: {tmp_path / 'runs'}\n"
    )
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "studentteacher.sweep", "run", str(sweep_file), "--index", "0"],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    df = results.load_runs(tmp_path / "runs")
    assert sorted(results.runs(df)["run_id"]) == ["00000-1", "00000-2"]
    table = results.final_table(df, [], "valid_mmd2")
    assert table["count"].tolist() == [1] and table["n_runs"].tolist() == [1]
    assert results.runs(results.join_attempts(df))["run_id"].tolist() == ["00000-2"]


def test_figure_footnotes_do_not_leave_out_an_attempt_that_was_continued(resumed, tmp_path, monkeypatch):
    """Regression: the full-scale Figure 2 said its resumed runs were "left out (INTERRUPTED)"."""
    import shutil

    from conftest import import_script

    common = import_script(REPO / "figures" / "common.py", "figures_common")

    chain = tmp_path / "chain"
    shutil.copytree(resumed[0], chain)
    config = chain / "2" / "config.json"  # the copy resumes from the copy's checkpoint
    config.write_text(config.read_text().replace(str(resumed[0]), str(chain)))

    def set_status(run_id: str, status: str) -> None:  # what SIGTERM or a crash leaves in run.json
        path = chain / run_id / "run.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "status": status}))

    set_status("1", "INTERRUPTED")
    assert common.not_completed_note(results.load_runs(chain), "method") == ""
    set_status("2", "FAILED")
    assert common.not_completed_note(results.load_runs(chain), "method") == "left out (not completed): " \
        "noise_injection seed 5: FAILED"
