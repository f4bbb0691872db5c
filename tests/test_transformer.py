"""Nanda et al.'s one-layer transformer (models.transformer): the fast table forward against a plain
three-position transformer, its gradients, its shapes and settings, and whole runs through the CLI."""

from __future__ import annotations

import math

import pytest
import torch
from known_models import plain_transformer

from interp_grok import Config
from interp_grok.data import make_dataset, python_shuffle_order
from interp_grok.models import family
from interp_grok.models.transformer import PARAM_NAMES, batched_logits, grid_pre

FAM = family("transformer")


def _config(**kw) -> Config:
    base = dict(model="transformer", p=7, d_model=16, n_heads=4, d_mlp=24, noise_n=0)
    return Config(**{**base, **kw}).finalize()


def _params(c: Config, seed: int = 0, dtype=torch.float64) -> dict[str, torch.Tensor]:
    """The family's init, plus nonzero biases (so that they are exercised), in ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    P = {k: v.to(dtype) for k, v in FAM.init_params(c, g).items()}
    P["b_in"] = 0.3 * torch.randn(P["b_in"].shape, generator=g, dtype=dtype)
    P["b_out"] = 0.3 * torch.randn(P["b_out"].shape, generator=g, dtype=dtype)
    return P


def _pairs(p: int):
    i = torch.arange(p * p)
    return i // p, i % p


def test_shapes_follow_transformerlens_names_and_the_settings():
    c = _config(p=11, d_model=32, n_heads=4, d_mlp=40)
    shapes = FAM.param_shapes(c)
    assert tuple(shapes) == PARAM_NAMES == FAM.param_names
    assert shapes == {"W_E": (12, 32), "W_pos": (3, 32), "W_K": (4, 32, 8), "W_Q": (4, 32, 8),
                      "W_V": (4, 32, 8), "W_O": (4, 8, 32), "W_in": (32, 40), "b_in": (40,),
                      "W_out": (40, 32), "b_out": (32,), "W_U": (32, 12)}
    assert FAM.param_shapes(_config(p=11, eq_logit=False))["W_U"] == (16, 11)
    P = FAM.init_params(c, torch.Generator().manual_seed(0))
    assert {k: tuple(v.shape) for k, v in P.items()} == shapes
    assert all(v.dtype == torch.float32 and v.is_contiguous() for v in P.values())
    a, b = _pairs(11)
    assert FAM.logits(P, a, b, c).shape == (121, 11)
    assert FAM.grid_logits(P, c).shape == (11, 11, 11)
    assert FAM.embedding(P).shape == (11, 32)
    assert torch.equal(FAM.embedding(P), P["W_E"][:11])  # W_E without the "=" row
    curves = FAM.neuron_curves(P)
    assert {k: (tuple(v.shape), v.dtype) for k, v in curves.items()} == {
        k: ((40, 11), torch.float64) for k in ("in_a", "in_b", "out")}
    with pytest.raises(ValueError, match="n_heads must be a divisor of d_model"):
        _config(d_model=18, n_heads=4)


@pytest.mark.parametrize("kw", [{}, {"eq_logit": False}, {"act": "gelu"}, {"n_heads": 2, "d_model": 12},
                                {"biases": False}])
def test_fast_forward_equals_the_plain_three_position_transformer(kw):
    """float64: the table forward is the same function, to rounding (measured max |diff| ~1e-15)."""
    c = _config(**kw)
    P = _params(c)
    a, b = _pairs(c.p)
    want = plain_transformer(P, a, b, c.act, c.biases)[:, 2]  # all n_out logits at "="
    got = batched_logits({k: v[None] for k, v in P.items()}, a[None], b[None], c.act, c.biases)[0]
    assert got.shape == want.shape == (c.p**2, c.p + 1 if c.eq_logit else c.p)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(FAM.logits(P, a, b, c), want[:, : c.p], rtol=0, atol=1e-12)
    torch.testing.assert_close(FAM.grid_logits(P, c), want[:, : c.p].reshape(c.p, c.p, c.p), rtol=0, atol=1e-12)


def test_fast_forward_float32_matches_the_plain_model_to_float32_rounding():
    c = _config(p=23, d_model=32, d_mlp=64)
    P64 = _params(c, seed=1)
    P32 = {k: v.float() for k, v in P64.items()}
    a, b = _pairs(23)
    want = plain_transformer(P64, a, b)[:, 2]
    got = FAM.grid_logits(P32, c).reshape(-1, 23).double()
    err = (got - want[:, :23]).abs().max().item()
    assert err < 1e-5 * want.abs().max().item()


@pytest.mark.parametrize("kw", [{}, {"biases": False}, {"eq_logit": False}])
def test_gradients_equal_the_plain_transformers(kw):
    """The loss gradient of every weight through the fast forward (its hand-written ReLU backward
    included) equals autograd's through the plain model, float64, to 1e-10 relative."""
    c = _config(**kw)
    P = _params(c, seed=2)
    a, b = _pairs(c.p)
    keep = torch.randperm(c.p**2, generator=torch.Generator().manual_seed(0))[:30]
    a, b = a[keep], b[keep]
    y = (a + b + 1) % c.p

    def grads(fn):
        leaves = {k: v.clone().requires_grad_() for k, v in P.items()}
        loss = torch.nn.functional.cross_entropy(fn(leaves), y)
        loss.backward()
        return {k: v.grad for k, v in leaves.items()}

    fast = grads(lambda L: batched_logits({k: v[None] for k, v in L.items()}, a[None], b[None],
                                          biases=c.biases)[0])
    plain = grads(lambda L: plain_transformer(L, a, b, biases=c.biases)[:, 2])
    for k in PARAM_NAMES:
        if not c.biases and k in ("b_in", "b_out"):
            assert plain[k] is None and fast[k].abs().max() == 0  # frozen: a zero gradient, so AdamW never moves them
            continue
        scale = plain[k].abs().max().item()
        assert scale > 0, k
        torch.testing.assert_close(fast[k], plain[k], rtol=0, atol=1e-10 * scale, msg=k)


def test_batched_loss_is_the_float64_cross_entropy_over_all_logits_per_model():
    c = _config()
    P1, P2 = _params(c, 3), _params(c, 4)
    a, b = _pairs(7)
    y = (a + b) % 7
    stacked = {k: torch.stack([P1[k], P2[k]]).float() for k in PARAM_NAMES}
    n_k = torch.tensor([49, 30])
    got = FAM.batched_loss(stacked, torch.stack([a, a]), torch.stack([b, b]), torch.stack([y, y]), n_k, c)
    assert got.dtype == torch.float64
    for i, (P, n) in enumerate([(P1, 49), (P2, 30)]):
        z = plain_transformer({k: v.float().double() for k, v in P.items()}, a[:n], b[:n])[:, 2]
        want = torch.nn.functional.cross_entropy(z, y[:n])
        torch.testing.assert_close(got[i], want, rtol=1e-6, atol=0)


def test_nandas_init_scales_and_layout():
    """Every matrix randn / sqrt(d_model), W_U randn / sqrt(p + 1), biases zero (their
    transformers.py:165-244); torch_default: TransformerLens's N(0, (0.8 / sqrt(d_model))^2)."""
    c = _config(p=113, d_model=128, d_mlp=512)
    P = FAM.init_params(c, torch.Generator().manual_seed(0))
    for k in ("W_E", "W_pos", "W_K", "W_Q", "W_V", "W_O", "W_in", "W_out"):
        assert P[k].std().item() == pytest.approx(1 / math.sqrt(128), rel=0.05 if P[k].numel() > 1000 else 0.2), k
    assert P["W_U"].std().item() == pytest.approx(1 / math.sqrt(114), rel=0.05)
    assert P["b_in"].abs().max() == 0 and P["b_out"].abs().max() == 0
    T = FAM.init_params(_config(p=113, d_model=128, d_mlp=512, init="torch_default"), torch.Generator().manual_seed(0))
    for k in ("W_E", "W_U", "W_in", "W_Q"):
        assert T[k].std().item() == pytest.approx(0.8 / math.sqrt(128), rel=0.05), k
    scaled = FAM.init_params(_config(init_scale=0.5), torch.Generator().manual_seed(5))
    base = FAM.init_params(_config(), torch.Generator().manual_seed(5))
    assert all(torch.equal(scaled[k], base[k] * 0.5) for k in PARAM_NAMES)


def test_neuron_curves_are_the_main_effects_of_the_pre_activation_grid():
    """in_a + in_b + the grand mean is the additive part of pre[a, b]: recovered exactly when the
    attention is uniform (W_Q = 0: every score 0, weight 1/3 each), where pre is additive."""
    c = _config()
    P = _params(c, 6)
    P["W_Q"] = torch.zeros_like(P["W_Q"])
    pre = grid_pre(P).to(torch.float64)  # [p, p, d_mlp]
    cur = FAM.neuron_curves(P)
    grand = pre.mean((0, 1))
    rebuilt = cur["in_a"].T[:, None, :] + cur["in_b"].T[None, :, :] + grand
    torch.testing.assert_close(rebuilt, pre, rtol=0, atol=1e-12)
    # uniform attention: pre = (x_a + x_b + x_eq) / 3 @ W_V W_O @ W_in + x_eq @ W_in + b_in, so in_a is
    # token a's centered row of (W_E[:p] + W_pos[0]) @ (sum_h W_V[h] W_O[h]) @ W_in / 3
    OV = sum(P["W_V"][h] @ P["W_O"][h] for h in range(c.n_heads))
    row = (P["W_E"][:7] + P["W_pos"][0]) @ OV @ P["W_in"] / 3
    torch.testing.assert_close(cur["in_a"], (row - row.mean(0)).T, rtol=0, atol=1e-12)
    torch.testing.assert_close(cur["out"], (P["W_out"] @ P["W_U"])[:, :7])


def test_ablating_neurons_leaves_the_direct_path():
    c = _config()
    P = _params(c, 7)
    off = FAM.ablate_neurons(P, torch.zeros(c.d_mlp, dtype=torch.bool))
    a, b = _pairs(7)
    no_mlp = dict(P, W_out=torch.zeros_like(P["W_out"]))
    torch.testing.assert_close(FAM.grid_logits(off, c), FAM.grid_logits(no_mlp, c))
    # and it is the plain model with its MLP output removed
    want = plain_transformer(no_mlp, a, b)[:, 2, :7].reshape(7, 7, 7)
    torch.testing.assert_close(FAM.grid_logits(off, c), want, rtol=0, atol=1e-12)


def test_python_shuffle_split_is_nandas_gen_train_test():
    """random.seed(seed); random.shuffle over [(i, j, p) for i in range(p) for j in range(p)]
    (their transformers.py:437-444), first int(0.3 * p^2) pairs for training."""
    import random

    p, seed = 113, 0
    pairs = [(i, j, p) for i in range(p) for j in range(p)]
    random.seed(seed)
    random.shuffle(pairs)
    div = int(0.3 * len(pairs))
    want_train = [i * p + j for i, j, _ in pairs[:div]]
    assert python_shuffle_order(p, seed)[:div].tolist() == want_train
    ds = make_dataset(Config(model="transformer", p=p, noise_n=0, split="python_shuffle", data_seed=seed).finalize())
    assert ds.train_idx.tolist() == want_train and len(want_train) == 3830
    assert sorted(ds.test_idx.tolist()) == sorted(set(range(p * p)) - set(want_train))
    # the split draws nothing from the torch generator: the noise is the same as under randperm
    noisy = dict(model="transformer", p=p, noise_n=4, data_seed=3)
    torch.testing.assert_close(make_dataset(Config(**noisy, split="python_shuffle").finalize()).noise,
                               make_dataset(Config(**noisy).finalize()).noise)


def _tiny(**kw) -> Config:
    base = dict(model="transformer", p=11, d_model=16, n_heads=4, d_mlp=24, epochs=30, eval_every=5,
                n_checkpoints=8, lr=3e-3, noise_n=2, warmup_steps=20)
    return Config(**{**base, **kw}).finalize()


def test_warmup_lr_is_their_lambdalr():
    """LambdaLR(lambda step: min(step / 10, 1)) stepped after each optimizer step (their
    transformers.py:471, 507-508): the lr each step uses, step 0 included (lr 0)."""
    from interp_grok.train import warmup_lr

    c = _config(warmup_steps=10, lr=1e-3)
    w = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([w], lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(step / 10, 1))
    for epoch in range(25):
        assert warmup_lr(c, epoch) == opt.param_groups[0]["lr"], epoch
        w.grad = torch.ones(2)
        opt.step()
        sched.step()
    assert warmup_lr(c, 0) == 0.0 and warmup_lr(c, 10) == 1e-3


def test_transformer_exact_resume_bit_for_bit(tmp_path):
    """Trained 30 epochs in one go == trained 15 (inside the 20-step warm-up), then resumed to 30."""
    from interp_grok import resume, rundir, train

    full, half = tmp_path / "full", tmp_path / "half"
    train(_tiny(), full, device="cpu", threads=1)
    train(_tiny(epochs=15), half, device="cpu", threads=1)
    resume(half, epochs=30, device="cpu", threads=1)
    a = rundir.load_tensors(full / rundir.TRAIN_STATE)[0]
    b = rundir.load_tensors(half / rundir.TRAIN_STATE)[0]
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert {k for k in a if k.startswith("param.")} == {f"param.{n}" for n in PARAM_NAMES}
    assert rundir.load_run(full).evals[-1] == rundir.load_run(half).evals[-1]


def test_warmup_changes_the_run_and_frozen_biases_stay_zero(tmp_path):
    from interp_grok import rundir, train

    train(_tiny(epochs=10, biases=False), tmp_path / "frozen", device="cpu", threads=1)
    train(_tiny(epochs=10, warmup_steps=0), tmp_path / "nowarm", device="cpu", threads=1)
    frozen = rundir.load_tensors(tmp_path / "frozen" / rundir.TRAIN_STATE)[0]
    assert frozen["param.b_in"].abs().max() == 0 and frozen["param.b_out"].abs().max() == 0
    assert frozen["param.W_in"].abs().max() > 0
    r0 = rundir.load_run(tmp_path / "nowarm")
    # warm-up 0: the first step moves the weights; with warm-up its lr is 0, so only the moments move
    assert not torch.equal(r0.params(1)["W_in"], r0.params(0)["W_in"])
    train(_tiny(epochs=10, n_checkpoints=11), tmp_path / "warm", device="cpu", threads=1)
    rw = rundir.load_run(tmp_path / "warm")
    assert all(torch.equal(rw.params(1)[k], rw.params(0)[k]) for k in PARAM_NAMES)


def test_transformer_runs_batch_like_solo_runs(tmp_path):
    from interp_grok import rundir, train, train_batch

    cs = [_tiny(seed=1, epochs=12), _tiny(weight_decay=0.3, noise_frac=0.2, data_seed=2, epochs=12, warmup_steps=0)]
    outs = [tmp_path / "b0", tmp_path / "b1"]
    train_batch(cs, outs, device="cpu", threads=1)
    for c, o in zip(cs, outs):
        solo = tmp_path / f"solo_{o.name}"
        train(Config(**{**c.to_dict(), "checkpoint_epochs": []}).finalize(), solo, device="cpu", threads=1)
        a = rundir.load_tensors(solo / rundir.TRAIN_STATE)[0]
        b = rundir.load_tensors(o / rundir.TRAIN_STATE)[0]
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_cli_transformer_train_resume_analyze_and_sweep(tmp_path):
    """interp-grok train --model transformer (their split, warm-up, noise), --resume, analyze, and a
    batched sweep: every command exits 0 and the run format holds the eleven weights."""
    import json

    from conftest import run_cli

    from interp_grok import rundir

    base = ["--model", "transformer", "--p", "11", "--d-model", "16", "--heads", "4", "--d-mlp", "24",
            "--eval-every", "5", "--checkpoints", "8", "--lr", "0.003", "--warmup", "10", "--threads", "1"]
    out = tmp_path / "t"
    assert run_cli("train", *base, "--epochs", "20", "--noise", "2", "--split", "python_shuffle",
                   "--data-seed", "0", "--out", out) == 0
    assert run_cli("train", *base, "--epochs", "30", "--noise", "2", "--split", "python_shuffle",
                   "--data-seed", "0", "--out", out, "--resume") == 0
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["model"], cfg["n_heads"], cfg["warmup_steps"], cfg["split"], cfg["eq_logit"], cfg["epochs"]) == (
        "transformer", 4, 10, "python_shuffle", True, 30)
    run = rundir.load_run(out)
    assert run.dataset.train_idx.tolist() == python_shuffle_order(11, 0)[: math.floor(0.3 * 121)].tolist()
    assert type(run.model(30)).__name__ == "Transformer"
    assert run.params(30)["W_U"].shape == (16, 12)
    assert run_cli("analyze", out) == 0
    header = (out / "analysis" / "progress.csv").read_text().splitlines()[0].split(",")
    assert {"norm_W_Q", "norm_W_pos", "norm_b_out", "gini_W_E", "train_noisy_memorized_frac"} <= set(header)
    rows = (out / "analysis" / "progress.csv").read_text().splitlines()[1:]
    assert len(rows) == len(run.checkpoint_epochs) and all("nan" not in r.split(",")[1:3] for r in rows)
    figures = {f.stem for f in (out / "analysis" / "figures").glob("*.png")}
    assert {"transformer_views", "losses", "audit"} <= figures  # the views' figure, for transformer runs only

    sweep = tmp_path / "s"
    assert run_cli("sweep", sweep, *base, "--epochs", "10", "--noise", "0,2", "--batch", "2", "--workers", "1") == 0
    names = sorted(p.name for p in (sweep / "runs").iterdir())
    assert len(names) == 2
    for name in names:
        r = rundir.load_run(sweep / "runs" / name)
        assert r.config.model == "transformer" and rundir.read_train_state(r.path)[0] == 10
    assert run_cli("analyze", sweep) == 0


def _nanda_loop():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import nanda_loop

    return nanda_loop


def test_init_is_theirs_bit_for_bit_and_training_follows_their_loop(tmp_path):
    """Their modules (benchmarks/nanda_loop.py, a re-implementation of their transformers.py) built
    after torch.manual_seed(s) hold exactly init_params(Generator().manual_seed(s)); their full
    loop (split, warm-up, AdamW, float32 loss) and `interp-grok train` with their settings and
    --loss-dtype float32 then give the same train losses, epoch by epoch, to float32 rounding."""
    from interp_grok import rundir, train

    nl = _nanda_loop()
    c = Config(model="transformer", p=11, d_model=16, d_mlp=24, noise_n=0, split="python_shuffle", data_seed=5,
               seed=3, warmup_steps=10, loss_dtype="float32", epochs=40, eval_every=10, n_checkpoints=4).finalize()
    torch.manual_seed(3)
    theirs = nl.their_params(nl.Transformer(11, 16, 4, 24))
    ours = FAM.init_params(c, torch.Generator().manual_seed(3))
    assert all(torch.equal(ours[k], theirs[k]) for k in PARAM_NAMES)
    with torch.no_grad():
        x = torch.tensor([(i, j, 11) for i in range(11) for j in range(11)])
        torch.manual_seed(3)
        z = nl.Transformer(11, 16, 4, 24)(x)[:, -1]
    torch.testing.assert_close(FAM.logits(ours, x[:, 0], x[:, 1], c), z[:, :11], rtol=0, atol=1e-5)

    their_losses, _ = nl.nanda_train(11, 40, seed=5, d_model=16, d_mlp=24, init_seed=3)
    train(c, tmp_path / "run", device="cpu", threads=1)
    _, our_losses = rundir.train_losses(rundir.read_metrics(tmp_path / "run"))
    a, b = torch.tensor(their_losses, dtype=torch.float64), torch.tensor(our_losses, dtype=torch.float64)
    assert a[0] == pytest.approx(b[0].item(), rel=1e-6)  # the same model, data and loss at epoch 0
    assert a[0] == a[1]  # their warm-up: the first step has lr 0
    assert ((a - b).abs() / a).max().item() < 1e-5  # measured 1.9e-7 over these 40 epochs
    assert a[-1] < 0.9 * a[0]  # and it trained


def test_runs_of_format_4_read_with_the_values_they_could_have(tiny_run, tmp_path):
    import json
    import shutil

    from interp_grok import rundir

    out = tmp_path / "v4"
    shutil.copytree(tiny_run, out)
    raw = json.loads((out / "config.json").read_text())
    added = ("split", "n_heads", "eq_logit", "biases", "warmup_steps")
    for k in added:
        raw.pop(k)
    (out / "config.json").write_text(json.dumps({**raw, "format_version": 4}))
    c = rundir.load_run(out).config
    assert (c.split, c.n_heads, c.eq_logit, c.biases, c.warmup_steps) == ("randperm", 4, True, True, 0)
    (out / "config.json").write_text(json.dumps({**raw, "format_version": 5}))  # version 5 must have them
    with pytest.raises(rundir.RunDirError, match="missing config keys split, n_heads, eq_logit, biases, warmup_steps"):
        rundir.load_run(out)


@pytest.mark.parametrize("kw", [{}, {"eq_logit": False, "biases": False, "act": "gelu"}])
def test_transformerlens_round_trip_gives_our_logits_on_the_full_grid(tmp_path, kw):
    """ig.to_hooked_transformer(run, epoch): a TransformerLens model (TransformerBridge, TL >= 4)
    whose last-position logits equal ours on every pair, all n_out of them, float32, to 1e-5 of
    the largest logit; its cache has the usual hooks. Skips only without the optional extra."""
    pytest.importorskip("transformer_lens")
    import interp_grok as ig
    from interp_grok import train

    c = _tiny(epochs=20, warmup_steps=5, **kw)
    train(c, tmp_path / "run", device="cpu", threads=1)
    run = ig.load_run(tmp_path / "run")
    model = ig.to_hooked_transformer(run, 20)
    p = c.p
    a, b = _pairs(p)
    tokens = torch.stack([a, b, torch.full_like(a, p)], 1)
    P = run.params(20)
    want = batched_logits({k: v[None] for k, v in P.items()}, a[None], b[None], c.act, c.biases)[0]
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    got = logits[:, -1]
    assert got.shape == want.shape == (p * p, p + 1 if c.eq_logit else p)
    assert (got - want).abs().max().item() <= 1e-5 * want.abs().max().item()
    torch.testing.assert_close(cache["blocks.0.attn.hook_pattern"].shape, torch.Size([p * p, 4, 3, 3]))
    # its MLP activations at "=" are ours
    hidden = getattr(torch.nn.functional, c.act)(grid_pre(P).reshape(p * p, -1))
    torch.testing.assert_close(cache["blocks.0.mlp.hook_post"][:, -1], hidden, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="only transformer runs"):
        ig.to_hooked_transformer(ig.load_run(_mlp_run(tmp_path)))


def _mlp_run(tmp_path):
    from interp_grok import train

    out = tmp_path / "mlp"
    train(Config(p=7, d_model=8, epochs=2, n_checkpoints=2).finalize(), out, device="cpu", threads=1)
    return out
