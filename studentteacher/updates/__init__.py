"""Update rules: a registry from the ``method`` name to the rule (one module per rule).

A rule class declares the config keys it takes (``options``: name -> :class:`~studentteacher.keys.Key`),
from which the student-teacher spec (:data:`studentteacher.config.SPEC`) takes them; :func:`make_rule`
builds any rule from keyword options and rejects the ones it does not declare, and
:func:`rule_from_config` picks a rule's options out of a whole (validated) run config, where each
option is the config key of the same name. A new rule, options included, is one module and one
entry in :data:`RULES`.
"""
from __future__ import annotations

from ..networks import Architecture
from .base import StepHyper, UpdateRule, descend, draw_noise, perturb
from .diffusion import Diffusion
from .drmmd import Drmmd
from .ksd import Ksd
from .noise_injection import NoiseInjection
from .sgd import Sgd
from .srmmd import Hrmmd, Srmmd

#: method name -> rule class; the config key ``method`` accepts exactly these names
RULES: dict[str, type[UpdateRule]] = {
    rule.name: rule for rule in (Sgd, NoiseInjection, Diffusion, Ksd, Drmmd, Srmmd, Hrmmd)
}


def rule_class(method: str) -> type[UpdateRule]:
    """The class registered as ``method``; ValueError listing the registered names otherwise."""
    if method not in RULES:
        raise ValueError(f"method must be one of {list(RULES)}, got {method!r}")
    return RULES[method]


def make_rule(method: str, arch: Architecture, **options) -> UpdateRule:
    """The rule ``method`` for networks of shape ``arch``, built with ``options`` (each one it declares)."""
    rule = rule_class(method)
    unknown = [key for key in options if key not in rule.options]
    if unknown:
        allowed = ", ".join(rule.options) or "none"
        raise ValueError(f"update rule {method!r} takes no option {unknown[0]!r}; its options: {allowed}")
    return rule(arch, **options)


def rule_from_config(config: dict, arch: Architecture) -> UpdateRule:
    """The rule ``config["method"]`` with the options it declares taken from ``config`` (same key names)."""
    method = config["method"]
    return make_rule(method, arch, **{key: config[key] for key in rule_class(method).options})


__all__ = [
    "RULES", "make_rule", "rule_class", "rule_from_config",
    "StepHyper", "UpdateRule", "descend", "draw_noise", "perturb",
]
