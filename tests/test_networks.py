"""Features, surrogate gradients and per-sample Grams against independent computations."""
from __future__ import annotations

import pytest
import torch

from conftest import ARCH_CASES, tiny_network
from studentteacher.networks import Architecture, forward, init_params, per_sample_gram, surrogate_grad


def features_by_loops(arch, params, x):
    """phi[b, i, o] computed one sample and one particle at a time (slow, obvious)."""
    n, h, d = params["W"].shape
    o = params["V"].shape[1]
    phi = torch.empty(x.shape[0], n, o, dtype=x.dtype)
    for b in range(x.shape[0]):
        all_hidden = torch.cat([params["W"][j] @ x[b] + (params["bW"][j] if arch.bias else 0) for j in range(n)])
        all_hidden = torch.relu(all_hidden)
        for i in range(n):
            own_hidden = all_hidden[i * h : (i + 1) * h] if arch.readout == "particle" else all_hidden
            u = params["V"][i] @ own_hidden + (params["bV"][i] if arch.bias else 0)
            phi[b, i] = torch.exp(-(u**2) / arch.sigma**2)
    return phi


@pytest.mark.parametrize("readout,bias,d_out", ARCH_CASES)
def test_features_match_loops(readout, bias, d_out):
    arch, params, x = tiny_network(readout, bias, d_out)
    phi = forward(arch, params, x).features
    assert phi.shape == (7, 4, d_out) and phi.dtype == torch.float64
    torch.testing.assert_close(phi, features_by_loops(arch, params, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("readout,bias,d_out", ARCH_CASES)
def test_surrogate_grad_matches_autograd(readout, bias, d_out):
    arch, params, x = tiny_network(readout, bias, d_out)
    rho = torch.randn(7, d_out, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    leaves = {key: value.clone().requires_grad_(True) for key, value in params.items()}
    surrogate = (forward(arch, leaves, x).features * rho[:, None, :]).sum() / x.shape[0]
    expected = torch.autograd.grad(surrogate, list(leaves.values()))
    grads = surrogate_grad(arch, params, x, forward(arch, params, x), rho)
    assert set(grads) == set(params)
    for key, want in zip(leaves, expected):
        torch.testing.assert_close(grads[key], want, rtol=1e-10, atol=1e-12, msg=f"gradient of {key}")


def explicit_jacobian(arch, params, x):
    """J[(b, o), theta] of sum_i phi_i(x_b)_o by torch.func.jacrev (float64)."""
    keys = list(params)

    def network_sum(*tensors):
        return forward(arch, dict(zip(keys, tensors)), x).features.sum(1).reshape(-1)  # (B*O,)

    jac = torch.func.jacrev(network_sum, argnums=tuple(range(len(keys))))(*params.values())
    return torch.cat([j.reshape(j.shape[0], -1) for j in jac], dim=1)


@pytest.mark.parametrize("readout,bias,d_out", ARCH_CASES)
def test_per_sample_gram_matches_explicit_jacobian(readout, bias, d_out):
    arch, params, x = tiny_network(readout, bias, d_out)
    jac = explicit_jacobian(arch, params, x)
    gram = per_sample_gram(arch, params, x, forward(arch, params, x))
    torch.testing.assert_close(gram, jac @ jac.T, rtol=1e-10, atol=1e-12)


def test_initialisation_moments_and_shapes():
    arch = Architecture(readout="dense", d_in=50, hidden=3, bias=True)
    params = init_params(arch, 200, 0.001, 1.0, torch.Generator().manual_seed(3))
    assert params["W"].shape == (200, 3, 50) and params["V"].shape == (200, 1, 600)
    assert params["bW"].shape == (200, 3) and params["bV"].shape == (200, 1)
    every = torch.cat([p.reshape(-1) for p in params.values()]).double()
    assert abs(every.mean().item() - 0.001) < 5 * every.numel() ** -0.5
    assert abs(every.std().item() - 1.0) < 0.01


def test_bad_architecture_names_key():
    with pytest.raises(ValueError, match=r"readout must be one of \['particle', 'dense'\], got 'mean'"):
        Architecture(readout="mean")
    with pytest.raises(ValueError, match="hidden must be an integer >= 1"):
        Architecture(hidden=0)
