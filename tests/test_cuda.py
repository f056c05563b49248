"""The GPU path: float64 on CUDA follows the CPU run of the same seed (training and 2-D flows). Skips without CUDA."""
from __future__ import annotations

import pytest
import torch

from studentteacher import flows, toys
from studentteacher.kernels import get_kernel
from studentteacher.training import Trainer

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

SMALL = dict(n_particles=64, n_train=200, n_valid=100, batch_size=50, epochs=5, log_every=1, seed=5, dtype="float64")


@pytest.mark.parametrize(
    "options",
    [dict(method="sgd"), dict(method="ksd"), dict(method="drmmd"), dict(method="drmmd", adaptive_lmbda=True),
     dict(method="sgd", readout="dense"), dict(method="noise_injection", noise_level=0.0),
     dict(method="diffusion", noise_level=0.0, bias=True)],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_float64_gpu_run_matches_cpu(options):
    cpu = Trainer(dict(SMALL, device="cpu", **options))
    gpu = Trainer(dict(SMALL, device="cuda", **options))
    cpu.run(), gpu.run()
    for name in ("train_mmd2", "valid_mmd2", "loss", "lmbda"):
        torch.testing.assert_close(torch.tensor(gpu.history[name]), torch.tensor(cpu.history[name]), rtol=1e-9, atol=1e-12)
    assert all(p.device.type == "cuda" for p in gpu.params.values())


def test_noise_rules_run_on_gpu_and_learn():
    trainer = Trainer(dict(SMALL, dtype="float32", device="cuda", method="noise_injection", epochs=20, log_every=20))
    trainer.run()
    assert trainer.history["train_mmd2"][-1] < trainer.history["train_mmd2"][0]


def test_tf32_only_when_the_config_asks():
    torch.backends.cuda.matmul.allow_tf32 = True  # whatever a previous user of the process left
    Trainer(dict(SMALL, device="cuda", dtype="float32"))
    assert torch.backends.cuda.matmul.allow_tf32 is False
    Trainer(dict(SMALL, device="cuda", dtype="float32", allow_tf32=True))
    assert torch.backends.cuda.matmul.allow_tf32 is True
    torch.backends.cuda.matmul.allow_tf32 = False


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_gpu_step_matches_the_eager_cpu_run(mode):
    """torch.compile of the step on CUDA (reduce-overhead: CUDA graphs) takes the CPU run's steps, float64."""
    options = dict(SMALL, method="noise_injection", noise_level=0.5)
    cpu = Trainer(dict(options, device="cpu"))
    gpu = Trainer(dict(options, device="cuda", compile=mode))
    cpu.run(), gpu.run()
    for name in ("train_mmd2", "valid_mmd2", "loss"):
        torch.testing.assert_close(torch.tensor(gpu.history[name]), torch.tensor(cpu.history[name]), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("flow_name", ["mmd_noise", "drmmd", "drmmd_adaptive", "kale"])
def test_float64_gpu_flow_matches_cpu(flow_name):
    trajectories = {}
    for device in ("cpu", "cuda"):
        toy = toys.make_toy("three_rings", 30, 30, seed=0, dtype=torch.float64, device=device)
        flow = flows.make_flow(flow_name, toy.target, get_kernel("gaussian", 0.15), 1e-3 if flow_name == "kale" else 0.1,
                               0.01, noise_level=0.1, noise_until=5)  # fmt: skip
        trajectories[device] = flows.run_flow(flow, toy.source, 20, reference_bandwidth=0.15, log_every=5,
                                              snapshot_every=20, generator=toys.generators(0, 3)[2])  # fmt: skip
    assert trajectories["cuda"].particles.device.type == "cuda"
    torch.testing.assert_close(trajectories["cuda"].particles.cpu(), trajectories["cpu"].particles, rtol=0, atol=1e-10)
    for name, values in trajectories["cpu"].metrics().items():
        torch.testing.assert_close(trajectories["cuda"].metrics()[name], values, rtol=1e-8, atol=1e-12)
