import math

import pytest
import torch
from known_models import cosine_logits, fourier_mlp

from interp_grok.analysis.circuits import (
    excluded_logits,
    excluded_loss,
    project_sum_frequencies,
    restricted_logits,
    restricted_loss,
    sum_direction_basis,
)
from interp_grok.analysis.fourier import frequency_norms, key_frequencies
from interp_grok.evaluation import per_example_cross_entropy
from interp_grok.models.mlp import grid_logits


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
    from interp_grok.analysis.circuits import lookup_table_logits, restricted_accuracy
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


# ------------------------------------------------------------------ the logits' own spectrum


@pytest.mark.parametrize("p", [7, 8])
def test_logit_frequency_power_is_the_projection_norm(p):
    """P_k equals the squared norm of the projection onto explicit grid vectors cos/sin(w_k(a+b-c))."""
    from interp_grok.analysis.circuits import logit_frequency_power

    L = torch.randn(p, p, p, dtype=torch.float64, generator=torch.Generator().manual_seed(p))
    r = torch.arange(p, dtype=torch.float64)
    d = r[:, None, None] + r[None, :, None] - r[None, None, :]
    brute = []
    for k in range(1, p // 2 + 1):
        total = 0.0
        for fn in (torch.cos, torch.sin):
            v = fn(2 * math.pi * k * d / p)
            if v.abs().max() > 1e-9:  # the Nyquist sine of even p is identically 0
                total += ((L * v).sum() ** 2 / (v * v).sum()).item()
        brute.append(total)
    torch.testing.assert_close(logit_frequency_power(L), torch.tensor(brute, dtype=torch.float64))


def test_key_fve_known_answers():
    from interp_grok.analysis.circuits import key_fve

    p = 31
    L = cosine_logits(p, {3: 2.0, 7: 1.0})
    r = torch.arange(p, dtype=torch.float64)
    assert key_fve(L, torch.tensor([3, 7])) == pytest.approx(1.0, rel=1e-12)
    assert key_fve(L, torch.tensor([1, 5, 12])) == pytest.approx(0.0, abs=1e-12)
    # power splits by amplitude^2: alpha_3^2 / (alpha_3^2 + alpha_7^2) = 4 / 5
    assert key_fve(L, torch.tensor([3])) == pytest.approx(0.8, rel=1e-12)
    # a per-pair shift (which softmax ignores) changes nothing
    shifted = L + torch.randn(p, p, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert key_fve(shifted, torch.tensor([3, 7])) == pytest.approx(1.0, rel=1e-12)
    # per-class biases and functions of a - b are unexplained variance: equal power -> 1/2
    diff = torch.cos(2 * math.pi * 3 * (r[:, None, None] - r[None, :, None] - r[None, None, :]) / p).expand(p, p, p)
    alone = cosine_logits(p, {3: 1.0})
    assert key_fve(alone + diff, torch.tensor([3])) == pytest.approx(0.5, rel=1e-9)


def test_logit_key_frequencies_pick_the_peaks_and_not_the_noise():
    from interp_grok.analysis.circuits import logit_frequency_power, logit_key_frequencies

    p = 97
    g = torch.Generator().manual_seed(0)
    # a peak alpha cos(w_k(a+b-c)) has amplitude alpha sqrt(p^3 / 2) = 676 alpha; the noise's A_k ~ Rayleigh(1)
    peaks = {4: 0.05, 11: 0.03, 32: 0.04, 43: 0.02}
    noisy = cosine_logits(p, peaks) + torch.randn(p, p, p, dtype=torch.float64, generator=g)
    assert logit_key_frequencies(logit_frequency_power(noisy)).tolist() == [4, 11, 32, 43]
    # pure noise: false peaks are rare (about 0.15 per spectrum at p = 97, simulated); at this seed, none
    for seed in range(3):
        noise = torch.randn(p, p, p, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        assert len(logit_key_frequencies(logit_frequency_power(noise))) <= 1
    noise = torch.randn(p, p, p, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert logit_key_frequencies(logit_frequency_power(noise)).tolist() == []
    # noise-free: one peak, and float32 logits (as grid_logits returns) change nothing
    single = cosine_logits(p, {17: 3.0})
    assert logit_key_frequencies(logit_frequency_power(single)).tolist() == [17]
    assert logit_key_frequencies(logit_frequency_power(single.float())).tolist() == [17]
    assert logit_key_frequencies(torch.zeros(48, dtype=torch.float64)).tolist() == []
    # a partly formed spectrum: the W_E-style rule (>= 0.25 max) takes the whole flat floor, this one does not
    flat = torch.full((48,), 1.0, dtype=torch.float64) + 0.1 * torch.rand(48, generator=g, dtype=torch.float64)
    flat[[2, 9]] = 3.0
    assert logit_key_frequencies(flat.pow(2)).tolist() == [3, 10]


def test_excluded_loss_by_frequency_known_answers():
    from interp_grok.analysis.circuits import excluded_loss_by_frequency

    p = 31
    y = _labels(p)
    L = cosine_logits(p, {3: 4.0, 7: 2.0})
    out = excluded_loss_by_frequency(L, torch.tensor([3, 7, 5]), y)
    # removing k leaves exactly the other term; removing an absent frequency leaves L
    assert out[0].item() == pytest.approx(_full_ce(cosine_logits(p, {7: 2.0}), y).item(), rel=1e-12)
    assert out[1].item() == pytest.approx(_full_ce(cosine_logits(p, {3: 4.0}), y).item(), rel=1e-12)
    assert out[2].item() == pytest.approx(_full_ce(L, y).item(), rel=1e-12)
    one = excluded_loss_by_frequency(cosine_logits(p, {3: 4.0}), torch.tensor([3]), y, torch.arange(10))
    assert one.tolist() == pytest.approx([math.log(p)], rel=1e-12)  # nothing left: uniform
    assert excluded_loss_by_frequency(L, torch.tensor([], dtype=torch.int64), y).shape == (0,)


def test_expected_tie_credit_on_a_hand_counted_table():
    from interp_grok.analysis.circuits import tie_credit

    z = torch.tensor([[1.0, 1.0, 0.0, 0.0],   # label 0 tied with 1: 1/2
                      [2.0, 2.0, 2.0, 0.0],   # label 3 not among the three tied: 0
                      [0.5, 0.5, 0.5, 0.5],   # all four tied: 1/4
                      [0.0, 3.0, 1.0, 1.0],   # unique max at the label: 1
                      [0.3, 0.1 + 0.2, 0.0, 0.0]], dtype=torch.float64)  # 0.1 + 0.2 != 0.3 in binary: still a tie
    labels = torch.tensor([0, 3, 2, 1, 1])
    torch.testing.assert_close(tie_credit(z, labels, "expected"),
                               torch.tensor([0.5, 0.0, 0.25, 1.0, 0.5], dtype=torch.float64))
    # argmax: the first exact maximum; in the last row 0.1 + 0.2 = 0.30000000000000004 wins outright
    torch.testing.assert_close(tie_credit(z, labels, "argmax"),
                               torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError):
        tie_credit(z, labels, "random")


def test_lookup_table_control_is_deterministic_under_expected_ties():
    """Relabelling the classes changes argmax tie-breaking but not the expected credit."""
    from interp_grok.analysis.circuits import lookup_table_logits, restricted_accuracy

    p = 11
    clean = _labels(p)
    noisy = (clean + torch.tensor([0, 1, -1])[torch.arange(p * p) % 3]) % p
    idx = torch.arange(0, p * p, 2)
    keys = torch.arange(1, p // 2 + 1)
    L = lookup_table_logits(p, idx, noisy)
    perm = torch.roll(torch.arange(p), 5)  # class c is called perm[c]
    Lp = torch.empty_like(L)
    Lp[:, :, perm] = L
    expected = restricted_accuracy(L, keys, clean, ties="expected")
    assert restricted_accuracy(Lp, keys, perm[clean], ties="expected") == pytest.approx(expected, abs=1e-12)
    # each anti-diagonal of 11 pairs holds 5 or 6 training pairs voting for s - 1, s, s + 1 in turn
    z = restricted_logits(L, keys).reshape(p * p, p)
    assert 0 < expected < 1 and (z.max(-1).values - z.topk(2, -1).values[:, 1] < 1e-9).any()
