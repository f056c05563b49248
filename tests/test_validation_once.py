"""Each run's config is validated once, whatever the route: a command line with one run, one with two
replicas (once per run), and a sweep task.

The count wraps the experiment's validator where the edge reaches it (the ``ExperimentRuns``'s
``validate`` and the script's own name for it) and where the library's entry point reaches it (the
training loop, ``setup_flow``, ``setup_dmmd``): the edge hands the validated config down frozen, and
the library takes a frozen config as checked.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from conftest import import_script

from studentteacher import sweep as sw
from studentteacher.keys import FrozenConfig

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {
    "student_teacher": (ROOT / "experiments" / "train.py", "validate",
                        ["epochs=2", "n_particles=10", "n_train=40", "n_valid=20", "batch_size=20", "d_in=5"]),
    "particle_flow": (ROOT / "experiments" / "flows2d.py", None, ["steps=5", "n_particles=21", "n_target=21"]),
    "dmmd": (ROOT / "experiments" / "dmmd.py", "validate_dmmd_config",
             ["n_train=90", "n_eval=30", "hidden=8", "features=4", "embedding=4", "train_steps=2", "batch_size=16",
              "levels=2", "steps_per_level=2", "n_particles=20"]),
}  # fmt: skip
#: experiment -> (module, name) of the validator its library entry point calls on a plain dict
LIBRARY = {"student_teacher": ("studentteacher.config", "validate"),
           "particle_flow": ("studentteacher.flows.setup", "validate_flow_config"),
           "dmmd": ("studentteacher.dmmd.run", "validate_dmmd_config")}  # fmt: skip


def count_validations(monkeypatch, module, name: str | None, experiment: str = "student_teacher") -> list[int]:
    """The seeds of the configs validated from now on (``module.runs.validate``, ``module.name`` and the
    library's validator of ``experiment``)."""
    seeds: list[int] = []

    def counted(validate):
        def validate_and_count(config):
            seeds.append(config.get("seed"))
            return validate(config)

        return validate_and_count

    monkeypatch.setattr(module.runs, "validate", counted(module.runs.validate))
    if name is not None:
        monkeypatch.setattr(module, name, counted(getattr(module, name)))
    library = importlib.import_module(LIBRARY[experiment][0])
    monkeypatch.setattr(library, LIBRARY[experiment][1], counted(getattr(library, LIBRARY[experiment][1])))
    return seeds


@pytest.mark.parametrize("experiment", list(SCRIPTS))
def test_a_command_line_run_validates_its_config_once(experiment, tmp_path, monkeypatch):
    script, name, tiny = SCRIPTS[experiment]
    module = import_script(script, f"validation_once_{script.stem}")
    seeds = count_validations(monkeypatch, module, name, experiment)
    assert module.runs.command_line(["with", *tiny, "device=cpu", "seed=7", "-F", str(tmp_path)]) == 0
    assert seeds == [7], f"{experiment}: validated {len(seeds)} times"


@pytest.mark.parametrize("experiment", list(SCRIPTS))
def test_the_validated_config_is_frozen_and_the_library_trusts_it(experiment):
    script, name, tiny = SCRIPTS[experiment]
    module = import_script(script, f"validation_frozen_{script.stem}")
    updates = {key: yaml.safe_load(value) for key, value in (item.split("=") for item in tiny)}
    config = module.runs.resolve({**updates, "device": "cpu", "seed": 3}, [])
    complete = module.runs.validate(config)
    assert isinstance(complete, FrozenConfig) and complete["seed"] == 3
    with pytest.raises(TypeError, match="read-only"):
        complete["seed"] = 4


def test_a_run_without_a_seed_validates_its_config_once(tmp_path, monkeypatch):
    script, name, tiny = SCRIPTS["student_teacher"]
    module = import_script(script, "validation_once_unseeded")
    seeds = count_validations(monkeypatch, module, name)
    assert module.runs.command_line(["with", *tiny, "device=cpu", "-F", str(tmp_path)]) == 0
    assert len(seeds) == 1


def test_each_replica_run_validates_its_config_once(tmp_path, monkeypatch):
    script, name, tiny = SCRIPTS["student_teacher"]
    module = import_script(script, "validation_once_replicas")
    seeds = count_validations(monkeypatch, module, name)
    assert module.runs.command_line(["with", *tiny, "device=cpu", "seed=7", "replicas=2", "-F", str(tmp_path)]) == 0
    assert sorted(seeds) == [7, 8]


def test_a_sweep_task_validates_its_config_once(tmp_path, monkeypatch):
    from experiments import registry

    script, name, tiny = SCRIPTS["student_teacher"]
    base = dict(item.split("=") for item in tiny)
    path = tmp_path / "once.yaml"
    path.write_text(yaml.safe_dump({"experiment": "student_teacher", "observer": str(tmp_path / "runs"),
                                    "base": {key: int(value) for key, value in base.items()} | {"device": "cpu"},
                                    "seeds": [5]}))  # fmt: skip
    module = __import__(registry.EXPERIMENTS["student_teacher"].script, fromlist=["runs"])
    seeds = count_validations(monkeypatch, module, name)
    assert sw.run_task(sw.load(path), 0)[0] == "COMPLETED"
    assert seeds == [5]
