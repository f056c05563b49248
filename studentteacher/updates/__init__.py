"""Update rules: a registry from the ``method`` name to the rule (one module per rule)."""
from __future__ import annotations

from ..networks import Architecture
from .base import StepHyper, UpdateRule, descend, draw_noise, perturb
from .diffusion import Diffusion
from .drmmd import Drmmd
from .ksd import Ksd
from .noise_injection import NoiseInjection
from .sgd import Sgd

RULES: dict[str, type[UpdateRule]] = {rule.name: rule for rule in (Sgd, NoiseInjection, Diffusion, Ksd, Drmmd)}
METHODS = tuple(RULES)


def make_rule(method: str, arch: Architecture, ksd_reg: float = 1e-6, drmmd_noise: bool = False) -> UpdateRule:
    """The update rule named ``method`` (one of METHODS) for networks of shape ``arch``."""
    if method not in RULES:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if method == "ksd":
        return Ksd(arch, ksd_reg=ksd_reg)
    if method == "drmmd":
        return Drmmd(arch, drmmd_noise=drmmd_noise)
    return RULES[method](arch)


__all__ = ["RULES", "METHODS", "make_rule", "StepHyper", "UpdateRule", "descend", "draw_noise", "perturb"]
