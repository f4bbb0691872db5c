"""Restricted and excluded loss (Nanda et al. 2023, section 5.1, adapted to the MLP).

For key frequencies K, P_S projects the full-grid logits L[a, b, c] onto the sum
directions c_k(a, b) = (sqrt 2 / p) cos(w_k (a + b)) and s_k (sine), per output class c.
Since these directions depend on (a, b) only through s = (a + b) mod p, the projection is
computed from the p x C table of logits summed over each anti-diagonal: memory O(p^2) on
top of L, never the (p/2) * p^3 tensor of the reference code. All losses in float64.
"""

from __future__ import annotations

import math

import torch

from .model import per_example_cross_entropy


def sum_direction_basis(p: int, freqs: torch.Tensor) -> torch.Tensor:
    """Rows are c_k, s_k as functions of s = (a + b) mod p, scaled so that the grid vectors
    they define are orthonormal: [m, p] float64 (Nyquist k = p/2 has no sine row)."""
    s = torch.arange(p, dtype=torch.float64)
    rows = []
    for k in sorted({int(k) for k in freqs}):
        if not 1 <= k <= p // 2:
            raise ValueError(f"key frequency {k} outside 1..{p // 2}")
        w = 2 * math.pi * k / p
        if 2 * k == p:
            rows.append(torch.cos(w * s) / p)
        else:
            rows += [math.sqrt(2) / p * torch.cos(w * s), math.sqrt(2) / p * torch.sin(w * s)]
    return torch.stack(rows) if rows else torch.zeros(0, p, dtype=torch.float64)


def check_grid_logits(logits: torch.Tensor) -> None:
    """ValueError unless logits is the full-grid [p, p, C] tensor (indexed a, b, c) of grid_logits."""
    shape = list(logits.shape)
    if logits.ndim != 3 or shape[0] != shape[1]:
        hint = (f"; flat logits [p * p, C] (a-major) reshape with .reshape({math.isqrt(shape[0])}, "
                f"{math.isqrt(shape[0])}, -1)" if logits.ndim == 2 and math.isqrt(shape[0]) ** 2 == shape[0] else "")
        raise ValueError(f"logits must be the full grid [p, p, C] indexed (a, b, c), as grid_logits returns; "
                         f"got shape {shape}{hint}")


def _check_labels(logits: torch.Tensor, labels: torch.Tensor) -> None:
    p = logits.shape[0]
    if labels.ndim != 1 or labels.numel() != p * p:
        raise ValueError(f"labels must be int64 [p * p] = [{p * p}] in a-major order (pair a * p + b); "
                         f"got shape {list(labels.shape)}")


def project_sum_frequencies(logits: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """P_S(L) for logits [p, p, C] (indexed a, b, c; float32 from grid_logits): same shape, float64."""
    check_grid_logits(logits)
    p, _, C = logits.shape
    L = logits.to(torch.float64)
    s_idx = (torch.arange(p)[:, None] + torch.arange(p)[None, :]).remainder(p).flatten()  # [p*p]
    L_sum = torch.zeros(p, C, dtype=torch.float64).index_add_(0, s_idx, L.reshape(p * p, C))  # [s, c]
    B = sum_direction_basis(p, freqs)  # [m, s]
    # each grid direction takes the value B[m, s] on the p pairs with (a + b) = s, so its inner
    # product with L[:, :, c] is B @ L_sum, and the projection is a function of s alone
    Q = B.T @ (B @ L_sum)  # [s, c]
    return Q[s_idx].reshape(p, p, C)


def restricted_logits(logits: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """P_S(L) + mean_{a,b} L[a, b, :]: only the key-frequency sum components and the constant."""
    mean = logits.to(torch.float64).mean(dim=(0, 1))
    return project_sum_frequencies(logits, freqs) + mean


def excluded_logits(logits: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """L - P_S(L): the logits with the key-frequency sum components removed (no bias fix)."""
    return logits.to(torch.float64) - project_sum_frequencies(logits, freqs)


def _mean_ce(logits: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    _check_labels(logits, labels)
    p = logits.shape[0]
    flat = logits.reshape(p * p, -1)
    if idx is not None:
        flat, labels = flat[idx], labels[idx]
    return per_example_cross_entropy(flat, labels).mean()


def restricted_loss(logits: torch.Tensor, freqs: torch.Tensor, labels: torch.Tensor,
                    idx: torch.Tensor | None = None) -> torch.Tensor:
    """CE (float64 scalar) of the restricted logits against labels, on idx or all pairs.

    logits: float [p, p, C] indexed (a, b, c), as grid_logits returns (not the flat [p * p, C]);
    labels: int64 [p * p] in a-major order (pair index a * p + b); idx: int64 pair indices.
    """
    return _mean_ce(restricted_logits(logits, freqs), labels, idx)


def excluded_loss(logits: torch.Tensor, freqs: torch.Tensor, labels: torch.Tensor,
                  idx: torch.Tensor | None = None) -> torch.Tensor:
    """CE of the excluded logits; the paper evaluates it on the training split (pass idx)."""
    return _mean_ce(excluded_logits(logits, freqs), labels, idx)


def restricted_accuracy(logits: torch.Tensor, freqs: torch.Tensor, labels: torch.Tensor,
                        idx: torch.Tensor | None = None) -> float:
    """Argmax accuracy of the restricted logits against labels (int64 [p*p]), on idx or all pairs."""
    check_grid_logits(logits)
    _check_labels(logits, labels)
    p = logits.shape[0]
    pred = restricted_logits(logits, freqs).reshape(p * p, -1).argmax(-1)
    hit = (pred == labels) if idx is None else (pred[idx] == labels[idx])
    return hit.double().mean().item()


def lookup_table_logits(p: int, idx: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The control for restricted accuracy: a pure memorizer, logit 1 on labels[i] for the pairs
    in idx and 0 everywhere else, float64 [p, p, p].

    Projecting onto sum directions averages logits along each anti-diagonal a + b = s, and the
    memorized noisy labels s + X of a diagonal vote most often for s + 0, the clean label. So
    restricted logits recover clean labels from memorization alone; a circuit shows only as
    restricted accuracy above this table's.
    """
    L = torch.zeros(p * p, p, dtype=torch.float64)
    L[idx, labels[idx]] = 1.0
    return L.reshape(p, p, p)
