"""Noise kinds: uniform label corruption (Doshi et al. 2024) beside the additive Binomial shift.

Known answers: the corrupted count is exactly floor(xi * n_train), all in the training set, test
labels clean, xi = 0 is clean data, the stored dataset reads back, the noise floor is
1 - xi + xi/p; the additive kind draws exactly the committed reference dataset.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from interp_grok import Config, make_dataset, noise_floor, noise_pmf, rundir
from interp_grok.noise import clean_label_warning

REPO = Path(__file__).resolve().parents[1]


def _uniform(**kw) -> Config:
    return Config(**{"p": 23, "noise_kind": "uniform", "noise_frac": 0.35, "train_frac": 0.5, **kw}).finalize()


@pytest.mark.parametrize("xi", [0.0, 0.1, 0.35, 0.9, 1.0])
def test_uniform_corrupts_exactly_floor_xi_n_train_training_labels_and_no_test_label(xi):
    c = _uniform(noise_frac=xi)
    ds = make_dataset(c)
    n_train = math.floor(0.5 * 23 * 23)
    assert len(ds.train_idx) == n_train
    assert ds.corrupted.dtype == torch.bool and ds.corrupted.shape == (23 * 23,)
    assert int(ds.corrupted.sum()) == int(ds.corrupted[ds.train_idx].sum()) == math.floor(xi * n_train)
    assert not ds.corrupted[ds.test_idx].any()
    assert torch.equal(ds.noisy_labels[ds.test_idx], ds.clean_labels[ds.test_idx])  # test labels clean
    # noisy (label differs) implies corrupted; a corrupted draw that hit the true label is not noisy
    assert not (ds.is_noisy & ~ds.corrupted).any()
    hit_true = ds.corrupted & ~ds.is_noisy
    assert torch.equal(ds.noise[hit_true], torch.zeros(int(hit_true.sum()), dtype=torch.int64))
    assert ds.noise.abs().max() <= 23 // 2  # stored centered in (-p/2, p/2]
    if xi == 0:
        assert not ds.noise.any() and not ds.corrupted.any()


def test_uniform_draws_are_uniform_over_all_p_classes_including_the_true_one():
    """Their randint(0, p) (utils/datasets.py:42): each class 1/p, the true label included, so about
    xi/p of the training set is corrupted yet keeps its clean label."""
    c = Config(p=97, noise_kind="uniform", noise_frac=1.0, train_frac=0.9).finalize()
    ds = make_dataset(c)
    tr = ds.train_idx
    shift = ds.noise[tr].remainder(97)
    counts = torch.bincount(shift, minlength=97).double()
    n = len(tr)
    assert counts.sum() == n
    # chi-square against uniform: 96 degrees of freedom, 99.9 % quantile ~ 145
    chi2 = ((counts - n / 97) ** 2 / (n / 97)).sum().item()
    assert chi2 < 145
    assert counts[0] > 0  # some redraws hit the true label


def test_uniform_dataset_is_stored_and_read_back(tmp_path):
    ds = make_dataset(_uniform())
    rundir.write_dataset(tmp_path, ds.to_tensors(), 23)
    back = rundir.load_dataset(tmp_path, 23)
    for k in ("noise", "train_idx", "test_idx", "corrupted"):
        assert torch.equal(getattr(back, k), getattr(ds, k))
    # a corrupted mask that does not cover the nonzero shifts is refused
    bad = {**ds.to_tensors(), "corrupted": torch.zeros(23 * 23, dtype=torch.bool)}
    rundir.write_dataset(tmp_path, bad, 23)
    with pytest.raises(rundir.RunDirError, match="not marked corrupted"):
        rundir.load_dataset(tmp_path, 23)


def test_uniform_ignores_noise_n_and_p_bin_and_the_seeds_do_what_they_say():
    a, b = make_dataset(_uniform()), make_dataset(_uniform(noise_n=8, p_bin=0.3, seed=5))
    assert all(torch.equal(x, y) for x, y in zip(a.to_tensors().values(), b.to_tensors().values()))
    c = make_dataset(_uniform(data_seed=7))
    assert not torch.equal(a.train_idx, c.train_idx)


def test_additive_datasets_are_unchanged_reference_run():
    """The committed reference run's dataset (checkpoints/n4, drawn before noise kinds existed)
    is what make_dataset still draws for its config, tensor for tensor; additive datasets hold no
    ``corrupted`` tensor."""
    ref = REPO / "checkpoints" / "n4"
    raw = json.loads((ref / "config.json").read_text())
    config = Config(**{k: v for k, v in raw.items() if k not in ("format", "format_version", "provenance")})
    config.finalize()
    assert config.noise_kind == "additive"
    stored = rundir.read_dataset(ref, config.p)
    drawn = make_dataset(config).to_tensors()
    assert sorted(drawn) == sorted(stored) == ["noise", "test_idx", "train_idx"]
    assert all(torch.equal(drawn[k], stored[k]) for k in drawn)


def test_uniform_noise_floor_known_answers():
    p, xi = 11, 0.35
    pmf = noise_pmf(4, 0.5, p, xi, kind="uniform")  # n and p_bin ignored
    assert pmf[0].item() == pytest.approx(1 - xi + xi / p)  # 0.681818...
    assert pmf[1:].tolist() == pytest.approx([xi / p] * (p - 1))  # 0.0318181...
    assert pmf.sum().item() == pytest.approx(1.0)
    f = noise_floor(0, 0.5, p, xi, kind="uniform")
    p0 = 1 - xi + xi / p
    entropy = -(p0 * math.log(p0) + (p - 1) * (xi / p) * math.log(xi / p))
    assert f["p_zero"] == pytest.approx(0.6818181818) and f["p_mode"] == pytest.approx(p0)
    assert f["entropy"] == pytest.approx(entropy) and f["entropy"] == pytest.approx(1.35813, abs=1e-5)
    assert f["nll_clean"] == pytest.approx(-math.log(p0))
    assert noise_floor(0, 0.5, p, 0.0, kind="uniform") == {"entropy": 0.0, "p_zero": 1.0, "nll_clean": 0.0,
                                                          "p_mode": 1.0}
    assert noise_floor(0, 0.5, p, 1.0, kind="uniform")["entropy"] == pytest.approx(math.log(p))
    assert clean_label_warning(0, 0.5, p, 0.99, kind="uniform") is None
    assert "no more likely" in clean_label_warning(0, 0.5, p, 1.0, kind="uniform")
    # the additive kind is unchanged (science.md section 6: n = 4, xi = 0.2 -> 0.875, 0.526 nats)
    assert noise_floor(4, 0.5, 97, 0.2)["p_zero"] == pytest.approx(0.875)
    assert noise_floor(4, 0.5, 97, 0.2, kind="additive")["entropy"] == pytest.approx(0.526, abs=1e-3)
    with pytest.raises(ValueError, match="kind"):
        noise_pmf(4, 0.5, 97, kind="gaussian")


def test_config_validates_the_new_settings():
    from interp_grok.config import ConfigError

    for kw, needle in (({"noise_kind": "gauss"}, "noise_kind must be one of additive, uniform"),
                       ({"model": "lstm"}, "model must be one of mlp, quadratic, transformer")):
        with pytest.raises(ConfigError, match=needle):
            Config(**kw).finalize()


def test_runs_of_format_3_read_as_additive_mlp_runs(tiny_run, tmp_path):
    out = tmp_path / "v3"
    shutil.copytree(tiny_run, out)
    raw = json.loads((out / "config.json").read_text())
    for k in ("noise_kind", "model"):
        raw.pop(k)
    (out / "config.json").write_text(json.dumps({**raw, "format_version": 3}))
    run = rundir.load_run(out)
    assert (run.config.noise_kind, run.config.model) == ("additive", "mlp")
    assert run.dataset.corrupted is None
    assert type(run.model(run.checkpoint_epochs[-1])).__name__ == "SimpleMLP"
    (out / "config.json").write_text(json.dumps({**raw, "format_version": 4}))  # version 4 must have them
    with pytest.raises(rundir.RunDirError, match="missing config keys noise_kind, model"):
        rundir.load_run(out)
