import math

import pytest
import torch

from interp_grok.analysis.fourier import (
    basis_norms,
    fourier_basis,
    frequency_norms,
    gini,
    ipr,
    key_frequencies,
)
from interp_grok.models.mlp import neuron_curves


@pytest.mark.parametrize("p", [2, 5, 12, 97])
def test_basis_is_orthonormal(p):
    F, labels = fourier_basis(p)
    assert F.shape == (p, p) and len(labels) == p
    torch.testing.assert_close(F @ F.T, torch.eye(p, dtype=torch.float64))


def test_basis_order_is_nanda():
    F, labels = fourier_basis(7)
    assert labels[:4] == ["const", "cos 1", "sin 1", "cos 2"]
    x = torch.arange(7, dtype=torch.float64)
    torch.testing.assert_close(F[3], math.sqrt(2 / 7) * torch.cos(2 * math.pi * 2 * x / 7))
    assert fourier_basis(8)[1][-1] == "cos 4"  # Nyquist row for even p


def test_synthetic_embedding_gives_exactly_its_frequencies():
    p, d = 97, 32
    g = torch.Generator().manual_seed(0)
    x = torch.arange(p, dtype=torch.float64)
    chosen = {3: 1.0, 17: 0.7, 41: 0.4}
    W_E = torch.zeros(p, d, dtype=torch.float64)
    expected = torch.zeros(p // 2, dtype=torch.float64)
    for k, amp in chosen.items():
        u = amp * torch.randn(d, generator=g, dtype=torch.float64)
        v = amp * torch.randn(d, generator=g, dtype=torch.float64)
        W_E += torch.outer(torch.cos(2 * math.pi * k * x / p), u) + torch.outer(torch.sin(2 * math.pi * k * x / p), v)
        # <sqrt(2/p) cos, cos> = sqrt(p/2): the basis row picks up sqrt(p/2) * u
        expected[k - 1] = math.sqrt(p / 2) * torch.cat([u, v]).norm()
    N = frequency_norms(W_E)
    torch.testing.assert_close(N, expected, atol=1e-9, rtol=1e-9)
    assert key_frequencies(N).tolist() == [3, 17, 41]
    # a threshold just above the weakest chosen frequency's share drops exactly that one
    weakest = N[40] / N.max()
    assert key_frequencies(N, threshold=weakest.item() * 1.001).tolist() == [3, 17]
    # all of W_E's norm is in those frequencies: n_f summed over rows equals ||W_E||
    torch.testing.assert_close(basis_norms(W_E).pow(2).sum(), W_E.pow(2).sum())


def test_frequency_norms_batched_and_even_p():
    W = torch.randn(3, 12, 5, dtype=torch.float64)
    N = frequency_norms(W)
    assert N.shape == (3, 6)
    torch.testing.assert_close(N[1], frequency_norms(W[1]))
    # Parseval without the constant row
    F, _ = fourier_basis(12)
    torch.testing.assert_close(N.pow(2).sum(-1), W.pow(2).sum((-1, -2)) - (F[0] @ W).pow(2).sum(-1))


def test_gini_known_values():
    assert gini(torch.ones(48)).item() == pytest.approx(0.0, abs=1e-12)
    one_hot = torch.zeros(48)
    one_hot[5] = 3.0
    assert gini(one_hot).item() == pytest.approx(47 / 48)
    assert gini(torch.tensor([0.0, 0.0, 1.0, 1.0])).item() == pytest.approx(0.5)
    c = torch.rand(20, dtype=torch.float64)
    brute = (c[:, None] - c[None, :]).abs().sum() / (2 * 20 * c.sum())
    assert gini(c).item() == pytest.approx(brute.item())


def test_key_frequency_threshold_checked():
    with pytest.raises(ValueError):
        key_frequencies(torch.ones(4), threshold=0.0)


def test_ipr_known_answers():
    p = 97
    x = torch.arange(p, dtype=torch.float64)
    assert ipr(torch.cos(2 * math.pi * 5 * x / p + 0.3)).item() == pytest.approx(1.0, abs=1e-12)
    # square wave: odd harmonics 1, 1/3, 1/5, ... give (pi^4/96) / (pi^2/8)^2 = 2/3 in the limit
    square = torch.sign(torch.cos(2 * math.pi * 3 * x / p))
    assert ipr(square).item() == pytest.approx(2 / 3, abs=0.03)
    noise = torch.randn(2000, p, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert ipr(noise).mean().item() == pytest.approx(2 / (p // 2 + 1), rel=0.1)  # ~0.04
    assert ipr(noise).shape == (2000,)


def test_neuron_curves_and_gromov_neurons_have_ipr_one():
    """Gromov's construction (science.md §8): every neuron's input and output curve is one
    cosine, so every IPR is 1."""
    p, N = 31, 40
    g = torch.Generator().manual_seed(0)
    x = torch.arange(p, dtype=torch.float64)
    sigma = torch.randint(1, p // 2 + 1, (N,), generator=g).double()
    phase = 2 * math.pi * torch.rand(N, generator=g, dtype=torch.float64)
    U = torch.cos(2 * math.pi * sigma[:, None] * x / p + phase[:, None])  # [N, p]
    # realize U with d_model = p: W_E = F^T, so W_E @ (F @ U^T) = U^T; W_out = U F^T, W_U = F
    F, _ = fourier_basis(p)
    params = {"W_E": F.T, "W_in": torch.cat([F @ U.T, F @ U.T]), "W_out": U @ F.T, "W_U": F}
    curves = neuron_curves(params)
    torch.testing.assert_close(curves["in_a"], U)
    torch.testing.assert_close(curves["out"], U)
    for c in curves.values():
        torch.testing.assert_close(ipr(c), torch.ones(N, dtype=torch.float64))
