import math

import torch

from interp_grok.config import Config
from interp_grok.data import make_dataset, sample_noise


def test_noise_matches_binomial():
    n, N = 4, 200_000
    x = sample_noise(N, n, 0.5, torch.Generator().manual_seed(0))
    assert x.dtype == torch.int64
    for k in range(n + 1):
        pmf = math.comb(n, k) / 2**n
        freq = (x == k - n // 2).double().mean().item()
        assert abs(freq - pmf) < 5 * math.sqrt(pmf * (1 - pmf) / N)
    assert x.min() >= -2 and x.max() <= 2


def test_noise_zero_and_odd_n():
    g = torch.Generator().manual_seed(0)
    assert (sample_noise(100, 0, 0.5, g) == 0).all()
    x = sample_noise(100_000, 3, 0.5, g)  # X = Bin(3, 1/2) - 1 takes -1..2
    assert set(x.unique().tolist()) == {-1, 0, 1, 2}


def test_dataset_deterministic_and_split():
    c = Config(p=23, train_frac=0.3).finalize()
    d1, d2 = make_dataset(c), make_dataset(c)
    assert torch.equal(d1.noise, d2.noise) and torch.equal(d1.train_idx, d2.train_idx)
    assert d1.train_idx.numel() == math.floor(0.3 * 23 * 23)
    assert torch.equal(torch.cat([d1.train_idx, d1.test_idx]).sort().values, torch.arange(23 * 23))


def test_model_seed_does_not_change_data_but_data_seed_does():
    base = make_dataset(Config(p=23).finalize())
    assert torch.equal(make_dataset(Config(p=23, seed=5).finalize()).noise, base.noise)
    other = make_dataset(Config(p=23, data_seed=5).finalize())
    assert not torch.equal(other.noise, base.noise)
    assert not torch.equal(other.train_idx, base.train_idx)


def test_labels_a_major():
    c = Config(p=7, noise_n=2).finalize()
    d = make_dataset(c)
    i = 3 * 7 + 5  # (a, b) = (3, 5)
    assert d.a[i] == 3 and d.b[i] == 5
    assert d.clean_labels[i] == (3 + 5) % 7
    assert d.noisy_labels[i] == (3 + 5 + d.noise[i]) % 7
    assert torch.equal(d.is_noisy, d.noise % 7 != 0)
