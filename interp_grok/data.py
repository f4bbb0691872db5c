"""The noisy modular-addition dataset: all pairs (a, b), their label noise and the split.

Pairs are indexed a-major (index = a * p + b). The noise and the split are drawn once from
``data_seed`` and then stored in the run directory; everything downstream reads them back
rather than re-deriving them.

Two noise kinds (``Config.noise_kind``), both stored as the label shift X (noisy label =
a + b + X mod p), so every reader derives labels the same way:

- additive: X = Binomial(noise_n, p_bin) - floor(noise_n / 2) on a fraction noise_frac of all
  pairs, train and test.
- uniform (Doshi et al. 2024, d-doshi/Grokking utils/datasets.py:37-44): exactly
  floor(noise_frac * n_train) training examples get a label drawn uniformly from the p classes
  (the draw may hit the true label, as in their code); test labels stay clean. Which examples
  were corrupted is stored (``corrupted``), since a draw that hits the true label leaves X = 0.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from .config import Config


@dataclass
class Dataset:
    p: int
    noise: torch.Tensor  # int64 [p*p], X for each pair, a-major
    train_idx: torch.Tensor  # int64 [n_train], indices into the p*p pairs
    test_idx: torch.Tensor  # int64 [p*p - n_train]
    # uniform noise only: bool [p*p], the pairs whose label was redrawn (None for additive noise,
    # whose datasets stay byte-for-byte what they were)
    corrupted: torch.Tensor | None = None
    # a relabelled run only (analysis.correction): relabel_idx (pair indices), relabel_old and
    # relabel_new (the labels before and after), int64 [m] each; the noise already holds the new labels
    relabel: dict[str, torch.Tensor] | None = None

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
        """True where the label was changed by the noise (X != 0 mod p).

        A uniformly corrupted example whose random label equals its true one is *not* noisy here
        (its label is the clean label; nothing about it can be memorized); ``corrupted`` keeps it.
        """
        return self.noisy_labels != self.clean_labels

    def to_tensors(self) -> dict[str, torch.Tensor]:
        out = {"noise": self.noise, "train_idx": self.train_idx, "test_idx": self.test_idx}
        if self.corrupted is not None:
            out["corrupted"] = self.corrupted
        return out | (self.relabel or {})


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


def centered(x: torch.Tensor, p: int) -> torch.Tensor:
    """x mod p as the representative in (-p/2, p/2] (how a shift X is stored and reported)."""
    s = x.remainder(p)
    return torch.where(s > p // 2, s - p, s)


def python_shuffle_order(p: int, seed: int) -> torch.Tensor:
    """Nanda et al.'s split order (progress-measures-paper transformers.py:437-444): the a-major list
    of pairs (i, j, p), random.seed(seed), random.shuffle; returned as pair indices i * p + j
    (int64 [p * p]). Its first floor(train_frac * p^2) entries are their training set, in their order
    (their ``int(frac_train * len(pairs))`` is that floor). Python's own generator, so the order is
    theirs bit for bit and touches no torch generator."""
    pairs = list(range(p * p))  # pair i * p + j stands for their tuple (i, j, p): same positions
    rng = random.Random(seed)  # random.seed(seed) then random.shuffle: the same Mersenne Twister stream
    rng.shuffle(pairs)
    return torch.tensor(pairs, dtype=torch.int64)


def split_order(config: Config, g: torch.Generator) -> torch.Tensor:
    """The random order of the p^2 pairs whose first n_train are the training set: torch.randperm
    from ``g`` (split "randperm", the default) or Nanda et al.'s Python shuffle seeded with
    data_seed (split "python_shuffle", which draws nothing from ``g``)."""
    if config.split == "python_shuffle":
        return python_shuffle_order(config.p, config.data_seed)
    return torch.randperm(config.p * config.p, generator=g)


def make_dataset(config: Config) -> Dataset:
    """The dataset of ``config.noise_kind``, drawn from one generator seeded with ``config.data_seed``.

    additive: the noise, then the split, then (only when noise_frac < 1) which pairs keep their
    noise (so noise_frac = 1 draws exactly what runs before noise_frac existed drew).
    uniform: see make_uniform_dataset.
    """
    if config.noise_kind == "uniform":
        return make_uniform_dataset(config)
    p = config.p
    g = torch.Generator().manual_seed(config.data_seed)
    noise = sample_noise(p * p, config.noise_n, config.p_bin, g)
    perm = split_order(config, g)
    if config.noise_frac < 1.0:
        noise = noise * (torch.rand(p * p, generator=g, dtype=torch.float64) < config.noise_frac)
    n_train = math.floor(config.train_frac * p * p)
    return Dataset(p=p, noise=noise, train_idx=perm[:n_train].clone(), test_idx=perm[n_train:].clone())


def make_uniform_dataset(config: Config) -> Dataset:
    """Uniform label corruption as Doshi et al.'s ``noisy_dataset`` does it (utils/datasets.py:22-44).

    The split first (a random permutation of the pairs; its first floor(train_frac p^2) are the
    training set), then the first n_noise = floor(noise_frac * n_train) training examples of that
    random order (a uniformly random subset of exactly that size) get a label drawn from
    randint(0, p), which may equal the true label (their line 42; the commented-out redraw at
    their lines 51-56 is not used). Test labels are clean. Stored as the shift X = label - a - b
    (centered), plus ``corrupted``.
    """
    p = config.p
    g = torch.Generator().manual_seed(config.data_seed)
    perm = split_order(config, g)
    n_train = math.floor(config.train_frac * p * p)
    train_idx = perm[:n_train].clone()
    n_noise = math.floor(config.noise_frac * n_train)  # their int(noise_level * train_size), line 37
    hit = train_idx[:n_noise]
    labels = torch.randint(0, p, (n_noise,), generator=g)
    noise = torch.zeros(p * p, dtype=torch.int64)
    noise[hit] = centered(labels - (hit // p + hit % p), p)
    corrupted = torch.zeros(p * p, dtype=torch.bool)
    corrupted[hit] = True
    return Dataset(p=p, noise=noise, train_idx=train_idx, test_idx=perm[n_train:].clone(), corrupted=corrupted)
