"""The model-family protocol and the quadratic family (Doshi et al. 2024 / Gromov 2023): known answers.

The seed MLP's behaviour through the protocol is guarded by the existing tests (test_model,
test_train, test_batch, test_reference_runs): runs stay bit-identical.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import run_cli

from interp_grok import Config, resume, rundir, train, train_batch
from interp_grok.analysis.fourier import frequency_norms, ipr
from interp_grok.config import MODELS
from interp_grok.evaluation import evaluate, example_losses
from interp_grok.models import FAMILIES, ModelFamily, family
from interp_grok.models.quadratic import doshi_init_std, gromov_solution


def _tiny(**kw) -> Config:
    base = dict(model="quadratic", p=11, d_mlp=24, epochs=30, eval_every=5, n_checkpoints=8, lr=1e-2,
                weight_decay=1.0, noise_kind="uniform", noise_frac=0.35, train_frac=0.5)
    return Config(**{**base, **kw}).finalize()


def test_registry_names_the_config_models_and_every_family_fits_the_protocol():
    assert tuple(FAMILIES) == MODELS == ("mlp", "quadratic", "transformer")
    for name, fam in FAMILIES.items():
        assert isinstance(fam, ModelFamily) and fam.name == name and family(name) is fam
        # eq_logit False: the transformer's training loss then covers exactly the p classes it reports
        # (with its "=" logit, the default, see tests/test_transformer.py); other families ignore it
        c = Config(model=name, p=7, d_model=8, d_mlp=12, eq_logit=False).finalize()
        params = fam.init_params(c, torch.Generator().manual_seed(0))
        assert tuple(params) == fam.param_names
        assert {k: tuple(v.shape) for k, v in params.items()} == fam.param_shapes(c)
        a, b = torch.arange(49) // 7, torch.arange(49) % 7
        # the forward on all pairs is the full grid, and the batched loss is the family's loss
        torch.testing.assert_close(fam.logits(params, a, b, c), fam.grid_logits(params, c).reshape(49, 7))
        y = (a + b) % 7
        stacked = {k: v[None] for k, v in params.items()}
        got = fam.batched_loss(stacked, a[None], b[None], y[None], torch.tensor([49]), c)[0]
        want = example_losses(fam.grid_logits(params, c).reshape(49, 7), y, fam.loss).mean()
        torch.testing.assert_close(got, want.to(got.dtype))
        curves = fam.neuron_curves(params)
        assert {k: tuple(v.shape) for k, v in curves.items()} == {k: (12, 7) for k in ("in_a", "in_b", "out")}
        assert fam.embedding(params).shape[0] == 7
        silenced = fam.ablate_neurons(params, torch.zeros(12, dtype=torch.bool))
        if name != "transformer":  # (the transformer keeps its direct path: tests/test_transformer.py)
            assert fam.grid_logits(silenced, c).abs().max() == 0  # no neuron left reaches the outputs
        torch.testing.assert_close(fam.module(params, c)(a, b), fam.logits(params, a, b, c))
    with pytest.raises(ValueError, match="model must be one of"):
        family("lstm")


def test_quadratic_loss_is_doshis_mse_on_one_hot_targets():
    """nn.MSELoss() (mean over n * p entries) against F.one_hot(label) (their utils/optimization.py:87-120)."""
    fam, c = family("quadratic"), _tiny()
    params = fam.init_params(c, torch.Generator().manual_seed(3))
    a, b = torch.randint(0, 11, (2, 30), generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 11, (30,), generator=torch.Generator().manual_seed(2))
    z = fam.logits(params, a, b, c)
    want = torch.nn.MSELoss()(z.double(), torch.nn.functional.one_hot(y, 11).double())
    stacked = {k: v[None] for k, v in params.items()}
    got = fam.batched_loss(stacked, a[None], b[None], y[None], torch.tensor([30]), c)[0]
    torch.testing.assert_close(got, want)
    # a padded model counts only its first n_k examples
    pad = {k: torch.stack([v, v]) for k, v in params.items()}
    two = fam.batched_loss(pad, torch.stack([a, a]), torch.stack([b, b]), torch.stack([y, y]),
                           torch.tensor([30, 20]), c)
    want20 = torch.nn.MSELoss()(z[:20].double(), torch.nn.functional.one_hot(y[:20], 11).double())
    torch.testing.assert_close(two, torch.stack([want, want20]))


def test_quadratic_init_is_doshis_normal():
    """Both layers ~ N(0, 0.25 / (2N)^(2/3)) (their utils/models.py:39-40)."""
    c = Config(model="quadratic", p=97, d_mlp=500).finalize()
    params = family(c).init_params(c, torch.Generator().manual_seed(0))
    std = doshi_init_std(500)
    assert std == pytest.approx(0.5 / 1000 ** (1 / 3))
    for name in ("U", "V", "W"):
        assert params[name].std().item() == pytest.approx(std, rel=0.02)
        assert abs(params[name].mean().item()) < 0.02 * std * 10


def test_gromovs_analytic_solution_is_perfect_with_ipr_one_neurons():
    """science.md section 9: at p = 97, N = 500 every one of the p^2 pairs is right and every
    neuron's curves (U, V and W) are single Fourier modes: IPR 1 under fourier.ipr."""
    p, n = 97, 500
    fam, c = family("quadratic"), Config(model="quadratic", p=p, d_mlp=n).finalize()
    params = gromov_solution(p, n, torch.Generator().manual_seed(0))
    assert {k: tuple(v.shape) for k, v in params.items()} == fam.param_shapes(c)
    pred = fam.grid_logits(params, c).argmax(-1)  # [a, b]
    x = torch.arange(p)
    assert torch.equal(pred, (x[:, None] + x[None, :]) % p)
    for name, curves in fam.neuron_curves(params).items():
        assert curves.shape == (n, p)
        assert (ipr(curves) - 1).abs().max().item() < 1e-6, name
    # the embedding's spectrum holds every frequency 1..(p-1)/2 (sigma cycles over them)
    norms = frequency_norms(fam.embedding(params))
    assert norms.min() > 0.5 * norms.max()


def test_quadratic_exact_resume_bit_for_bit(tmp_path):
    """Trained 2N epochs in one go == trained N, then resumed to 2N (one thread)."""
    full, half = tmp_path / "full", tmp_path / "half"
    train(_tiny(epochs=30), full, device="cpu", threads=1)
    train(_tiny(epochs=15), half, device="cpu", threads=1)
    resume(half, epochs=30, device="cpu", threads=1)
    a = rundir.load_tensors(full / rundir.TRAIN_STATE)[0]
    b = rundir.load_tensors(half / rundir.TRAIN_STATE)[0]
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert {k for k in a if k.startswith("param.")} == {"param.U", "param.V", "param.W"}
    ra, rb = rundir.load_run(full), rundir.load_run(half)
    assert ra.evals[-1] == rb.evals[-1]


def test_quadratic_runs_batch_like_solo_runs(tmp_path):
    """train_batch stacks quadratic runs on a leading model axis; each equals its solo run."""
    cs = [_tiny(weight_decay=0.0, seed=1), _tiny(weight_decay=5.0, noise_frac=0.1, data_seed=2)]
    outs = [tmp_path / "b0", tmp_path / "b1"]
    train_batch(cs, outs, device="cpu", threads=1)
    for c, o in zip(cs, outs):
        solo = tmp_path / f"solo_{o.name}"
        train(Config(**{**c.to_dict(), "checkpoint_epochs": []}).finalize(), solo, device="cpu", threads=1)
        a = rundir.load_tensors(solo / rundir.TRAIN_STATE)[0]
        b = rundir.load_tensors(o / rundir.TRAIN_STATE)[0]
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_quadratic_metrics_report_mse_and_accuracies():
    c = _tiny()
    fam = family(c)
    params = gromov_solution(11, 60)
    p = 11
    labels = (torch.arange(p * p) // p + torch.arange(p * p) % p) % p
    idx = torch.randperm(p * p, generator=torch.Generator().manual_seed(0))
    m = evaluate(params, c, labels, labels, idx[:60], idx[60:])
    z = fam.grid_logits(params, c).reshape(p * p, p).double()
    want = ((z - torch.nn.functional.one_hot(labels, p)) ** 2).mean(-1)[idx[:60]].mean().item()
    assert m["train_loss"] == pytest.approx(want) and m["train_acc"] == 1.0 and m["test_acc_clean"] == 1.0


def test_cli_quadratic_uniform_train_analyze_and_sweep(tmp_path, capsys):
    """interp-grok train --model quadratic --noise-kind uniform --noise-frac 0.35, then analyze; and a
    tiny sweep over --noise-frac, all exit 0 with the same commands as the seed's setting."""
    base = ["--model", "quadratic", "--p", "11", "--d-mlp", "24", "--epochs", "20", "--eval-every", "5",
            "--checkpoints", "6", "--lr", "0.01", "--train-frac", "0.5"]
    out = tmp_path / "q"
    assert run_cli("train", *base, "--noise-kind", "uniform", "--noise-frac", "0.35", "--threads", "1",
                   "--out", out) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["model"], cfg["noise_kind"], cfg["noise_frac"], cfg["format_version"]) == (
        "quadratic", "uniform", 0.35, 6)
    assert run_cli("analyze", out) == 0
    header = (out / "analysis" / "progress.csv").read_text().splitlines()[0].split(",")
    assert {"norm_U", "norm_V", "norm_W", "gini_W_E", "train_noisy_memorized_frac"} <= set(header)
    assert not any(h.startswith("train_noisy_memorized_frac_x") for h in header)
    summary = json.loads((out / "analysis" / "summary.json").read_text())
    assert summary["noise_floor"]["p_zero"] == pytest.approx(1 - 0.35 + 0.35 / 11)
    run = rundir.load_run(out)
    assert run.dataset.corrupted is not None and int(run.dataset.corrupted.sum()) == math.floor(0.35 * 60)
    assert type(run.model(20)).__name__ == "QuadraticModule"

    sweep = tmp_path / "s"
    assert run_cli("sweep", sweep, *base, "--noise-kind", "uniform", "--noise-frac", "0.1,0.5",
                   "--weight-decay", "0,5", "--batch", "2", "--workers", "1") == 0
    names = sorted(p.name for p in (sweep / "runs").iterdir())
    assert len(names) == 4
    for name in names:
        r = rundir.load_run(sweep / "runs" / name)
        assert (r.config.model, r.config.noise_kind) == ("quadratic", "uniform")
        assert rundir.read_train_state(r.path)[0] == 20
    assert run_cli("analyze", sweep) == 0
