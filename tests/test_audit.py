"""Extraction accuracy and the label audit (interp_grok.analysis.audit), on cases with known answers."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from interp_grok.analysis.audit import (
    AUDIT_SCORES,
    audit_budgets,
    audit_curve,
    audit_scores,
    audit_table,
    correct_diagonals,
    expected_hits,
    extraction_accuracy,
    flag,
    lookup_extraction_control,
)
from interp_grok.analysis.circuits import project_sum_frequencies, restricted_logits


def _grid(p: int):
    a = torch.arange(p)[:, None, None]
    b = torch.arange(p)[None, :, None]
    c = torch.arange(p)[None, None, :]
    return a, b, c


def _cosines(p: int, keys: list[int], alpha: list[float]) -> torch.Tensor:
    a, b, c = _grid(p)
    return sum(al * torch.cos(2 * math.pi * k * (a + b - c).double() / p) for k, al in zip(keys, alpha))


def _noisy_labels(p: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean, noisy) labels [p * p]: a shift in {-2..2} on every pair, about 60 % of them nonzero."""
    g = torch.Generator().manual_seed(seed)
    clean = (torch.arange(p * p) // p + torch.arange(p * p) % p) % p
    shift = torch.randint(-2, 3, (p * p,), generator=g)
    return clean, (clean + shift) % p


def test_extraction_is_one_when_only_the_memorization_term_carries_the_noisy_labels():
    """L = sum_k alpha_k cos(w_k(a + b - c)) + a memorization term with zero restricted part: the
    restricted logits are the cosines alone, so extraction accuracy is exactly 1 on every split,
    while the full logits predict the noisy label, so their clean accuracy on noisy rows is 0."""
    p, keys = 31, [3, 7]
    clean, noisy = _noisy_labels(p)
    C = _cosines(p, keys, [1.0, 0.7])
    M = torch.zeros(p * p, p, dtype=torch.float64)
    M[torch.arange(p * p), noisy] = 1.0
    M = M.reshape(p, p, p)
    beta = 50.0
    M_perp = beta * (M - restricted_logits(M, torch.tensor(keys)))  # its restricted part removed
    assert restricted_logits(M_perp, torch.tensor(keys)).abs().max() < 1e-9
    L = C + M_perp
    R = restricted_logits(L, torch.tensor(keys)).reshape(p * p, p)
    assert torch.allclose(R, C.reshape(p * p, p), atol=1e-9)  # the restricted logits are the cosines
    noisy_rows = torch.nonzero(noisy != clean).flatten()
    clean_rows = torch.nonzero(noisy == clean).flatten()
    assert noisy_rows.numel() > 0.4 * p * p
    assert extraction_accuracy(R, clean) == 1.0
    assert extraction_accuracy(R, clean, noisy_rows) == 1.0
    full = L.reshape(p * p, p)
    assert extraction_accuracy(full, clean, noisy_rows) == 0.0  # the network outputs the noisy label
    assert extraction_accuracy(full, noisy) == 1.0
    assert extraction_accuracy(full, clean, clean_rows) == 1.0
    assert correct_diagonals(R, p).all()


@pytest.mark.parametrize("right", [[], [0], [0, 3, 4], list(range(11))])
def test_extraction_moves_in_steps_of_one_anti_diagonal(right):
    """Restricted logits are one class per anti-diagonal: with the prediction s on the diagonals in
    ``right`` and s + 1 elsewhere, accuracy over all pairs is len(right) / p, and over any subset of
    pairs it is the share of that subset lying on those diagonals."""
    p = 11
    a, b, c = _grid(p)
    s = (a + b) % p
    target = torch.where(torch.isin(s, torch.tensor(right, dtype=torch.int64)), s, (s + 1) % p)
    L = (c == target).double() * 3.0  # a function of a + b alone ...
    # ... so the restricted logits with every frequency kept give it back exactly
    R = restricted_logits(L, torch.arange(1, p // 2 + 1)).reshape(p * p, p)
    assert torch.allclose(R, L.reshape(p * p, p), atol=1e-12)
    clean = s.reshape(p * p)
    assert correct_diagonals(R, p).tolist() == [d in right for d in range(p)]
    assert extraction_accuracy(R, clean) == pytest.approx(len(right) / p, abs=1e-15)
    idx = torch.randperm(p * p, generator=torch.Generator().manual_seed(1))[:40]
    share = torch.isin(clean[idx], torch.tensor(right, dtype=torch.int64)).double().mean().item()
    assert extraction_accuracy(R, clean, idx) == pytest.approx(share, abs=1e-15)


def test_extraction_of_a_key_frequency_projection_is_constant_on_anti_diagonals():
    """The key-frequency part of any logits depends on a + b only: each diagonal is all right or all wrong."""
    p = 13
    g = torch.Generator().manual_seed(3)
    L = torch.randn(p, p, p, generator=g, dtype=torch.float64)
    P = project_sum_frequencies(L, torch.tensor([2, 5])).reshape(p * p, p)
    pred = P.argmax(-1).reshape(p, p)
    for d in range(p):
        on = [(a, (d - a) % p) for a in range(p)]
        assert len({int(pred[a, b]) for a, b in on}) == 1


def test_extraction_accuracy_ties_and_bad_input():
    R = torch.zeros(4, 3, dtype=torch.float64)  # every class tied
    clean = torch.tensor([0, 1, 2, 0])
    assert extraction_accuracy(R, clean, ties="argmax") == 0.5  # argmax picks class 0
    assert extraction_accuracy(R, clean, ties="expected") == pytest.approx(1 / 3)
    assert math.isnan(extraction_accuracy(R, clean, torch.tensor([], dtype=torch.int64)))
    with pytest.raises(ValueError, match="restricted must be"):
        extraction_accuracy(R.reshape(2, 2, 3), clean)


# ------------------------------------------------------------------ the audit


def _labels(n: int, n_noisy: int, seed: int = 0) -> torch.Tensor:
    is_noisy = torch.zeros(n, dtype=torch.bool)
    is_noisy[torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:n_noisy]] = True
    return is_noisy


def test_a_perfect_score_has_precision_one_up_to_n_noisy():
    n, k = 50, 12
    is_noisy = _labels(n, k)
    budgets = torch.arange(0, n + 1)
    cur = audit_curve(is_noisy.double(), is_noisy, budgets)  # two values, every noisy one above every clean
    B = budgets.double()
    assert math.isnan(cur["precision"][0])
    assert torch.equal(cur["precision"][1:k + 1], torch.ones(k, dtype=torch.float64))
    assert torch.allclose(cur["precision"][k + 1:], k / B[k + 1:])
    assert torch.allclose(cur["recall"], torch.minimum(B / k, torch.ones_like(B)))
    assert torch.allclose(cur["baseline_precision"], torch.full_like(B, k / n))
    assert torch.allclose(cur["baseline_recall"], B / n)
    # the reversed score finds none until every clean example is flagged
    rev = audit_curve(-is_noisy.double(), is_noisy, budgets)
    assert torch.equal(rev["hits"][: n - k + 1], torch.zeros(n - k + 1, dtype=torch.float64))
    assert rev["recall"][-1] == 1.0


def test_a_constant_score_gives_exactly_the_baseline():
    n, k = 40, 9
    is_noisy = _labels(n, k, seed=2)
    budgets = torch.arange(1, n + 1)
    cur = audit_curve(torch.full((n,), 0.3), is_noisy, budgets)
    assert torch.allclose(cur["precision"], cur["baseline_precision"], atol=1e-15)
    assert torch.allclose(cur["recall"], cur["baseline_recall"], atol=1e-15)


def test_a_random_ranking_gives_the_baseline_in_expectation():
    """Averaged over every ordering of 7 distinct scores, TP(B) = B * n_noisy / n exactly."""
    is_noisy = torch.tensor([1, 0, 1, 0, 0, 1, 0], dtype=torch.bool)
    n, k = 7, 3
    budgets = torch.arange(0, n + 1)
    total = torch.zeros(n + 1, dtype=torch.float64)
    perms = list(itertools.permutations(range(n)))
    for perm in perms:
        total += expected_hits(torch.tensor(perm, dtype=torch.float64), is_noisy, budgets)
    assert torch.allclose(total / len(perms), budgets.double() * k / n, atol=1e-12)


def test_ties_count_in_expectation_and_the_order_of_examples_does_not_matter():
    score = torch.tensor([3.0, 2.0, 2.0, 2.0, 1.0])
    is_noisy = torch.tensor([1, 1, 0, 0, 1], dtype=torch.bool)
    hits = expected_hits(score, is_noisy, torch.tensor([1, 2, 3, 4, 5]))
    # B = 2: the 3 (noisy) and one of the three 2s, of which one is noisy: 1 + 1/3
    assert torch.allclose(hits, torch.tensor([1.0, 4 / 3, 5 / 3, 2.0, 3.0], dtype=torch.float64))
    # the mean over every way of breaking the ties
    for B in range(1, 6):
        tb = [expected_hits(score + 1e-3 * torch.tensor([0, *perm, 0], dtype=torch.float64), is_noisy,
                            torch.tensor([B])).item() for perm in itertools.permutations(range(3))]
        assert hits[B - 1].item() == pytest.approx(sum(tb) / len(tb))
    perm = torch.tensor([4, 2, 0, 3, 1])
    assert torch.allclose(expected_hits(score[perm], is_noisy[perm], torch.tensor([1, 2, 3, 4, 5])), hits)


def test_audit_input_checks():
    with pytest.raises(ValueError, match="budgets must be in"):
        expected_hits(torch.zeros(3), torch.zeros(3, dtype=torch.bool), torch.tensor([4]))
    with pytest.raises(ValueError, match="NaN"):
        expected_hits(torch.tensor([0.0, math.nan]), torch.zeros(2, dtype=torch.bool), torch.tensor([1]))
    with pytest.raises(ValueError, match="bool"):
        expected_hits(torch.zeros(3), torch.zeros(3), torch.tensor([1]))


def test_audit_scores_are_oriented_suspicious_first():
    nll = torch.tensor([0.1, 5.0, 0.2])
    margin = torch.tensor([4.0, -1.0, 3.0])
    given = torch.tensor([1, 2, 3])
    rpred = torch.tensor([1, 0, 3])
    rnll = torch.tensor([0.5, 2.0, 0.4])
    ff = torch.tensor([10, 200, -1])
    s = audit_scores(nll, margin, rpred, rnll, given, ff)
    assert tuple(s) == AUDIT_SCORES
    assert s["loss"].argmax() == 1 and s["margin"].argmax() == 1 and s["restricted_nll"].argmax() == 1
    assert s["restricted_disagree"].tolist() == [0.0, 1.0, 0.0]
    assert s["first_fit_late"].tolist() == [10.0, 200.0, math.inf]  # never fit: the latest of all
    assert s["first_fit_early"].tolist() == [-10.0, -200.0, -math.inf]
    assert "first_fit_late" not in audit_scores(nll, margin, rpred, rnll, given)


def test_audit_budgets_and_table():
    assert audit_budgets(100, 37).tolist() == [1, 2, 4, 10, 20, 37, 40, 60, 80, 100]
    assert audit_budgets(10, 0, (0.01, 0.5)).tolist() == [1, 5]  # at least one example
    is_noisy = _labels(20, 5)
    rows = audit_table({"perfect": is_noisy.double(), "flat": torch.zeros(20)}, is_noisy, torch.tensor([5, 10]))
    assert [(r["score"], r["budget"]) for r in rows] == [("perfect", 5), ("perfect", 10), ("flat", 5), ("flat", 10)]
    assert rows[0]["precision"] == 1.0 and rows[0]["recall"] == 1.0 and rows[0]["lift"] == pytest.approx(4.0)
    assert rows[1]["precision"] == 0.5 and rows[1]["budget_frac"] == 0.5
    assert rows[2]["lift"] == pytest.approx(1.0) and rows[3]["recall"] == pytest.approx(0.5)


def test_flag_picks_the_top_and_breaks_ties_by_position():
    score = torch.tensor([1.0, 3.0, 2.0, 3.0, 2.0])
    assert flag(score, 0).tolist() == []
    assert flag(score, 2).tolist() == [1, 3]
    assert flag(score, 3).tolist() == [1, 2, 3]  # of the tied 2s, position 2 before 4
    with pytest.raises(ValueError, match="budget"):
        flag(score, 6)


# ------------------------------------------------------------------ the per-checkpoint measures


def _mlp_run(params: dict[str, torch.Tensor], p: int):
    from types import SimpleNamespace

    from interp_grok.config import Config
    from interp_grok.data import make_dataset

    d_model, d_mlp = params["W_in"].shape
    config = Config(p=p, noise_n=2, d_model=d_model, d_mlp=d_mlp, train_frac=0.5)
    return SimpleNamespace(config=config, dataset=make_dataset(config))


def test_measures_on_a_network_that_predicts_the_clean_label_everywhere():
    """known_models.fourier_mlp computes (a + b) mod p through frequencies 3 and 7 and ignores the
    noisy labels: its restricted logits predict every anti-diagonal right (extraction 1 everywhere),
    the given label is the argmax exactly on the clean-labelled examples (margin > 0 there, < 0 on
    the noisy ones), and the restricted prediction disagrees exactly with the noisy labels: both
    of those scores rank every noisy example first (R-precision 1)."""
    from known_models import fourier_mlp

    from interp_grok.analysis.measures import Checkpoint, measure_row

    p = 23
    params = {k: v.float() for k, v in fourier_mlp(p, [3, 7]).items()}
    run = _mlp_run(params, p)
    row = measure_row(Checkpoint(params, run, torch.tensor([3, 7])))
    assert row["train_noisy_corrected_frac"] == 1.0
    for col in ("extraction_acc_test", "extraction_acc_train_noisy", "extraction_acc_train_clean"):
        assert row[col] == 1.0
    assert row["extraction_diagonals"] == p
    assert row["audit_rprec_restricted_disagree"] == 1.0 and row["audit_rprec_margin"] == 1.0


def test_measures_when_the_network_memorizes_and_the_circuit_knows():
    """fourier_plus_lookup: the Fourier circuit plus one lookup neuron per training pair writing its
    noisy label. The network outputs every noisy label (memorized 1, corrected 0); the lookup
    neurons' restricted part, whose spread is checked here to stay below the circuit's restricted
    margin on every pair, cannot move the restricted argmax, so extraction stays exactly 1 on the
    noisy training pairs."""
    from known_models import fourier_mlp, fourier_plus_lookup

    from interp_grok.analysis.measures import Checkpoint, measure_row
    from interp_grok.models.mlp import grid_logits

    p, keys = 23, torch.tensor([3, 7])
    run0 = _mlp_run({k: v.float() for k, v in fourier_mlp(p, [3, 7]).items()}, p)
    ds = run0.dataset
    tr = ds.train_idx
    params = {k: v.float() for k, v in fourier_plus_lookup(p, [3, 7], tr, ds.noisy_labels[tr], size=16.0).items()}
    run = _mlp_run(params, p)
    assert torch.equal(run.dataset.noisy_labels, ds.noisy_labels)  # the same draw
    circuit = grid_logits({k: v.float() for k, v in fourier_mlp(p, [3, 7]).items()}).double()
    full = grid_logits(params).double()
    R_circuit = restricted_logits(circuit, keys).reshape(p * p, p)
    R_lookup = restricted_logits(full - circuit, keys).reshape(p * p, p)
    top2 = R_circuit.topk(2, dim=-1).values
    # the premise: on every pair the lookup part's spread over the classes is below the circuit's
    # margin, so R[clean] - R[c] >= margin - spread > 0 for every other class c
    spread = R_lookup.max(-1).values - R_lookup.min(-1).values
    assert (spread < top2[:, 0] - top2[:, 1]).all()
    row = measure_row(Checkpoint(params, run, keys))
    assert row["train_noisy_memorized_frac"] == 1.0 and row["train_noisy_corrected_frac"] == 0.0
    assert row["extraction_acc_train_noisy"] == 1.0 and row["extraction_acc_test"] == 1.0
    assert row["audit_rprec_restricted_disagree"] == 1.0


def test_lookup_extraction_control_known_answers():
    """The lookup-table control: with clean training labels and every frequency kept, each
    anti-diagonal's memorized labels all vote for its clean label, so the control is exactly 1 on
    the test pairs; with every label shifted by +1 they all vote for s + 1, and it is exactly 0."""
    p = 7
    a, b = torch.arange(p * p) // p, torch.arange(p * p) % p
    clean = (a + b) % p
    train_idx = torch.arange(0, p * p, 2)  # every other pair: each anti-diagonal has training pairs
    test_idx = torch.arange(1, p * p, 2)
    every = torch.arange(1, p // 2 + 1)
    assert lookup_extraction_control(p, train_idx, clean, every, clean, test_idx) == 1.0
    assert lookup_extraction_control(p, train_idx, (clean + 1) % p, every, clean, test_idx) == 0.0
