"""The Sacred experiment dmmd, run through its real command line: a tiny run completes with its
metrics and artifacts, a second run samples from the first one's saved discriminator, bad input is
refused before any run directory exists, replicas run one seed after the other, a stop signal ends
a run INTERRUPTED with its artifacts (the whole grid of bad keys: tests/test_bad_input.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from studentteacher.config import ConfigError
from studentteacher.dmmd import validate_dmmd_config

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "dmmd.py"
TINY = ["target=mog", "n_train=200", "n_eval=100", "hidden=16", "features=8", "embedding=4", "train_steps=6",
        "batch_size=16", "log_every=3", "levels=2", "steps_per_level=3", "n_particles=40", "device=cpu", "seed=4"]
LEVELS = {f"disc_mmd2_t{t:.2f}" for t in (0.1, 0.3, 0.5, 0.7, 0.9)}
SAMPLING = {"noise_level", "sample_w1", "sample_w2", "sample_mmd2", "train_seconds_per_step", "sample_seconds",
            "recording_seconds", "sample_w1_floor", "sample_w2_floor", "sample_mmd2_floor", "feature_variance_top1",
            "feature_variance_top2", "feature_variance_top3"}  # fmt: skip
ARTIFACTS = {"discriminator.pt", "samples.npz", "samples.png", "sampling.gif"}


def _run(tmp_path, *updates, runs="runs"):
    command = [sys.executable, str(SCRIPT), "with", *updates, "-F", str(tmp_path / runs)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment)


def _read(run_directory: Path, name: str):
    return json.loads((run_directory / name).read_text())


def test_tiny_run_completes_then_samples_again_from_its_saved_discriminator(tmp_path):
    done = _run(tmp_path, *TINY)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "runs" / "1"
    info = _read(run, "run.json")
    assert info["status"] == "COMPLETED"
    assert SAMPLING - {"noise_level"} <= set(info["result"])
    metrics = _read(run, "metrics.json")
    assert set(metrics) == {"loss"} | LEVELS | SAMPLING
    assert metrics["loss"]["steps"] == [3, 6] and metrics["sample_w1"]["steps"] == [0, 3, 6]
    assert metrics["noise_level"]["values"] == [1.0, 1.0, 0.01], "levels from 1 down to t_min"
    assert metrics["sample_w1_floor"]["steps"] == [6] and 0 < metrics["sample_w1_floor"]["values"][0] < 1
    assert metrics["recording_seconds"]["values"] == [0.0], "the interacting sampler records nothing"
    shares = [metrics[f"feature_variance_top{k}"]["values"][0] for k in (1, 2, 3)]
    assert 0 < shares[0] <= shares[1] <= shares[2] <= 1
    assert ARTIFACTS <= set(info["artifacts"])
    for name in ARTIFACTS:
        assert (run / name).stat().st_size > 0, name
    saved = np.load(run / "samples.npz")
    assert saved["snapshots"].shape == (3, 40, 2) and saved["losses"].shape == (6,)

    again = _run(tmp_path, *TINY, f"discriminator_from={run / 'discriminator.pt'}", "train_steps=500", runs="again")
    assert again.returncode == 0, again.stderr
    second = tmp_path / "again" / "1"
    assert _read(second, "run.json")["status"] == "COMPLETED"
    assert "loss" not in _read(second, "metrics.json"), "a loaded discriminator is not trained"
    np.testing.assert_allclose(np.load(second / "samples.npz")["particles"], saved["particles"], rtol=1e-6, atol=1e-6)
    with pytest.raises(ConfigError, match="config key 'target'.*'mog'"):  # the saved one fixes its target
        validate_dmmd_config({"target": "swiss_roll", "discriminator_from": str(run / "discriminator.pt")})


@pytest.mark.parametrize(
    "update, key",
    [("kernel=poly", "kernel"), ("discriminator_from=/no/such/discriminator.pt", "discriminator_from"),
     pytest.param("batch_size=30", "batch_size", marks=pytest.mark.slow),
     pytest.param("sampler=langevin", "sampler", marks=pytest.mark.slow)],
)  # fmt: skip
def test_bad_config_is_refused_before_any_run_directory(tmp_path, update, key):
    done = _run(tmp_path, *TINY, update)
    assert done.returncode != 0
    assert f"config key '{key}'" in done.stderr
    assert not (tmp_path / "runs").exists(), "no run may be started for a bad config"


def test_the_approximate_sampler_replays_a_recorded_interacting_run(tmp_path):
    done = _run(tmp_path, *TINY, "sampler=approximate", "reference_particles=30")
    assert done.returncode == 0, done.stderr
    run = tmp_path / "runs" / "1"
    info = _read(run, "run.json")
    assert info["status"] == "COMPLETED" and info["result"]["recording_seconds"] > 0
    assert np.load(run / "samples.npz")["particles"].shape == (40, 2), "n_particles, not reference_particles"


def test_a_diverging_run_fails_naming_why_and_logs_only_finite_values(tmp_path):
    done = _run(tmp_path, *TINY, "step_size=1e15")
    assert done.returncode != 0
    run = tmp_path / "runs" / "1"
    info = _read(run, "run.json")
    assert info["status"] == "FAILED" and "diverged" in info["fail_trace"][-1], info["fail_trace"][-1]
    metrics = _read(run, "metrics.json")
    values = [value for metric in metrics.values() for value in metric["values"]]
    assert values and all(np.isfinite(values)), "no NaN or inf in metrics.json"
    assert "sample_w1" in metrics and "sample_w1_floor" not in metrics, "logged up to the divergence"
    assert "held_out" in np.load(run / "samples.npz")


@pytest.mark.parametrize("update, key", [("batch_size=1000000000000", "batch_size"),
                                         ("embedding=1000000000000", "embedding"),
                                         ("features=1000000000000", "features"), ("hidden=10000000", "hidden"),
                                         ("reference_particles=1000000000000", "reference_particles")])  # fmt: skip
def test_sizes_that_cannot_fit_in_memory_are_refused_naming_the_key_that_made_them(tmp_path, update, key):
    updates = [u for u in TINY if not u.startswith(update.split("=")[0] + "=")] + [update, "sampler=approximate"]
    done = _run(tmp_path, *updates)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"config key '{key}'" in lines[0] and "memory" in lines[0], done.stderr
    assert not (tmp_path / "runs").exists(), "no run may be started"


def test_a_dmmd_sweep_validates_and_runs_a_batch_of_seeds_one_after_the_other(tmp_path):
    from studentteacher import sweep

    updates = dict(update.split("=") for update in TINY if not update.startswith("seed="))
    base = ", ".join(f"{key}: {value}" for key, value in updates.items())
    path = tmp_path / "tiny.yaml"
    path.write_text(f"experiment: dmmd\nbase: {{{base}}}\nseeds: [1, 2]\nobserver: {tmp_path / 'runs'}\n")
    loaded = sweep.load(path)
    assert len(sweep.validate(loaded)) == 2
    outcomes = sweep.run_batch(loaded, [0, 1])
    assert [(index, state) for index, state, _ in outcomes] == [(0, "COMPLETED"), (1, "COMPLETED")]
    assert [s.state for s in sweep.status(loaded)] == ["completed", "completed"]


def test_replicas_run_one_seed_after_the_other_each_its_own_run(tmp_path):
    done = _run(tmp_path, *[u for u in TINY if not u.startswith("seed=")], "seed=7", "replicas=2")
    assert done.returncode == 0, done.stderr
    assert "replicas: COMPLETED, COMPLETED" in done.stderr
    seeds = []
    for name in ("1", "2"):
        run = tmp_path / "runs" / name
        assert _read(run, "run.json")["status"] == "COMPLETED" and (run / "samples.npz").is_file()
        info = _read(run, "info.json")
        assert "batch_checkpoints" not in info, "a dmmd run writes no checkpoint"
        seeds.append((_read(run, "config.json")["seed"], info["replica"]["index"]))
    assert sorted(seeds) == [(7, 0), (8, 1)]


def test_a_stop_signal_ends_the_run_interrupted_with_its_artifacts(tmp_path):
    import signal
    import time

    updates = [u for u in TINY if not u.startswith(("train_steps=", "log_every="))]
    updates += ["train_steps=1000000", "log_every=5"]
    command = [sys.executable, str(SCRIPT), "with", *updates, "-F", str(tmp_path / "runs")]
    process = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    for line in process.stderr:
        if "Started run" in line:
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 3, rest
    run = tmp_path / "runs" / "1"
    info = _read(run, "run.json")
    assert info["status"] == "INTERRUPTED" and {"discriminator.pt", "samples.npz"} <= set(info["artifacts"])
    assert "held_out" in np.load(run / "samples.npz") and "stopped on request at training step" in rest
