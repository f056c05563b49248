"""Teacher and student networks as tensors of particles.

A particle Z = (W, V) has the feature map (docs/model.md)

.. math::

    \\phi_Z(x) = s(V\\,\\mathrm{relu}(W x + b_W) + b_V), \\qquad s(u) = \\exp(-u^2/\\sigma^2),\\ \\sigma = 2

and a network of N particles predicts f(x) = (1/N) sum_i phi_{Z_i}(x).

Parameters are a dict of tensors (``Params``):

========  ==============================  ==============================
key       ``readout="particle"``          ``readout="dense"``
========  ==============================  ==============================
``W``     ``[N, H, d]``                   ``[N, H, d]`` (the N*H shared hidden units)
``V``     ``[N, d_out, H]``               ``[N, d_out, N*H]`` (every output sees every hidden unit)
``bW``    ``[N, H]`` (``bias=True``)       ``[N, H]``
``bV``    ``[N, d_out]`` (``bias=True``)   ``[N, d_out]``
========  ==============================  ==============================

``particle`` is the mean-field model (each output sees only its own H hidden units); ``dense``
is the shared hidden layer of the papers' public code. Features are ``[B, N, d_out]``, computed
with batched matrix products; gradients of the surrogate S = (1/B) sum_b sum_i rho_b^T phi_i(x_b)
are computed in closed form (:func:`surrogate_grad`), as is the B x B Gram of per-sample
gradients that kernel Sobolev descent needs (:func:`per_sample_gram`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

Params = dict[str, torch.Tensor]
READOUTS = ("particle", "dense")
QUADEXP_SIGMA = 2.0


@dataclass(frozen=True)
class Architecture:
    """Shape of a particle network: ``readout`` in READOUTS, sizes, biases, the output sigma."""

    readout: str = "particle"
    d_in: int = 50
    hidden: int = 3
    d_out: int = 1
    bias: bool = False
    sigma: float = QUADEXP_SIGMA

    def __post_init__(self):
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {list(READOUTS)}, got {self.readout!r}")
        for key in ("d_in", "hidden", "d_out"):
            value = getattr(self, key)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{key} must be an integer >= 1, got {value!r}")


@dataclass
class Forward:
    """What a forward pass keeps for the backward formulas. Shapes for B inputs, N particles."""

    hidden: torch.Tensor  # relu(W x + b_W): particle [B, N, H]; dense [B, N*H]
    pre_output: torch.Tensor  # u = V h + b_V: [B, N, d_out]
    features: torch.Tensor  # phi = exp(-u^2 / sigma^2): [B, N, d_out]

    def mean(self) -> torch.Tensor:
        """Network output f(x) = mean_i phi_i(x): ``[B, d_out]``."""
        return self.features.mean(1)


def init_params(
    arch: Architecture,
    n_particles: int,
    mean: float,
    std: float,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Params:
    """Draw every weight (and bias) i.i.d. N(mean, std^2) from ``generator``.

    Draws happen in float64 on the generator's device (CPU for a CPU generator), in a fixed
    order (W, V, bW, bV), then are cast and moved, so that a seed gives the same network on any
    device and dtype up to rounding.
    """
    n, h, d, o = n_particles, arch.hidden, arch.d_in, arch.d_out
    v_in = h if arch.readout == "particle" else n * h
    shapes = {"W": (n, h, d), "V": (n, o, v_in)}
    if arch.bias:
        shapes |= {"bW": (n, h), "bV": (n, o)}
    params = {}
    for key, shape in shapes.items():
        draw = torch.randn(shape, generator=generator, dtype=torch.float64, device=generator.device)
        params[key] = (mean + std * draw).to(device=device, dtype=dtype)
    return params


def forward(arch: Architecture, params: Params, x: torch.Tensor) -> Forward:
    """Features of every particle at ``x: [B, d]``; returns :class:`Forward` (phi ``[B, N, d_out]``)."""
    weight_w, weight_v = params["W"], params["V"]
    n, h, d = weight_w.shape
    o = weight_v.shape[1]
    pre_hidden = x @ weight_w.reshape(n * h, d).T  # (B, N*H)
    if "bW" in params:
        pre_hidden = pre_hidden + params["bW"].reshape(n * h)
    hidden = torch.relu(pre_hidden)  # (B, N*H)
    if arch.readout == "particle":
        hidden = hidden.reshape(-1, n, h)  # (B, N, H)
        if o == 1:
            pre_output = (hidden * weight_v[:, 0, :]).sum(-1, keepdim=True)  # (B, N, 1)
        else:
            pre_output = torch.einsum("bnh,noh->bno", hidden, weight_v)  # (B, N, O)
    else:
        pre_output = (hidden @ weight_v.reshape(n * o, n * h).T).reshape(-1, n, o)  # (B, N, O)
    if "bV" in params:
        pre_output = pre_output + params["bV"]
    features = torch.exp(-(pre_output**2) / arch.sigma**2)  # (B, N, O)
    return Forward(hidden=hidden, pre_output=pre_output, features=features)


def output(arch: Architecture, params: Params, x: torch.Tensor) -> torch.Tensor:
    """f(x) = (1/N) sum_i phi_{Z_i}(x) at ``x: [B, d]`` -> ``[B, d_out]``."""
    return forward(arch, params, x).mean()


def _feature_slope(arch: Architecture, fwd: Forward) -> torch.Tensor:
    """d phi / d u = -2 u / sigma^2 * phi: ``[B, N, d_out]``."""
    return -2.0 * fwd.pre_output / arch.sigma**2 * fwd.features


def _through_relu(grad: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """grad * 1[hidden > 0] (the backward of relu, hidden = relu(pre-hidden)), broadcast to ``grad``.

    The relu backward kernel: on the CPU it is ~20x faster than ``torch.where`` with a boolean mask.
    """
    return torch.ops.aten.threshold_backward(grad, hidden.expand_as(grad), 0.0)


def surrogate_grad(arch: Architecture, params: Params, x: torch.Tensor, fwd: Forward, rho: torch.Tensor) -> Params:
    """Gradient of S = (1/B) sum_b sum_i rho_b^T phi_{Z_i}(x_b) with respect to every parameter.

    ``x: [B, d]``, ``rho: [B, d_out]`` (detached per-sample weights), ``fwd`` = forward(params, x).
    For particle i in the particle readout this is (1/B) sum_b (d phi_i(x_b)/d Z_i)^T rho_b.
    Returns a dict with the keys and shapes of ``params``.
    """
    weight_w, weight_v = params["W"], params["V"]
    n, h, d = weight_w.shape
    o = weight_v.shape[1]
    batch = x.shape[0]
    delta_u = _feature_slope(arch, fwd) * rho[:, None, :] / batch  # dS/du: (B, N, O)
    grads: Params = {}
    if arch.readout == "particle":
        hidden = fwd.hidden  # (B, N, H)
        if o == 1:
            grads["V"] = torch.einsum("bn,bnh->nh", delta_u[..., 0], hidden)[:, None, :]  # (N, 1, H)
            delta_h = delta_u * weight_v[:, 0, :]  # (B, N, H)
        else:
            grads["V"] = torch.einsum("bno,bnh->noh", delta_u, hidden)  # (N, O, H)
            delta_h = torch.einsum("bno,noh->bnh", delta_u, weight_v)  # (B, N, H)
        delta_h = _through_relu(delta_h, hidden).reshape(batch, n * h)  # dS/d(pre-hidden): (B, N*H)
    else:
        hidden = fwd.hidden  # (B, N*H)
        delta_flat = delta_u.reshape(batch, n * o)  # (B, N*O)
        grads["V"] = (delta_flat.T @ hidden).reshape(n, o, n * h)  # (N, O, N*H)
        delta_h = _through_relu(delta_flat @ weight_v.reshape(n * o, n * h), hidden)  # (B, N*H)
    grads["W"] = (delta_h.T @ x).reshape(n, h, d)  # (N, H, d)
    if "bW" in params:
        grads["bW"] = delta_h.sum(0).reshape(n, h)
    if "bV" in params:
        grads["bV"] = delta_u.sum(0)  # (N, O)
    return grads


def per_sample_gram(arch: Architecture, params: Params, x: torch.Tensor, fwd: Forward) -> torch.Tensor:
    """Gram of per-sample gradients, G = J J^T with J_(b,o) = d/dtheta sum_i phi_{Z_i}(x_b)_o.

    Returns ``[B*d_out, B*d_out]`` (rows ordered b-major). Closed form: each layer's per-sample
    gradient is an outer product (output-side factor x input), so its Gram is the Hadamard
    product of two small Grams; no per-sample backward pass.
    """
    weight_w, weight_v = params["W"], params["V"]
    n, h, _ = weight_w.shape
    o = weight_v.shape[1]
    batch = x.shape[0]
    slope = _feature_slope(arch, fwd)  # (B, N, O)
    eye_o = torch.eye(o, dtype=x.dtype, device=x.device)
    if arch.readout == "particle":
        hidden = fwd.hidden  # (B, N, H)
        # layer V: d/dV[i,o',:] = delta_{oo'} slope[b,i,o] h[b,i,:]
        v_factor = (slope[..., None] * hidden[:, :, None, :]).permute(0, 2, 1, 3).reshape(batch, o, n * h)
        gram_v = torch.einsum("boK,coK->bco", v_factor, v_factor)  # (B, C, O)
        gram = torch.diag_embed(gram_v)  # (B, C, O, O)
        # layer W: d/dW[i,h,:] = e[b,o,i,h] x_b with e = slope[b,i,o] V[i,o,h] 1[h>0]
        e = _through_relu(torch.einsum("bno,noh->bonh", slope, weight_v), hidden[:, None])  # (B, O, N, H)
        e = e.reshape(batch, o, n * h)
    else:
        hidden = fwd.hidden  # (B, N*H)
        # layer V: d/dV[(i,o'),:] = delta_{oo'} slope[b,i,o] h_b
        gram_v = torch.einsum("bno,cno->bco", slope, slope) * (hidden @ hidden.T)[:, :, None]  # (B, C, O)
        gram = torch.diag_embed(gram_v)  # (B, C, O, O)
        e = _through_relu(torch.einsum("bno,noj->boj", slope, weight_v), hidden[:, None, :])  # (B, O, N*H)
    inputs_gram = x @ x.T  # (B, C)
    if "bW" in params:
        inputs_gram = inputs_gram + 1.0
    gram = gram + torch.einsum("boK,cpK->bcop", e, e) * inputs_gram[:, :, None, None]  # (B, C, O, P)
    if "bV" in params:
        gram = gram + torch.einsum("bno,cno->bco", slope, slope)[..., None] * eye_o
    return gram.permute(0, 2, 1, 3).reshape(batch * o, batch * o)
