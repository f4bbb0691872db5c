"""Memorization of noisy versus clean labels, per training example and checkpoint.

A training example is noisy iff its noisy label differs from its clean one (X != 0 mod p).
Per checkpoint: the prediction (argmax), whether it equals the noisy label (memorized /
fit) or the clean one (corrected), the margin z_noisy - max_{j != noisy} z_j, and the
float64 cross-entropy against both labels. Over checkpoints: the epoch each example is
first fit and its forgetting events (fit -> not fit, Toneva et al. 2019). science.md §5.
On test pairs: how the predicted shifts (pred - a - b) compare with the noise distribution.
"""

from __future__ import annotations

import torch


def example_stats(logits: torch.Tensor, noisy: torch.Tensor, clean: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example statistics for logits [n, p] and labels [n]: pred, margin, nll_noisy, nll_clean."""
    z_label = logits.gather(-1, noisy[:, None])[:, 0]
    others = logits.scatter(-1, noisy[:, None], float("-inf"))
    log_probs = logits.to(torch.float64).log_softmax(-1)
    return {
        "pred": logits.argmax(-1),
        "margin": z_label - others.max(-1).values,
        "nll_noisy": -log_probs.gather(-1, noisy[:, None])[:, 0],
        "nll_clean": -log_probs.gather(-1, clean[:, None])[:, 0],
    }


def predicted_shift(pred: torch.Tensor, a: torch.Tensor, b: torch.Tensor, p: int) -> torch.Tensor:
    """(pred - a - b) mod p, centered to (-p/2, p/2]: the noise value the model predicts."""
    s = (pred - a - b).remainder(p)
    return torch.where(s > p // 2, s - p, s)


SHIFT_EPS = 1e-6  # weight of the uniform distribution mixed into P_X, so that shift_kl is finite


def shift_distribution(pred: torch.Tensor, a: torch.Tensor, b: torch.Tensor, p: int) -> torch.Tensor:
    """Q[r] = fraction of the pairs whose predicted shift (pred - a - b) mod p is r: float64 [p]."""
    r = (pred - a - b).remainder(p)
    return torch.bincount(r, minlength=p).to(torch.float64) / max(r.numel(), 1)


def shift_kl(q: torch.Tensor, pmf: torch.Tensor, eps: float = SHIFT_EPS) -> float:
    """KL(Q || P_eps) in nats: Q the predicted shifts' distribution, P_eps = (1 - eps) P_X + eps / p.

    Both [p] indexed by the shift mod p (shift_distribution, noise.noise_pmf). This direction
    averages over what the model predicts: log Q / P per prediction. It is 0 when the model's
    shifts are distributed as the noise, and -log P(X = 0) (up to eps) for a model that always
    predicts the clean label, the Bayes-optimal generalizer (0.693 at n = 2, 0.981 at n = 4).
    The reverse KL(P_X || Q) would be infinite (or set by the smoothing) for exactly that model,
    since Q = delta_0 misses the noise's other values. eps keeps shifts the noise never makes
    finite: each costs about log(p / eps) = 18.4 nats at p = 97.
    """
    p_eps = (1 - eps) * pmf.to(torch.float64) + eps / pmf.numel()
    q = q.to(torch.float64)
    nz = q > 0
    return float((q[nz] * (q[nz] / p_eps[nz]).log()).sum())


def shift_within(q: torch.Tensor, width: int = 1) -> float:
    """Fraction of the predicted shifts in {-width, ..., +width} mod p, from Q [p]."""
    p = q.numel()
    return float(q[torch.arange(-width, width + 1).remainder(p).unique()].sum())


def first_fit_epoch(fit: torch.Tensor, epochs: torch.Tensor) -> torch.Tensor:
    """Epoch of the first checkpoint at which each example is fit; -1 if never. fit is [T, n]."""
    any_fit = fit.any(0)
    first = fit.to(torch.int8).argmax(0)  # index of the first True (0 when none)
    return torch.where(any_fit, epochs[first], torch.full_like(first, -1))


def forgetting_events(fit: torch.Tensor) -> torch.Tensor:
    """Number of fit -> not-fit transitions between consecutive checkpoints, per example."""
    return (fit[:-1] & ~fit[1:]).sum(0)


def fraction_by_noise(hit: torch.Tensor, noise: torch.Tensor) -> dict[int, float]:
    """Mean of hit [n] (bool) within each noise value X of the examples (X as stored)."""
    return {int(x): hit[noise == x].double().mean().item() for x in noise.unique().tolist()}
