"""Particle flows of kernel divergences towards a fixed target sample (docs/model.md): a registry from
the ``flow`` config name to the flow class (one module per family, :mod:`~.registry`).

Source particles ``Y: [N, d]`` (nu) flow towards the target ``X: [M, d]`` (pi) by explicit Euler
steps y_i <- y_i - gamma_n grad phi_n(y_i + beta_n u_i) on a first variation phi of the divergence
(:mod:`~studentteacher.flows.base`):

========================== =========================================== ========================== ===============
flow                       phi (first variation)                       gamma_n (logged step_size) value
========================== =========================================== ========================== ===============
``mmd``                    f = mean_j k(., y_j) - mean_m k(., x_m)     ``step``                   MMD^2
``mmd_noise``              f, evaluated at y_i + beta_n u_i            ``step``                   MMD^2
``drmmd``                  2 h_lambda (DrMMD witness, divergences)     lambda * ``step``          DrMMD_lambda
``drmmd_adaptive``         2 h_{lambda_n}                              max(lambda_n * ``step``,   DrMMD_{lambda_n}
                                                                       1e-4)
``kale``                   (1+lambda) h* (KALE witness)                ``step``                   KALE_lambda
``mmd_adaptive_bandwidth`` f under the scaled Gaussian k_{alpha_n},    ``step``                   MMD^2_{alpha_n}
                           alpha_n = max(alpha*(mu_n), floor)
``srmmd``                  f = (S_mu + lambda)^{-1} (m_mu - m_pi)      ``step``                   SrMMD^2_lambda
                           (``velocity="witness"``), or f -
                           |grad f|^2 / 2 (``"gradient"``)
``hrmmd``                  as ``srmmd`` with alpha S_mu + (1 - alpha)  ``step``                   HrMMD^2_lambda
                           C_mu, alpha = ``hrmmd_alpha``
========================== =========================================== ========================== ===============

Moves are mean-field scaled (the per-particle move does not shrink with N); the modules
:mod:`~.mmd`, :mod:`~.drmmd`, :mod:`~.kale` and :mod:`~.srmmd` state each one in terms of the value's
particle gradient (SrMMD and HrMMD also have a witness term in the particles' kernel derivatives).
Logged metrics: :mod:`~.metrics`; :mod:`~.runner`: the Euler loop; :mod:`~.health`: its failure
rule; :mod:`~.config`: the config's key spec and validation; :mod:`~.setup`: building a run from
configs; :mod:`~.resume`: checkpoints. A config that names no ``step_size`` gets
:func:`default_step_size` (0.1; ``kale``: 0.1 * lambda, see :mod:`~.kale`).

A new flow is one module with a :class:`KernelFlow` subclass and one line in :data:`~.registry.FLOWS`.
"""
from __future__ import annotations

from ..errors import FlowDivergedError, FlowInterrupted
from .base import FirstVariation, KernelFlow, euler_step, flow_velocity
from .config import DEFAULTS, FLOW_KEYS, REPLICA_KEYS, SPEC, default_period, default_step_size, validate_flow_config
from .drmmd import MIN_ADAPTIVE_STEP, AdaptiveDrMMDFlow, DrMMDFlow
from .health import RUNAWAY_DIAMETERS
from .kale import KALEFlow
from .metrics import METRICS, FlowRecord, FlowTrajectory, mean_gap, sample_distances, wasserstein
from .mmd import MMDFlow, MMDNoiseFlow
from .mmd_adaptive_bandwidth import AdaptiveBandwidthMMDFlow
from .registry import FLOWS, build_flow, flow_class
from .resume import RESUMABLE_CHANGES, Checkpoints, FlowCheckpoint, checked_checkpoint
from .resume import load as load_checkpoint
from .runner import run_flow
from .setup import FlowSetup, make_flow, noise_stream, setup_flow
from .srmmd import VELOCITIES, HrMMDFlow, SrMMDFlow

__all__ = [
    "FLOWS", "flow_class", "build_flow", "KernelFlow", "FirstVariation", "flow_velocity", "euler_step",
    "MMDFlow", "MMDNoiseFlow", "DrMMDFlow", "AdaptiveDrMMDFlow", "KALEFlow", "AdaptiveBandwidthMMDFlow",
    "SrMMDFlow", "HrMMDFlow", "VELOCITIES", "MIN_ADAPTIVE_STEP",
    "METRICS", "wasserstein", "sample_distances", "mean_gap",
    "run_flow", "FlowRecord", "FlowTrajectory", "FlowDivergedError", "FlowInterrupted",
    "SPEC", "DEFAULTS", "FLOW_KEYS", "REPLICA_KEYS", "validate_flow_config", "make_flow", "noise_stream", "FlowSetup",
    "setup_flow", "RESUMABLE_CHANGES", "RUNAWAY_DIAMETERS", "Checkpoints", "FlowCheckpoint",
    "checked_checkpoint",
    "load_checkpoint", "default_step_size", "default_period",
]  # fmt: skip
