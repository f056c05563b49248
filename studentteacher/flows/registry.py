"""The registry of the 2-D flows: the ``flow`` config value -> its :class:`~.base.KernelFlow` class.

A new flow is one module with a :class:`~.base.KernelFlow` subclass and one line in :data:`FLOWS`.
"""
from __future__ import annotations

from .base import KernelFlow
from .drmmd import AdaptiveDrMMDFlow, DrMMDFlow
from .kale import KALEFlow
from .mmd import MMDFlow, MMDNoiseFlow
from .mmd_adaptive_bandwidth import AdaptiveBandwidthMMDFlow
from .srmmd import HrMMDFlow, SrMMDFlow

FLOWS: dict[str, type[KernelFlow]] = {
    flow.name: flow
    for flow in (MMDFlow, MMDNoiseFlow, DrMMDFlow, AdaptiveDrMMDFlow, KALEFlow, AdaptiveBandwidthMMDFlow, SrMMDFlow,
                 HrMMDFlow)
}  # fmt: skip


def flow_class(name: str) -> type[KernelFlow]:
    """The class registered as ``name`` in :data:`FLOWS`; ValueError listing the valid names."""
    if name not in FLOWS:
        raise ValueError(f"flow must be one of {list(FLOWS)}, got {name!r}")
    return FLOWS[name]


def build_flow(name: str, target, kernel, step_size, budget_bytes: int | None = None, **options) -> KernelFlow:
    """``FLOWS[name](target, kernel, step_size, budget_bytes=..., **options)``; ValueError naming an
    option the flow does not declare (its ``options``) and listing those it does."""
    cls = flow_class(name)
    unknown = sorted(set(options) - set(cls.options))
    if unknown:
        raise ValueError(f"flow {name!r} takes no option {', '.join(map(repr, unknown))}; its options: {list(cls.options)}")
    return cls(target, kernel, step_size, budget_bytes=budget_bytes, **options)
