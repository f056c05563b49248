"""Running an experiment or a sweep task prints no warning that is not the user's business.

Sacred 0.8.7 imports ``pkg_resources`` (a setuptools ``UserWarning`` at every start) and matplotlib
announces ``Animation.save`` for every ``flow.gif``; ``experiments/quiet.py`` hides exactly these
two. Runs a 2-D flow (``experiments/flows2d.py``), a sweep task of each experiment (one of them
with ``STUDENTTEACHER_MLFLOW`` set, so the MLflow observer's start is covered too) and reads stderr.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
for name in ("STUDENTTEACHER_MLFLOW", "PYTHONWARNINGS"):
    ENV.pop(name, None)
FLOW = """experiment: particle_flow
base: {steps: 6, n_particles: 9, n_target: 9, log_every: 1, snapshot_every: 3, device: cpu}
seeds: [1]
"""
TRAIN = """experiment: student_teacher
base: {epochs: 3, n_particles: 4, n_train: 40, n_valid: 40, batch_size: 20, d_in: 5, log_every: 1, device: cpu}
seeds: [1]
"""
NOISE = re.compile(r"warn|Animation\.save", re.IGNORECASE)


def noise(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if NOISE.search(line)]


def test_flow_run_and_sweep_tasks_print_no_warnings(tmp_path):
    (tmp_path / "flow_sweep.yaml").write_text(FLOW)
    (tmp_path / "train_sweep.yaml").write_text(TRAIN)
    mlflow_env = dict(ENV)
    if importlib.util.find_spec("mlflow") is not None:
        mlflow_env["STUDENTTEACHER_MLFLOW"] = f"sqlite:///{tmp_path / 'mlruns.db'}"
    commands = {
        "flows2d.py": ([str(REPO / "experiments" / "flows2d.py"), "with", "steps=6", "n_particles=9", "n_target=9",
                        "device=cpu", "-F", str(tmp_path / "flow")], ENV),
        "sweep task (particle_flow, MLflow)": (["-m", "studentteacher.sweep", "run", str(tmp_path / "flow_sweep.yaml"),
                                                "--index", "0", "--observer", str(tmp_path / "s1")], mlflow_env),
        "sweep task (student_teacher)": (["-m", "studentteacher.sweep", "run", str(tmp_path / "train_sweep.yaml"),
                                          "--index", "0", "--observer", str(tmp_path / "s2")], ENV),
    }  # fmt: skip
    processes = {
        name: subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        for name, (args, env) in commands.items()
    }  # fmt: skip
    for name, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"{name}:\n{stdout}\n{stderr}"
        assert "Completed after" in stderr, f"{name}: Sacred's own log lines still show\n{stderr}"
        assert noise(stderr) == [], f"{name} printed warnings:\n{stderr}"
