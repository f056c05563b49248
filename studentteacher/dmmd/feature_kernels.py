"""Kernels on the discriminator's features, k_{theta,t}(x, y) = kappa(phi(x; t), phi(y; t)) (docs/model.md).

Features ``a: [..., n, F]``, ``b: [..., m, F]`` (any leading dimensions, e.g. a group per noise level):

=========== ======================================= ========================================================
name        kappa(a, b)                             mean embedding
=========== ======================================= ========================================================
``linear``  a^T b                                    the mean feature ``[..., F]``: every mean over a sample is
                                                     O(n F), and a witness is one dot product per point
``rbf``     exp(-|a - b|^2 / (2 s^2)), s =           none finite: means over a sample go through the Gram
            ``bandwidth`` (on the features)          ``[..., n, m]``
=========== ======================================= ========================================================

With P (the data, "x") and Q (the moving or noised sample, "y") the witness is
f(z) = mean_j kappa(phi(z), phi(y_j)) - mean_i kappa(phi(z), phi(x_i)) (it is high where Q has
too much mass, so particles move along -grad f), and :meth:`FeatureKernel.mmd2_unbiased` is the
unbiased estimator for *paired* samples (x_i, y_i) (Gretton et al. 2012, MMD_u^2):

.. math::

    \\widehat{\\mathrm{MMD}}^2_u = \\frac{1}{n(n-1)} \\sum_{i \\ne j}
        \\kappa(a_i, a_j) + \\kappa(b_i, b_j) - \\kappa(a_i, b_j) - \\kappa(a_j, b_i).
"""
from __future__ import annotations

import torch


class FeatureKernel:
    """A kernel on features; every method takes ``[..., n, F]`` features (module docstring)."""

    name: str = ""

    def gram(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """kappa(a_i, b_j): ``[..., n, F], [..., m, F] -> [..., n, m]``."""
        raise NotImplementedError

    def pair(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """kappa(a_i, b_i): ``[..., n, F], [..., n, F] -> [..., n]``."""
        raise NotImplementedError

    def summarise(self, features: torch.Tensor):
        """What :meth:`mean_to` needs of a sample's features ``[..., m, F]`` (the features themselves by default)."""
        return features

    def mean_to(self, features: torch.Tensor, summary) -> torch.Tensor:
        """mean_j kappa(a_i, b_j) for ``features = a: [..., n, F]`` and a :meth:`summarise` d sample b: ``[..., n]``."""
        return self.gram(features, summary).mean(-1)

    def witness(self, points: torch.Tensor, data: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """f(z) = mean_j kappa(phi(z), phi(y_j)) - mean_i kappa(phi(z), phi(x_i)) at the features
        ``points: [..., p, F]`` of the points z, given those of the data and the moving sample -> ``[..., p]``."""
        return self.mean_to(points, self.summarise(moving)) - self.mean_to(points, self.summarise(data))

    def _pair_sums(self, a, b):
        """(sum_{i,j} kappa(a_i, b_j), sum_i kappa(a_i, b_i)), each ``[...]``."""
        return self.gram(a, b).sum((-2, -1)), self.pair(a, b).sum(-1)

    def mmd2_unbiased(self, data: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """MMD_u^2 of the paired samples (data_i, moving_i) ``[..., n, F]`` -> ``[...]`` (module docstring)."""
        n = data.shape[-2]
        total_xx, diagonal_xx = self._pair_sums(data, data)
        total_yy, diagonal_yy = self._pair_sums(moving, moving)
        total_xy, diagonal_xy = self._pair_sums(data, moving)
        off_diagonal = (total_xx - diagonal_xx) + (total_yy - diagonal_yy) - 2.0 * (total_xy - diagonal_xy)
        return off_diagonal / (n * (n - 1))


class LinearKernel(FeatureKernel):
    """kappa(a, b) = a^T b: sums over samples through mean features, O(n F)."""

    name = "linear"

    def gram(self, a, b):
        return a @ b.transpose(-2, -1)  # (..., n, m)

    def pair(self, a, b):
        return (a * b).sum(-1)  # (..., n)

    def summarise(self, features):
        return features.mean(-2)  # (..., F)

    def mean_to(self, features, summary):
        return (features @ summary[..., None])[..., 0]  # (..., n)

    def _pair_sums(self, a, b):
        return (a.sum(-2) * b.sum(-2)).sum(-1), self.pair(a, b).sum(-1)  # no Gram: O(n F)


class RBFKernel(FeatureKernel):
    """kappa(a, b) = exp(-|a - b|^2 / (2 s^2)) on the features, s = ``bandwidth``."""

    name = "rbf"

    def __init__(self, bandwidth: float = 1.0):
        if not bandwidth > 0:
            raise ValueError(f"bandwidth must be > 0, got {bandwidth!r}")
        self.bandwidth = bandwidth

    def gram(self, a, b):
        squares = (a * a).sum(-1)[..., :, None] + (b * b).sum(-1)[..., None, :] - 2.0 * a @ b.transpose(-2, -1)
        return torch.exp(-squares.clamp_min(0.0) / (2.0 * self.bandwidth**2))  # (..., n, m)

    def pair(self, a, b):
        return torch.exp(-((a - b) ** 2).sum(-1) / (2.0 * self.bandwidth**2))  # (..., n)


FEATURE_KERNELS: dict[str, type[FeatureKernel]] = {cls.name: cls for cls in (LinearKernel, RBFKernel)}


def make_feature_kernel(name: str, bandwidth: float = 1.0) -> FeatureKernel:
    """The feature kernel ``name`` (``linear`` | ``rbf``; ``bandwidth``: ``rbf`` only); ValueError listing the names."""
    if name not in FEATURE_KERNELS:
        raise ValueError(f"kernel must be one of {list(FEATURE_KERNELS)}, got {name!r}")
    return RBFKernel(bandwidth) if name == "rbf" else LinearKernel()
