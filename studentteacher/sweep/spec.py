"""Sweep files -> ordered configs: :func:`load` reads and expands a YAML file into a :class:`Sweep`.

Only the file is checked here (keys, lists, seeds; the experiment is one of
:data:`experiments.registry.EXPERIMENTS`); the configs are validated against the experiment by
:func:`studentteacher.sweep.tasks.validate`. Nothing here imports Sacred or torch.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from experiments.registry import EXPERIMENTS

from .runs_folder import RunsFolderError, choose

SWEEP_KEYS = ("experiment", "named_config", "base", "grid", "zip", "seeds", "observer")


class SweepError(ValueError):
    """An invalid sweep file, config or submit option; the message names the index and key."""


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file. ``tasks[i]`` is the config update of index ``i`` (seed included)."""

    path: Path  # absolute path of the sweep file
    experiment: str
    named_configs: tuple[str, ...]
    base: dict
    grid: dict
    zips: tuple[dict, ...]
    seeds: tuple[int, ...]
    observer: Path  # absolute: the runs folder (:mod:`.runs_folder`)
    tasks: tuple[dict, ...] = field(repr=False)
    observer_origin: str = ""  # how the runs folder was chosen (:func:`.runs_folder.choose`)

    @property
    def name(self) -> str:
        """The file stem: default observer directory and SLURM job name."""
        return self.path.stem

    @property
    def varied_keys(self) -> list[str]:
        """Keys that change between tasks, in index order (slowest first), seed last."""
        return [*self.grid, *(key for group in self.zips for key in group), "seed"]

    def __len__(self) -> int:
        return len(self.tasks)

    def config_updates(self, index: int) -> dict:
        """The config updates (base + grid + zip values + seed) of task ``index``, a new dict."""
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(self.tasks):
            raise SweepError(f"index {index!r} is out of range: the sweep {self.path} has indices 0 .. {len(self) - 1}")
        return dict(self.tasks[index])

    def varied(self, index: int) -> dict:
        """The values of the varied keys of task ``index``."""
        updates = self.tasks[index]
        return {key: updates[key] for key in self.varied_keys}

    def describe(self, index: int) -> str:
        """The varied values of task ``index`` as ``key=value, ...`` (for messages and tables)."""
        return ", ".join(f"{key}={value!r}" for key, value in self.varied(index).items())


def _fail(path: Path, message: str) -> None:
    """Raise a SweepError about the sweep file ``path``."""
    raise SweepError(f"sweep file {path}: {message}")


def _value_lists(path: Path, where: str, mapping: Any) -> dict[str, list]:
    """``mapping`` checked to be key -> non-empty list; returns a copy."""
    if not isinstance(mapping, dict):
        _fail(path, f"{where} must be a mapping of key -> list of values, got {mapping!r}")
    for key, values in mapping.items():
        if not isinstance(values, list) or not values:
            _fail(path, f"{where} key {key!r} must be a non-empty list of values, got {values!r}")
    return dict(mapping)


def _read(path: Path) -> dict:
    """The YAML mapping of a sweep file, its top-level keys checked."""
    try:
        spec = yaml.safe_load(path.read_text())
    except OSError as err:
        raise SweepError(f"cannot read sweep file {path}: {err}") from err
    except yaml.YAMLError as err:
        raise SweepError(f"sweep file {path} is not valid YAML: {err}") from err
    if not isinstance(spec, dict):
        _fail(path, f"must be a YAML mapping with keys {', '.join(SWEEP_KEYS)}")
    unknown = sorted(set(spec) - set(SWEEP_KEYS))
    if unknown:
        _fail(path, f"unknown key {unknown[0]!r}; allowed keys: {', '.join(SWEEP_KEYS)}")
    if spec.get("experiment") not in EXPERIMENTS:
        _fail(path, f"'experiment' must be one of {', '.join(EXPERIMENTS)}, got {spec.get('experiment')!r}")
    return spec


def _named_configs(path: Path, spec: dict) -> list[str]:
    """The ``named_config`` entry as a list of names."""
    named = spec.get("named_config")
    named = [] if named is None else [named] if isinstance(named, str) else named
    if not isinstance(named, list) or not all(isinstance(n, str) and n for n in named):
        _fail(path, f"'named_config' must be a name or a list of names, got {spec.get('named_config')!r}")
    return named


def _zips(path: Path, spec: dict) -> list[dict[str, list]]:
    """The ``zip`` groups, each checked to hold lists of one length."""
    zip_spec = spec.get("zip") or []
    if isinstance(zip_spec, dict):
        zip_spec = [zip_spec]
    if not isinstance(zip_spec, list):
        _fail(path, f"'zip' must be a list of groups (mappings of key -> list), got {zip_spec!r}")
    zips = []
    for number, group in enumerate(zip_spec):
        group = _value_lists(path, f"zip group {number}", group)
        if not group:
            _fail(path, f"zip group {number} is empty")
        lengths = {key: len(values) for key, values in group.items()}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{key}: {n}" for key, n in lengths.items())
            _fail(path, f"zip group {number}: all lists must have the same length, got {detail}")
        zips.append(group)
    return zips


def _seeds(path: Path, spec: dict) -> list[int]:
    """The ``seeds`` list: distinct integers."""
    seeds = spec.get("seeds")
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        _fail(path, f"'seeds' must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        _fail(path, f"'seeds' has repeated values: {seeds}")
    return seeds


def _check_keys(path: Path, base: dict, grid: dict, zips: list[dict]) -> None:
    """Config keys are strings, not ``seed``, and set in one place only."""
    seen: dict[str, str] = {}
    for where, keys in [("base", base), ("grid", grid), *((f"zip group {n}", g) for n, g in enumerate(zips))]:
        for key in keys:
            if not isinstance(key, str):
                _fail(path, f"{where}: config keys must be strings, got {key!r}")
            if key == "seed":
                _fail(path, f"{where}: set the seed with the top-level 'seeds' list, not a 'seed' key")
            if key in seen:
                _fail(path, f"key {key!r} appears in both {seen[key]} and {where}")
            seen[key] = where


def load(path: str | os.PathLike, observer: str | os.PathLike | None = None) -> Sweep:
    """The expanded :class:`Sweep` of a sweep file; ``observer`` overrides the file's (the runs folder:
    :func:`.runs_folder.choose`).

    Raises :class:`SweepError` naming the file and the offending key. Configs are not validated
    against the experiment here, so this is cheap.
    """
    path = Path(path).resolve()
    spec = _read(path)
    named = _named_configs(path, spec)
    base = spec.get("base") or {}
    if not isinstance(base, dict):
        _fail(path, f"'base' must be a mapping of fixed config keys, got {base!r}")
    grid = _value_lists(path, "grid", spec.get("grid") or {})
    zips = _zips(path, spec)
    seeds = _seeds(path, spec)
    _check_keys(path, base, grid, zips)
    tasks = tuple(expand(base, grid, zips, seeds))
    try:
        folder = choose(path, spec.get("observer"), observer)
    except RunsFolderError as err:
        _fail(path, str(err))
    return Sweep(path, spec["experiment"], tuple(named), dict(base), grid, tuple(zips), tuple(seeds), folder.path,
                 tasks, folder.origin)


def expand(base: dict, grid: dict[str, list], zips: list[dict[str, list]], seeds: list[int]) -> list[dict]:
    """All config updates in index order: grid (last key fastest), then zip groups, then seeds."""
    grid_points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    group_points = [[{key: values[i] for key, values in group.items()} for i in range(len(next(iter(group.values()))))]
                    for group in zips]
    zip_points = [dict(item for point in combo for item in point.items())
                  for combo in itertools.product(*group_points)]
    return [{**base, **g, **z, "seed": seed} for g in grid_points for z in zip_points for seed in seeds]
