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
    for j in range(n + 1):
        pmf[(j - n // 2) % p] += noise_frac * math.comb(n, j) * p_bin**j * (1 - p_bin) ** (n - j)
    pmf[0] += 1.0 - noise_frac
    return pmf


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
