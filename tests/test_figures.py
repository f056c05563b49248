"""End to end: ``figures/reproduce.sh --small`` runs every small sweep and draws every figure.

About 1.8 min of CPU time (3.5 min of wall time on a shared, loaded 2-core machine), so it is
marked slow: ``python -m pytest -m slow tests/test_figures.py``.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIGURES = [
    "mmd_flow_student_teacher", "diffusion_fixed_noise", "drmmd_student_teacher", "drmmd_lambda_ablation", "readout_ablation",
    "three_rings", "three_rings_snapshots", "adaptive_lambda", "three_rings_lambda", "mmd_flow_gaussians",
    "adaptive_bandwidth", "dmmd_discriminator", "dmmd_samples", "dmmd_choices", "dmmd_samplers", "srmmd_toys", "srmmd_toys_particles",
]  # fmt: skip


@pytest.mark.slow
def test_small_reproduction_draws_every_figure(tmp_path):
    env = {**os.environ, "FIGURE_RUNS": str(tmp_path / "runs"), "FIGURE_OUT": str(tmp_path / "png"),
           "OMP_NUM_THREADS": "1", "PYTHON": os.environ.get("PYTHON", "python")}
    done = subprocess.run(["bash", str(REPO / "figures" / "reproduce.sh"), "--small"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in FIGURES:
        for suffix in (".png", ".pdf"):
            path = tmp_path / "png" / f"{name}{suffix}"
            assert path.is_file() and path.stat().st_size > 10_000, f"{path} missing or empty"
    # every run of the small sweeps completed, and rerunning runs nothing new (resume semantics)
    assert "FAILED" not in done.stdout
    again = subprocess.run(["bash", str(REPO / "figures" / "reproduce.sh"), "--small", "--figures-only"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]


def test_reproduce_rejects_unknown_arguments(tmp_path):
    done = subprocess.run(["bash", str(REPO / "figures" / "reproduce.sh"), "--smal"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "--small" in done.stderr


def test_a_stop_signal_ends_the_local_sweep_runner_not_just_its_task(tmp_path):
    """SIGTERM interrupts the running task and the runner stops (exit 3); no later task starts."""
    import json
    import signal
    import sys
    import time

    sweep_file = tmp_path / "long.yaml"
    sweep_file.write_text(
        "experiment: particle_flow\n"
        "base: {target: three_rings, flow: mmd, n_particles: 30, n_target: 30, steps: 10000000, log_every: 1000,"
        " snapshot_every: 10000000}\n"
        "seeds: [1, 2, 3]\n"
        f"observer: {tmp_path / 'runs'}\n"
    )
    runner = subprocess.Popen([sys.executable, str(REPO / "figures" / "run_sweeps.py"), str(sweep_file)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = tmp_path / "runs" / "00000-1" / "metrics.json"
    deadline = time.monotonic() + 120
    while not (first.is_file() and first.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not first.is_file():  # a signal sent before the runner's handler exists would test nothing
        runner.kill()
        pytest.fail("the first task logged nothing within 120 s: the machine is too loaded for this test")
    runner.send_signal(signal.SIGTERM)
    try:
        stdout, stderr = runner.communicate(timeout=120)
    finally:
        runner.kill()  # a runner that went on to the next (endless) task must not outlive the test
    assert runner.returncode == 3, stdout + stderr[-2000:]
    assert json.loads((tmp_path / "runs" / "00000-1" / "run.json").read_text())["status"] == "INTERRUPTED"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir() if p.name[0].isdigit()) == ["00000-1"]
    assert "stopped" in stdout
