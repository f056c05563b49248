"""The GPU path: float64 on CUDA follows the CPU run of the same seed. Skips without CUDA."""
from __future__ import annotations

import pytest
import torch

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
