"""Restricted and excluded loss (Nanda et al. 2023, section 5.1, adapted to the MLP).

For key frequencies K, P_S projects the full-grid logits L[a, b, c] onto the sum
directions c_k(a, b) = (sqrt 2 / p) cos(w_k (a + b)) and s_k (sine), per output class c.
Since these directions depend on (a, b) only through s = (a + b) mod p, the projection is
computed from the p x C table of logits summed over each anti-diagonal: memory O(p^2) on
top of L, never the (p/2) * p^3 tensor of the reference code. All losses in float64.

The same anti-diagonal table gives the logits' own spectrum along cos/sin(w_k (a + b - c))
(science.md §3, last paragraph): its 2-D DFT at (k, -k). From that spectrum come a key-frequency
rule that works on partly formed spectra (``logit_key_frequencies``) and the fraction of the
logit variance the key terms explain (``key_fve``).
"""

from __future__ import annotations

import math

import torch

from ..evaluation import per_example_cross_entropy


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


def _sum_index(p: int) -> torch.Tensor:
    """s = (a + b) mod p for every pair, int64 [p * p] in a-major order."""
    return (torch.arange(p)[:, None] + torch.arange(p)[None, :]).remainder(p).flatten()


def anti_diagonal_sums(logits: torch.Tensor) -> torch.Tensor:
    """L_sum[s, c] = sum over the pairs with (a + b) mod p = s of L[a, b, c]: float64 [p, C]."""
    check_grid_logits(logits)
    p, _, C = logits.shape
    flat = logits.to(torch.float64).reshape(p * p, C)
    return torch.zeros(p, C, dtype=torch.float64).index_add_(0, _sum_index(p), flat)


def project_sum_frequencies(logits: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """P_S(L) for logits [p, p, C] (indexed a, b, c; float32 from grid_logits): same shape, float64."""
    check_grid_logits(logits)
    p, _, C = logits.shape
    s_idx = _sum_index(p)
    L_sum = anti_diagonal_sums(logits)  # [s, c]
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


TIE_RTOL = 1e-9  # logits within this fraction of the row's largest |logit| of the maximum count as tied


def tie_credit(z: torch.Tensor, labels: torch.Tensor, ties: str = "argmax") -> torch.Tensor:
    """Per-row accuracy credit of logits z [n, C] against labels [n], float64 [n].

    ties="argmax": 1 if torch's argmax (the first maximal class) is the label, else 0.
    ties="expected": 1/m if the label is among the m classes tied at the maximum, else 0 — the
    expected accuracy under uniform random tie-breaking, so it does not depend on class order.
    Ties are decided with a tolerance TIE_RTOL * max_c |z_c| per row, because a projection of
    tied votes (lookup_table_logits) reaches equal values only up to float64 rounding.
    """
    if ties == "argmax":
        return (z.argmax(-1) == labels).to(torch.float64)
    if ties != "expected":
        raise ValueError(f"ties must be 'argmax' or 'expected' (got {ties!r})")
    z = z.to(torch.float64)
    top = z.max(-1, keepdim=True).values
    tied = z >= top - TIE_RTOL * z.abs().amax(-1, keepdim=True)
    return tied.gather(-1, labels[:, None])[:, 0].to(torch.float64) / tied.sum(-1).to(torch.float64)


def restricted_accuracy(logits: torch.Tensor, freqs: torch.Tensor, labels: torch.Tensor,
                        idx: torch.Tensor | None = None, ties: str = "argmax") -> float:
    """Accuracy of the restricted logits against labels (int64 [p*p]), on idx or all pairs.

    ``ties`` as in tie_credit: "argmax" (the default, torch's first maximum) or "expected" (a
    tied prediction earns 1/m when the label is among the m tied classes). Use "expected" for the
    lookup-table control, whose restricted logits are full of ties: its value then no longer
    depends on how ties happen to break.
    """
    check_grid_logits(logits)
    _check_labels(logits, labels)
    p = logits.shape[0]
    z = restricted_logits(logits, freqs).reshape(p * p, -1)
    if idx is not None:
        z, labels = z[idx], labels[idx]
    return tie_credit(z, labels, ties).mean().item()


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


# ------------------------------------------------------------------ the logits' own spectrum

LOGIT_KEY_RULE = "logit amplitude A_k > median + threshold * 1.4826 * MAD over k"
LOGIT_KEY_Z = 5.0  # how many robust standard deviations above the median a key frequency stands
LOGIT_KEY_FLOOR = 1e-6  # and never below this fraction of the largest A_k (float rounding guard)
MAD_TO_SD = 1.4826  # MAD * 1.4826 estimates the standard deviation of a Gaussian sample


def logit_frequency_power(logits: torch.Tensor) -> torch.Tensor:
    """P_k = squared norm of the logits' projection onto cos(w_k (a + b - c)), sin(w_k (a + b - c)),
    for k = 1 .. floor(p/2): float64 [floor(p/2)]. logits [p, p, p] indexed (a, b, c).

    Both functions depend on (a, b) only through s = a + b, so with L_sum[s, c] the anti-diagonal
    sums, <L, cos(w_k (s - c))> - i <L, sin(w_k (s - c))> = sum_{s,c} L_sum[s, c] e^{-i w_k (s - c)}
    = DFT2(L_sum)[k, -k] (science.md §3: the coefficients from the 2-D sum-direction table, no
    (p/2) p^3 tensor). Each function has squared norm p^3 / 2 over the grid (p^3 for the Nyquist
    cosine of even p, whose sine vanishes), and all of them are mutually orthogonal, so
    P_k = 2 |DFT2[k, -k]|^2 / p^3 and sum_k P_k <= ||L - mean_c L||^2. O(p^2) after the sum.
    """
    check_grid_logits(logits)
    p, _, C = logits.shape
    if C != p:
        raise ValueError(f"the logit spectrum needs C = p output classes (got {C}, p = {p})")
    X = torch.fft.fft2(anti_diagonal_sums(logits))  # [k_s, k_c]
    k = torch.arange(1, p // 2 + 1)
    power = X[k, (-k).remainder(p)].abs().pow(2) * (2 / p**3)
    if p % 2 == 0:
        power[-1] /= 2  # the Nyquist cosine has norm^2 p^3, and no sine partner
    return power


def centered_logit_power(logits: torch.Tensor) -> torch.Tensor:
    """||L - mean_c L||^2 over the grid, float64 scalar: the logit variance that matters.

    The mean over the output class c is removed for each pair (a, b) because softmax ignores it;
    every cos/sin(w_k (a + b - c)) term already has mean 0 over c, so it is untouched.
    """
    L = logits.to(torch.float64)
    return (L - L.mean(-1, keepdim=True)).pow(2).sum()


def key_fve(logits: torch.Tensor, freqs: torch.Tensor) -> float:
    """Fraction of the class-centered logit variance explained by cos/sin(w_k (a + b - c)), k in freqs.

    sum_{k in K} P_k / ||L - mean_c L||^2 (logit_frequency_power, centered_logit_power), in
    [0, 1]: exactly 1 for logits made only of those terms, 0 for terms at other frequencies (or
    logits of a - b, or per-class biases). Nanda et al. 2023 report about 95 % for a grokked
    transformer. NaN when the centered logits are 0.
    """
    total = centered_logit_power(logits).item()
    power = logit_frequency_power(logits)
    keys = [int(k) for k in freqs]
    if any(not 1 <= k <= power.numel() for k in keys):
        raise ValueError(f"key frequencies must be in 1..{power.numel()} (got {keys})")
    explained = power[torch.tensor(keys, dtype=torch.int64) - 1].sum().item() if keys else 0.0
    return explained / total if total > 0 else math.nan


def logit_key_frequencies(power: torch.Tensor, z: float = LOGIT_KEY_Z) -> torch.Tensor:
    """Key frequencies (1-based, int64) of a logit spectrum: the outliers of A_k = sqrt(P_k).

    k is key iff A_k > median_j A_j + z * 1.4826 * MAD_j(A_j) and A_k > LOGIT_KEY_FLOOR * max A.
    Why this rule works on partly formed spectra (where "N_k >= 0.25 max" of W_E takes 44-48 of
    48 frequencies): it asks whether a frequency stands out against the spectrum's own spread,
    not against its largest entry. The median and the MAD ignore up to half of the frequencies
    being peaks, so a handful of real peaks does not move the reference. For logits that are
    pure i.i.d. Gaussian noise, each (cos, sin) pair of coefficients is two independent
    N(0, sigma^2) draws, so A_k is Rayleigh(sigma): median 1.177 sigma, MAD 0.448 sigma, a
    threshold of about 4.5 sigma at z = 5, exceeded with probability exp(-4.5^2 / 2) ~ 4e-5 per
    frequency (an expected 0.002 false peaks over 48 frequencies). Amplitudes rather than powers,
    because the power's exponential tail would let about one noise frequency in 70 through.
    The floor only matters for (nearly) noise-free spectra, where the MAD is rounding error.
    Never capped; an all-zero spectrum gives no key frequencies.
    """
    if not z > 0:
        raise ValueError(f"z must be > 0 (got {z})")
    A = power.to(torch.float64).clamp_min(0).sqrt()
    med = A.median()
    scale = MAD_TO_SD * (A - med).abs().median()
    keep = (A > med + z * scale) & (A > LOGIT_KEY_FLOOR * A.max())
    return (torch.nonzero(keep).flatten() + 1).to(torch.int64)


def excluded_loss_by_frequency(logits: torch.Tensor, freqs: torch.Tensor, labels: torch.Tensor,
                               idx: torch.Tensor | None = None) -> torch.Tensor:
    """Excluded loss with one frequency removed at a time: float64 [len(freqs)], in freqs' order.

    Entry i is CE(L - P_{k_i}(L)) on idx (the training split in the pipeline): how much the
    fit needs frequency k_i's sum components alone (Nanda et al. 2023 §5.1, per frequency).
    """
    check_grid_logits(logits)
    _check_labels(logits, labels)
    p, _, C = logits.shape
    s_idx = _sum_index(p)
    L_sum = anti_diagonal_sums(logits)
    flat = logits.to(torch.float64).reshape(p * p, C)
    if idx is not None:
        flat, labels, s_idx = flat[idx], labels[idx], s_idx[idx]
    out = []
    for k in [int(k) for k in freqs]:
        B = sum_direction_basis(p, torch.tensor([k]))
        Q = B.T @ (B @ L_sum)  # [s, c]: P_k(L) as a function of s
        out.append(per_example_cross_entropy(flat - Q[s_idx], labels).mean())
    return torch.stack(out) if out else torch.zeros(0, dtype=torch.float64)
