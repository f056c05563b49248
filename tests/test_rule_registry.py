"""A new update rule is one class (with the options it declares) and one config key per option.

The toy rule here is registered for one test at a time and runs end to end through the Sacred
experiment ``experiments/train.py``, in this process (the registry is a Python dict).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import import_script

from studentteacher import config
from studentteacher.networks import forward, surrogate_grad
from studentteacher.updates import RULES, UpdateRule, descend

TRAIN = str(Path(__file__).resolve().parents[1] / "experiments" / "train.py")
TINY = dict(epochs=3, n_particles=20, n_train=100, n_valid=50, batch_size=50, log_every=1, seed=7, dtype="float64")


class ScaledGradientDescent(UpdateRule):
    """theta <- theta - s gamma grad S with rho = r (s = ``toy_step_scale``); s = 1/2 is the sgd rule."""

    name = "toy_scaled_gd"
    options = ("toy_step_scale",)

    def __init__(self, arch, toy_step_scale: float = 1.0):
        super().__init__(arch)
        self.scale = toy_step_scale

    def step(self, params, x, y, hyper, noise=None):
        fwd = forward(self.arch, params, x)
        grads = surrogate_grad(self.arch, params, x, fwd, fwd.mean() - y)
        return descend(params, grads, self.scale * hyper.lr), self.objective(fwd.mean(), y, hyper.lmbda)


@pytest.fixture
def toy_rule(monkeypatch):
    """Register the toy rule and its config key (undone after the test)."""
    monkeypatch.setitem(RULES, ScaledGradientDescent.name, ScaledGradientDescent)
    monkeypatch.setitem(config.SPEC, "toy_step_scale", config.Key(1.0, float, minimum=0.0, help="toy step factor"))
    monkeypatch.setitem(config.DEFAULTS, "toy_step_scale", 1.0)
    return ScaledGradientDescent


def test_method_validation_reads_the_registry(toy_rule):
    assert config.validate({"method": toy_rule.name})["method"] == toy_rule.name
    with pytest.raises(config.ConfigError, match=r"'method': got 'adam'; allowed: one of 'sgd', .*'toy_scaled_gd'"):
        config.validate({"method": "adam"})


def test_method_validation_forgets_an_unregistered_rule():
    with pytest.raises(config.ConfigError, match=r"'method': got 'toy_scaled_gd'"):
        config.validate({"method": "toy_scaled_gd"})


def run_experiment(folder: Path, **updates) -> Path:
    """One in-process run of the Sacred experiment, stored by a FileStorageObserver in ``folder``."""
    train = import_script(TRAIN, "train_experiment_registry")  # imported now: its defaults include toy keys
    train.ex.run(config_updates=dict(TINY, **updates), options={"--file_storage": str(folder)})
    (run_dir,) = [path for path in folder.iterdir() if path.name.isdigit()]
    return run_dir


def load(run_dir: Path, name: str):
    with open(run_dir / name) as handle:
        return json.load(handle)


def test_a_registered_rule_runs_through_the_experiment(tmp_path, toy_rule):
    toy_dir = run_experiment(tmp_path / "toy", method=toy_rule.name, toy_step_scale=0.5)
    run = load(toy_dir, "run.json")
    assert run["status"] == "COMPLETED" and set(run["result"]) == {"valid_mmd2", "best_valid_mmd2"}
    assert load(toy_dir, "config.json")["toy_step_scale"] == 0.5
    metrics = load(toy_dir, "metrics.json")
    assert set(metrics) == {"train_mmd2", "valid_mmd2", "loss", "noise_level", "lmbda", "epoch_seconds"}
    assert metrics["train_mmd2"]["steps"] == [0, 1, 2, 3]
    # scale 1/2 with rho = r takes the sgd rule's steps (rho = r/2), so the option reached the rule
    sgd = load(run_experiment(tmp_path / "sgd", method="sgd"), "metrics.json")
    for name in ("train_mmd2", "valid_mmd2", "loss"):
        assert metrics[name]["values"] == pytest.approx(sgd[name]["values"], rel=1e-9), name
    assert metrics["train_mmd2"]["values"][-1] < metrics["train_mmd2"]["values"][0]
