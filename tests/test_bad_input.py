"""Bad input is refused before any work: one line ``error: ...`` naming the key, exit status 2, no run directory.

How the probes run (a Sacred start costs ~1.5 s of imports, hundreds of processes would take minutes):

* the grid (every config key of the three experiments, a value of the wrong type and a value out of
  range for each) and the special cases go through the real command line *in this process*:
  :meth:`ExperimentRuns.command_line` of each script, which is what ``python experiments/X.py``
  runs after its imports (parsing, Sacred's config resolution, validation, the checks against the
  machine), with stderr captured;
* one representative per category also runs as a real process (:data:`PROCESS_CASES`): a wrong
  type, a value out of range with replicas > 1, a corrupt ``resume_from``, a size that cannot fit
  in memory, a refused flag, and a sweep whose observer lies under a file.

Each probe asserts exit status 2, exactly one non-empty stderr line ``error: ...`` naming the key
(or the flag), no ``Traceback``, and no run directory in the ``-F`` folder.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import import_script

from studentteacher import sweep as sw
from studentteacher import dmmd
from studentteacher.config import SPEC
from studentteacher.flows import SPEC as FLOW_SPEC
from studentteacher.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
TRAIN, FLOWS, DMMD = (ROOT / "experiments" / name for name in ("train.py", "flows2d.py", "dmmd.py"))
TINY = ["epochs=3", "n_particles=20", "n_train=100", "n_valid=50", "batch_size=50", "log_every=1"]
TINY_FLOW = ["steps=5", "n_particles=30", "n_target=30"]
TINY_DMMD = ["n_train=90", "n_eval=30", "hidden=8", "features=4", "embedding=4", "train_steps=2", "batch_size=16",
             "levels=2", "steps_per_level=2", "n_particles=20"]
TINY_OF = {"train": TINY, "flows": TINY_FLOW, "dmmd": TINY_DMMD}
NO_CUDA = not torch.cuda.is_available()

# key -> (a value of the wrong type, a value out of range or not among the choices); None: no such value
TRAIN_BAD = {
    "d_in": ("abc", 0), "hidden": ("abc", 0), "d_out": ("abc", 0), "n_particles": ("abc", 0),
    "n_teacher": ("abc", 0), "readout": (1, "wide"), "bias": ("abc", None), "input_dist": (1, "cube"),
    "n_train": ("abc", 0), "n_valid": ("abc", 0), "batch_size": ("abc", 0), "epochs": ("abc", 0),
    "lr": ("abc", -1), "method": (1, "adam"), "noise_level": ("abc", -1), "noise_decay": ("abc", 2),
    "noise_decay_every": ("abc", 0), "lmbda": ("abc", 0), "adaptive_lmbda": ("abc", None),
    "drmmd_noise": ("abc", None), "ksd_reg": ("abc", 0), "hrmmd_alpha": ("abc", 2), "student_mean": ("abc", "1e400"),
    "student_std": ("abc", -1), "teacher_mean": ("abc", "1e400"), "teacher_std": ("abc", -1),
    "device": (1, "tpu"), "dtype": (1, "float16"), "allow_tf32": ("abc", None), "compile": (1, "max"),
    "log_every": ("abc", 0), "checkpoint_every": ("abc", -1), "resume_from": (1, "/no/such/checkpoint.pt"),
    "replicas": ("abc", 0), "threads": ("abc", 0), "seed": ("abc", -1),
}  # fmt: skip
FLOW_BAD = {
    "target": (1, "square"), "flow": (1, "sgd"), "kernel": (1, "rbf"), "bandwidth": ("abc", -1),
    "n_particles": ("abc", 0), "n_target": ("abc", 0), "steps": ("abc", -1), "step_size": ("abc", 0),
    "lmbda": ("abc", 0), "noise_level": ("abc", -1), "noise_until": ("abc", -1), "velocity": (1, "fast"),
    "linear_solver": (1, "lu"), "hrmmd_alpha": ("abc", 2), "dtype": (1, "float16"),
    "device": (1, "tpu"), "log_every": ("abc", 0), "snapshot_every": ("abc", 0), "replicas": ("abc", 0),
    "threads": ("abc", 0), "seed": ("abc", -1), "checkpoint_every": ("abc", -1),
    "resume_from": (1, "/no/such/checkpoint.pt"), "dim": ("abc", 0), "source_distance": ("abc", -1),
}  # fmt: skip
DMMD_BAD = {
    "target": (1, "square"), "n_train": ("abc", 1), "n_eval": ("abc", 1), "hidden": ("abc", 0), "layers": ("abc", 0),
    "features": ("abc", 0), "embedding": ("abc", 3), "train_steps": ("abc", -1), "batch_size": ("abc", 30),
    "levels_per_step": ("abc", 0), "lr": ("abc", 0), "l2_weight": ("abc", -1), "gp_weight": ("abc", -1),
    "kernel": (1, "poly"), "rbf_bandwidth": ("abc", 0), "schedule": (1, "linear"), "levels": ("abc", 0),
    "steps_per_level": ("abc", -1), "step_size": ("abc", 0), "sampler": (1, "langevin"), "n_particles": ("abc", 0),
    "gp_points": (1, "middle"), "t_min": ("abc", 0), "reference_particles": ("abc", 0),
    "discriminator_from": (1, "/no/such/discriminator.pt"), "device": (1, "tpu"), "dtype": (1, "float16"),
    "log_every": ("abc", 0), "replicas": ("abc", 0), "threads": ("abc", 0), "seed": ("abc", -1),
}  # fmt: skip


def test_the_grid_covers_every_config_key():
    assert set(TRAIN_BAD) == set(SPEC)
    assert set(FLOW_BAD) == set(FLOW_SPEC)
    assert set(DMMD_BAD) == set(dmmd.SPEC)


def _grid(table: dict) -> list:
    return [pytest.param(key, value, id=f"{key}-{kind}") for key, values in table.items()
            for kind, value in zip(("type", "range"), values) if value is not None]  # fmt: skip


@pytest.fixture(scope="module")
def scripts():
    """The three scripts' ExperimentRuns, imported once."""
    scripts = {"train": TRAIN, "flows": FLOWS, "dmmd": DMMD}
    return {name: import_script(path, f"bad_input_{name}").runs for name, path in scripts.items()}


@pytest.fixture
def refused(tmp_path, capsys):
    """refused(runs, *argv) -> the one stderr line, after asserting exit 2, one line, no run directory."""

    def check(runs, *argv):
        store = tmp_path / "store"
        code = runs.command_line([*map(str, argv), "-F", str(store)])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, err
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
        assert not store.exists() or not any(store.iterdir()), "no run directory may be made"
        return lines[0]

    return check


@pytest.mark.parametrize("key, value", _grid(TRAIN_BAD))
def test_each_student_teacher_key_refused(scripts, refused, key, value):
    line = refused(scripts["train"], "with", *TINY, f"{key}={value}")
    assert f"config key '{key}'" in line


@pytest.mark.parametrize("key, value", _grid(FLOW_BAD))
def test_each_flow_key_refused(scripts, refused, key, value):
    line = refused(scripts["flows"], "with", *TINY_FLOW, f"{key}={value}")
    assert f"config key '{key}'" in line


@pytest.mark.parametrize("key, value", _grid(DMMD_BAD))
def test_each_dmmd_key_refused(scripts, refused, key, value):
    line = refused(scripts["dmmd"], "with", *TINY_DMMD, f"{key}={value}")
    assert f"config key '{key}'" in line


# ------------------------------------------------------------------------------ the special cases
@pytest.mark.parametrize("script, update, key", [
    ("train", "lr=-1", "lr"), ("train", "batch_size=500", "batch_size"), ("flows", "bandwidth=-1.0", "bandwidth"),
    ("flows", "n_target=31", "n_target"), ("dmmd", "lr=-1", "lr"),
])  # fmt: skip
def test_bad_value_with_replicas_is_refused_before_any_replica_starts(scripts, refused, script, update, key):
    tiny = TINY_OF[script]
    assert f"config key '{key}'" in refused(scripts[script], "with", *tiny, "replicas=2", update)


@pytest.mark.parametrize("script", ["train", "flows", "dmmd"])
@pytest.mark.parametrize("update, allowed", [
    ("seed=-1", "0 <= seed < 2**32"), ("seed=1099511627776", "0 <= seed < 2**32"),
    ("threads=0", "'auto' or an integer >= 1"), ("threads=1000000000000", "'auto' or an integer >= 1 and <= 1024"),
    ("lrr=1", "lrr"),
])  # fmt: skip
def test_seed_threads_and_unknown_keys_are_named(scripts, refused, script, update, allowed):
    tiny = TINY_OF[script]
    line = refused(scripts[script], "with", *tiny, update)
    assert allowed in line and repr(update.split("=")[0]) in line


@pytest.mark.parametrize("script", ["train", "flows", "dmmd"])
@pytest.mark.parametrize("device", [pytest.param(d, marks=pytest.mark.skipif(not NO_CUDA and d != "cuda:abc",
                                                                           reason="a CUDA device is present"))
                                    for d in ("cuda", "cuda:0", "cuda:abc")])  # fmt: skip
def test_cuda_devices_that_cannot_work_are_refused(scripts, refused, script, device):
    tiny = TINY_OF[script]
    assert "config key 'device'" in refused(scripts[script], "with", *tiny, f"device={device}")


def test_flow_steps_of_the_wrong_type_is_named_not_a_type_error(scripts, refused):
    line = refused(scripts["flows"], "with", "steps=abc")
    assert "config key 'steps'" in line and "TypeError" not in line


@pytest.mark.parametrize("script, update, key", [
    ("train", "n_particles=10000000000", "n_particles"), ("train", "n_train=100000000000", "n_train"),
    ("flows", "n_particles=10000000000000", "n_particles"), ("flows", "n_target=3000000", "n_target"),
    ("dmmd", "n_particles=10000000000", "n_particles"), ("dmmd", "n_eval=3000000", "n_eval"),
    ("train", "n_teacher=1000000000000", "n_teacher"), ("train", "d_in=10000000000", "d_in"),
    ("train", "hidden=10000000000", "hidden"), ("train", "d_out=10000000000", "d_out"),
    ("flows", "dim=10000000000 target=gaussian_nd", "dim"),
])  # fmt: skip
def test_sizes_that_cannot_fit_in_memory_are_refused_naming_the_key(scripts, refused, script, update, key):
    tiny = [a for a in TINY_OF[script] if not a.startswith(update.split("=")[0])]
    line = refused(scripts[script], "with", *tiny, *update.split())
    assert f"config key '{key}'" in line and "memory" in line


@pytest.mark.parametrize("script", ["train", "flows", "dmmd"])
def test_sql_observer_is_refused_in_every_script(scripts, refused, script):
    line = refused(scripts[script], "-s", "sqlite:///x.db", "with", "seed=1")
    assert "-s:" in line and "no table for metrics" in line


@pytest.mark.parametrize("flag", [["-i", "7"], ["-q"], ["-D"], ["-C", "sys"]])
def test_flags_that_cannot_reach_threaded_replicas_are_refused_saying_why(scripts, refused, flag):
    line = refused(scripts["train"], "with", *TINY, "replicas=2", *flag)
    assert flag[0] in line and "replicas = 2" in line


def test_unknown_flag_lists_sacreds_flags(scripts, refused):
    line = refused(scripts["train"], "with", *TINY, "--bogus")
    assert "--bogus" in line and "-F/--file_storage" in line


# ------------------------------------------------------------------------------ resume_from
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A real checkpoint (epoch 2) and broken files beside it."""
    folder = tmp_path_factory.mktemp("checkpoints")
    config = dict(epochs=2, n_particles=20, n_train=100, n_valid=50, batch_size=50, log_every=1, seed=3)
    trainer = Trainer(config)
    trainer.run()
    trainer.save_checkpoint(str(folder / "good.pt"))
    good = (folder / "good.pt").read_bytes()
    (folder / "empty.pt").write_bytes(b"")
    (folder / "truncated.pt").write_bytes(good[: len(good) // 2])
    (folder / "corrupt.pt").write_bytes(os.urandom(2000))
    torch.save([1, 2, 3], folder / "list.pt")
    state = torch.load(folder / "good.pt", weights_only=False)
    torch.save({**state, "config": {"target": "three_rings", "flow": "mmd", "seed": 3}}, folder / "flow.pt")
    (folder / "adir").mkdir()
    return {path.stem: path for path in folder.iterdir()} | {"missing": folder / "missing.pt"}


@pytest.mark.parametrize("name, problem", [
    ("missing", "no such file"), ("adir", "is a directory"), ("empty", "empty"), ("truncated", "truncated or corrupt"),
    ("corrupt", "truncated or corrupt"), ("list", "holds no checkpoint"), ("flow", "does not know"),
])  # fmt: skip
def test_resume_from_a_file_that_is_no_checkpoint_is_refused(scripts, refused, checkpoints, name, problem):
    line = refused(scripts["train"], "with", f"resume_from={checkpoints[name]}", "epochs=5")
    assert "config key 'resume_from'" in line and problem in line


def test_resume_from_another_runs_checkpoint_is_refused(scripts, refused, checkpoints):
    line = refused(scripts["train"], "with", f"resume_from={checkpoints['good']}", "epochs=5", "n_particles=7")
    assert "config key 'n_particles'" in line and "resume_from=" in line and "may change on resume" in line


@pytest.mark.parametrize("epochs", [1, 2])
def test_resume_with_nothing_left_to_train_is_refused(scripts, refused, checkpoints, epochs):
    line = refused(scripts["train"], "with", f"resume_from={checkpoints['good']}", f"epochs={epochs}")
    assert "config key 'epochs'" in line and "> 2" in line and "resume_from=" in line


def test_resume_a_plain_checkpoint_as_a_batch_is_refused(scripts, refused, checkpoints):
    line = refused(scripts["train"], "with", f"resume_from={checkpoints['good']}", "epochs=5", "replicas=2")
    assert "config key 'resume_from'" in line and "replica 0's checkpoint" in line


# ------------------------------------------------------------------------------ sweeps
def _write_sweep(folder: Path, **spec) -> Path:
    path = folder / "tiny.yaml"
    spec = {"experiment": "student_teacher", "base": {"epochs": 2, "n_particles": 10, "n_train": 100,
            "n_valid": 100, "batch_size": 50}, "seeds": [1, 2], **spec}  # fmt: skip
    path.write_text(yaml.safe_dump(spec))
    return path


def test_sweep_observer_under_a_plain_file_is_refused(tmp_path, capsys):
    (tmp_path / "plain").write_text("a file")
    path = _write_sweep(tmp_path, observer=str(tmp_path / "plain" / "runs"))
    for command in (["run", path, "--index", 0], ["status", path], ["count", path]):
        assert sw.main([str(a) for a in command]) == sw.EXIT_INVALID
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "observer" in err and "not a directory" in err, err


def test_sweep_misspelled_key_is_reported_once_with_the_tasks_it_affects(tmp_path, capsys):
    path = _write_sweep(tmp_path, observer=str(tmp_path / "runs"), grid={"lrr": [0.1, 0.2]})
    assert sw.main(["check", str(path)]) == sw.EXIT_INVALID
    err = capsys.readouterr().err
    assert err.count("unknown config key 'lrr'") == 1 and err.count("known keys:") == 1, err
    assert "indices 0-3 (lrr=0.1, seed=1, ...)" in err and "4 of 4 configs are invalid" in err, err


@pytest.mark.parametrize("command", [["check"], ["submit", "--backend", "local"], ["run", "--index", "0"]])
@pytest.mark.parametrize("grid, key", [({"d_in": [5, 10**12]}, "d_in"), ({"threads": [1, 10**12]}, "threads"),
                                       ({"resume_from": [None, "''"]}, "resume_from")])  # fmt: skip
def test_sweep_runs_the_scripts_checks_before_any_task_starts(tmp_path, capsys, command, grid, key):
    """Regression: check passed a task that cannot fit in memory, and submit ran task 0 before refusing task 1."""
    grid = {name: ["" if value == "''" else value for value in values] for name, values in grid.items()}
    path = _write_sweep(tmp_path, observer=str(tmp_path / "runs"), grid=grid, seeds=[1])
    assert sw.main([command[0], str(path), *command[1:]]) == sw.EXIT_INVALID
    err = capsys.readouterr().err
    assert f"index 1 ({key}=" in err and f"config key '{key}'" in err and "allowed:" in err, err
    assert "index 0" not in err and not (tmp_path / "runs").exists(), "no task ran"


def test_sweep_batch_past_the_last_task_is_refused_saying_how_many_tasks(tmp_path, capsys):
    path = _write_sweep(tmp_path, observer=str(tmp_path / "runs"))
    assert sw.main(["run", str(path), "--index", "1", "--batch", "3"]) == sw.EXIT_INVALID
    err = capsys.readouterr().err
    assert "has 2 tasks" in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------ real processes
PROCESS_CASES = [
    pytest.param([TRAIN, "with", *TINY, "lr=abc"], "config key 'lr'", id="wrong-type"),
    pytest.param([FLOWS, "with", *TINY_FLOW, "replicas=2", "bandwidth=-1.0"], "config key 'bandwidth'",
                 id="out-of-range-with-replicas"),
    pytest.param([TRAIN, "with", "resume_from={corrupt}", "epochs=5"], "config key 'resume_from'", id="corrupt-resume"),
    pytest.param([FLOWS, "with", "n_particles=10000000000000"], "config key 'n_particles'", id="memory"),
    pytest.param([FLOWS, "-s", "sqlite:///x.db"], "-s:", id="sql-flag"),
    # issue 31: each refused in one line that names the key and what is allowed
    *[pytest.param([script, "with", *tiny, "replicas=2", "threads=1000000000000"],
                   "config key 'threads': got 1000000000000; allowed: 'auto' or an integer >= 1 and <= 1024",
                   id=f"threads-{script.stem}")
      for script, tiny in ((TRAIN, TINY), (FLOWS, TINY_FLOW), (DMMD, TINY_DMMD))],
    *[pytest.param([TRAIN, "with", *TINY, f"{key}={value}"], f"config key '{key}': got {value}; allowed: a value "
                   "whose tensors fit the cpu memory", id=f"memory-{key}")
      for key, value in (("n_teacher", 10**12), ("d_in", 10**10), ("hidden", 10**10), ("d_out", 10**10))],
    pytest.param([FLOWS, "with", *TINY_FLOW, "target=gaussian_nd", "dim=10000000000"],
                 "config key 'dim': got 10000000000; allowed: a value whose tensors fit the cpu memory",
                 id="memory-dim"),
    *[pytest.param([FLOWS, "with", *TINY_FLOW, f"resume_from={{{name}}}"], "config key 'resume_from': got '{%s}'; "
                   "allowed: a checkpoint written by the particle_flow experiment (%s" % (name, problem),
                   id=f"flow-resume-{name}")
      for name, problem in (("empty", "the file is empty"), ("corrupt", "it cannot be read, truncated or corrupt"),
                            ("truncated", "it cannot be read, truncated or corrupt"),
                            ("good", "it holds no checkpoint with the keys step, particles"))],
    pytest.param([FLOWS, "with", *TINY_FLOW, "flow=[1]"], "config key 'flow': got [1]; allowed: one of 'mmd', 'mmd_noise'",
                 id="flow-list"),
    pytest.param([TRAIN, "with", *TINY, "resume_from=''"], "config key 'resume_from': got ''; allowed: a checkpoint "
                 "written by the student_teacher experiment (no such file)", id="resume-from-empty-string"),
]


@pytest.mark.parametrize("argv, named", PROCESS_CASES)
def test_representatives_through_a_real_process(tmp_path, checkpoints, argv, named):
    argv = [str(arg).format(**checkpoints) for arg in argv]
    named = named.format(**checkpoints)
    store = tmp_path / "store"
    done = subprocess.run([sys.executable, *argv, "-F", str(store)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and named in lines[0], done.stderr
    assert not store.exists()


def test_sweep_representative_through_a_real_process(tmp_path):
    (tmp_path / "plain").write_text("a file")
    path = _write_sweep(tmp_path, observer=str(tmp_path / "plain" / "runs"))
    done = subprocess.run([sys.executable, "-m", "studentteacher.sweep", "run", str(path), "--index", "0"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "not a directory" in lines[0], done.stderr
