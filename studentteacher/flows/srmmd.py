"""SrMMD and HrMMD flows (Tian, Sriperumbudur, Gretton and Chen, 2026).

The witness is f = (T_mu + lambda)^{-1} (m_mu - m_pi) with T_mu = alpha S_mu + (1 - alpha) C_mu under
the moving particles mu (:func:`~studentteacher.divergences.sobolev_witness`; ``srmmd``: alpha = 1,
the gradient penalty ||grad f||^2_{L2(mu)} alone; ``hrmmd``: ``hrmmd_alpha``). The value is
HrMMD^2 = <g, (T_mu + lambda)^{-1} g>, g = m_mu - m_pi, and gamma_n = ``step`` (not multiplied by
lambda, as in the authors' code: f carries a factor 1/lambda, so at large lambda a step s moves
like an MMD flow with step s / lambda).

Because T_mu moves with the particles, the first variation of HrMMD^2 is not 2 f: perturbing mu by
chi changes g by m_chi and T_mu by T_chi, so that, with f held fixed (envelope),

    d HrMMD^2 = 2 <m_chi, f> - <f, T_chi f> = int [2 f - alpha |grad f|^2 - (1 - alpha) f^2] d chi,

and d HrMMD^2 / d y_i = (2/N) grad phi(y_i) with phi = f - (alpha/2) |grad f|^2 - ((1 - alpha)/2) f^2.
The ``velocity`` option picks the move y_i -= gamma_n v_i:

* ``"witness"`` (default): v = grad f, what the authors' code does (its particles follow the
  witness's gradient). Along it MMD^2 decreases: d/dt MMD^2 = -2 <g, S_mu f>
  = -2 (||S_mu f||^2_H + lambda ||grad f||^2_{L2(mu)}) at alpha = 1. The paper's own statement of the
  velocity was not at hand here; this default follows the released code.
* ``"gradient"``: v = grad phi = grad f - alpha (Hess f) grad f - (1 - alpha) f grad f, the exact
  Wasserstein gradient of HrMMD^2 (y_i -= gamma_n (N/2) grad_i HrMMD^2, the MMD flow's scaling);
  it needs the third derivatives of the kernel.

The linear system (N d unknowns for SrMMD, N (1 + d) for HrMMD) changes with the particles and is
solved every step: ``linear_solver="dense"`` by Cholesky, O((N C)^3) with its O((N C)^2) matrix;
``"cg"`` by conjugate gradients with matrix-free O(N^2 d) products, to the relative residual
``cg_tol`` (None: sqrt of the machine epsilon), counted in :attr:`SrMMDFlow.cg_iterations`. The
kernel must be smooth (gaussian or imq: d_1 d_2 k(y, y) must exist).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import divergences
from ..kernels import SMOOTH_RADIAL
from ..keys import Key
from .base import FirstVariation, KernelFlow, as_hyper

VELOCITIES = ("witness", "gradient")
#: The config keys of these flows beside ``lmbda`` (``hrmmd_alpha`` 0.8: the authors' scripts).
VELOCITY = Key("witness", str, choices=VELOCITIES,
               help="srmmd/hrmmd: `witness` (move along grad f) or `gradient` (the exact Wasserstein gradient)")
LINEAR_SOLVER = Key("dense", str, choices=divergences.SOBOLEV_SOLVERS,
                    help="srmmd/hrmmd: the per-step linear system by `dense` Cholesky or `cg`")
HRMMD_ALPHA = Key(0.8, float, minimum=0.0, maximum=1.0,
                  help="hrmmd: weight of the gradient norm (1 - it: of the L2 norm)",
                  allowed="a number 0 <= hrmmd_alpha <= 1")


@dataclass(frozen=True)
class SobolevFirstVariation(FirstVariation):
    """:class:`FirstVariation` whose phi is built from the ``witness``
    (:class:`~studentteacher.divergences.SobolevWitness`); its particle and target weights are those of
    f's kernel terms only."""

    witness: divergences.SobolevWitness | None = None


class SrMMDFlow(KernelFlow):
    """SrMMD flow (module docstring): alpha = 1."""

    name = "srmmd"
    options = ("lmbda", "velocity", "linear_solver", "cg_tol")
    config_keys = {"velocity": VELOCITY, "linear_solver": LINEAR_SOLVER}
    kernels = SMOOTH_RADIAL
    alpha = 1.0

    @classmethod
    def unknowns_per_particle(cls, dim: int) -> int:
        """C = d: the velocity's d coordinates (the HrMMD flow adds the value)."""
        return dim

    def __init__(self, target, kernel, step_size, lmbda, velocity: str = VELOCITY.default,
                 linear_solver: str = LINEAR_SOLVER.default, cg_tol: float | None = None,
                 budget_bytes=None):  # fmt: skip
        super().__init__(target, kernel, step_size, budget_bytes)
        if velocity not in VELOCITIES:
            raise ValueError(f"velocity must be one of {list(VELOCITIES)}, got {velocity!r}")
        if linear_solver not in divergences.SOBOLEV_SOLVERS:
            raise ValueError(f"linear_solver must be one of {list(divergences.SOBOLEV_SOLVERS)}, got {linear_solver!r}")
        if getattr(kernel, "radial_derivatives", None) is None:
            raise ValueError(f"flow {self.name!r} needs a kernel of {list(SMOOTH_RADIAL)} (get_kernel), got {kernel!r}")
        self.lmbda = as_hyper(lmbda, target)  # (...)
        self.velocity_rule, self.linear_solver, self.cg_tol = velocity, linear_solver, cg_tol
        self.cg_iterations = 0
        self._jet = None  # (particles, their jet) of this step

    def first_variation(self, particles: torch.Tensor) -> SobolevFirstVariation:
        jet = divergences.sobolev_jet(self.kernel, particles, particles, self.target)  # (..., N, N + M)
        witness = divergences.sobolev_witness(jet, self.k_xx_mean, self.lmbda, self.alpha, self.linear_solver,
                                              self.cg_tol)  # fmt: skip
        self.cg_iterations += witness.iterations
        self._jet = (particles, jet)
        return SobolevFirstVariation(witness.value, witness.particle_weights, witness.target_weights, self.lmbda,
                                     self.step, witness=witness)  # fmt: skip

    def _witness_jet(self, first: SobolevFirstVariation, points, particles) -> divergences.WitnessJet:
        """f, grad f and, for the ``gradient`` velocity, (Hess f) grad f at ``points: [..., P, d]`` (the step's
        jet when they are its particles)."""
        kept, self._jet = self._jet, None
        if kept is not None and kept[0] is particles and points is particles:
            jet = kept[1]
        else:
            jet = divergences.sobolev_jet(self.kernel, points, particles, self.target)  # (..., P, N + M)
        return divergences.witness_jet(first.witness, jet, hessian=self.velocity_rule == "gradient")

    def velocity(self, first: SobolevFirstVariation, points, particles) -> torch.Tensor:
        """v = grad f (``witness``) or grad f - alpha (Hess f) grad f - (1 - alpha) f grad f (``gradient``) at
        ``points``: ``[..., P, d]``."""
        at = self._witness_jet(first, points, particles)
        if self.velocity_rule == "witness":
            return at.gradient
        return at.gradient - self.alpha * at.hessian_gradient - (1.0 - self.alpha) * at.value[..., None] * at.gradient

    def potential(self, first: SobolevFirstVariation, points, particles) -> torch.Tensor:
        """phi = f (``witness``) or f - (alpha/2) |grad f|^2 - ((1 - alpha)/2) f^2 (``gradient``) at ``points``:
        ``[..., P]``."""
        at = self._witness_jet(first, points, particles)
        if self.velocity_rule == "witness":
            return at.value
        squared_gradient = (at.gradient * at.gradient).sum(-1)
        return at.value - 0.5 * self.alpha * squared_gradient - 0.5 * (1.0 - self.alpha) * at.value**2


class HrMMDFlow(SrMMDFlow):
    """HrMMD flow (module docstring): alpha = ``hrmmd_alpha`` in [0, 1] (one for all replicas)."""

    name = "hrmmd"
    options = ("lmbda", "hrmmd_alpha", "velocity", "linear_solver", "cg_tol")
    config_keys = {**SrMMDFlow.config_keys, "hrmmd_alpha": HRMMD_ALPHA}

    @classmethod
    def unknowns_per_particle(cls, dim: int) -> int:
        """C = 1 + d: the value and the velocity's d coordinates."""
        return dim + 1

    def __init__(self, target, kernel, step_size, lmbda, hrmmd_alpha: float = HRMMD_ALPHA.default,
                 velocity: str = VELOCITY.default, linear_solver: str = LINEAR_SOLVER.default,
                 cg_tol: float | None = None, budget_bytes=None):  # fmt: skip
        if not 0.0 <= hrmmd_alpha <= 1.0:
            raise ValueError(f"hrmmd_alpha must be in [0, 1], got {hrmmd_alpha!r}")
        super().__init__(target, kernel, step_size, lmbda, velocity, linear_solver, cg_tol, budget_bytes)
        self.alpha = float(hrmmd_alpha)
