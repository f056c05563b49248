"""The flow registry (studentteacher.flows.FLOWS): names, declared options, and a new flow added by
one class and one registry entry, run end to end through the Sacred experiment particle_flow."""
import inspect
import json
from pathlib import Path

import pytest
import torch
from conftest import import_script

from studentteacher import flows, kernels, toys

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "flows2d.py"
KERNEL = kernels.get_kernel("gaussian", 0.15)


class TargetAttraction(flows.KernelFlow):
    """A toy flow: phi(z) = -lambda mean_m k(z, x_m), so each particle climbs the target's kernel
    density (no interaction between particles); value -lambda mean(K_XY), gamma_n = ``step``."""

    name = "attraction"
    options = ("lmbda",)

    def __init__(self, target, kernel, step_size, lmbda, budget_bytes=None):
        super().__init__(target, kernel, step_size, budget_bytes)
        self.lmbda = torch.as_tensor(lmbda, dtype=torch.float64).expand(target.shape[:-2])  # (...)

    def first_variation(self, particles):
        a, _ = self.moments(particles)  # (..., M)
        scale = self.lmbda.to(a.dtype)[..., None]  # (..., 1)
        weights_y = torch.zeros(particles.shape[:-1], dtype=a.dtype, device=a.device)  # (..., N)
        weights_x = -scale / a.shape[-1] * torch.ones_like(a)  # (..., M)
        return flows.FirstVariation(-(scale * a).mean(-1), weights_y, weights_x, self.lmbda, self.step)


@pytest.fixture
def registered(monkeypatch):
    """The toy flow in the registry for one test (the registry line a new flow adds)."""
    monkeypatch.setitem(flows.FLOWS, TargetAttraction.name, TargetAttraction)


def test_registry_names_match_the_classes_and_the_config_names():
    assert list(flows.FLOWS) == ["mmd", "mmd_noise", "drmmd", "drmmd_adaptive", "kale", "mmd_adaptive_bandwidth",
                                 "srmmd", "hrmmd"]
    for name, cls in flows.FLOWS.items():
        assert cls.name == name and issubclass(cls, flows.KernelFlow)


@pytest.mark.parametrize("name", list(flows.FLOWS))
def test_each_flow_declares_exactly_the_options_its_constructor_takes(name):
    cls = flows.FLOWS[name]
    parameters = list(inspect.signature(cls.__init__).parameters)
    assert parameters[:4] == ["self", "target", "kernel", "step_size"] and parameters[-1] == "budget_bytes"
    assert parameters[4:-1] == list(cls.options), name


def test_unknown_flow_name_is_refused_listing_the_valid_names():
    toy = toys.make_toy("three_rings", 6, 6, seed=0)
    for build in (lambda: flows.build_flow("sgd", toy.target, KERNEL, 0.1),
                  lambda: flows.make_flow("sgd", toy.target, KERNEL, 0.1, 1e-3)):  # fmt: skip
        with pytest.raises(ValueError, match="'sgd'") as caught:
            build()
        assert all(repr(name) in str(caught.value) for name in flows.FLOWS), str(caught.value)
    config = dict(target="three_rings", flow="sgd", kernel="gaussian", bandwidth=0.15, n_particles=6, n_target=6,
                  steps=1, step_size=0.1, lmbda=1e-3, noise_level=0.0, noise_until=0, dtype="float64", device="cpu",
                  log_every=1, snapshot_every=1, replicas=1, seed=0)  # fmt: skip
    with pytest.raises(ValueError, match="config key 'flow'.*'kale'"):
        flows.validate_flow_config(config)


@pytest.mark.parametrize(
    "name, options, bad, valid",
    [("mmd", {"noise_level": 1.0}, "'noise_level'", "[]"),
     ("drmmd", {"lmbda": 0.1, "noise_until": 3}, "'noise_until'", "['lmbda', 'solver']"),
     ("kale", {"lmbda": 0.1, "tol": 1e-8}, "'tol'", "['lmbda', 'kale_tol', 'max_newton']"),
     ("mmd_noise", {"lmbda": 0.1, "noise_level": 1.0}, "'lmbda'", "['noise_level', 'noise_until']"),
     ("srmmd", {"lmbda": 0.1, "hrmmd_alpha": 0.5}, "'hrmmd_alpha'", "['lmbda', 'velocity', 'linear_solver', 'cg_tol']")],
)  # fmt: skip
def test_unknown_or_unused_option_is_refused_listing_the_valid_options(name, options, bad, valid):
    toy = toys.make_toy("three_rings", 6, 6, seed=0)
    with pytest.raises(ValueError) as caught:
        flows.build_flow(name, toy.target, KERNEL, 0.1, **options)
    message = str(caught.value)
    assert repr(name) in message and bad in message and valid in message, message


def test_make_flow_passes_each_flow_only_the_config_values_it_declares(registered):
    toy = toys.make_toy("three_rings", 6, 6, seed=0)
    flow = flows.make_flow("attraction", toy.target, KERNEL, 0.1, 0.5, noise_level=2.0, noise_until=4)
    assert isinstance(flow, TargetAttraction) and float(flow.lmbda) == 0.5
    assert type(flows.make_flow("mmd", toy.target, KERNEL, 0.1, 0.5, noise_level=2.0)) is flows.MMDFlow


def _read(run_directory: Path, name: str):
    return json.loads((run_directory / name).read_text())


def test_a_new_flow_registered_in_one_line_runs_through_the_experiment(tmp_path, registered):
    experiment = import_script(SCRIPT, "flows2d_registry_experiment")
    updates = dict(flow="attraction", n_particles=30, n_target=30, steps=10, step_size=1e-3, lmbda=0.5,
                   log_every=5, snapshot_every=5, seed=2, device="cpu")  # fmt: skip
    run = experiment.ex.run(config_updates=updates, options={"--file_storage": str(tmp_path), "--capture": "no"})
    assert run.status == "COMPLETED"
    directory = tmp_path / str(run._id)
    assert _read(directory, "run.json")["status"] == "COMPLETED"
    assert _read(directory, "config.json")["flow"] == "attraction"
    metrics = _read(directory, "metrics.json")
    held_out_scores = {f"sample_{name}{suffix}" for name in ("w1", "w2", "mmd2") for suffix in ("", "_floor")}
    assert set(metrics) == set(flows.METRICS) | held_out_scores  # the three rings have an exact sampler
    assert metrics["w1"]["steps"] == [0, 5, 10]
    assert metrics["lmbda"]["values"] == [0.5, 0.5, 0.5] and metrics["step_size"]["values"] == [1e-3] * 3
    divergence = metrics["divergence"]["values"]
    assert divergence[-1] < divergence[0], "the particles must climb the target's density"
    assert {"trajectory.npz", "snapshots.png", "flow.gif"} <= set(_read(directory, "run.json")["artifacts"])
