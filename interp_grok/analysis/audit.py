"""What became of the noisy labels: extraction accuracy and the label audit (science.md §12).

Extraction accuracy (Liu & Lu 2026): the accuracy of the restricted logits (the key-frequency
sum components plus the constant, circuits.restricted_logits) against the *clean* labels, on test
pairs and on the noisy-labelled training pairs. Does the circuit know the clean label while the
network outputs the noisy one? The restricted logits depend on (a, b) only through
s = (a + b) mod p, so the restricted prediction is one class per anti-diagonal and the accuracy
over all p^2 pairs is (number of anti-diagonals predicted right) / p: it moves in steps of one
anti-diagonal (``correct_diagonals``).

The label audit (Ashraf 2026): rank the training examples by a per-example score, most
suspicious first, flag the top B, and ask how many of the flagged are the noisy-labelled ones:
precision TP(B) / B and recall TP(B) / n_noisy, against the random baseline (precision
n_noisy / n, recall B / n). Every score here is oriented so that higher means "more likely
noisy" (``audit_scores``). Ties are counted by their expectation under uniformly random
tie-breaking (``expected_hits``), so a curve never depends on the order of the examples; a
constant score gives exactly the baseline.

Pure functions on tensors; nothing here reads or writes files.
"""

from __future__ import annotations

import math

import torch

from .circuits import lookup_table_logits, restricted_accuracy, tie_credit

# the scores of audit_scores, in table order; each is "higher = more suspicious"
AUDIT_SCORES = ("loss", "margin", "first_fit_late", "first_fit_early", "restricted_disagree", "restricted_nll")
# budgets of the audit table as fractions of the training set (Ashraf's 4 % among them); the
# table adds B = n_noisy, the one budget where precision and recall are equal
AUDIT_BUDGET_FRACS = (0.01, 0.02, 0.04, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)


# ------------------------------------------------------------------ extraction accuracy


def extraction_accuracy(restricted: torch.Tensor, clean: torch.Tensor, idx: torch.Tensor | None = None,
                        ties: str = "argmax") -> float:
    """Accuracy of restricted logits (or their log-probabilities) [p * p, C] against the clean labels
    [p * p] on the pairs ``idx`` (all pairs when None); NaN on an empty ``idx``.

    ``ties`` as in circuits.tie_credit: "argmax" (torch's first maximum) or "expected" (1/m for
    a label among m tied classes).
    """
    if restricted.ndim != 2 or clean.shape != restricted.shape[:1]:
        raise ValueError(f"restricted must be [p * p, C] and clean [p * p]; got {list(restricted.shape)} "
                         f"and {list(clean.shape)}")
    if idx is not None:
        restricted, clean = restricted[idx], clean[idx]
    if clean.numel() == 0:
        return math.nan
    return tie_credit(restricted, clean, ties).mean().item()


def lookup_extraction_control(p: int, train_idx: torch.Tensor, train_labels: torch.Tensor, freqs: torch.Tensor,
                              clean: torch.Tensor, idx: torch.Tensor) -> float:
    """The control for extraction accuracy: a pure memorizer of the training labels (logit 1 on
    ``train_labels[i]`` for i in train_idx, circuits.lookup_table_logits) projected on the same key
    frequencies and scored against the clean labels on ``idx``, ties "expected". Memorized noisy
    labels s + X vote most often for s + 0 along each anti-diagonal, so the table alone recovers
    clean labels; only extraction above this control says the circuit knows more than the table."""
    table = lookup_table_logits(p, train_idx, train_labels)
    return restricted_accuracy(table, torch.as_tensor(freqs, dtype=torch.int64), clean, idx, ties="expected")


def correct_diagonals(restricted: torch.Tensor, p: int) -> torch.Tensor:
    """bool [p]: whether the restricted prediction on anti-diagonal s = (a + b) mod p is s.

    Read at the pairs (s, 0); restricted logits are constant along each anti-diagonal, so this is
    the prediction of every pair on it, and extraction accuracy over all pairs is the mean.
    """
    if restricted.shape[0] != p * p:
        raise ValueError(f"restricted must have p * p = {p * p} rows (got {restricted.shape[0]})")
    s = torch.arange(p)
    return restricted[s * p].argmax(-1) == s


# ------------------------------------------------------------------ the label audit


def audit_scores(nll: torch.Tensor, margin: torch.Tensor, restricted_pred: torch.Tensor,
                 restricted_nll: torch.Tensor, given: torch.Tensor, first_fit: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
    """The audit's per-example scores, float64 [n] each, higher = more likely a noisy label.

    nll              cross-entropy of the given label under the full logits (loss)
    margin           z_given - max_{j != given} z_j of the full logits (score: -margin)
    restricted_pred  argmax of the restricted logits; restricted_nll the restricted logits'
                     cross-entropy of the given label; given: the labels trained on
    first_fit        epoch each example was first fit (memorization.first_fit_epoch; -1 never),
                     or None to leave the two first-fit scores out

    loss: nll. margin: -margin. first_fit_late: the first-fit epoch (never fit = +inf, latest);
    first_fit_early: its negative (noisy labels may be fit first, Liu & Lu 2026; which
    direction ranks them first is a question for the data, so both are kept).
    restricted_disagree: 1 where the restricted prediction differs from the given label, else 0
    (two values: its ranking is all ties, broken in expectation). restricted_nll: a graded form.
    """
    out = {"loss": nll.to(torch.float64), "margin": -margin.to(torch.float64)}
    if first_fit is not None:
        ff = torch.where(first_fit < 0, math.inf, first_fit.to(torch.float64))
        out["first_fit_late"], out["first_fit_early"] = ff, -ff
    out["restricted_disagree"] = (restricted_pred != given).to(torch.float64)
    out["restricted_nll"] = restricted_nll.to(torch.float64)
    return {k: out[k] for k in AUDIT_SCORES if k in out}


def _check_score(score: torch.Tensor, is_noisy: torch.Tensor) -> None:
    if score.ndim != 1 or is_noisy.shape != score.shape or is_noisy.dtype != torch.bool:
        raise ValueError(f"score must be [n] and is_noisy bool [n]; got {list(score.shape)} and "
                         f"{list(is_noisy.shape)} {is_noisy.dtype}")
    if torch.isnan(score).any():
        raise ValueError("score holds NaN; rank NaN examples explicitly (e.g. as -inf) before the audit")


def expected_hits(score: torch.Tensor, is_noisy: torch.Tensor, budgets: torch.Tensor) -> torch.Tensor:
    """Expected number of noisy examples among the top-B by score, float64 [len(budgets)].

    With t the B-th largest score: every example above t is flagged, and B - n_above of the n_t
    examples tied at t, drawn uniformly at random, so TP(B) = noisy_above + (B - n_above) *
    noisy_t / n_t. Exact, and independent of the examples' order; B = 0 gives 0.
    """
    _check_score(score, is_noisy)
    n = score.numel()
    budgets = torch.as_tensor(budgets, dtype=torch.int64)
    if ((budgets < 0) | (budgets > n)).any():
        raise ValueError(f"budgets must be in 0..{n} (got {budgets.tolist()})")
    s = score.to(torch.float64)
    order = torch.sort(s, descending=True, stable=True).values
    out = torch.zeros(budgets.numel(), dtype=torch.float64)
    for i, b in enumerate(budgets.tolist()):
        if b == 0:
            continue
        t = order[b - 1]
        above, tied = s > t, s == t
        n_above = int(above.sum())
        out[i] = float(is_noisy[above].sum()) + (b - n_above) * float(is_noisy[tied].sum()) / float(tied.sum())
    return out


def audit_curve(score: torch.Tensor, is_noisy: torch.Tensor, budgets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Precision and recall of flagging the top-B examples by ``score`` as noisy, per budget B.

    Returns float64 [len(budgets)] each: hits (expected TP, see expected_hits), precision TP / B
    (NaN at B = 0), recall TP / n_noisy (NaN without noisy examples), and the random baseline:
    baseline_precision n_noisy / n, baseline_recall B / n (what a uniformly random ranking gives
    in expectation).
    """
    hits = expected_hits(score, is_noisy, budgets)
    b = torch.as_tensor(budgets, dtype=torch.float64)
    n, n_noisy = score.numel(), float(is_noisy.sum())
    nan = torch.full_like(b, math.nan)
    return {
        "hits": hits,
        "precision": torch.where(b > 0, hits / b.clamp_min(1), nan),
        "recall": hits / n_noisy if n_noisy > 0 else nan.clone(),
        "baseline_precision": torch.full_like(b, n_noisy / n if n else math.nan),
        "baseline_recall": b / n if n else nan.clone(),
    }


def audit_budgets(n: int, n_noisy: int, fracs: tuple[float, ...] = AUDIT_BUDGET_FRACS) -> torch.Tensor:
    """The audit table's budgets: round(f * n) for each fraction f, plus n_noisy; sorted, unique, >= 1."""
    b = {max(1, min(n, round(f * n))) for f in fracs} | ({n_noisy} if n_noisy > 0 else set())
    return torch.tensor(sorted(b), dtype=torch.int64)


def audit_table(scores: dict[str, torch.Tensor], is_noisy: torch.Tensor, budgets: torch.Tensor) -> list[dict]:
    """One row per (score, budget): score, budget, budget_frac, hits, precision, recall,
    baseline_precision, baseline_recall, lift (precision / baseline_precision)."""
    n = is_noisy.numel()
    rows = []
    for name, score in scores.items():
        cur = audit_curve(score, is_noisy, budgets)
        for i, b in enumerate(torch.as_tensor(budgets).tolist()):
            r = {k: cur[k][i].item() for k in ("hits", "precision", "recall", "baseline_precision", "baseline_recall")}
            base = r["baseline_precision"]
            rows.append({"score": name, "budget": int(b), "budget_frac": b / n, **r,
                         "lift": r["precision"] / base if base and base == base else math.nan})
    return rows


def flag(score: torch.Tensor, budget: int) -> torch.Tensor:
    """Positions (int64 [budget], ascending) of the ``budget`` highest-scoring examples.

    Unlike expected_hits this must pick one set: ties at the threshold go to the lower
    positions (for training examples in train_idx order, itself a random permutation drawn from
    the data seed, so this is a fixed random tie-break).
    """
    if not 0 <= budget <= score.numel():
        raise ValueError(f"budget must be in 0..{score.numel()} (got {budget})")
    if torch.isnan(score).any():
        raise ValueError("score holds NaN")
    order = torch.sort(score.to(torch.float64), descending=True, stable=True).indices
    return order[:budget].sort().values
