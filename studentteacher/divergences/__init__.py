"""Kernel divergences between a particle measure and a target: values and witness functions.

Notation: particles ``Y: [N, d]`` (the moving source measure nu = (1/N) sum_j delta_{y_j}),
target ``X: [M, d]`` (pi = (1/M) sum_m delta_{x_m}), ``kernel(a, b) -> Gram`` a callable such
as ``functools.partial(kernels.gaussian, bandwidth=0.15)``.

.. math::

    \\mathrm{MMD}^2 = \\overline{K_{YY}} + \\overline{K_{XX}} - 2\\,\\overline{K_{XY}}
    \\quad\\text{(V-statistic, unhalved)},\\qquad
    f(z) = \\tfrac1N \\textstyle\\sum_j k(z, y_j) - \\tfrac1M \\sum_m k(z, x_m)

    \\mathrm{DrMMD}_\\lambda = \\tfrac{1+\\lambda}{\\lambda}\\left[\\mathrm{MMD}^2
        - (a - c)^T (K_{XX} + M\\lambda I)^{-1} (a - c)\\right],
    \\quad a = K_{XY} 1/N,\\ c = K_{XX} 1/M

    h(z) = \\tfrac{1+\\lambda}{\\lambda}\\left[f(z) - k(z, X)(K_{XX} + M\\lambda I)^{-1}(a - c)\\right]

DrMMD is (1 + lambda) ||(Sigma_pi + lambda I)^{-1/2} (m_nu - m_pi)||^2_H written with Woodbury
(Chen et al., 2024, "(De)-regularized maximum mean discrepancy gradient flow"); it tends to
MMD^2 as lambda -> infinity and to the chi^2 divergence as lambda -> 0. The M x M system is
solved by Cholesky, never by an explicit inverse.

The student-teacher closed forms (target = the teacher, M = 1, the kernel is the batch Gram
estimate of :func:`studentteacher.kernels.feature_gram`) are :func:`st_mmd2`,
:func:`st_drmmd` and :func:`st_drmmd_weights`.

SrMMD and HrMMD (Tian, Sriperumbudur, Gretton and Chen, 2026) bound the witness's gradient under
the *particles* instead: see :mod:`~.sobolev` (kernels of :data:`studentteacher.kernels.SMOOTH_RADIAL`
only). KALE (Glaser, Arbel and Gretton, 2021): :mod:`~.kale_divergence`.

One module per family: :mod:`~.mmd_drmmd` (MMD, DrMMD), :mod:`~.student_teacher` (their closed
forms in the student-teacher problem), :mod:`~.kale_divergence`, :mod:`~.sobolev` (SrMMD, HrMMD).
"""
from __future__ import annotations

from .kale_divergence import KaleDual, kale, kale_dual, kale_dual_objective, kale_from_dual, kale_witness
from .mmd_drmmd import GramEigh, drmmd, drmmd_spectral, drmmd_witness, mmd2, mmd_witness
from .sobolev import (
    SOBOLEV_SOLVERS, SobolevWitness, WitnessJet, hrmmd, hrmmd_witness, jet_gram, jet_gram_matvec, jet_weights,
    sobolev_jet, sobolev_witness, solve_cg, solve_dense, srmmd, witness_jet,
)  # fmt: skip
from .student_teacher import st_drmmd, st_drmmd_weights, st_mmd2

__all__ = [
    "GramEigh", "drmmd", "drmmd_spectral", "drmmd_witness", "mmd2", "mmd_witness", "st_drmmd",
    "st_drmmd_weights", "st_mmd2", "KaleDual", "kale", "kale_dual", "kale_dual_objective", "kale_from_dual",
    "kale_witness", "SOBOLEV_SOLVERS", "SobolevWitness", "WitnessJet", "hrmmd", "hrmmd_witness", "jet_gram",
    "jet_gram_matvec", "jet_weights", "sobolev_jet", "sobolev_witness", "solve_cg", "solve_dense", "srmmd",
    "witness_jet",
]  # fmt: skip
