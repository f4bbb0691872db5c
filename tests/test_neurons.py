"""Per-neuron IPR and the pruning experiment against a size-quartile-matched random control."""

from __future__ import annotations

import pytest
import torch
from known_models import fourier_plus_lookup

from interp_grok.analysis.neurons import (
    PERIODIC_IPR,
    neuron_ipr,
    neuron_sizes,
    norm_matched_controls,
    pruning_experiment,
)
from interp_grok.config import Config
from interp_grok.models.mlp import grid_logits


def test_controls_match_the_silenced_sets_size_profile():
    sizes = torch.tensor([0.0, 1, 2, 3, 4, 5, 6, 7])  # bins of 4: {0, 1}, {2, 3}, {4, 5}, {6, 7}
    silenced = torch.zeros(8, dtype=torch.bool)
    silenced[[0, 1, 6]] = True
    draws = norm_matched_controls(sizes[torch.tensor([3, 0, 1, 2, 4, 5, 6, 7])].sort().values, silenced, 50, 0, 4)
    assert draws.shape == (50, 8)
    assert draws[:, :2].all() and not draws[:, 2:6].any()  # bin 0 is full: the control must take it too
    assert (draws[:, 6:].sum(1) == 1).all() and draws[:, 6].any() and draws[:, 7].any()  # one of bin 3, at random
    assert torch.equal(draws, norm_matched_controls(sizes, silenced, 50, 0, 4))  # the seed fixes the draws
    # one bin: uniform among all 8; every draw silences 3
    uniform = norm_matched_controls(sizes, silenced, 2000, 1, 1)
    assert (uniform.sum(1) == 3).all()
    assert uniform.double().mean(0).tolist() == pytest.approx([3 / 8] * 8, abs=0.04)
    with pytest.raises(ValueError):
        norm_matched_controls(sizes, silenced.long(), 1)


def test_pruning_low_ipr_neurons_forgets_exactly_the_lookup_table():
    """A cosine circuit computing (a + b) mod p plus one lookup neuron per noisy training pair: pruning
    the low-IPR neurons removes exactly the lookup neurons (all noisy labels forgotten and corrected,
    nothing else lost); each control draw forgets exactly the noisy labels whose lookup neuron it hit."""
    p, freqs = 31, [3, 7, 11]
    r = torch.arange(p)
    clean = ((r[:, None] + r[None, :]) % p).flatten()
    noise = torch.zeros(p * p, dtype=torch.int64)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(p * p, generator=g)
    train, test = perm[:300], perm[300:]
    noisy_pairs = train[:12]
    noise[noisy_pairs] = torch.tensor([1, -1, 2, -2] * 3)
    noisy = (clean + noise) % p
    params = fourier_plus_lookup(p, freqs, noisy_pairs, noisy[noisy_pairs])
    n0 = params["W_out"].shape[0] - 12
    ipr = neuron_ipr(params)
    assert (ipr[:n0] > 0.999).all() and ipr[n0:].tolist() == pytest.approx([1 / (p // 2 + 1)] * 12)
    assert (grid_logits(params).reshape(p * p, p).argmax(-1)[train] == noisy[train]).all()

    d_model, d_mlp = params["W_in"].shape
    config = Config(p=p, d_model=d_model, d_mlp=d_mlp)  # the MLP family, ReLU: pruning asks it
    out = pruning_experiment(params, config, noisy, clean, train, test, n_draws=6, seed=3)
    assert out["n_silenced"] == 12 and out["n_neurons"] == n0 + 12 and out["ipr_threshold"] == PERIODIC_IPR
    assert out["full"] == {"test_acc_clean": 1.0, "train_clean_acc": 1.0, "train_noisy_memorized_frac": 1.0,
                           "train_noisy_corrected_frac": 0.0}
    assert out["ipr_pruned"] == {"test_acc_clean": 1.0, "train_clean_acc": 1.0, "train_noisy_memorized_frac": 0.0,
                                 "train_noisy_corrected_frac": 1.0}
    # the lookup neurons are the largest, so all sit in the top size bin, and so does every control draw
    draws = norm_matched_controls(neuron_sizes(params), ipr < PERIODIC_IPR, 6, 3)
    top = torch.argsort(neuron_sizes(params), stable=True)[-((n0 + 12) // 4):]  # ranks as the bins take them
    assert draws.sum(1).tolist() == [12] * 6 and draws[:, top].sum(1).tolist() == [12] * 6
    hit = draws[:, n0:].sum(1).double()
    expected = (1 - hit / 12).tolist()
    assert out["control_draws"]["train_noisy_memorized_frac"] == pytest.approx(expected)
    assert out["control"]["train_noisy_memorized_frac"]["mean"] == pytest.approx(sum(expected) / 6)
    assert out["control"]["train_noisy_memorized_frac"]["mean"] > 0.5  # the control forgets far less


def test_largest_picks_the_k_largest_ties_by_index():
    from interp_grok.analysis.neurons import largest

    sizes = torch.tensor([3.0, 1.0, 2.0, 5.0, 2.0], dtype=torch.float64)
    assert largest(sizes, 2).tolist() == [True, False, False, True, False]
    # a tie at the cut: the stable ascending rank puts index 2 below index 4, so 4 is kept
    assert largest(sizes, 3).tolist() == [True, False, False, True, True]
    assert largest(sizes, 0).sum() == 0 and largest(sizes, 5).all()
    with pytest.raises(ValueError, match="k must be"):
        largest(sizes, 6)
