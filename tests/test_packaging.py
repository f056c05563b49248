"""Packaging: the wheel holds every package, the experiments and the templates, and runs sweeps.

The slow test builds a wheel offline from a copy of this tree (``pip wheel --no-build-isolation
--no-index``: the installed setuptools builds it), installs it (not editable) into a fresh venv
that sees this interpreter's site-packages for the dependencies, and runs a sweep task from
outside the repository with PYTHONPATH unset.
"""
from __future__ import annotations

import configparser
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IGNORE = shutil.ignore_patterns(".git", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                ".hypothesis", "png")


def _setup_options() -> configparser.SectionProxy:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return config["options"]


def test_setup_cfg_finds_every_package_of_the_tree():
    import setuptools

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    assert _setup_options()["packages"].strip() == "find:"
    found = set(setuptools.find_packages(str(REPO), include=config["options.packages.find"]["include"].split()))
    tree = {".".join(path.parent.relative_to(REPO).parts)
            for folder in ("studentteacher", "experiments") for path in (REPO / folder).rglob("__init__.py")}
    assert found == tree, "setup.cfg [options.packages.find] must find every package of the tree"


def test_slurm_templates_are_the_package_templates():
    for name in ("array.sbatch", "array_batch.sbatch"):
        assert (REPO / "slurm" / name).resolve() == REPO / "studentteacher" / "sweep" / "templates" / name


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.mark.slow
def test_installed_wheel_runs_a_sweep_task_outside_the_repository(tmp_path):
    if importlib.util.find_spec("setuptools") is None or _run([sys.executable, "-m", "pip", "--version"]).returncode:
        pytest.skip("pip wheel cannot run offline here: pip or setuptools is not installed")
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=IGNORE, symlinks=True)
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                  "-w", str(tmp_path / "dist"), str(source)])
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    if made.returncode:
        pytest.skip(f"cannot create a venv with pip here: {made.stderr.strip()[-500:]}")
    python = str(venv / "bin" / "python")
    (wheel,) = (tmp_path / "dist").glob("studentteacher-*.whl")
    installed = _run([python, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)])
    assert installed.returncode == 0, installed.stderr[-3000:]

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    where = _run([python, "-c", "import pathlib, studentteacher, experiments as e; "
                  "print(studentteacher.__file__); print(pathlib.Path(e.__file__).parent)"], cwd=outside, env=env)
    assert where.returncode == 0, where.stderr[-3000:]
    package, experiments = where.stdout.split()
    assert Path(package).is_relative_to(venv), f"studentteacher imported from {package}, not the venv"
    smoke = Path(experiments) / "sweeps" / "smoke.yaml"
    done = _run([python, "-m", "studentteacher.sweep", "run", str(smoke), "--index", "0"], cwd=outside, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((outside / "runs" / "smoke" / "00000-1" / "run.json").read_text())
    assert run["status"] == "COMPLETED" and run["meta"]["sweep"]["file"] == str(smoke)
    dry = _run([python, "-m", "studentteacher.sweep", "submit", str(smoke), "--dry-run"], cwd=outside, env=env)
    assert dry.returncode == 0 and "#SBATCH --array=1-3" in dry.stdout, dry.stderr[-3000:]
