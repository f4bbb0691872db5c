import torch
from known_models import fourier_mlp

from interp_grok.analysis.memorization import (
    example_stats,
    first_fit_epoch,
    forgetting_events,
    fraction_by_noise,
    predicted_shift,
)
from interp_grok.data import Dataset, sample_noise
from interp_grok.evaluation import metrics_from_logits
from interp_grok.models.mlp import grid_logits


def test_example_stats_on_known_logits():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0]])
    noisy, clean = torch.tensor([0, 1]), torch.tensor([1, 2])
    s = example_stats(logits, noisy, clean)
    assert s["pred"].tolist() == [0, 2]
    assert s["margin"].tolist() == [2.0, -3.0]  # z_label - max of the others
    lse = torch.logsumexp(logits.double(), -1)
    torch.testing.assert_close(s["nll_noisy"], lse - torch.tensor([3.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(s["nll_clean"], lse - torch.tensor([1.0, 5.0], dtype=torch.float64))


def test_first_fit_and_forgetting_events():
    fit = torch.tensor([[0, 0, 1, 0],
                        [1, 0, 0, 0],
                        [0, 0, 1, 1],
                        [1, 0, 0, 1]], dtype=torch.bool)  # [T=4, n=4]
    epochs = torch.tensor([0, 10, 100, 1000])
    assert first_fit_epoch(fit, epochs).tolist() == [10, -1, 0, 100]
    assert forgetting_events(fit).tolist() == [1, 0, 2, 0]


def test_predicted_shift_and_fraction_by_noise():
    p = 11
    a, b = torch.tensor([3, 5, 10]), torch.tensor([4, 9, 10])
    pred = (a + b + torch.tensor([-2, 1, 5])) % p
    assert predicted_shift(pred, a, b, p).tolist() == [-2, 1, 5]
    hit = torch.tensor([True, False, True, True])
    assert fraction_by_noise(hit, torch.tensor([1, 1, -1, 0])) == {-1: 1.0, 0: 1.0, 1: 0.5}


def test_a_perfect_generalizer_memorizes_nothing():
    """The hand-built (a + b) mod p network predicts every clean label: on noisy data it
    corrects every noisy training label and its noisy-label test accuracy is P(X = 0)."""
    p = 31
    noise = sample_noise(p * p, 4, 0.5, torch.Generator().manual_seed(1))
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(2))
    ds = Dataset(p, noise, perm[:300], perm[300:])
    logits = grid_logits(fourier_mlp(p, [3, 7, 11]), "relu").reshape(p * p, p)
    m = metrics_from_logits(logits, ds.noisy_labels, ds.clean_labels, ds.train_idx, ds.test_idx)
    assert m["train_noisy_memorized_frac"] == 0.0
    assert m["train_noisy_corrected_frac"] == 1.0
    assert m["train_clean_acc"] == 1.0 and m["test_acc_clean"] == 1.0
    assert m["test_acc_noisy"] == (noise[ds.test_idx] == 0).double().mean().item()
    assert m["train_acc"] == (noise[ds.train_idx] == 0).double().mean().item()


def test_a_lookup_table_memorizes_everything():
    """Logits that are one-hot on the noisy label fit every training label, noisy or not."""
    p = 13
    noise = sample_noise(p * p, 2, 0.5, torch.Generator().manual_seed(0))
    ds = Dataset(p, noise, torch.arange(0, p * p, 2), torch.arange(1, p * p, 2))
    logits = 20.0 * torch.nn.functional.one_hot(ds.noisy_labels, p).float()
    m = metrics_from_logits(logits, ds.noisy_labels, ds.clean_labels, ds.train_idx, ds.test_idx)
    assert m["train_noisy_memorized_frac"] == 1.0 and m["train_noisy_corrected_frac"] == 0.0
    assert m["train_acc"] == 1.0 and m["test_acc_noisy"] == 1.0
    assert m["test_acc_clean"] == (noise[ds.test_idx] == 0).double().mean().item()


def test_shift_kl_known_answers():
    import math

    import pytest

    from interp_grok.analysis.memorization import SHIFT_EPS, shift_distribution, shift_kl, shift_within
    from interp_grok.noise import noise_pmf

    p = 97
    pmf = noise_pmf(2, 0.5, p)  # X in {-1, 0, 1} with 1/4, 1/2, 1/4
    a = torch.arange(400) % p
    b = (7 * torch.arange(400)) % p
    # predictions a + b + X with X exactly in the noise proportions: Q = P_X, KL = O(eps)
    x = torch.tensor([-1, 0, 0, 1]).repeat(100)
    q = shift_distribution((a + b + x) % p, a, b, p)
    torch.testing.assert_close(q, pmf)
    assert shift_kl(q, pmf) == pytest.approx(0.0, abs=1e-5)
    assert shift_within(q) == 1.0
    # always the clean label: -log P(X = 0), up to the smoothing
    q0 = shift_distribution((a + b) % p, a, b, p)
    assert shift_kl(q0, pmf) == pytest.approx(math.log(2), rel=1e-5)
    assert shift_kl(q0, noise_pmf(4, 0.5, p)) == pytest.approx(-math.log(0.375), rel=1e-5)
    # always a shift the noise never makes: log(p / eps)
    q5 = shift_distribution((a + b + 5) % p, a, b, p)
    assert shift_kl(q5, pmf) == pytest.approx(math.log(p / SHIFT_EPS), rel=1e-6)
    assert shift_within(q5) == 0.0 and shift_within(q5, 5) == 1.0
    # half clean, half shifted by -1 (p - 1 mod p): within1 = 1
    half = shift_distribution((a + b - (torch.arange(400) % 2)) % p, a, b, p)
    assert shift_within(half) == 1.0 and half[0] == 0.5 and half[p - 1] == 0.5
