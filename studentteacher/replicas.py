"""Which runs may be trained together as batched replicas (one computation, R runs).

Replicas of one batch share every config key but :data:`REPLICA_KEYS`; the training loop that
holds them is :class:`studentteacher.training.TrainingLoop` (:class:`~studentteacher.training.BatchedTrainer`),
and the 2-D flows have their own keys (:data:`studentteacher.flows.REPLICA_KEYS`).
"""
from __future__ import annotations

# config keys that may differ between the replicas of one batch; every other key must be equal
REPLICA_KEYS = (
    "seed", "lr", "lmbda", "noise_level", "noise_decay", "noise_decay_every",
    "student_mean", "student_std", "teacher_mean", "teacher_std", "resume_from", "replicas",
)


def check_compatible(configs: list[dict], replica_keys: tuple[str, ...] = REPLICA_KEYS) -> None:
    """Raise ValueError naming the first key outside ``replica_keys`` on which two configs differ."""
    first = configs[0]
    for index, config in enumerate(configs[1:], start=1):
        for key in sorted(set(first) | set(config)):
            if key not in replica_keys and first.get(key) != config.get(key):
                raise ValueError(
                    f"replicas must share every config key but {', '.join(replica_keys)}; replica {index} has "
                    f"{key}={config.get(key)!r}, replica 0 has {key}={first.get(key)!r}"
                )
