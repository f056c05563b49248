"""The noise-conditional feature map phi(x, t; theta) of DMMD (docs/model.md): an MLP on [x, e(t)].

.. math::

    e(t) = [\\sin(\\omega_k t), \\cos(\\omega_k t)]_{k < E/2}, \\quad \\omega_k = \\omega_{\\max}^{k / (E/2 - 1)}
    \\ (\\text{geometric from } 1 \\text{ to } \\omega_{\\max} = 100),

    \\varphi(x, t) = W_L \\, \\mathrm{SiLU}(\\cdots \\mathrm{SiLU}(W_1 [x, e(t)] + b_1) \\cdots) + b_L
    \\in \\mathbb{R}^F.

Sizes (``hidden`` H units in each of ``layers`` hidden layers, ``features`` F, ``embedding`` E) are
meant for a CPU: H = 256, two hidden layers, F = 64, E = 32 train at a few ms per step. The
parameters are drawn from a ``torch.Generator`` (PyTorch's default Linear initialisation, U(-1/sqrt(fan_in),
1/sqrt(fan_in)) for weights and biases), never from the global seed.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

MAX_FREQUENCY = 100.0


@dataclass(frozen=True)
class Architecture:
    """The sizes of a :class:`Discriminator`: data dimension d, hidden units H, hidden layers, features F, embedding E."""

    dim: int
    hidden: int = 256
    layers: int = 2
    features: int = 64
    embedding: int = 32

    def as_dict(self) -> dict:
        return asdict(self)


def init_uniform(module: nn.Module, generator: torch.Generator | None) -> None:
    """Every ``nn.Linear`` of ``module``: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's
    default Linear initialisation), drawn from ``generator`` in module order instead of the global seed."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)
                for parameter in (layer.weight, layer.bias):
                    draw = torch.rand(parameter.shape, generator=generator, dtype=parameter.dtype)
                    parameter.copy_(draw.to(parameter.device) * (2 * bound) - bound)


def time_embedding(t: torch.Tensor, size: int) -> torch.Tensor:
    """e(t) ``[n, E]`` for ``t: [n]`` (module docstring); E = ``size`` (even, >= 2)."""
    half = size // 2
    exponents = torch.arange(half, dtype=t.dtype, device=t.device) / max(half - 1, 1)  # (E/2,)
    angles = t[:, None] * MAX_FREQUENCY**exponents[None, :]  # (n, E/2)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class Discriminator(nn.Module):
    """phi(x, t): ``x: [n, d]``, ``t: [n]`` or a number -> ``[n, F]`` (module docstring)."""

    def __init__(self, architecture: Architecture, generator: torch.Generator | None = None, dtype=torch.float32):
        super().__init__()
        if architecture.embedding < 2 or architecture.embedding % 2:
            raise ValueError(f"embedding must be an even number >= 2, got {architecture.embedding!r}")
        self.architecture = architecture
        sizes = [architecture.dim + architecture.embedding] + [architecture.hidden] * architecture.layers
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out, dtype=dtype), nn.SiLU()]
        layers.append(nn.Linear(sizes[-1], architecture.features, dtype=dtype))
        self.net = nn.Sequential(*layers)
        init_uniform(self, generator)

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        t = t.expand(x.shape[0]) if t.dim() == 0 else t  # (n,)
        return self.net(torch.cat([x, time_embedding(t, self.architecture.embedding)], dim=1))  # (n, F)


def features_by_blocks(discriminator: Discriminator, x: torch.Tensor, t, rows: int = 4096) -> torch.Tensor:
    """phi(x, t) ``[n, F]`` without a graph, ``rows`` points at a time."""
    with torch.no_grad():
        return torch.cat([discriminator(block, t) for block in x.split(rows)], dim=0)
