"""The pairwise DMMD sampler: the interacting step from the Gram matrices (the O(N^2 + N M) reference).

f_t(Z_i) = (1/N) sum_j kappa(phi(Z_i), phi(Z_j)) - (1/M) sum_m kappa(phi(Z_i), phi(x_m)), the
Grams ``[N, N]`` and ``[N, M]`` built explicitly and differentiated by autograd in their first argument.
"""
from __future__ import annotations

from ..discriminator import features_by_blocks
from .base import Sampler


class PairwiseSampler(Sampler):
    """Explicit Grams; the data side is phi(x, t) ``[M, F]`` itself."""

    name = "pairwise"

    def prepare(self, level):
        return features_by_blocks(self.discriminator, self.data, level)  # (M, F)

    def potential(self, features, prepared, step):
        gram_particles = self.kernel.gram(features, features.detach())  # (N, N)
        return gram_particles.mean(1) - self.kernel.gram(features, prepared).mean(1)  # (N,)
