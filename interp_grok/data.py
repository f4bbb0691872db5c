"""The noisy modular-addition dataset: all pairs (a, b), their label noise and the split.

Pairs are indexed a-major (index = a * p + b). The noise and the split are drawn once from
``data_seed`` and then stored in the run directory; everything downstream reads them back
rather than re-deriving them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import Config


@dataclass
class Dataset:
    p: int
    noise: torch.Tensor  # int64 [p*p], X for each pair, a-major
    train_idx: torch.Tensor  # int64 [n_train], indices into the p*p pairs
    test_idx: torch.Tensor  # int64 [p*p - n_train]

    @property
    def a(self) -> torch.Tensor:
        return torch.arange(self.p * self.p) // self.p

    @property
    def b(self) -> torch.Tensor:
        return torch.arange(self.p * self.p) % self.p

    @property
    def clean_labels(self) -> torch.Tensor:
        return (self.a + self.b) % self.p

    @property
    def noisy_labels(self) -> torch.Tensor:
        return (self.a + self.b + self.noise) % self.p

    @property
    def is_noisy(self) -> torch.Tensor:
        """True where the label was changed by the noise (X != 0 mod p)."""
        return self.noisy_labels != self.clean_labels

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {"noise": self.noise, "train_idx": self.train_idx, "test_idx": self.test_idx}


def sample_noise(
    n_pairs: int, noise_n: int, p_bin: float, generator: torch.Generator
) -> torch.Tensor:
    """X = Binomial(noise_n, p_bin) - floor(noise_n / 2), one draw per pair, as int64.

    The binomial is drawn as a sum of Bernoulli trials: exact, and stable across library
    versions (only uniform draws from an explicit generator are used).
    """
    if noise_n == 0:
        return torch.zeros(n_pairs, dtype=torch.int64)
    u = torch.rand(n_pairs, noise_n, generator=generator, dtype=torch.float64)
    return (u < p_bin).sum(dim=1).to(torch.int64) - noise_n // 2


def make_dataset(config: Config) -> Dataset:
    """Draw the noise, then the split, then (only when noise_frac < 1) which pairs keep their
    noise, from one generator seeded with ``config.data_seed`` (so noise_frac = 1 draws exactly
    what runs before noise_frac existed drew)."""
    p = config.p
    g = torch.Generator().manual_seed(config.data_seed)
    noise = sample_noise(p * p, config.noise_n, config.p_bin, g)
    perm = torch.randperm(p * p, generator=g)
    if config.noise_frac < 1.0:
        noise = noise * (torch.rand(p * p, generator=g, dtype=torch.float64) < config.noise_frac)
    n_train = math.floor(config.train_frac * p * p)
    return Dataset(p=p, noise=noise, train_idx=perm[:n_train].clone(), test_idx=perm[n_train:].clone())
