"""Fourier analysis over Z_p: the basis, the embedding's spectrum, key frequencies, sparsity.

Definitions follow science.md sections 1-2 (Nanda et al. 2023). Pure functions on tensors.
"""

from __future__ import annotations

import math

import torch

KEY_FREQ_RULE = "W_E norm >= threshold * max"
KEY_FREQ_THRESHOLD = 0.25


def fourier_basis(p: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, list[str]]:
    """Orthonormal Fourier basis F [p, p] over Z_p (rows are basis vectors) and row labels.

    Nanda's order: row 0 = const 1/sqrt(p); rows 2k-1, 2k = sqrt(2/p) cos(2 pi k x / p),
    sqrt(2/p) sin(2 pi k x / p) for k = 1 .. (p-1)/2; for even p the last row is the
    Nyquist cos(pi x)/sqrt(p) (its sine is identically zero). F @ F.T = I.
    """
    x = torch.arange(p, dtype=dtype)
    rows, labels = [torch.full((p,), 1 / math.sqrt(p), dtype=dtype)], ["const"]
    for k in range(1, (p - 1) // 2 + 1):
        w = 2 * math.pi * k / p
        rows += [math.sqrt(2 / p) * torch.cos(w * x), math.sqrt(2 / p) * torch.sin(w * x)]
        labels += [f"cos {k}", f"sin {k}"]
    if p % 2 == 0:
        rows.append(torch.cos(math.pi * x) / math.sqrt(p))
        labels.append(f"cos {p // 2}")
    return torch.stack(rows), labels


def basis_norms(W: torch.Tensor) -> torch.Tensor:
    """n_f = ||(F @ W)[f, :]||_2 for each basis row f; W is [p, d] (token axis first) -> [p]."""
    p = W.shape[0]
    F, _ = fourier_basis(p, torch.float64)
    return (F @ W.to(torch.float64)).norm(dim=-1)


def frequency_norms(W: torch.Tensor) -> torch.Tensor:
    """N_k = sqrt(n_{cos k}^2 + n_{sin k}^2) for k = 1 .. floor(p/2); W is [p, d] or [T, p, d]."""
    p = W.shape[-2]
    F, _ = fourier_basis(p, torch.float64)
    n2 = (F @ W.to(torch.float64)).pow(2).sum(-1)  # [..., p] squared norm per basis row
    K = (p - 1) // 2
    pairs = n2[..., 1 : 2 * K + 1].reshape(*n2.shape[:-1], K, 2).sum(-1)  # [..., K]
    if p % 2 == 0:
        pairs = torch.cat([pairs, n2[..., -1:]], dim=-1)
    return pairs.sqrt()


def key_frequencies(norms: torch.Tensor, threshold: float = KEY_FREQ_THRESHOLD) -> torch.Tensor:
    """Frequencies k (1-based, int64) whose N_k >= threshold * max_k N_k; never capped.

    ``norms`` is [floor(p/2)] as returned by frequency_norms. science.md rule (a).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1] (got {threshold})")
    return (torch.nonzero(norms >= threshold * norms.max()).flatten() + 1).to(torch.int64)


FLAT_FRACTION = 0.5  # a key set holding more than this fraction of the frequencies is "flat"


def key_set_is_flat(keys: torch.Tensor, n_freqs: int) -> bool:
    """Whether a key-frequency set is flat: it holds more than half of the ``n_freqs`` = floor(p/2)
    frequencies (the length of frequency_norms' output),
    so no frequency stands out at the threshold that chose it (a partly formed or noise-like
    spectrum). Such a set is reported as "k of K (flat)", not as a list, and not marked in figures.
    A p = 23 run with 11 of 11 key frequencies is flat; p = 97 with 4 of 48 is not.
    """
    return len(keys) > FLAT_FRACTION * n_freqs


def gini(c: torch.Tensor) -> torch.Tensor:
    """Gini coefficient sum_ij |c_i - c_j| / (2 N sum_i c_i) over the last axis, float64.

    0 for a flat spectrum, (N - 1)/N when one entry holds everything. Computed in
    O(N log N) from the sorted values: G = sum_i (2i - N - 1) c_(i) / (N sum c).
    """
    c = c.to(torch.float64)
    N = c.shape[-1]
    s = c.sort(dim=-1).values
    i = torch.arange(1, N + 1, dtype=torch.float64)
    return ((2 * i - N - 1) * s).sum(-1) / (N * s.sum(-1))


def ipr(curves: torch.Tensor) -> torch.Tensor:
    """Inverse participation ratio of the Fourier spectrum of each curve over Z_p (last axis).

    IPR = sum_j |c_j|^4 / (sum_j |c_j|^2)^2 with c = rfft(curve), one-sided, DC included (the
    convention of Doshi et al.'s code, science.md §5): 1.0 for a pure cosine, 2/3 for a square
    wave, about 2 / (p/2 + 1) = 0.04 for Gaussian noise at p = 97. float64 [...].
    """
    c2 = torch.fft.rfft(curves.to(torch.float64), dim=-1).abs().pow(2)
    return c2.pow(2).sum(-1) / c2.sum(-1).pow(2)
