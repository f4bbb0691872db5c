"""The transformer views (analysis.transformer_views, models.transformer.attention_pattern): known answers."""

from __future__ import annotations

import math

import torch

from interp_grok import Config
from interp_grok.analysis.transformer_views import (
    attention_shares,
    dominant_frequency,
    effective_rank,
    frequency_clusters,
    nanda_key_frequencies,
    neuron_frequencies,
)
from interp_grok.models import family
from interp_grok.models.transformer import attention_pattern, attention_scores, grid_pre

P_ = 13


def _x(p=P_):
    return torch.arange(p, dtype=torch.float64)


def test_dominant_frequency_of_pure_and_mixed_curves():
    w = 2 * math.pi / P_
    curves = torch.stack([torch.cos(3 * w * _x() + 0.4), 5 + torch.sin(6 * w * _x()),
                          2 * torch.cos(2 * w * _x()) + torch.cos(5 * w * _x()), torch.full((P_,), 7.0)])
    k, share = dominant_frequency(curves)
    assert k.tolist() == [3, 6, 2, 0]
    torch.testing.assert_close(share[:3], torch.tensor([1.0, 1.0, 0.8], dtype=torch.float64))
    assert share[3].isnan()  # a constant curve has no frequency


def test_neuron_frequencies_follow_their_linear_and_quadratic_rule():
    w = 2 * math.pi / P_
    a, b = _x()[:, None], _x()[None, :]
    n0 = torch.cos(4 * w * a) + torch.cos(4 * w * b) + torch.cos(4 * w * (a + b))  # all in frequency 4's block
    n1 = torch.cos(2 * w * a) * torch.cos(2 * w * b) + 3.0  # a quadratic term of frequency 2, plus a constant
    n2 = torch.cos(w * (a + 2 * b))  # frequency 1 in a, 2 in b: in no single frequency's block
    n3 = torch.zeros(P_, P_)  # dead
    freqs, share = neuron_frequencies(torch.stack([n0, n1, n2, n3], -1))
    assert freqs[:2].tolist() == [4, 2] and freqs[3] == 0
    torch.testing.assert_close(share[:3], torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64), rtol=0, atol=1e-12)
    assert share[3].isnan()
    assert frequency_clusters(torch.tensor([4, 2, 4, 0, 7]), torch.tensor([1.0, 0.9, 0.6, float("nan"), 0.2])) == {
        2: 1, 4: 2}


def test_their_key_rule_is_the_distinct_neuron_frequencies_below_p_half():
    w = 2 * math.pi / P_
    a, b = _x()[:, None], _x()[None, :]

    def neuron(k, phase=0.0):
        return torch.cos(k * w * a + phase) + torch.cos(k * w * b) + torch.cos(k * w * (a + b))

    acts = torch.stack([neuron(3), neuron(5 - P_), neuron(3, 0.5), torch.zeros(P_, P_)], -1)  # 5 - 13 aliases 5
    assert nanda_key_frequencies(acts).tolist() == [3, 5]  # the dead neuron counts for nothing
    # their loop stops at p//2 - 1 = 5 at p = 13: a neuron of frequency 6 has no share in any k <= 5
    six = neuron(6)[..., None]
    assert neuron_frequencies(six)[0].tolist() == [6]
    k, share = neuron_frequencies(six, max_freq=5)
    assert k.item() != 6 and share.item() < 1e-12


def test_effective_rank_counts_equal_orthogonal_directions():
    Q, _ = torch.linalg.qr(torch.randn(20, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    W = Q[:, :6] @ Q[:, 6:12].T  # six orthonormal rank-one terms of size 1
    assert effective_rank(W) == 6 and effective_rank(W, 0.5) == 3 and effective_rank(W, 1.0) == 6
    assert effective_rank(torch.zeros(4, 5)) == 0
    assert effective_rank(torch.diag(torch.tensor([10.0, 2.0, 0.1]))) == 2  # 100 / 104.01 < 0.99 <= 104 / 104.01


def test_attention_pattern_is_the_softmax_of_the_score_tables_and_uniform_without_a_query():
    c = Config(model="transformer", p=7, d_model=16, d_mlp=24, noise_n=0).finalize()
    P = family(c).init_params(c, torch.Generator().manual_seed(0))
    pat = attention_pattern(P)
    assert pat.shape == (7, 7, 4, 3)
    torch.testing.assert_close(pat.sum(-1), torch.ones(7, 7, 4, dtype=torch.float64))
    S = attention_scores(P)
    a, b, h = 2, 5, 1
    want = torch.softmax(torch.stack([S[0, a, h], S[1, b, h], S[2, 0, h]]), 0)
    torch.testing.assert_close(pat[a, b, h], want)
    # the plain model's own attention pattern at "=" (the reference in known_models, by hand here)
    x = torch.stack([P["W_E"][a] + P["W_pos"][0], P["W_E"][b] + P["W_pos"][1], P["W_E"][7] + P["W_pos"][2]]).double()
    q = x[2] @ P["W_Q"][h].double()
    k = x @ P["W_K"][h].double()
    torch.testing.assert_close(pat[a, b, h], torch.softmax(k @ q / math.sqrt(4), 0))
    P0 = dict(P, W_Q=torch.zeros_like(P["W_Q"]))  # no query: every score 0, attention 1/3 each
    torch.testing.assert_close(attention_shares(attention_pattern(P0)), torch.full((3,), 1 / 3, dtype=torch.float64))


def test_transformer_views_are_columns_of_transformer_runs_only(tmp_path, tiny_run):
    from interp_grok import analyze_run, load_run, train
    from interp_grok.analysis.measures import columns

    views = ["attn_to_a", "attn_to_b", "attn_to_eq", "head0_freq", "head0_freq_share", "head3_freq_share",
             "neuron_clusters", "neuron_clustered_frac", "neuron_freq_share", "rank_W_L", "n_keys_nanda_rule"]
    assert not set(views) & set(columns(load_run(tiny_run)))  # the MLP's progress.csv is unchanged
    c = Config(model="transformer", p=11, d_model=16, d_mlp=24, noise_n=0, epochs=10, n_checkpoints=3).finalize()
    train(c, tmp_path / "t", device="cpu", threads=1)
    run = load_run(tmp_path / "t")
    assert set(views) <= set(columns(run))
    an = analyze_run(run)
    for col in ("attn_to_a", "attn_to_b", "attn_to_eq"):
        v = an.column(col)
        assert ((v > 0) & (v < 1)).all(), col
    total = an.column("attn_to_a") + an.column("attn_to_b") + an.column("attn_to_eq")
    torch.testing.assert_close(torch.as_tensor(total), torch.ones(len(total), dtype=torch.float64))
    assert set(an.column("head0_freq").tolist()) <= set(range(1, 6))
    assert (an.column("rank_W_L") >= 1).all() and (an.column("rank_W_L") <= 11).all()
    assert (an.column("neuron_freq_share") > 0).all() and (an.column("neuron_freq_share") <= 1).all()
    assert ((an.column("neuron_clusters") >= 0) & (an.column("neuron_clusters") <= 5)).all()  # (p - 1) / 2 freqs
    frac = an.column("neuron_clustered_frac")
    assert ((frac >= 0) & (frac <= 1)).all()
    # their rule on the final weights, recomputed here: the column counts its frequencies (k <= p//2 - 1 = 4)
    acts = torch.relu(grid_pre(run.params(10)).double())
    assert an.column("n_keys_nanda_rule")[-1] == nanda_key_frequencies(acts).numel() <= 4
