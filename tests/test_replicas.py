"""Batched replicas follow the plain runs of their configs; a diverging replica fails alone; a replica's
checkpoint is a plain run's."""
from __future__ import annotations

import pytest
import torch

from studentteacher.training import BatchedTrainer, Trainer, TrainingInterrupted

SMALL = dict(n_particles=12, n_train=120, n_valid=60, batch_size=40, epochs=4, log_every=2, dtype="float64", d_in=6)


def plain_history(config):
    trainer = Trainer(dict(config))
    trainer.run()
    return trainer


@pytest.mark.parametrize(
    "options",
    [dict(method="sgd"), dict(method="noise_injection", noise_decay_every=2), dict(method="diffusion", bias=True),
     dict(method="ksd"), dict(method="drmmd", readout="dense"), dict(method="drmmd", drmmd_noise=True),
     dict(method="drmmd", adaptive_lmbda=True), dict(method="sgd", readout="dense", d_out=2)],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_replicas_match_plain_runs(options):
    configs = [dict(SMALL, seed=seed, lr=lr, **options) for seed, lr in ((1, 0.1), (2, 0.1), (3, 0.05))]
    batched = BatchedTrainer(configs)
    logged = {r: [] for r in range(3)}
    results = batched.run(on_metrics=lambda r, metrics: logged[r].append(metrics))
    for r, config in enumerate(configs):
        plain = plain_history(config)
        member = batched.replica_views[r]
        for name in ("train_mmd2", "valid_mmd2", "loss", "noise_level", "lmbda", "epoch"):
            torch.testing.assert_close(
                torch.tensor(member.history[name]), torch.tensor(plain.history[name]), rtol=1e-10, atol=1e-13,
                msg=f"replica {r}: {name}",
            )
        for key in plain.params:
            torch.testing.assert_close(member.params[key], plain.params[key], rtol=1e-10, atol=1e-13)
        assert results[r]["valid_mmd2"] == pytest.approx(plain.history["valid_mmd2"][-1], rel=1e-10)
        assert [m.epoch for m in logged[r]] == [0, 2, 4]


def test_diverging_replica_fails_alone():
    single = dict(SMALL, dtype="float32")  # lr = 1e30 overflows float32 in the first epoch
    configs = [dict(single, seed=1), dict(single, seed=2, lr=1e30), dict(single, seed=3)]
    failures = {}
    batched = BatchedTrainer(configs)
    results = batched.run(on_failure=lambda r, error: failures.setdefault(r, str(error)))
    assert list(failures) == [1] and "non-finite" in failures[1] and "epoch 1" in failures[1]
    assert results[1] is None
    for r in (0, 2):
        plain = plain_history(configs[r])
        assert batched.replica_views[r].history["valid_mmd2"] == pytest.approx(plain.history["valid_mmd2"], rel=1e-5)
    assert batched.replica_views[1].history["epoch"] == [0.0]


def test_incompatible_replicas_are_rejected_naming_the_key():
    with pytest.raises(ValueError, match=r"replica 1 has n_particles=13, replica 0 has n_particles=12"):
        BatchedTrainer([dict(SMALL, seed=1), dict(SMALL, seed=2, n_particles=13)])


def test_one_replica_is_the_plain_run_bit_for_bit():
    config = dict(SMALL, seed=4, method="drmmd", adaptive_lmbda=True, dtype="float32")
    batched = BatchedTrainer([config])
    batched.run()
    plain = plain_history(config)
    (member,) = batched.replica_views
    assert {k: v for k, v in member.history.items() if k != "epoch_seconds"} == {
        k: v for k, v in plain.history.items() if k != "epoch_seconds"
    }
    for key, value in plain.params.items():
        assert torch.equal(member.params[key], value), key


def test_a_replica_checkpoint_resumes_alone_or_in_its_batch(tmp_path):
    configs = [dict(SMALL, seed=seed, epochs=6, method="noise_injection", noise_decay_every=2) for seed in (1, 2)]
    paths = [str(tmp_path / f"replica{r}.pt") for r in range(2)]
    stopped = BatchedTrainer(configs)
    with pytest.raises(TrainingInterrupted) as interrupt:
        stopped.run(should_stop=lambda: stopped.epoch == 3, checkpoint_paths=paths)
    assert interrupt.value.checkpoint_paths == paths
    straight = plain_history(configs[1])
    alone = Trainer(dict(configs[1], resume_from=paths[1]))
    again = BatchedTrainer([dict(config, resume_from=path) for config, path in zip(configs, paths)])
    assert alone.epoch == again.epoch == 3
    alone.run(), again.run()
    for name in ("train_mmd2", "valid_mmd2", "loss", "noise_level"):
        expected = straight.history[name][-2:]  # epochs 4 and 6
        assert alone.history[name] == pytest.approx(expected, rel=1e-10), name
        assert again.replica_views[1].history[name] == pytest.approx(expected, rel=1e-10), name
