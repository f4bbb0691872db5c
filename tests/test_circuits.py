import math

import pytest
import torch
from known_models import cosine_logits, fourier_mlp

from interp_grok.circuits import (
    excluded_logits,
    excluded_loss,
    project_sum_frequencies,
    restricted_logits,
    restricted_loss,
    sum_direction_basis,
)
from interp_grok.fourier import frequency_norms, key_frequencies
from interp_grok.model import grid_logits, per_example_cross_entropy


def _labels(p):
    r = torch.arange(p)
    return ((r[:, None] + r[None, :]) % p).flatten()


def _full_ce(L, y):
    p = L.shape[0]
    return per_example_cross_entropy(L.reshape(p * p, p), y).mean()


@pytest.mark.parametrize("p", [7, 97])
def test_cosine_logits_are_their_own_projection(p):
    freqs = {1: 3.0, 2: 1.5, 3: 2.0} if p == 7 else {4: 5.0, 11: 3.0, 32: 4.0, 43: 2.0}
    L = cosine_logits(p, freqs)
    keys = torch.tensor(list(freqs))
    torch.testing.assert_close(project_sum_frequencies(L, keys), L)
    y = _labels(p)
    assert restricted_loss(L, keys, y).item() == pytest.approx(_full_ce(L, y).item(), rel=1e-12)
    assert excluded_logits(L, keys).abs().max() < 1e-10
    assert excluded_loss(L, keys, y).item() == pytest.approx(math.log(p), rel=1e-12)


def test_projection_matches_definition_brute_force():
    """<c_k, L[:, :, c]> c_k + <s_k, L[:, :, c]> s_k summed over K, built as explicit grid vectors."""
    p, keys = 7, torch.tensor([2, 3])
    L = torch.randn(p, p, p, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    r = torch.arange(p, dtype=torch.float64)
    s = r[:, None] + r[None, :]
    P = torch.zeros_like(L)
    for k in keys.tolist():
        for fn in (torch.cos, torch.sin):
            v = math.sqrt(2) / p * fn(2 * math.pi * k * s / p)  # [p, p], unit norm
            assert v.pow(2).sum().item() == pytest.approx(1.0)
            coef = torch.einsum("ab,abc->c", v, L)
            P += v[:, :, None] * coef[None, None, :]
    torch.testing.assert_close(project_sum_frequencies(L, keys), P)
    torch.testing.assert_close(restricted_logits(L, keys), P + L.mean((0, 1)))


def test_even_p_nyquist_direction_is_unit():
    p = 8
    B = sum_direction_basis(p, torch.tensor([1, 4]))
    assert B.shape == (3, p)  # cos 1, sin 1, Nyquist cos 4
    # each grid vector takes B[m, s] on the p pairs with a + b = s: grid Gram = p * B B^T
    torch.testing.assert_close(p * B @ B.T, torch.eye(3, dtype=torch.float64))


def test_difference_directions_are_excluded_entirely():
    """Logits depending on a - b only have no sum-direction component."""
    p = 11
    r = torch.arange(p, dtype=torch.float64)
    L = torch.cos(2 * math.pi * 3 * (r[:, None, None] - r[None, :, None] - r[None, None, :]) / p).expand(p, p, p)
    assert project_sum_frequencies(L, torch.tensor([1, 2, 3, 4, 5])).abs().max() < 1e-12


def test_hand_built_fourier_network_is_correct_with_its_key_frequencies():
    p, freqs = 31, [3, 7, 11]
    params = fourier_mlp(p, freqs)
    L = grid_logits(params, "relu")
    y = _labels(p)
    assert (L.reshape(p * p, p).argmax(-1) == y).all()  # computes (a + b) mod p exactly
    assert key_frequencies(frequency_norms(params["W_E"])).tolist() == freqs
    keys = torch.tensor(freqs)
    full = _full_ce(L, y).item()
    # the key frequencies carry the computation: keeping only them keeps the loss low,
    # removing them leaves nothing better than chance
    assert full < 0.2
    assert excluded_loss(L, keys, y).item() > math.log(p) - 0.5
    # projecting replaces each frequency's |cos(w_k (a-b)/2)| weight by its mean over the grid,
    # which lifts the worst pairs' margins: restricted loss below the full loss (as in the paper)
    assert restricted_loss(L, keys, y).item() < full
    other = torch.tensor([1, 2, 4])
    assert restricted_loss(L, other, y).item() > math.log(p) - 0.5


def test_lookup_table_control_recovers_clean_labels_through_the_projection():
    """A pure memorizer of noisy labels has no Fourier circuit, yet its restricted logits over all
    frequencies are the anti-diagonal vote, which the clean label (X = 0, the mode) wins."""
    from interp_grok.circuits import lookup_table_logits, restricted_accuracy
    from interp_grok.data import sample_noise

    p = 31
    noise = sample_noise(p * p, 2, 0.5, torch.Generator().manual_seed(0))
    clean = _labels(p)
    noisy = (clean + noise) % p
    idx = torch.randperm(p * p, generator=torch.Generator().manual_seed(1))[: p * p // 2]
    L = lookup_table_logits(p, idx, noisy)
    full_acc = (L.reshape(p * p, p).argmax(-1) == clean).double().mean().item()
    all_freqs = torch.arange(1, p // 2 + 1)
    assert restricted_accuracy(L, all_freqs, clean) > 0.7 > full_acc
    # exactly the anti-diagonal vote: restricted logits = per-(s, c) mean over the diagonal
    s = (torch.arange(p)[:, None] + torch.arange(p)[None, :]) % p
    votes = torch.zeros(p, p, dtype=torch.float64).index_add_(0, s.flatten(), L.reshape(p * p, p)) / p
    torch.testing.assert_close(restricted_logits(L, all_freqs), votes[s])
