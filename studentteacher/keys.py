"""Config keys: the one spec system of the three experiments, and the validated (frozen) config.

A spec is a dict from key name to :class:`Key` (default, type, allowed values or range, help).
:func:`check_keys` completes a config from its spec (defaults filled in, derived defaults computed,
ints accepted for floats) or raises :class:`ConfigError` naming the key, the value and what is
allowed; each experiment's ``validate`` adds its cross-key rules and returns a :class:`FrozenConfig`,
which the library takes as checked and never validates again. Update rules and flows declare the
keys of their own options (their ``options`` / ``config_keys``); :func:`merged` joins them into
an experiment's spec. The keys shared by all three experiments (``device``, ``dtype``, ``threads``,
``seed``) are defined here once.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .threads import AUTO, THREADS_MAX, check_threads

#: dtype names -> torch dtypes: the values of ``dtype`` in every experiment.
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Seeds numpy accepts (Sacred seeds numpy's global generator with the run's seed): 0 <= seed < 2**32.
SEED_LIMIT = 2**32


class ConfigError(ValueError):
    """A config value that is not allowed; the message names the key."""


@dataclass(frozen=True)
class Key:
    """One config key: its default, its type and the allowed values (read at each check) or range.

    ``derive(config) -> value``: the default of a config that leaves the key out, computed from its
    other (checked) keys; ``default`` then says in words what it is (docs/contract.md shows it)."""

    default: Any
    kind: type
    choices: Collection | None = None
    minimum: float | None = None
    exclusive_minimum: bool = False
    maximum: float | None = None
    nullable: bool = False
    help: str = ""
    allowed: str = ""  # what a range error says is allowed (default: from minimum and maximum)
    derive: Callable[[dict], Any] | None = None


class FrozenConfig(dict):
    """A validated, complete config: read-only, and taken by the library without checking it again.
    It pickles (checkpoints) and copies as a plain dict."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("a validated config is read-only; build a new dict ({**config, key: value}) and validate it")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self):
        return dict, (dict(self),)


def validated(config: Mapping, validate: Callable[[Mapping], FrozenConfig]) -> FrozenConfig:
    """``config`` itself when a validation froze it already, else ``validate(config)``: the library's entry
    points check a plain dict and trust what the experiments' edge validated (once per run)."""
    return config if isinstance(config, FrozenConfig) else validate(config)


DEVICE = Key("auto", str, help="auto (cuda if available), cpu, cuda or cuda:N", allowed="'auto', 'cpu', 'cuda' or 'cuda:N'")
DTYPE = Key("float32", str, choices=tuple(DTYPES), help="floating point type")
THREADS = Key(AUTO, object, help="CPU threads: 'auto' (studentteacher.threads) or a count",
              allowed=f"'auto' or an integer >= 1 and <= {THREADS_MAX}")
SEED = Key(None, int, nullable=True, minimum=0, maximum=SEED_LIMIT - 1, help="run seed (Sacred draws one when absent)",
           allowed="an integer 0 <= seed < 2**32 (numpy's seed range: Sacred seeds numpy with it)")


def merged(*specs: Mapping[str, Key]) -> dict[str, Key]:
    """One spec of ``specs`` in order; a key declared twice must be declared alike (ValueError otherwise)."""
    spec: dict[str, Key] = {}
    for part in specs:
        for name, key in part.items():
            if spec.setdefault(name, key) != key:
                raise ValueError(f"config key {name!r} is declared twice, differently: {spec[name]} and {key}")
    return spec


def defaults(spec: Mapping[str, Key]) -> dict[str, Any]:
    """The default of every key of ``spec`` but the seed (Sacred draws one) and the derived ones."""
    return {name: key.default for name, key in spec.items() if name != "seed" and key.derive is None}


def fail(key: str, value: Any, allowed: str) -> None:
    """Raise ConfigError: ``config key 'KEY': got VALUE; allowed: ALLOWED``."""
    raise ConfigError(f"config key {key!r}: got {value!r}; allowed: {allowed}")


def _check_type(name: str, value: Any, key: Key) -> Any:
    if name == "threads":
        try:
            return check_threads(value)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    if value is None:
        if not key.nullable:
            fail(name, value, f"a value of type {key.kind.__name__}")
        return None
    if key.kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if key.kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, key.kind) or (key.kind is not bool and isinstance(value, bool)):
        fail(name, value, _allowed(key))
    return value


def _allowed(key: Key) -> str:
    """What a value of the wrong type is told: the choices, the key's ``allowed`` text, or the type."""
    if key.choices is not None:
        return "one of " + ", ".join(repr(c) for c in key.choices)
    return key.allowed or f"a value of type {key.kind.__name__}" + (" or null" if key.nullable else "")


def _check_range(name: str, value: Any, key: Key) -> None:
    if key.kind is object:
        return
    if key.choices is not None and value not in key.choices:
        fail(name, value, _allowed(key))
    below = key.minimum is not None and (value < key.minimum or (key.exclusive_minimum and value == key.minimum))
    if key.allowed and (below or (key.maximum is not None and value > key.maximum)):
        fail(name, value, key.allowed)
    if below:
        bound = f"> {key.minimum}" if key.exclusive_minimum else f">= {key.minimum}"
        upper = f" and <= {key.maximum}" if key.maximum is not None else ""
        fail(name, value, f"a number {bound}{upper}")
    if key.maximum is not None and value > key.maximum:
        fail(name, value, f"a number <= {key.maximum}")
    if value != value or value in (float("inf"), float("-inf")):
        fail(name, value, "a finite number")


def _checked(name: str, value: Any, key: Key) -> Any:
    value = _check_type(name, value, key)
    if value is not None:
        _check_range(name, value, key)
    return value


def check_keys(config: Mapping, spec: Mapping[str, Key]) -> dict:
    """The complete config of a key ``spec`` (defaults filled in, derived defaults computed from the
    checked keys, ints accepted for floats) or ConfigError naming the first unknown key (with the
    closest known key) or the first bad type, range or choice."""
    unknown = sorted(set(config) - set(spec))
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, spec, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown config key {name!r}{hint}; known keys: {', '.join(spec)}")
    complete = {**defaults(spec), **config}
    derived = [name for name, key in spec.items() if key.derive is not None and name not in config]
    for name, key in spec.items():
        if name in complete:
            complete[name] = _checked(name, complete[name], key)
    for name in derived:
        complete[name] = _checked(name, spec[name].derive(complete), spec[name])
    return {name: complete[name] for name in spec if name in complete}


def check_device(value: str) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; a CUDA device must exist."""
    if value in ("auto", "cpu"):
        return
    if value == "cuda" or (value.startswith("cuda:") and value[5:].isdigit()):
        if not torch.cuda.is_available():
            fail("device", value, "'auto' or 'cpu' (no CUDA device is available on this machine)")
        if value != "cuda" and int(value[5:]) >= torch.cuda.device_count():
            fail("device", value, f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
        return
    fail("device", value, "'auto', 'cpu', 'cuda' or 'cuda:N'")


def check_replica_seeds(config: Mapping) -> None:
    """seed + replicas <= 2**32: the replicas' seeds seed .. seed+replicas-1 stay in numpy's range."""
    if config.get("seed") is not None and config["seed"] + config["replicas"] > SEED_LIMIT:
        fail("seed", config["seed"], f"an integer <= {SEED_LIMIT - config['replicas']} with replicas = "
             f"{config['replicas']} (the replicas' seeds seed .. seed+replicas-1 must stay below 2**32)")


def resolve_device(value: str) -> torch.device:
    """The torch device of a validated ``device`` value (``auto`` picks CUDA when present)."""
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(value)
