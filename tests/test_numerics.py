"""Numerics (issue 18; science.md sections 7 and 11): the losses (softmax cross-entropy in float64 and
float32, StableMax cross-entropy as Prieto et al.'s code defines it) with their fused backwards, ⊥AdamW
(its inner AdamW is the configured one; resume is bit-identical), the settings through config, CLI,
batches and sweeps, and the numerics measures (analysis/numerics.py) on cases whose answers are known."""

from __future__ import annotations

import json
import math
import shutil
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY, run_cli
from known_models import fourier_mlp

from interp_grok import (
    Config,
    ConfigError,
    first_epoch_reaching,
    numerics_readout,
    rundir,
    stalled,
    train,
    train_batch,
)
from interp_grok.analysis import measures
from interp_grok.analysis.measures import Checkpoint, measure_row
from interp_grok.analysis.numerics import (
    descent_weight_cosines,
    loss_spikes,
    softmax_collapse_fraction,
    top_logit_gap,
    training_gradients,
    zero_loss_fraction,
)
from interp_grok.data import make_dataset
from interp_grok.models import family
from interp_grok.models.losses import (
    batched_loss,
    cross_entropy,
    log_stablemax,
    per_example_loss,
    stablemax_cross_entropy,
    stablemax_s,
)
from interp_grok.models.mlp import PARAM_NAMES, mlp_logits
from interp_grok.optim import make_optimizer, orthogonalize_, step
from interp_grok.train import TrainError, check_batchable


def _their_stablemax_ce(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Prieto et al.'s stablemax_cross_entropy, transcribed (utils.py:31-49), epsilon included."""
    x = logits.to(torch.float64)
    s = torch.where(x < 0, 1 / (1 - x + 1e-30), x + 1)
    logprobs = torch.log(s / torch.sum(s, dim=-1, keepdim=True))
    pred = torch.gather(logprobs, index=labels[:, None], dim=-1)
    return -torch.mean(pred) if reduction == "mean" else -pred[:, 0]


def _logits(n=40, c=13, scale=6.0, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, c, generator=g, dtype=torch.float64) * scale).to(dtype), torch.randint(0, c, (n,),
                                                                                                 generator=g)


# ------------------------------------------------------------------ losses


def test_stablemax_s_known_values_and_not_shift_invariant():
    z = torch.tensor([-3.0, -1.0, 0.0, 1.0, 4.0], dtype=torch.float64)
    assert stablemax_s(z).tolist() == [0.25, 0.5, 1.0, 2.0, 5.0]
    # two classes: s = (2, 0.5), so q = (0.8, 0.2)
    logits, y = torch.tensor([[1.0, -1.0]], dtype=torch.float64), torch.tensor([0])
    assert stablemax_cross_entropy(logits, y).item() == pytest.approx(-math.log(0.8), rel=1e-15)
    # shifted by 1: s = (3, 1), q = 0.75 (softmax would not change)
    assert stablemax_cross_entropy(logits + 1, y).item() == pytest.approx(-math.log(0.75), rel=1e-15)
    assert torch.allclose(log_stablemax(logits).exp().sum(-1), torch.ones(1, dtype=torch.float64))


def test_stablemax_equals_their_code_bit_for_bit():
    """Their epsilon 1e-30 is absorbed (1 - x >= 1 for x < 0): our s without it gives the same bits."""
    logits, y = _logits(scale=30.0)
    assert torch.equal(stablemax_cross_entropy(logits, y), _their_stablemax_ce(logits, y))
    assert torch.equal(per_example_loss("stablemax", logits, y), _their_stablemax_ce(logits, y, "none"))
    z32 = logits.float()  # float32 logits: they cast to float64, as our default does
    assert torch.equal(stablemax_cross_entropy(z32, y), _their_stablemax_ce(z32, y))


@pytest.mark.parametrize("loss", ["cross_entropy", "stablemax"])
def test_fused_backward_matches_finite_differences_and_autograd(loss):
    """gradcheck (the hand-written backward against finite differences, float64), then against
    autograd of the plain formula, in float64 and float32, with and without padding."""
    logits, y = _logits(n=9, c=7, scale=3.0)
    logits.requires_grad_(True)
    n = torch.tensor([9])
    assert torch.autograd.gradcheck(lambda z: batched_loss(loss, z[None], y[None], n), (logits,))
    plain = (torch.nn.functional.cross_entropy if loss == "cross_entropy" else _their_stablemax_ce)(logits, y)
    torch.testing.assert_close(batched_loss(loss, logits[None], y[None], n)[0], plain)
    ref = torch.autograd.grad(plain, logits)[0]
    torch.testing.assert_close(torch.autograd.grad(batched_loss(loss, logits[None], y[None], n)[0], logits)[0], ref)
    g32 = torch.autograd.grad(batched_loss(loss, logits.float()[None], y[None], n, torch.float32)[0], logits)[0]
    torch.testing.assert_close(g32, ref, rtol=1e-5, atol=1e-7)
    # a batch of two models, the second padded after its first 5 examples: each its own mean
    z2 = torch.stack([logits, logits.detach().flip(0).clone().requires_grad_(True)])
    y2 = torch.stack([y, y.flip(0)])
    out = batched_loss(loss, z2, y2, torch.tensor([9, 5]))
    second = (torch.nn.functional.cross_entropy if loss == "cross_entropy" else _their_stablemax_ce)(
        z2[1, :5], y2[1, :5])
    torch.testing.assert_close(out[1], second)
    g = torch.autograd.grad(out.sum(), z2)[0]
    assert torch.equal(g[1, 5:], torch.zeros_like(g[1, 5:]))  # padding carries no gradient


def test_float32_softmax_rounds_a_fitted_loss_to_zero_and_stablemax_does_not():
    """science.md section 7: at a logit gap of 30 float32 log-softmax gives exactly 0 loss and 0 gradient at the
    label; StableMax keeps a loss of log(1 + 1/(31 * 31)) (s = 31 and 1/31)."""
    logits, y = torch.tensor([[30.0, 0.0]]), torch.tensor([0])
    assert cross_entropy(logits, y, torch.float32).item() == 0.0
    assert stablemax_cross_entropy(logits, y, torch.float32).item() == pytest.approx(math.log1p(1 / 31), rel=1e-6)
    assert stablemax_cross_entropy(logits, y).item() == pytest.approx(math.log1p(1 / 31), rel=1e-14)


def _params(p=7, d=4, d_mlp=12, seed=0, dtype=torch.float64, zero_bias=False):
    g = torch.Generator().manual_seed(seed)
    shapes = {"W_E": (p, d), "W_in": (2 * d, d_mlp), "b_in": (d_mlp,), "W_out": (d_mlp, d), "W_U": (d, p)}
    P = {k: torch.randn(s, generator=g, dtype=dtype) for k, s in shapes.items()}
    if zero_bias:
        P["b_in"] = torch.zeros(d_mlp, dtype=dtype)
    return P


def _concat_forward(P, a, b):
    """The plain reference MLP: concatenated embeddings, ReLU, two output matrices (no tables)."""
    x = torch.cat([P["W_E"][a], P["W_E"][b]], dim=-1)
    return torch.relu(x @ P["W_in"] + P["b_in"]) @ P["W_out"] @ P["W_U"]


def test_mlp_family_trains_with_the_configured_loss():
    """The MLP's batched_loss is models.losses' loss of its hand-written head; its gradients equal
    autograd's through the plain reference MLP and the plain StableMax formula."""
    P = {k: v.requires_grad_(True) for k, v in _params().items()}
    a, b = torch.tensor([0, 1, 2, 3, 6, 6, 5]), torch.tensor([1, 1, 0, 6, 2, 6, 4])
    y = torch.tensor([1, 2, 3, 4, 5, 6, 0])
    cfg = Config(p=7, d_model=4, d_mlp=12, loss="stablemax").finalize()
    fam = family(cfg)
    got = fam.batched_loss({k: v[None] for k, v in P.items()}, a[None], b[None], y[None], torch.tensor([7]), cfg)[0]
    ref = _their_stablemax_ce(_concat_forward(P, a, b), y)
    torch.testing.assert_close(got, ref)
    for x, z in zip(torch.autograd.grad(got, list(P.values())), torch.autograd.grad(ref, list(P.values()))):
        torch.testing.assert_close(x, z)
    assert torch.equal(got, stablemax_cross_entropy(mlp_logits(P, a, b), y))


def test_the_transformer_family_trains_with_the_configured_loss():
    """The loss is shared, not the MLP's: the transformer's batched_loss with loss stablemax is their
    StableMax formula on the plain three-position transformer's logits (all p + 1 columns), with the
    same gradients."""
    from known_models import plain_transformer

    from interp_grok.models.transformer import PARAM_NAMES as T_NAMES

    c = Config(model="transformer", p=7, d_model=16, n_heads=4, d_mlp=24, noise_n=0, loss="stablemax").finalize()
    fam = family(c)
    P = {k: v.double().requires_grad_(True) for k, v in fam.init_params(c, torch.Generator().manual_seed(0)).items()}
    i = torch.arange(49)
    a, b = i // 7, i % 7
    y = (a + b) % 7
    got = fam.batched_loss({k: P[k][None] for k in T_NAMES}, a[None], b[None], y[None], torch.tensor([49]), c)[0]
    want = _their_stablemax_ce(plain_transformer(P, a, b)[:, 2], y)
    torch.testing.assert_close(got, want)
    for x, z in zip(torch.autograd.grad(got, list(P.values())), torch.autograd.grad(want, list(P.values()))):
        torch.testing.assert_close(x, z)


# ------------------------------------------------------------------ settings


def test_loss_and_optimizer_are_validated_in_one_line():
    assert Config().finalize().loss == "cross_entropy" and Config(model="quadratic").finalize().loss == "mse"
    assert Config().optimizer == "adamw"
    for kwargs, needle in (
        (dict(model="quadratic", loss="stablemax"), "loss stablemax does not apply to model quadratic, which trains "
                                                    "with mse only"),
        (dict(loss="mse"), "loss mse does not apply to model mlp, which trains with one of cross_entropy, stablemax"),
        (dict(loss="hinge"), "loss must be one of cross_entropy, stablemax, mse (got 'hinge')"),
        (dict(optimizer="sgd"), "optimizer must be one of adamw, orthoadamw (got 'sgd')")):
        with pytest.raises(ConfigError) as e:
            Config(**kwargs).finalize()
        assert needle in str(e.value) and "\n" not in str(e.value)


def test_cli_refuses_stablemax_for_the_quadratic_model(tmp_path, capsys):
    out = tmp_path / "q"
    assert run_cli("train", *TINY, "--model", "quadratic", "--loss", "stablemax", "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "loss stablemax does not apply to model quadratic" in err
    assert not out.exists()


def test_runs_without_the_new_keys_load_with_the_defaults(tiny_run, tmp_path):
    """A format-5 run (before loss and optimizer were settings): its model's loss and adamw."""
    out = tmp_path / "v4"
    shutil.copytree(tiny_run, out)
    raw = json.loads((out / "config.json").read_text())
    for k in ("loss", "optimizer"):
        raw.pop(k)
    (out / "config.json").write_text(json.dumps({**raw, "format_version": 5}))
    c = rundir.load_run(out).config
    assert (c.loss, c.optimizer) == ("cross_entropy", "adamw")
    (out / "config.json").write_text(json.dumps({**raw, "format_version": 5, "model": "quadratic", "d_mlp": 32}))
    assert rundir.read_config(out)[0].loss == "mse"
    (out / "config.json").write_text(json.dumps({**raw, "format_version": 6}))  # version 6 must have them
    with pytest.raises(rundir.RunDirError, match="missing config keys loss, optimizer"):
        rundir.load_run(out)


# ------------------------------------------------------------------ ⊥Grad


def test_orthogonalize_known_answer():
    """w = (1, 0), g = (1, 1): g_perp = (0, 1), rescaled to |g| = sqrt 2. A zero weight (b_in at init)
    leaves its gradient as it is (their 1e-30 keeps it finite)."""
    w = torch.nn.Parameter(torch.tensor([1.0, 0.0]))
    w.grad = torch.tensor([1.0, 1.0])
    z = torch.nn.Parameter(torch.zeros(3))
    z.grad = torch.tensor([1.0, -2.0, 3.0])
    orthogonalize_([w, z])
    torch.testing.assert_close(w.grad, torch.tensor([0.0, math.sqrt(2)]))
    assert torch.equal(z.grad, torch.tensor([1.0, -2.0, 3.0]))
    m = torch.nn.Parameter(torch.randn(5, 4, generator=torch.Generator().manual_seed(1)))
    g0 = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
    m.grad = g0.clone()
    orthogonalize_([m])
    assert abs((m.grad * m.detach()).sum().item()) < 1e-5 * g0.norm().item() * m.detach().norm().item()
    assert m.grad.norm().item() == pytest.approx(g0.norm().item(), rel=1e-6)


def _adamw_reference(w, grads, lr, betas, eps, wd):
    """AdamW written out (decoupled decay, bias-corrected moments) on gradients made orthogonal first."""
    w, m, v = w.clone().double(), torch.zeros_like(w).double(), torch.zeros_like(w).double()
    for t, g in enumerate(grads, start=1):
        g = g.double()
        g_perp = g - (w @ g) / (w @ w) * w
        g = g_perp * g.norm() / g_perp.norm()
        w = w * (1 - lr * wd)
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        w = w - lr * (m / (1 - betas[0] ** t)) / ((v / (1 - betas[1] ** t)).sqrt() + eps)
    return w


def test_orthoadamw_steps_with_the_configured_betas_and_eps():
    """Prieto et al.'s ⊥AdamW ran at torch's defaults (0.9, 0.999), 1e-8 whatever was asked (their
    grokking_experiments.py:53-67). Ours is the configured AdamW: three steps equal the hand-written
    update with the configured betas and eps, and differ clearly from the update at the defaults."""
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(6, generator=g)
    grads = [torch.randn(6, generator=g) for _ in range(3)]
    cfg = Config(lr=0.1, betas=(0.5, 0.6), adam_eps=0.3, weight_decay=0.5, optimizer="orthoadamw").finalize()
    leaf = {"w": torch.nn.Parameter(w0.clone())}
    opt = make_optimizer([leaf], [cfg])
    assert (opt.param_groups[0]["betas"], opt.param_groups[0]["eps"]) == ((0.5, 0.6), 0.3)
    for gr in grads:
        leaf["w"].grad = gr.clone()
        step(opt)
    ours = leaf["w"].detach().double()
    want = _adamw_reference(w0, grads, 0.1, (0.5, 0.6), 0.3, 0.5)
    at_defaults = _adamw_reference(w0, grads, 0.1, (0.9, 0.999), 1e-8, 0.5)
    torch.testing.assert_close(ours, want, rtol=1e-5, atol=1e-6)
    assert (ours - at_defaults).abs().max().item() > 1e-2
    # and an adamw group is the plain AdamW: no projection
    plain = {"w": torch.nn.Parameter(w0.clone())}
    opt2 = make_optimizer([plain], [Config(lr=0.1, betas=(0.5, 0.6), adam_eps=0.3, weight_decay=0.5).finalize()])
    plain["w"].grad = grads[0].clone()
    step(opt2)
    assert not opt2.param_groups[0]["orthogonal"]
    projected = _adamw_reference(w0, grads[:1], 0.1, (0.5, 0.6), 0.3, 0.5)
    assert (plain["w"].detach().double() - projected).abs().max() > 1e-3


def _final_state(run):
    return rundir.load_tensors(run / rundir.TRAIN_STATE)[0]


NEW = ["--loss", "stablemax", "--loss-dtype", "float32", "--optimizer", "orthoadamw", "--weight-decay", "0"]


def test_new_settings_are_recorded_and_resume_bit_identically(tmp_path):
    """config.json records loss and optimizer; a run stopped at 60 epochs and resumed to 120 is the
    uninterrupted run bit for bit (weights, AdamW moments, every train loss)."""
    full, half = tmp_path / "full", tmp_path / "half"
    assert run_cli("train", *TINY, *NEW, "--out", full) == 0
    cfg = json.loads((full / "config.json").read_text())
    assert (cfg["loss"], cfg["loss_dtype"], cfg["optimizer"], cfg["format_version"]) == (
        "stablemax", "float32", "orthoadamw", 6)
    assert run_cli("train", *[a if a != "120" else "60" for a in TINY], *NEW, "--out", half) == 0
    assert run_cli("train", "--resume", "--out", half, "--epochs", "120") == 0
    a, b = _final_state(half), _final_state(full)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert rundir.train_losses(rundir.read_metrics(half)) == rundir.train_losses(rundir.read_metrics(full))
    assert run_cli("train", "--resume", "--out", half, "--optimizer", "adamw") == 2  # a differing setting


def test_orthoadamw_changes_the_trajectory():
    """The projection is applied: the same run under adamw and orthoadamw ends at other weights."""
    base = dict(p=11, d_model=16, epochs=1, n_checkpoints=2, eval_every=1)
    out = {}
    for opt in ("adamw", "orthoadamw"):
        cfg = Config(**base, optimizer=opt).finalize()
        fam = family(cfg)
        leaves = {k: torch.nn.Parameter(v) for k, v in fam.init_params(cfg, torch.Generator().manual_seed(0)).items()}
        ds = make_dataset(cfg)
        tr = ds.train_idx
        o = make_optimizer([leaves], [cfg])
        fam.batched_loss({k: v[None] for k, v in leaves.items()}, (tr // 11)[None], (tr % 11)[None],
                         ds.noisy_labels[tr][None], torch.tensor([tr.numel()]), cfg).sum().backward()
        step(o)
        step(o)
        out[opt] = {k: v.detach().clone() for k, v in leaves.items()}
    assert not torch.equal(out["adamw"]["W_U"], out["orthoadamw"]["W_U"])


def test_a_batch_mixes_optimizers_and_refuses_mixed_losses(tmp_path):
    """The optimizer is per run (one param group each): a batch of an adamw and an orthoadamw run equals
    the two trained alone, bit for bit; runs of other losses cannot share one stacked loss."""
    torch.set_num_threads(1)
    base = dict(p=11, d_model=16, epochs=60, eval_every=10, n_checkpoints=10, loss="stablemax")
    configs = [Config(**base, seed=0), Config(**base, seed=1, optimizer="orthoadamw", weight_decay=0.0)]
    train_batch(configs, [tmp_path / "b0", tmp_path / "b1"], device="cpu", threads=1)
    for k, c in enumerate(configs):
        train(Config(**{**c.to_dict(), "checkpoint_epochs": []}), tmp_path / f"s{k}", device="cpu", threads=1)
        a, b = _final_state(tmp_path / f"b{k}"), _final_state(tmp_path / f"s{k}")
        assert all(torch.equal(a[n], b[n]) for n in b), k
    with pytest.raises(TrainError, match="they differ on loss"):
        check_batchable([Config(**base).finalize(), Config(**{**base, "loss": "cross_entropy"}).finalize()])


def test_sweep_axes_take_loss_and_optimizer(tmp_path, capsys):
    """`interp-grok sweep` grids over the new settings (one run each, named after them) and --batch groups
    the runs by loss; every run records its settings."""
    small = [a if a != "120" else "20" for a in TINY if a not in ("--threads", "1")]
    sweep = tmp_path / "sw"
    assert run_cli("sweep", sweep, *small, "--loss", "cross_entropy,stablemax", "--optimizer", "adamw,orthoadamw",
                   "--batch", "2", "--workers", "1") == 0
    names = sorted(p.name for p in (sweep / "runs").iterdir())
    assert names == ["losscross_entropy_optadamw", "losscross_entropy_optorthoadamw", "lossstablemax_optadamw",
                     "lossstablemax_optorthoadamw"]
    for name in names:
        c = rundir.load_run(sweep / "runs" / name).config
        assert f"loss{c.loss}_opt{c.optimizer}" == name
        assert c.epochs == 20 and rundir.checkpoint_epochs_on_disk(sweep / "runs" / name)[-1] == 20
    batches = {json.dumps(rundir.load_run(sweep / "runs" / n).provenance["batch"]["runs"]) for n in names}
    assert all(len(set(rundir.load_run(r).config.loss for r in json.loads(b))) == 1 for b in batches)


# ------------------------------------------------------------------ the numerics measures, pure


def test_softmax_collapse_fraction_known_thresholds():
    """Two classes at gap g: sum = 1 + exp(-g) rounds to 1 iff exp(-g) <= 2^-24 in float32 (g >= 16.64),
    2^-53 in float64 (g >= 36.74). p = 97 classes all at gap g: far below (g = 30 in float32, 45 in
    float64) every term and their sum are absorbed; far above (10, 30) none is."""
    two = torch.tensor([[0.0, -16.0], [0.0, -17.0], [5.0, 5.0 - 36.0], [-37.0, 0.0]], dtype=torch.float64)
    assert softmax_collapse_fraction(two, torch.float32).item() == 0.75  # 16 does not collapse; 17, 36, 37 do
    assert softmax_collapse_fraction(two, torch.float64).item() == 0.25  # only 37
    for gap, f32, f64 in ((10.0, 0.0, 0.0), (30.0, 1.0, 0.0), (45.0, 1.0, 1.0)):
        z = torch.full((3, 97), -gap)
        z[:, 5] = 0.0
        assert softmax_collapse_fraction(z, torch.float32).item() == f32, gap
        assert softmax_collapse_fraction(z, torch.float64).item() == f64, gap
    assert math.isnan(softmax_collapse_fraction(torch.zeros(0, 3), torch.float32).item())


def test_zero_loss_fraction_known_answer():
    """float32 cross-entropy is exactly 0 where the label is the top class and the softmax collapsed."""
    z = torch.tensor([[17.0, 0.0], [17.0, 0.0], [10.0, 0.0], [0.0, 40.0]])
    y = torch.tensor([0, 1, 0, 1])  # collapsed + right, collapsed + wrong (loss 17), not collapsed, collapsed + right
    assert zero_loss_fraction(z, y).item() == 0.5
    # float64 keeps exp(-17) but not exp(-40) < 2^-53: only the last row's loss is 0 there
    assert zero_loss_fraction(z, y, torch.float64).item() == 0.25


def test_top_logit_gap_known_answer():
    z = torch.tensor([[3.0, 1.0, -2.0], [0.0, 0.0, -1.0], [-5.0, 2.5, 1.0]])
    assert top_logit_gap(z).tolist() == [2.0, 0.0, 1.5]


def test_descent_weight_cosines_known_answers():
    """g = -2 w: cosine 1 (the gradient scales the weight up); g orthogonal to w: 0; over all parameters:
    -sum <g, w> / (|g| |w|) with the tensors concatenated; an exactly zero gradient or weight: 0."""
    params = {"A": torch.tensor([[1.0, 2.0], [2.0, 0.0]]), "B": torch.tensor([3.0, 4.0]), "C": torch.tensor([1.0])}
    grads = {"A": -2 * params["A"], "B": torch.tensor([-4.0, 3.0]), "C": torch.tensor([0.0])}
    cos = descent_weight_cosines(params, grads)
    assert cos["A"].item() == pytest.approx(1.0, abs=1e-15) and cos["B"].item() == 0.0 and cos["C"].item() == 0.0
    assert descent_weight_cosines({"b": torch.zeros(3)}, {"b": torch.ones(3)})["b"].item() == 0.0
    # all: -<g, w> = 2 * 9 + 0 + 0 = 18; |g|^2 = 36 + 25 = 61; |w|^2 = 9 + 25 + 1 = 35
    assert cos["all"].item() == pytest.approx(18 / math.sqrt(61 * 35), rel=1e-14)


def test_training_gradients_obey_eulers_identity():
    """With b_in = 0 the MLP's logits are homogeneous of degree 1 in each of W_E, W_in, W_out, W_U
    separately, so <dL/dW, W> = sum_n dL/dz_n . z_n for each of the four: for softmax cross-entropy
    (mean over n examples) -<g_W, W> = mean(z_y - sum_j softmax(z)_j z_j), computed from the logits alone."""
    P = _params(p=7, d=4, d_mlp=12, zero_bias=True)
    a, b = torch.arange(7).repeat_interleave(7), torch.arange(7).repeat(7)
    y = (a + b) % 7
    cfg = Config(p=7, d_model=4, d_mlp=12).finalize()
    loss, grads = training_gradients(family(cfg), P, a, b, y, cfg)
    z = _concat_forward(P, a, b)
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(z, y).item(), rel=1e-12)
    expected = (z.gather(1, y[:, None])[:, 0] - (z.softmax(-1) * z).sum(-1)).mean().item()
    for name in ("W_E", "W_in", "W_out", "W_U"):
        assert -(grads[name] * P[name]).sum().item() == pytest.approx(expected, rel=1e-10), name
    assert set(grads) == set(PARAM_NAMES)


def test_loss_spikes_known_series():
    """A loss decaying from 5 to 2e-7 (no spike: it never rises), two excursions to 0.1 (epochs 500-519
    and 800), a float32-like flicker between 0 and 1.2e-7 and a rise to 5e-6 (both under the floor):
    exactly two spikes, dated 500 and 800. Above the floor, a rise of 5x is under the factor, 20x is not."""
    t = torch.arange(1000, dtype=torch.float64)
    x = 5.0 * torch.exp(-t * math.log(5e6) / 400).clamp_min(1e-6 / 5)
    x[500:520] = 0.1
    x[800] = 0.1
    x[600:700:2] = 0.0
    x[601:700:2] = 1.2e-7
    x[900] = 5e-6
    assert loss_spikes(x).tolist() == [500, 800]
    assert loss_spikes(x, floor=0.0).numel() > 2  # without the floor the flicker counts
    assert loss_spikes(torch.tensor([1.0])).tolist() == []
    y = torch.tensor([1.0] * 50 + [5.0] + [1.0] * 50 + [20.0] + [1.0] * 5)
    assert loss_spikes(y).tolist() == [101]


# ------------------------------------------------------------------ the numerics measures, wired


def test_numerics_columns_on_a_known_network_scaled():
    """known_models.fourier_mlp fits (a + b) mod p exactly; its logits are linear in W_U, so scaling W_U by
    alpha scales every top-logit gap by alpha. Scaled until the smallest gap is 50, every training example
    collapses in both dtypes and its float32 loss is exactly 0."""
    p = 23
    params = {k: v.to(torch.float32) for k, v in fourier_mlp(p, [3, 7]).items()}
    d_model, d_mlp = params["W_in"].shape
    config = Config(p=p, noise_n=0, d_model=d_model, d_mlp=d_mlp, train_frac=0.5).finalize()
    run = SimpleNamespace(config=config, dataset=make_dataset(config))
    keys = torch.tensor([3, 7])
    row1 = measure_row(Checkpoint(params, run, keys))
    assert set(measures.NUMERICS_COLUMNS) | {"grad_cos_all"} <= set(row1)
    tr = run.dataset.train_idx
    gaps = top_logit_gap(Checkpoint(params, run, keys).flat[tr])
    assert row1["logit_gap_mean"] == pytest.approx(gaps.mean().item(), rel=1e-12)
    alpha = 50.0 / gaps.min().item()
    row = measure_row(Checkpoint({**params, "W_U": params["W_U"] * alpha}, run, keys))
    assert row["logit_gap_mean"] == pytest.approx(alpha * row1["logit_gap_mean"], rel=1e-5)
    assert row["softmax_collapse_f32"] == row["softmax_collapse_f64"] == row["zero_loss_frac_f32"] == 1.0
    for k in (*PARAM_NAMES, "all"):
        assert -1.0 <= row[f"grad_cos_{k}"] <= 1.0


def test_the_quadratic_family_gets_no_numerics_columns():
    cfg = Config(model="quadratic", p=11, d_mlp=8).finalize()
    run = SimpleNamespace(config=cfg, dataset=make_dataset(cfg))
    cols = measures.columns(run)
    assert not any(c.startswith(("softmax_collapse", "grad_cos", "zero_loss", "logit_gap")) for c in cols)


def test_analyze_writes_the_columns_and_the_spike_summary(tiny_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out, ignore=shutil.ignore_patterns("analysis"))
    assert run_cli("analyze", out, "--no-figures") == 0
    header = (out / "analysis" / "progress.csv").read_text().splitlines()[0].split(",")
    assert header[-len(measures.NUMERICS_COLUMNS) - len(PARAM_NAMES) - 1:] == [
        *measures.NUMERICS_COLUMNS, *[f"grad_cos_{k}" for k in PARAM_NAMES], "grad_cos_all"]
    summary = json.loads((out / "analysis" / "summary.json").read_text())
    _, losses = rundir.train_losses(rundir.read_metrics(out))
    assert summary["train_loss_spike_epochs"] == loss_spikes(torch.tensor(losses)).tolist()
    assert summary["train_loss_spikes"] == len(summary["train_loss_spike_epochs"])


# ---- the readout helpers of docs/numerics.md ----

def test_first_epoch_reaching_known_answers():
    epochs = [0, 10, 20, 40, 80]
    assert first_epoch_reaching(epochs, [0.0, 0.2, 0.5, 0.9, 0.1], 0.5) == 20  # the level itself reaches
    assert first_epoch_reaching(epochs, [0.0, float("nan"), 0.4, 0.7, 1.0], 0.5) == 40  # NaN never reaches
    assert first_epoch_reaching(epochs, [0.0, 0.1, 0.2, 0.3, 0.49], 0.5) is None
    with pytest.raises(ValueError, match="one length"):
        first_epoch_reaching(epochs, [0.0, 1.0], 0.5)


def test_stalled_known_answers():
    epochs = [0, 25, 50, 75, 80, 90, 100]  # the last quarter is epochs 75..100
    frozen = [1.0, 50.0, 90.0, 100.0, 100.0, 100.5, 100.9]  # +0.9 % over the last quarter
    growing = [1.0, 50.0, 90.0, 100.0, 100.5, 101.0, 101.1]  # +1.1 %
    flat_g, moving_g = [0.0, 0.1, 0.2, 0.3, 0.3, 0.3, 0.3], [0.0, 0.1, 0.2, 0.3, 0.3, 0.3, 0.33]
    assert stalled(epochs, frozen, flat_g)
    assert not stalled(epochs, growing, flat_g)  # weights still moving
    assert not stalled(epochs, frozen, moving_g)  # test accuracy moved by 0.03 > 0.02
    assert stalled(epochs, growing, flat_g, max_weight_change=0.02)


def test_numerics_readout_known_answers():
    """A run that fits at epoch 10, collapses in float32 (fraction >= 0.5) from epoch 100 on, never in
    float64, and then freezes: every readout value is the row value or epoch the page's rule names."""
    epochs = [0, 10, 100, 600, 800, 1000]
    c32 = [0.0, 0.1, 0.6, 0.9, 0.9, 0.9]
    rows = [{"epoch": e, "train_acc": 1.0 if e >= 10 else 0.5, "softmax_collapse_f32": c,
             "softmax_collapse_f64": c / 10, "sum_sq_weights": 100.0 if e >= 600 else 10.0,
             "test_acc_clean": 0.02 if e else 0.01, "train_clean_acc": 1.0 if e >= 10 else 0.5,
             "train_noisy_memorized_frac": float("nan"), "train_noisy_corrected_frac": float("nan"),
             "train_loss": 1e-6, "zero_loss_frac_f32": c, "logit_gap_mean": 20.0, "grad_cos_all": 0.9,
             "grad_cos_W_U": 0.95} for e, c in zip(epochs, c32)]
    r = numerics_readout(rows, {"epoch_test_acc_clean_first_95": None, "train_loss_spikes": 2})
    assert (r["fit_epoch"], r["collapse_epoch_f32"], r["collapse_epoch_f64"]) == (10, 100, None)
    assert (r["collapse_max_f32"], r["collapse_max_f64"], r["collapse_f32"]) == (0.9, 0.09, 0.9)
    assert r["stalled"] and r["grok_epoch"] is None and r["spikes"] == 2
    assert (r["G"], r["G_max"], r["phase"], r["epoch"]) == (0.02, 0.02, "memorization", 1000)
