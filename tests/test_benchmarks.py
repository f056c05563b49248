"""The benchmark scripts run end to end at tiny sizes and write the JSON they promise.

Times are never asserted (benchmarks print ratios); these tests only keep the scripts working.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(script: str, *arguments: str) -> str:
    completed = subprocess.run([sys.executable, str(BENCHMARKS / script), *arguments], capture_output=True, text=True,
                               timeout=300)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


def test_bench_updates_checks_agreement_and_writes_ratios(tmp_path):
    path = tmp_path / "updates.json"
    _run("bench_updates.py", "--quick", "--rules", "sgd", "ksd", "--json", str(path))
    report = json.loads(path.read_text())
    assert report["agreement"]["agrees"] is True, report["agreement"]
    assert set(report["results"]) == {"sgd", "ksd"}
    assert report["results"]["ksd"]["speed_up"] > 0 and report["torch"] and report["date"]


@pytest.mark.parametrize("readout", ["dense", "particle"])
def test_bench_training_reports_epoch_against_bare_products(tmp_path, readout):
    path = tmp_path / "training.json"
    _run("bench_training.py", "--readout", readout, "--n-particles", "20", "--methods", "sgd", "noise_injection",
         "--epochs", "1", "--repeats", "1", "--json", str(path))  # fmt: skip
    rows = json.loads(path.read_text())["rows"]
    assert [row["method"] for row in rows] == ["sgd", "noise_injection"]
    assert all(row["ratio"] > 0 and row["peak_mb"] > 0 for row in rows)


def test_bench_replicas_reports_ratio_to_one_run(tmp_path):
    path = tmp_path / "replicas.json"
    _run("bench_replicas.py", "--n-particles", "20", "--replicas", "1", "3", "--methods", "drmmd", "--epochs", "1",
         "--repeats", "1", "--json", str(path))  # fmt: skip
    rows = json.loads(path.read_text())["rows"]
    assert [row["replicas"] for row in rows] == [1, 3] and all(row["ratio"] > 0 for row in rows)


def test_bench_replicas_of_flows_reports_ratio_to_one_flow(tmp_path):
    path = tmp_path / "replicas-flow.json"
    _run("bench_replicas.py", "--problem", "flow", "--flows", "mmd_noise", "kale", "--n-particles", "30",
         "--replicas", "1", "2", "--steps", "2", "--repeats", "1", "--json", str(path))  # fmt: skip
    report = json.loads(path.read_text())
    assert report["benchmark"] == "replicas-flow"
    assert [(row["flow"], row["replicas"]) for row in report["rows"]] == [("mmd_noise", 1), ("mmd_noise", 2),
                                                                         ("kale", 1), ("kale", 2)]
    assert all(row["ratio"] > 0 and row["seconds_per_step"] > 0 for row in report["rows"])


def test_bench_flows_and_scale_write_their_rows(tmp_path):
    flows_path, scale_path = tmp_path / "flows.json", tmp_path / "scale.json"
    _run("bench_flows.py", "--sizes", "30", "--steps", "2", "--repeats", "1", "--flows", "mmd", "drmmd_adaptive",
         "--devices", "cpu", "--output", str(flows_path))  # fmt: skip
    (row,) = json.loads(flows_path.read_text())["rows"]
    assert set(row["steps_per_second"]) == {"mmd", "drmmd_adaptive", "drmmd_adaptive_solve"}
    output = _run("bench_scale.py", "--student-sizes", "40", "--flow-sizes", "30", "--flows", "drmmd", "kale",
                  "--budget-gb", "4", "--json", str(scale_path))  # fmt: skip
    rows = json.loads(scale_path.read_text())["rows"]
    assert [row["kind"] for row in rows] == ["student", "flow", "flow"], output
    assert all("error" not in row for row in rows), rows
    assert all(row["finite"] and row["within_budget"] for row in rows[1:])


def test_bench_dmmd_times_training_and_the_four_samplers(tmp_path):
    path = tmp_path / "dmmd.json"
    _run("bench_dmmd.py", "--quick", "--dims", "2", "--devices", "cpu", "--json", str(path))
    report = json.loads(path.read_text())
    assert [row["dim"] for row in report["training"]] == [2] and report["training"][0]["seconds_per_step"] > 0
    assert [row["n"] for row in report["sampling"]] == [20, 40]
    assert all(set(row["seconds_per_step"]) == {"interacting", "approximate", "self_potential", "pairwise"}
               for row in report["sampling"])  # fmt: skip
    assert all(row["pairwise_over_interacting"] > 0 for row in report["sampling"])
    assert all(row["seconds_per_sample_step"] == pytest.approx(row["seconds_per_step"]["approximate"] / row["n"])
               for row in report["sampling"])  # fmt: skip


def test_bench_denormals_times_both_modes_and_compares_the_runs(tmp_path):
    path = tmp_path / "denormals.json"
    _run("bench_denormals.py", "--methods", "sgd", "--epochs", "3", "--n-particles", "20", "--json", str(path))
    (row,) = json.loads(path.read_text())["rows"]
    assert row["method"] == "sgd" and row["kept_seconds"] > 0 and row["flushed_seconds"] > 0
    assert row["max_param_difference"] == 0.0, "a small sgd run has no denormals to flush: bitwise equal"


def test_reference_parity_plumbing_with_the_package_in_the_reference_seat(tmp_path):
    # The "reference" is a second package run drawn from another seed and then loaded with the first
    # run's particles, data, batch order and noise stream: only the loading can make the curves agree.
    prefix = tmp_path / "parity"
    out = _run("reference_parity.py", "--reference", "package", "--config", "drmmd_paper_noise", "--epochs", "4",
               "--log-every", "2", "--set", "n_particles=12", "--set", "n_train=200", "--set", "n_valid=100",
               "--out", str(prefix))  # fmt: skip
    report = json.loads(prefix.with_name("parity.json").read_text())
    curves = report["curves"]
    assert curves["epoch"] == [0, 2, 4]
    assert curves["reference"] == curves["package"] and curves["ratio"] == [1.0, 1.0, 1.0]
    assert curves["weight_difference"] == [0.0, 0.0, 0.0]
    assert curves["package"][-1] != curves["package"][0]  # it trained (noise at beta 1 may raise the error at first)
    assert report["summary"]["within_until"]["1e-06"] == 4 and report["config"]["package_config"]["n_particles"] == 12
    assert prefix.with_name("parity.png").stat().st_size > 0 and "largest 0" in out


def test_reference_parity_refuses_a_folder_without_the_reference_code(tmp_path):
    completed = subprocess.run([sys.executable, str(BENCHMARKS / "reference_parity.py"), "--reference", str(tmp_path),
                                "--config", "drmmd_paper", "--epochs", "1"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert completed.returncode != 0
    assert completed.stderr.strip().splitlines() == [
        f"--reference {tmp_path}: no networks.py, losses.py, trainer.py in it or in its student_teacher/ "
        "(a checkout of github.com/hudsonchen/DrMMD, or 'package')"
    ]


def test_bench_srmmd_times_both_solvers_and_counts_cg_iterations(tmp_path):
    path = tmp_path / "srmmd.json"
    _run("bench_srmmd.py", "--quick", "--flows", "srmmd", "--device", "cpu", "--json", str(path))
    report = json.loads(path.read_text())
    assert [(row["flow"], row["n"]) for row in report["rows"]] == [("srmmd", 20), ("srmmd", 40)]
    for row in report["rows"]:
        assert set(row["seconds_per_step"]) == set(row["peak_mb"]) == {"dense", "cg"}
        assert row["dense_over_cg"] > 0 and row["cg_iterations"] > 0
        assert all(peak >= 0 for peak in row["peak_mb"].values())
