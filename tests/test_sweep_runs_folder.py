"""A sweep's runs found from any folder (studentteacher/sweep/runs_folder.py): ``run`` and ``submit``
record the folder they store runs in; ``status``, ``collect`` and ``submit`` started elsewhere read it,
name it in their header, and say where they looked when there is nothing. Every task is a real run of
``experiments/train.py`` stored by Sacred's FileStorage."""
from __future__ import annotations

import json

import pytest
import yaml

from studentteacher import sweep as sw
from studentteacher.sweep.runs_folder import recorded, records_dir

TINY = {"epochs": 2, "n_particles": 10, "n_train": 100, "n_valid": 100, "batch_size": 50, "d_in": 5,
        "log_every": 1, "device": "cpu"}


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """(the sweep file, the folder it is run from, another folder), the current folder the first."""
    monkeypatch.delenv("STUDENTTEACHER_RUNS", raising=False)
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    path = tmp_path / "sweeps" / "tiny.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"experiment": "student_teacher", "base": TINY, "grid": {"lr": [0.1, 0.2]},
                                    "seeds": [1]}))  # fmt: skip
    monkeypatch.chdir(here)
    return path, here, elsewhere


def test_status_and_collect_from_another_folder_read_the_runs_where_run_put_them(folders, monkeypatch, capsys):
    path, here, elsewhere = folders
    for index in range(2):
        assert sw.main(["run", str(path), "--index", str(index)]) == sw.EXIT_COMPLETED
    runs = here / "runs" / "tiny"
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()

    assert sw.main(["status", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"runs: {runs} (recorded by the last submit or run of this file; {elsewhere / 'runs' / 'tiny'} "
                      "holds none of its runs)")
    assert out[-1].startswith("2 tasks: 2 completed")
    rows = [line.split() for line in out[2:4]]
    assert [row[:3] + row[4:5] for row in rows] == [["0", "completed", "1", "s"], ["1", "completed", "1", "s"]]
    assert all(float(row[3]) > 0 for row in rows), "a run of a fraction of a second does not read 0 s"
    assert sw.main(["status", str(path), "--json"]) == 0
    assert [s["run_id"] for s in json.loads(capsys.readouterr().out)] == ["00000-1", "00001-1"]

    assert sw.main(["collect", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"runs: {runs} (recorded")
    assert out[1] == "valid_mmd2 (last value; statistics over COMPLETED runs):"
    block = out[2:out.index("")]  # the valid_mmd2 table: header, index name, one row per lr (mean first)
    rows = {float(line.split()[0]): float(line.split()[1]) for line in block[2:]}
    finals = {lr: json.loads((runs / f"{index:05d}-1" / "metrics.json").read_text())["valid_mmd2"]["values"][-1]
              for index, lr in enumerate((0.1, 0.2))}  # fmt: skip
    assert rows == pytest.approx(finals, rel=1e-5)
    assert not (elsewhere / "runs").exists(), "nothing was written where the commands were started"


def test_submit_from_another_folder_continues_the_sweep_where_its_runs_are(folders, monkeypatch, capsys):
    path, here, elsewhere = folders
    assert sw.main(["run", str(path), "--index", "0"]) == sw.EXIT_COMPLETED
    monkeypatch.chdir(elsewhere)
    assert sw.main(["submit", str(path), "--backend", "local"]) == sw.EXIT_COMPLETED
    assert sorted(p.name for p in (here / "runs" / "tiny").iterdir() if sw.RUN_ID.match(p.name)) == ["00000-1",
                                                                                                     "00001-1"]
    assert "1 tasks: 1 completed" in capsys.readouterr().out, "only the missing task ran"
    assert not (elsewhere / "runs").exists()


def test_nothing_found_says_where_it_looked_and_how_to_look_elsewhere(folders, capsys):
    path, here, _ = folders
    looked = here / "runs" / "tiny"
    advice = (f"no runs of this sweep in {looked}; if its runs are elsewhere, point there with --observer DIR (or "
              "with STUDENTTEACHER_RUNS=DIR when DIR holds tiny/)")
    assert sw.main(["status", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"runs: {looked} (runs/<file stem> of the current folder)"
    assert out[-2:] == ["2 tasks: 2 missing; wall time of all attempts 0 s", advice]
    assert sw.main(["collect", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [out[0], advice]


def test_an_explicit_observer_or_runs_in_the_current_folder_win_over_the_record(folders, monkeypatch, capsys):
    path, here, elsewhere = folders
    assert sw.main(["run", str(path), "--index", "0"]) == sw.EXIT_COMPLETED
    monkeypatch.chdir(elsewhere)
    assert sw.main(["run", str(path), "--index", "1", "--observer", "runs/tiny"]) == sw.EXIT_COMPLETED  # recorded
    monkeypatch.chdir(here)
    sweep = sw.load(path)
    assert (sweep.observer, sweep.observer_origin) == (here / "runs" / "tiny", "runs/<file stem> of the current folder")
    assert [s.state for s in sw.status(sweep)] == ["completed", "missing"]
    empty = here / "empty"
    capsys.readouterr()
    assert sw.main(["status", str(path), "--observer", str(empty)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"runs: {empty} (--observer)" and out[-1].startswith(f"no runs of this sweep in {empty};")
    monkeypatch.setenv("STUDENTTEACHER_RUNS", str(elsewhere / "runs"))
    sweep = sw.load(path)
    assert (sweep.observer, sweep.observer_origin) == (elsewhere / "runs" / "tiny", "$STUDENTTEACHER_RUNS/<file stem>")
    assert [s.state for s in sw.status(sweep)] == ["missing", "completed"]


def test_the_record_names_the_sweep_file_and_its_folder(folders):
    path, here, _ = folders
    assert sw.main(["run", str(path), "--index", "0"]) == sw.EXIT_COMPLETED
    assert recorded(path) == here / "runs" / "tiny"
    (record,) = records_dir().iterdir()  # one file, no temporary left
    assert json.loads(record.read_text()) == {"file": str(path), "runs": str(here / "runs" / "tiny")}
