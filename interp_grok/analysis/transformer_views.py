"""The views Nanda et al. (2023) read off their one-layer transformer: pure functions on tensors.

- attention_shares: how the "=" position splits its attention between a, b and itself.
- dominant_frequency: each curve's single frequency of largest power and the fraction of the
  curve's (centered) variance it carries; per head, on the "=" query's scores over token a.
- neuron_frequencies: each MLP neuron's frequency by their rule, the largest fraction of its
  centered activations over the (a, b) grid explained by one frequency's linear and quadratic 2D
  Fourier terms (progress-measures-paper transformers.py:353-389, helpers.py:373-381), and that fraction.
- nanda_key_frequencies: their key-frequency rule, the distinct dominant frequencies of the neurons.
- effective_rank: how many singular directions carry a given share of a matrix's energy (the
  paper's W_L is about rank 10, 2 per key frequency).

The measures in analysis.measures call these for transformer runs only.
"""

from __future__ import annotations

import torch

from .fourier import fourier_basis

NEURON_CLUSTER_FVE = 0.5  # a neuron joins its frequency's cluster when that frequency explains >= this share
RANK_ENERGY = 0.99  # effective_rank's share of the squared singular values
_ROUNDING = 1e-20  # variance below this share of a curve's sum of squares is float64 rounding


def attention_shares(pattern: torch.Tensor) -> torch.Tensor:
    """Mean attention of "=" on (a, b, "=") over all pairs and heads, float64 [3], from
    models.transformer.attention_pattern [p, p, H, 3]; sums to 1."""
    return pattern.to(torch.float64).mean((0, 1, 2))


def _frequency_power(coef: torch.Tensor, p: int) -> torch.Tensor:
    """Per-frequency power [..., (p-1)//2] from coefficients [..., p] in fourier_basis's row order."""
    n = (p - 1) // 2
    return coef[..., 1 : 2 * n : 2].square() + coef[..., 2 : 2 * n + 1 : 2].square()


def dominant_frequency(curves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For curves [n, p] over Z_p (odd p): (frequency k in 1..(p-1)/2 of the largest power,
    int64 [n]; the share of the curve's centered sum of squares in that frequency, float64 [n]).

    A curve with no variance gets frequency 0 and share NaN. Known answer: cos(2 pi k x / p + phi)
    gives (k, 1); a sum of two frequencies with amplitudes 2 and 1 gives the first and 0.8.
    """
    p = curves.shape[-1]
    F, _ = fourier_basis(p, torch.float64)
    coef = curves.to(torch.float64) @ F.T
    power = _frequency_power(coef, p)  # [n, (p-1)/2]
    total = power.sum(-1)
    best, k = power.max(-1)
    live = total > _ROUNDING * coef.square().sum(-1)  # a constant curve's leftover is rounding, not variance
    share = torch.where(live, best / total.clamp_min(1e-300), torch.full_like(total, float("nan")))
    return torch.where(live, k + 1, torch.zeros_like(k)), share


def _frequency_blocks(acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(share-to-be of each frequency k = 1 .. (p-1)/2: the sum of squares in its 3 x 3 block, float64
    [K, n]; each neuron's centered sum of squares [n]; whether the neuron is live, bool [n]) from
    acts [p, p, n]: the one 2D Fourier transform that neuron_frequencies and their key rule read."""
    p = acts.shape[0]
    F, _ = fourier_basis(p, torch.float64)
    x = acts.to(torch.float64)
    energy = x.square().sum((0, 1))
    x = x - x.mean((0, 1))
    coef = torch.einsum("fx,xyn,gy->fgn", F, x, F).square()  # [p, p, n]
    total = coef.sum((0, 1))
    rows = torch.stack([torch.tensor([0, 2 * k - 1, 2 * k]) for k in range(1, (p - 1) // 2 + 1)])  # [K, 3]
    block = coef[rows[:, :, None], rows[:, None, :]].sum((1, 2))  # [K, n]
    return block, total, total > _ROUNDING * energy  # not live: dead, or constant over the grid


def _dominant(block: torch.Tensor, total: torch.Tensor, live: torch.Tensor, max_freq: int | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(k of the largest block among k <= max_freq, int64 [n]; its share, float64 [n]); dead: 0, NaN."""
    n_freq = block.shape[0] if max_freq is None else max_freq
    if not 1 <= n_freq <= block.shape[0]:
        raise ValueError(f"max_freq must be in 1..{block.shape[0]} (got {max_freq})")
    best, k = block[:n_freq].max(0)
    share = torch.where(live, best / total.clamp_min(1e-300), torch.full_like(total, float("nan")))
    return torch.where(live, k + 1, torch.zeros_like(k)), share


def neuron_frequencies(acts: torch.Tensor, max_freq: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Their calculate_key_freqs, per neuron: acts [p, p, n] (a, b, neuron) centered over the grid,
    in the 2D Fourier basis (helpers.fft2d); for frequency k, the share of the neuron's sum of
    squares in the 3 x 3 block of rows and columns {const, cos k, sin k} (helpers.extract_freq_2d:
    the linear terms in a and in b and the quadratic ones); returns (the k of the largest share,
    int64 [n]; that share, float64 [n]). Their loop stops at k = p//2 - 1 (range(1, p // 2)); this
    one tests every k up to (p - 1)/2, or up to ``max_freq`` when given (theirs: p//2 - 1). A neuron
    without variance (dead) gets 0 and NaN.
    Known answer: cos(w a) + cos(w b) + cos(w (a + b)) at w = 2 pi k / p gives (k, 1).
    """
    return _dominant(*_frequency_blocks(acts), max_freq)


def _their_keys(freqs: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
    return torch.unique(freqs[~share.isnan()])


def nanda_key_frequencies(acts: torch.Tensor) -> torch.Tensor:
    """Their calculate_key_freqs (progress-measures-paper transformers.py:353-389): the distinct
    dominant frequencies of the MLP neurons (``neuron_frequencies`` over k = 1 .. p//2 - 1, their
    loop's range), sorted, int64. Theirs also counts dead neurons (their best_freq stays -1 when
    the fraction is NaN); this one leaves them out. Every neuron counts, whatever share its
    frequency explains, so an untrained network gives many. Known answer: neurons built on
    frequencies {3, 7} give [3, 7]."""
    return _their_keys(*neuron_frequencies(acts, max_freq=acts.shape[0] // 2 - 1))


def neuron_frequencies_and_keys(acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``neuron_frequencies(acts)`` and ``nanda_key_frequencies(acts)`` from one 2D Fourier
    transform (the per-checkpoint measure needs both)."""
    blocks = _frequency_blocks(acts)
    freqs, share = _dominant(*blocks, None)
    return freqs, share, _their_keys(*_dominant(*blocks, acts.shape[0] // 2 - 1))


def frequency_clusters(freqs: torch.Tensor, shares: torch.Tensor, min_share: float = NEURON_CLUSTER_FVE
                       ) -> dict[int, int]:
    """{frequency: number of neurons} over the neurons whose dominant frequency explains at least
    ``min_share`` of their variance: the paper's clusters of neurons by frequency."""
    keep = shares >= min_share  # NaN compares False: dead neurons join no cluster
    ks, counts = torch.unique(freqs[keep], return_counts=True)
    return {int(k): int(c) for k, c in zip(ks, counts)}


def effective_rank(W: torch.Tensor, energy: float = RANK_ENERGY) -> int:
    """The smallest r whose top r singular values carry at least ``energy`` of sum sigma^2 (0 for a
    zero matrix). Known answer: r orthonormal rank-one terms of equal size give r at any energy <= 1."""
    s2 = torch.linalg.svdvals(W.to(torch.float64)).square()
    total = s2.sum()
    if total == 0:
        return 0
    return int((torch.cumsum(s2, 0) < energy * total * (1 - 1e-12)).sum().item()) + 1
