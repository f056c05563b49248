"""Shared fixtures: tiny float64 networks for exact comparisons.

The tests run torch on one thread (and so do the experiments they start, through
OMP_NUM_THREADS): their tensors are tiny, and on a small shared machine two threads per process
only wait for each other.
"""
from __future__ import annotations

import importlib.util
import os
import tempfile

os.environ.setdefault("OMP_NUM_THREADS", "1")
# Sweeps record where their runs are (studentteacher/sweep/runs_folder.py) under $XDG_STATE_HOME: the
# tests' records stay out of the user's, here and in the processes they start.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="studentteacher-test-state-")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from studentteacher.threads import flush_denormals  # noqa: E402

# Denormal floats flushed to zero, as in every experiment run (experiments/runs/experiment_runs.py does it on
# import, and tests import it in this process): one numeric regime whatever the order of the tests.
flush_denormals()

from studentteacher.networks import Architecture, init_params  # noqa: E402


def tiny_network(readout="particle", bias=False, d_out=1, n_particles=4, d_in=5, hidden=3, seed=0):
    """(arch, params, x) with float64 tensors: N particles, B = 7 inputs."""
    arch = Architecture(readout=readout, d_in=d_in, hidden=hidden, d_out=d_out, bias=bias)
    generator = torch.Generator().manual_seed(seed)
    params = init_params(arch, n_particles, 0.0, 1.0, generator, dtype=torch.float64)
    x = torch.randn(7, d_in, generator=generator, dtype=torch.float64)
    return arch, params, x


def import_script(path, name: str):
    """Import an experiment script (``experiments/*.py``) as module ``name``, without running its CLI."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def own_sweep_records(tmp_path_factory, monkeypatch):
    """Each test its own $XDG_STATE_HOME: no test finds the runs folder another test's sweep recorded."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


ARCH_CASES = [
    pytest.param(readout, bias, d_out, id=f"{readout}-bias{int(bias)}-out{d_out}")
    for readout in ("particle", "dense")
    for bias in (False, True)
    for d_out in (1, 2)
]


@pytest.fixture
def full_disk(tmp_path):
    """A folder on a fresh 100 kB tmpfs (``mount -t tmpfs``, root only), unmounted afterwards;
    the test is skipped where mounting is not permitted."""
    import subprocess

    folder = tmp_path / "full_disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", str(folder)], capture_output=True,
                             text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip() or mounted.returncode})")
    try:
        yield folder
    finally:
        import gc

        gc.collect()  # a failed write may still hold the file open (a traceback keeps it alive)
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=False)  # detach it even while busy
