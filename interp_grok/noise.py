"""The noise floor: what a perfect generalizer scores against noisy and clean labels.

With X = Binomial(n, p_bin) - floor(n/2) added mod p, the Bayes-optimal predictor outputs
the distribution of X shifted by a + b. Its cross-entropy against the noisy labels is
H(X mod p), against the clean labels -log P(X = 0 mod p); its argmax accuracy against the
noisy labels is P(X = mode) (science.md section 6).

Uniform label corruption (``kind="uniform"``, Doshi et al. 2024): a fraction xi of the training
labels is redrawn uniformly from the p classes, so a training label is the clean one with
probability 1 - xi + xi/p and each other class with probability xi/p. There ``n`` and ``p_bin``
are ignored, and the pmf describes the training labels only (the test labels are clean).
"""

from __future__ import annotations

import math

import torch


def noise_pmf(n: int, p_bin: float, p: int, noise_frac: float = 1.0, kind: str = "additive") -> torch.Tensor:
    """P(X = r mod p) for r = 0 .. p-1, float64 [p] (folded mod p, exact for any n).

    With ``noise_frac`` xi < 1 only that fraction of the pairs is noised, the others keep X = 0:
    the mixture (1 - xi) delta_0 + xi Bin(n, p_bin) - floor(n/2). ``kind="uniform"``: the mixture
    (1 - xi) delta_0 + xi Uniform(Z_p), i.e. P(0) = 1 - xi + xi/p, P(r) = xi/p otherwise.
    """
    if kind == "uniform":
        pmf = torch.full((p,), noise_frac / p, dtype=torch.float64)
        pmf[0] += 1.0 - noise_frac
        return pmf
    if kind != "additive":
        raise ValueError(f"kind must be additive or uniform (got {kind!r})")
    pmf = torch.zeros(p, dtype=torch.float64)
    if n <= EXACT_BINOMIAL_N:
        for j in range(n + 1):
            pmf[(j - n // 2) % p] += noise_frac * math.comb(n, j) * p_bin**j * (1 - p_bin) ** (n - j)
    else:
        pmf.index_add_(0, (torch.arange(n + 1) - n // 2) % p, noise_frac * _log_space_binomial_pmf(n, p_bin))
    pmf[0] += 1.0 - noise_frac
    return pmf


# Up to this n each binomial term is C(n, j) q^j (1 - q)^(n - j) with the exact integer C(n, j)
# (C(1000, 500) ~ 2.7e299 still fits a float64; from n ~ 1030 it overflows); beyond, log space.
EXACT_BINOMIAL_N = 1000


def _log_space_binomial_pmf(n: int, q: float) -> torch.Tensor:
    """P(Bin(n, q) = j) for j = 0 .. n, float64 [n + 1], as exp of its logarithm (lgamma): no
    overflow for any n; a term underflows to 0 only where the probability is below ~1e-308.
    Tested against exact rational arithmetic (tests/test_noise.py)."""
    j = torch.arange(n + 1, dtype=torch.float64)
    log_c = math.lgamma(n + 1) - torch.lgamma(j + 1) - torch.lgamma(n - j + 1)
    # q = 0 or 1: 0 * log(0) is 0 (the term j = 0, resp. n, is 1), the others are exp(-inf) = 0
    log_q = j * math.log(q) if q > 0 else torch.where(j == 0, 0.0, -math.inf)
    log_1q = (n - j) * math.log1p(-q) if q < 1 else torch.where(j == n, 0.0, -math.inf)
    log_pmf = log_c + log_q + log_1q
    # the lgamma of a large n carries a rounding error common to every term: normalizing removes it
    return (log_pmf - torch.logsumexp(log_pmf, 0)).exp()


def clean_label_warning(n: int, p_bin: float, p: int, noise_frac: float = 1.0, kind: str = "additive"
                        ) -> str | None:
    """None if X = 0 is the unique most likely noise value, else why the clean label is not the best guess.

    X = Bin(n, p_bin) - floor(n/2) is centered on 0 only when the binomial's mode is floor(n/2):
    an odd n at p_bin = 1/2 ties P(X = 0) with P(X = 1) (mean +1/2), and a skewed p_bin moves the
    mode away from 0. Then the clean label a + b is not what a perfect learner of the noisy labels
    predicts, and clean-label accuracy is no longer its ceiling (ties count: no unique maximum).
    """
    pmf = noise_pmf(n, p_bin, p, noise_frac, kind)
    p0 = pmf[0].item()
    r = int(pmf[1:].argmax()) + 1
    if p0 > pmf[r].item() * (1 + 1e-12):
        return None
    if kind == "uniform":  # only xi = 1: every training label is a uniform draw
        return (f"uniform noise with noise_frac={noise_frac:g} leaves the clean label no more likely than any other "
                "(every training label is a uniform draw): nothing about a + b can be learned")
    x = r if r <= p // 2 else r - p
    mean = noise_frac * (n * p_bin - n // 2)
    frac = f", noise_frac={noise_frac:g}" if noise_frac < 1 else ""
    return (f"the clean label is not the unique most likely label under noise n={n}, p_bin={p_bin:g}{frac} "
            f"(P(X=0) = {p0:.3g}, P(X={x:+d}) = {pmf[r].item():.3g}, mean of X {mean:+.3g}): clean-label "
            "accuracy is not what the noisy labels teach (an even n at p_bin = 0.5 keeps 0 the mode)")


def noise_floor(n: int, p_bin: float, p: int, noise_frac: float = 1.0, kind: str = "additive"
                ) -> dict[str, float]:
    """entropy (nats), p_zero, nll_clean = -log p_zero, p_mode of the label noise mod p (for
    ``kind="uniform"``, of the training labels; see the module docstring)."""
    pmf = noise_pmf(n, p_bin, p, noise_frac, kind)
    nz = pmf[pmf > 0]
    p0 = pmf[0].item()
    return {
        "entropy": 0.0 - float((nz * nz.log()).sum()),  # 0.0 - x: no -0.0 for noise-free runs
        "p_zero": p0,
        "nll_clean": 0.0 - math.log(p0) if p0 > 0 else math.inf,
        "p_mode": pmf.max().item(),
    }
