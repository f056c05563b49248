"""The epoch loop: schedules, reproducibility, divergence, checkpoints, config validation."""
from __future__ import annotations

import math
import os

import pytest
import torch

from studentteacher.config import ConfigError, validate
from studentteacher.training import BatchedTrainer, Trainer, TrainingDiverged, TrainingInterrupted, noise_at

SMALL = dict(n_particles=20, n_train=200, n_valid=100, batch_size=50, epochs=4, log_every=1, seed=3)


def metrics_of(trainer):
    return {k: v for k, v in trainer.history.items() if k != "epoch_seconds"}


def test_noise_schedule_halves_every_interval():
    cfg = validate(dict(noise_level=1.0, noise_decay=0.5, noise_decay_every=1000))
    assert [noise_at(cfg, e) for e in (0, 999, 1000, 2500)] == [1.0, 1.0, 0.5, 0.25]


def test_noise_decay_one_keeps_a_fixed_noise_level():
    # the camera-ready MMD-flow paper runs diffusion with a fixed beta: noise_decay = 1.0
    cfg = validate(dict(noise_level=0.01, noise_decay=1.0, noise_decay_every=1))
    assert [noise_at(cfg, e) for e in (0, 1, 999, 10_000)] == [0.01] * 4
    trainer = Trainer(dict(SMALL, method="diffusion", noise_level=0.01, noise_decay=1.0, noise_decay_every=1, epochs=3,
                           log_every=1))  # fmt: skip
    trainer.run()
    assert trainer.history["noise_level"] == [0.01] * 4


def test_same_seed_same_bits_and_dataset_independent_of_student_size():
    first, second = Trainer(dict(SMALL)), Trainer(dict(SMALL))
    first.run(), second.run()
    assert metrics_of(first) == metrics_of(second)
    for key in first.params:
        assert torch.equal(first.params[key], second.params[key])
    bigger = Trainer(dict(SMALL, n_particles=40))
    assert torch.equal(bigger.train_set.x, first.train_set.x) and torch.equal(bigger.valid_set.y, first.valid_set.y)
    assert not torch.equal(Trainer(dict(SMALL, seed=4)).train_set.x, first.train_set.x)


def test_metrics_logged_at_zero_every_interval_and_last_epoch():
    trainer = Trainer(dict(SMALL, epochs=7, log_every=3))
    result = trainer.run()
    assert trainer.history["epoch"] == [0.0, 3.0, 6.0, 7.0]
    assert set(trainer.history) == {"epoch", "train_mmd2", "valid_mmd2", "loss", "noise_level", "lmbda", "epoch_seconds"}
    assert result == {"valid_mmd2": trainer.history["valid_mmd2"][-1], "best_valid_mmd2": min(trainer.history["valid_mmd2"])}


def test_sgd_lowers_the_training_error():
    trainer = Trainer(dict(SMALL, n_particles=100, epochs=60, log_every=60, lr=0.5))
    trainer.run()
    assert trainer.history["train_mmd2"][-1] < 0.85 * trainer.history["train_mmd2"][0]


def test_adaptive_lambda_follows_drmmd_and_lr_follows_lambda():
    cfg = dict(SMALL, method="drmmd", adaptive_lmbda=True, lmbda=0.5, lr=0.2, dtype="float64", epochs=1)
    trainer = Trainer(cfg)
    trainer.run()
    start = trainer.drmmd_start
    from studentteacher.divergences import st_drmmd
    from studentteacher.networks import output

    drmmd_now = st_drmmd(output(trainer.arch, trainer.params, trainer.train_set.x), trainer.train_set.y, 0.5)
    expected = 0.5 * math.sqrt(float(drmmd_now / start))
    assert float(trainer.lmbda) == pytest.approx(expected, rel=1e-12)
    assert float(trainer.lr()) == pytest.approx(max(0.2 * expected / 0.5, 1e-4), rel=1e-12)
    assert trainer.history["lmbda"] == [0.5, pytest.approx(expected, rel=1e-12)]


def test_divergence_names_epoch_and_quantity_and_keeps_history():
    trainer = Trainer(dict(SMALL, epochs=3))
    trainer.run()
    logged = list(trainer.history["train_mmd2"])
    dict.update(trainer.config, lr=1e30, epochs=6)  # past the validated config's freeze: the run goes on diverging
    with pytest.raises(TrainingDiverged, match=r"non-finite (loss|particles) at epoch 4"):
        trainer.run()
    assert trainer.history["train_mmd2"] == logged


def checkpoint_at(cfg: dict, epoch: int, folder) -> str:
    """The checkpoint a run of ``cfg`` writes when stopped after ``epoch`` epochs (its path)."""
    path = str(folder / "ckpt.pt")
    stopped = Trainer(dict(cfg))
    with pytest.raises(TrainingInterrupted):
        stopped.run(should_stop=lambda: stopped.epoch == epoch, checkpoint_path=path)
    return path


def test_checkpoint_and_resume_continue_identically(tmp_path):
    cfg = dict(SMALL, epochs=6, dtype="float64", method="noise_injection")
    straight = Trainer(dict(cfg))
    straight.run()
    path = checkpoint_at(cfg, 3, tmp_path)
    resumed = Trainer(dict(cfg, resume_from=path))
    assert resumed.epoch == 3
    resumed.run()
    for name in ("train_mmd2", "valid_mmd2", "loss", "noise_level"):
        assert resumed.history[name] == straight.history[name][-3:], name
    with pytest.raises(ConfigError, match="config key 'lr'.*checkpoint"):
        Trainer(dict(cfg, lr=0.2, resume_from=path))


def test_a_checkpoint_written_before_a_key_was_added_resumes_with_the_keys_default(tmp_path):
    # hrmmd_alpha came after the long runs' checkpoints were written: their configs lack it
    cfg = dict(SMALL, epochs=4, dtype="float64")
    straight = Trainer(dict(cfg))
    straight.run()
    path = checkpoint_at(cfg, 2, tmp_path)
    state = torch.load(path, weights_only=False)
    del state["config"]["hrmmd_alpha"]
    torch.save(state, path)
    resumed = Trainer(dict(cfg, resume_from=path))
    resumed.run()
    assert resumed.history["valid_mmd2"] == straight.history["valid_mmd2"][-2:]
    with pytest.raises(ConfigError, match="config key 'hrmmd_alpha': got 0.5, but the checkpoint .* written with 0.8"):
        Trainer(dict(cfg, hrmmd_alpha=0.5, resume_from=path))


@pytest.mark.parametrize(
    "update,message",
    [
        ({"methd": "sgd"}, r"unknown config key 'methd' \(did you mean 'method'\?\)"),
        ({"optim": {"lr": 0.1}}, r"unknown config key 'optim'"),
        ({"method": "adam"}, r"'method': got 'adam'; allowed: one of 'sgd', 'noise_injection', 'diffusion', 'ksd', 'drmmd'"),
        ({"readout": "mean"}, r"'readout': got 'mean'; allowed: one of 'particle', 'dense'"),
        ({"lr": -0.1}, r"'lr': got -0.1; allowed: a number > 0.0"),
        ({"lmbda": 0.0}, r"'lmbda': got 0.0; allowed: a number > 0.0"),
        ({"noise_level": -1.0}, r"'noise_level': got -1.0; allowed: a number >= 0.0"),
        ({"n_particles": 0}, r"'n_particles': got 0; allowed: a number >= 1"),
        ({"n_particles": "many"}, r"'n_particles': got 'many'; allowed: a value of type int"),
        ({"batch_size": 2000}, r"'batch_size': got 2000; allowed: an integer <= n_train = 1000"),
        ({"dtype": "int32"}, r"'dtype': got 'int32'; allowed: one of 'float32', 'float64'"),
        ({"device": "tpu"}, r"'device': got 'tpu'; allowed: 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        ({"bias": "yes"}, r"'bias': got 'yes'; allowed: a value of type bool"),
        ({"replicas": 0}, r"'replicas': got 0; allowed: a number >= 1"),
        ({"allow_tf32": "true"}, r"'allow_tf32': got 'true'; allowed: a value of type bool"),
        ({"compile": "max"}, r"'compile': got 'max'; allowed: one of 'off', 'default', 'reduce-overhead'"),
        ({"compile": "default", "replicas": 4}, r"'compile': got 'default'; allowed: 'off' when replicas > 1"),
    ],
)
def test_bad_config_names_the_key(update, message):
    with pytest.raises(ConfigError, match=message):
        validate(update)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_without_cuda_is_rejected():
    with pytest.raises(ConfigError, match=r"'device': got 'cuda'.*no CUDA device"):
        validate({"device": "cuda"})


def test_compiled_step_takes_the_same_steps():
    """compile='default' (torch.compile of the rule's step, CPU here) against the eager step, float64;
    the noise rule checks that the noise draws (outside the compiled step) stay in their order."""
    config = dict(n_particles=20, n_train=100, n_valid=50, batch_size=50, epochs=3, log_every=1, dtype="float64",
                  seed=1, device="cpu", method="noise_injection", noise_level=0.5)
    eager, compiled = Trainer(config), Trainer(dict(config, compile="default"))
    eager.run(), compiled.run()
    for name in ("train_mmd2", "valid_mmd2", "loss"):
        assert compiled.history[name] == pytest.approx(eager.history[name], rel=1e-12, abs=1e-15), name
    for key, value in eager.params.items():
        torch.testing.assert_close(compiled.params[key], value, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------- run-away runs and full disks
def test_runaway_student_is_reported_completed_no_more():
    """Regression (a huge step throws the weights far out, the quadexp features saturate at 0 and the
    weights freeze: every value stays finite and the run used to complete); now it fails naming the
    epoch and the measure."""
    trainer = Trainer(dict(SMALL, lr=1e8, dtype="float64"))
    with pytest.raises(TrainingDiverged, match=r"run-away particles at epoch 1: RMS weight 5\.79\de\+04 > 10000 x"):
        trainer.run()
    assert trainer.history["epoch"] == [0.0]


def test_a_runaway_replica_fails_alone():
    configs = [dict(SMALL, lr=lr, seed=seed, dtype="float64") for seed, lr in ((3, 0.1), (4, 1e8), (5, 0.1))]
    failures = {}
    results = BatchedTrainer(configs).run(on_failure=lambda r, error: failures.setdefault(r, str(error)))
    assert list(failures) == [1] and "run-away particles at epoch 1" in failures[1] and "replica 1" in failures[1]
    assert results[1] is None and results[0] is not None and results[2] is not None
    alone = Trainer(dict(configs[2]))
    alone.run()
    assert results[2]["valid_mmd2"] == pytest.approx(alone.history["valid_mmd2"][-1], rel=1e-10)


def test_runaway_train_mmd2_fails_against_the_epoch_0_value_kept_by_checkpoints(tmp_path):
    trainer = Trainer(dict(SMALL, dtype="float64", epochs=2))
    trainer.run()
    start_mmd2, start_scale = trainer.replicas[0].runaway_baseline
    assert start_mmd2 == trainer.history["train_mmd2"][0] and start_scale >= 1.0
    values = {"train_mmd2": 1001 * start_mmd2, "valid_mmd2": 0.1, "loss": 0.1}
    assert "run-away train_mmd2 at epoch 2" in trainer._problem(trainer.replicas[0], values, start_scale)
    assert trainer._problem(trainer.replicas[0], dict(values, train_mmd2=999 * start_mmd2), start_scale) is None
    path = str(tmp_path / "ckpt.pt")
    trainer.save_checkpoint(path)
    resumed = Trainer(dict(SMALL, dtype="float64", epochs=4, resume_from=path))
    assert resumed.replicas[0].runaway_baseline == (start_mmd2, start_scale)


def test_checkpoint_on_a_full_disk_names_the_path_and_leaves_no_temporary(full_disk):
    """Regression (torch.save on a full disk: 'basic_ios::clear: iostream error', checkpoint.pt.tmp left)."""
    trainer = Trainer(dict(SMALL, n_particles=1000))  # W: [1000, 3, 50] float32, 600 kB
    path = str(full_disk / "checkpoint.pt")
    with pytest.raises(OSError, match=f"cannot write checkpoint {path}: No space left on device") as caught:
        trainer.save_checkpoint(path)
    assert caught.value.errno == 28 and os.listdir(full_disk) == []
