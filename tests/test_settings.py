"""The sweepable settings added for issue 8: init, init_scale, noise_frac (known answers)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY, run_cli

from interp_grok import Config, make_dataset, noise_floor, noise_pmf, rundir
from interp_grok.models.mlp import init_params
from interp_grok.noise import clean_label_warning

REF = Path(__file__).resolve().parents[1] / "checkpoints"


def test_noise_frac_one_draws_exactly_what_runs_before_it_drew():
    """The committed n = 4 reference run (written before noise_frac existed) has the dataset
    that make_dataset draws today at the default noise_frac = 1."""
    stored = rundir.read_dataset(REF / "n4", 97)
    ds = make_dataset(Config(noise_n=4).finalize())
    assert torch.equal(ds.noise, stored["noise"]) and torch.equal(ds.train_idx, stored["train_idx"])


@pytest.mark.parametrize("xi", [0.0, 0.1, 0.5])
def test_noise_frac_noises_that_fraction_and_keeps_the_split(xi):
    full = make_dataset(Config(noise_n=4).finalize())
    part = make_dataset(Config(noise_n=4, noise_frac=xi).finalize())
    assert torch.equal(part.train_idx, full.train_idx)  # the split is drawn before the mask
    kept = part.noise != 0
    assert torch.equal(part.noise[kept], full.noise[kept])  # a noised pair keeps its X
    # the fraction of pairs still noised is xi * P(X != 0) = xi * 0.625, within 4 sigma
    frac, expect = kept.double().mean().item(), xi * 0.625
    assert abs(frac - expect) <= 4 * math.sqrt(expect * (1 - expect) / 97**2) + 1e-12


def test_noise_floor_follows_noise_frac():
    xi = 0.3
    pmf = noise_pmf(4, 0.5, 97, xi)
    assert pmf.sum().item() == pytest.approx(1.0)
    assert pmf[0].item() == pytest.approx(0.7 + 0.3 * 6 / 16)  # P(X = 0) = 1 - xi + xi * C(4,2)/16
    assert pmf[1].item() == pytest.approx(0.3 * 4 / 16)
    f = noise_floor(4, 0.5, 97, xi)
    assert f["p_zero"] == pytest.approx(0.8125) and f["p_mode"] == pytest.approx(0.8125)
    assert noise_floor(4, 0.5, 97, 1.0) == noise_floor(4, 0.5, 97)


def test_torch_default_init_has_pytorchs_layer_distributions():
    c = Config(init="torch_default").finalize()
    P = init_params(c, torch.Generator().manual_seed(0))
    assert P["W_E"].std().item() == pytest.approx(1.0, abs=0.02)  # nn.Embedding: N(0, 1)
    for name, fan_in in (("W_in", 256), ("b_in", 256), ("W_out", 512), ("W_U", 128)):
        bound = fan_in**-0.5  # kaiming_uniform(a = sqrt(5)) and the bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        assert P[name].abs().max().item() <= bound
        assert P[name].std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_init_scale_multiplies_every_initial_weight():
    for init in ("normal_fan_in", "torch_default"):
        base = init_params(Config(init=init).finalize(), torch.Generator().manual_seed(3))
        scaled = init_params(Config(init=init, init_scale=0.25).finalize(), torch.Generator().manual_seed(3))
        for k in base:
            assert torch.equal(scaled[k], base[k] * 0.25), (init, k)


def test_new_settings_are_recorded_and_flags_validated(tmp_path, capsys):
    out = tmp_path / "r"
    small = [a if a != "120" else "5" for a in TINY]
    assert run_cli("train", *small, "--init", "torch_default", "--init-scale", "0.5", "--noise-frac", "0.2",
                   "--out", out) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["init"], cfg["init_scale"], cfg["noise_frac"], cfg["format_version"]) == ("torch_default", 0.5, 0.2, 6)
    for flags, needle in ((["--init", "xavier"], "init must be one of"), (["--init-scale", "0"], "init_scale must be"),
                          (["--noise-frac", "1.5"], "noise_frac must be in [0, 1]")):
        assert run_cli("train", *small, *flags, "--out", tmp_path / "bad") == 2
        assert needle in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()


def test_older_runs_have_the_only_value_their_version_could_have(tiny_run, tmp_path, capsys):
    out = tmp_path / "v2"
    shutil.copytree(tiny_run, out)
    raw = json.loads((out / "config.json").read_text())
    for k in ("init_scale", "noise_frac"):
        raw.pop(k)
    (out / "config.json").write_text(json.dumps({**raw, "format_version": 2}))
    c = rundir.load_run(out).config
    assert (c.init_scale, c.noise_frac) == (1.0, 1.0)
    (out / "config.json").write_text(json.dumps({**raw, "format_version": 3}))  # version 3 must have them
    with pytest.raises(rundir.RunDirError, match="missing config keys noise_frac, init_scale"):
        rundir.load_run(out)


def test_label_noise_whose_mode_is_not_zero_is_warned_about_once(tmp_path, capsys):
    """Odd n at p_bin = 1/2 ties P(X = 0) with P(X = 1) (mean +1/2), a skewed p_bin moves the mode:
    one warning line on stderr, and the run still trains; even n at p_bin = 1/2 is quiet."""
    assert clean_label_warning(4, 0.5, 97) is None and clean_label_warning(0, 0.5, 97) is None
    assert "P(X=0) = 0.375, P(X=+1) = 0.375, mean of X +0.5" in clean_label_warning(3, 0.5, 97)
    assert "P(X=-1) = 0.412" in clean_label_warning(4, 0.3, 97)  # the binomial's mode is 1, not 2
    assert clean_label_warning(4, 0.6, 97) is not None  # P(X=0) = P(X=1) = 0.3456: a tie is warned about
    assert clean_label_warning(3, 0.5, 97, noise_frac=0.5) is None  # the unnoised half makes 0 the mode
    small = [a if a != "120" else "5" for a in TINY]
    for n, warned in ((3, True), (4, False)):
        assert run_cli("train", *small, "--noise", n, "--out", tmp_path / f"n{n}") == 0
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if "warning" in line]
        assert lines == ([f"interp-grok train: warning: {clean_label_warning(n, 0.5, 11)}"] if warned else []), err
        assert rundir.load_run(tmp_path / f"n{n}").checkpoint_epochs[-1] == 5
    grid = ["--p", "11", "--d-model", "16", "--epochs", "2", "--eval-every", "1", "--checkpoints", "2"]
    assert run_cli("sweep", tmp_path / "s", *grid, "--noise", "2,3,5", "--workers", "1") == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(lines) == 1 and lines[0].startswith("interp-grok sweep: warning: 2 of 3 grid points"), lines
    assert run_cli("sweep", tmp_path / "s2", *grid, "--noise", "2,4", "--workers", "1") == 0
    assert "warning" not in capsys.readouterr().err
