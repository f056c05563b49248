"""How the training loop holds R replicas' particles, data and schedule values (the layout).

* :class:`OneReplica` (R = 1): as a plain run holds them (``[N, ...]``), the rule's own step
  (compiled when the config asks), Python-float schedule values;
* :class:`StackedReplicas` (R > 1): a leading replica dimension (``[R, N, ...]``), the step mapped
  over it with ``torch.func.vmap``, per-replica schedule values ``[R]``. Replicas never mix (every
  product is per replica), so replica r follows the plain run of its config (float64: to rounding).
"""
from __future__ import annotations

import torch

from ..networks import Params


class OneReplica:
    """One replica held as a plain run holds it: no replica dimension, Python-float schedule values,
    functions of one run applied as they are."""

    size = 1

    def __init__(self, dtype: torch.dtype, device: torch.device):
        self.dtype, self.device = dtype, device

    def stack(self, tensors: list):
        return tensors[0]

    def pick(self, value, replica: int):
        return value

    def stack_params(self, params: list[Params]) -> Params:
        return params[0]

    def pick_params(self, params: Params, replica: int) -> Params:
        return params

    def values(self, floats: list[float]):
        """Per-replica schedule values: the float itself."""
        return floats[0]

    def map(self, function, in_dims=0):
        return function

    def take(self, data: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Rows ``index: [B]`` of ``data: [n, ...]``."""
        return data[index]

    def zeros(self) -> torch.Tensor:
        return torch.zeros((), dtype=self.dtype, device=self.device)


class StackedReplicas(OneReplica):
    """R > 1 replicas on a leading dimension ``[R, ...]`` (the interface of :class:`OneReplica`):
    per-replica schedule values ``[R]``, functions of one run mapped with ``torch.func.vmap``."""

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device):
        super().__init__(dtype, device)
        self.size = size
        self.rows = torch.arange(size, device=device)[:, None]  # (R, 1)

    def stack(self, tensors: list):
        return torch.stack(tensors)

    def pick(self, value, replica: int):
        return value[replica]

    def stack_params(self, params: list[Params]) -> Params:
        return {key: torch.stack([p[key] for p in params]) for key in params[0]}

    def pick_params(self, params: Params, replica: int) -> Params:
        return {key: value[replica] for key, value in params.items()}

    def values(self, floats: list[float]) -> torch.Tensor:
        return torch.tensor(floats, dtype=self.dtype, device=self.device)  # (R,)

    def map(self, function, in_dims=0):
        return torch.func.vmap(function, in_dims=in_dims)

    def take(self, data: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Rows ``index: [R, B]`` of ``data: [R, n, ...]``, per replica."""
        return data[self.rows, index]  # (R, B, ...)

    def zeros(self) -> torch.Tensor:
        return torch.zeros(self.size, dtype=self.dtype, device=self.device)
