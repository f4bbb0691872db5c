"""docs/numerics.md's results, on the committed sweeps checkpoints/sweeps/numerics-* (analysis-only),
read by the readout the page fixed before any run was analyzed (interp_grok.numerics_readout; the
claims' rules as analyses/09_numerics.py applies them, which prints the same)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from interp_grok import load_sweep, numerics_readout, rundir

SWEEPS = Path(__file__).resolve().parents[1] / "checkpoints" / "sweeps"
NAMES = ("numerics-wd0", "numerics-wd0-ortho", "numerics-wd0-noise", "numerics-default", "numerics-default-stablemax")
INF = math.inf


@pytest.fixture(scope="module")
def runs() -> dict[tuple, dict]:
    out = {}
    for sweep in NAMES:
        for r in load_sweep(SWEEPS / sweep).rows:
            run = SWEEPS / sweep / "runs" / r["name"]
            cfg, _ = rundir.read_config(run)
            with open(run / "analysis" / "progress.csv") as f:
                rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
            summary = json.loads((run / "analysis" / "summary.json").read_text())
            key = ("wd0" if cfg.weight_decay == 0 else "default", cfg.noise_n, cfg.loss, cfg.loss_dtype,
                   cfg.optimizer, cfg.seed)
            out[key] = numerics_readout(rows, summary) | {"state": r["state"], "rows": rows}
    return out


def wd0(runs, loss, dtype, seed, opt="adamw", n=0):
    return runs[("wd0", n, loss, dtype, opt, seed)]


def grok(o: dict) -> float:
    return INF if o["grok_epoch"] is None else o["grok_epoch"]


def test_every_run_finished(runs):
    assert len(runs) == 26 and all(o["state"] == "done" for o in runs.values())
    assert {o["epoch"] for k, o in runs.items() if k[0] == "wd0"} == {10_000}
    assert {o["epoch"] for k, o in runs.items() if k[0] == "default"} == {20_000}


def test_no_weight_decay_adamw_never_groks(runs):
    """Claims 1-3 (wd 0, AdamW, 10 000 epochs): no cross-entropy or StableMax run groks in either
    dtype or seed; the clean test accuracy never passes 0.010 (noise-free) / 0.019 (n = 4)."""
    adamw = {k: o for k, o in runs.items() if k[0] == "wd0" and k[4] == "adamw"}
    assert len(adamw) == 10 and all(o["grok_epoch"] is None for o in adamw.values())
    assert max(o["G_max"] for k, o in adamw.items() if k[1] == 0) < 0.010
    assert max(o["G_max"] for k, o in adamw.items() if k[1] == 4) < 0.0185


def test_float32_collapses_but_does_not_stall(runs):
    """Claim 1, not reproduced: the float32 CE runs collapse (f32 fraction >= 0.5 from the
    checkpoint at epoch 905, 0.997 at the end) but keep moving: Σθ² grows past 21 000 and the train
    loss spikes 7 times in each seed; the float64 twins show no spike and stall."""
    for s in (0, 1):
        f32, f64 = wd0(runs, "cross_entropy", "float32", s), wd0(runs, "cross_entropy", "float64", s)
        assert f32["collapse_epoch_f32"] == 905 and f32["collapse_f32"] > 0.99
        assert not f32["stalled"] and f32["sum_sq_weights"] > 21_000 and f32["spikes"] == 7
        assert f64["stalled"] and f64["spikes"] == 0 and f64["collapse_max_f64"] == 0.0
        # float64 does not go further (claim 2): the same largest test accuracy as float32 (one anti-diagonal)
        assert f64["G_max"] == pytest.approx(f32["G_max"], abs=1e-12)
        # the float64 run's descent direction points along the weights at W_U (naive loss minimization)
        assert f64["grad_cos_W_U"] > 0.95


def test_orthoadamw_groks_at_once(runs):
    """Claim 4, reproduced in both dtypes and seeds: ⊥AdamW groks by epoch 82-100 (clean test accuracy
    >= 0.95) where no AdamW run groks within 10 000 epochs."""
    for dtype in ("float32", "float64"):
        for s in (0, 1):
            o = wd0(runs, "cross_entropy", dtype, s, "orthoadamw")
            assert 82 <= o["grok_epoch"] <= 100 and o["G_max"] == 1.0
            assert grok(o) < min(grok(wd0(runs, loss, dtype, s)) for loss in ("cross_entropy", "stablemax"))


def test_noise_does_not_collapse_sooner_at_wd0(runs):
    """Claim 7 at wd 0: the n = 4 float32 runs reach f32 collapse >= 0.5 at the same checkpoint (905)
    as the noise-free ones, in both seeds."""
    for s in (0, 1):
        assert (wd0(runs, "cross_entropy", "float32", s, n=4)["collapse_epoch_f32"]
                == wd0(runs, "cross_entropy", "float32", s)["collapse_epoch_f32"] == 905)


def default(runs, n, loss, dtype, seed):
    return runs[("default", n, loss, dtype, "adamw", seed)]


def test_float32_at_the_defaults_keeps_the_trajectory(runs):
    """Claim 5, not reproduced (float32 does not change the trajectory by the page's rule): the float32
    and float64 twins end in the same phase with |ΔG| <= 0.009; the noise-free ones grok within 200
    epochs of each other (9 800 vs 9 750; 8 550 vs 8 750); no n = 4 run groks."""
    grok_epochs = {}
    for n in (0, 4):
        for s in (0, 1):
            a, b = default(runs, n, "cross_entropy", "float32", s), default(runs, n, "cross_entropy", "float64", s)
            assert a["phase"] == b["phase"] == ("generalization" if n == 0 else "memorization")
            assert abs(a["G"] - b["G"]) <= 0.009
            grok_epochs[(n, s)] = (a["grok_epoch"], b["grok_epoch"])
    assert grok_epochs == {(0, 0): (9800, 9750), (0, 1): (8550, 8750), (4, 0): (None, None), (4, 1): (None, None)}


def test_float32_spikes_in_one_noise_free_seed(runs):
    """The seed's "float64 to prevent slingshots": at the defaults the float32 noise-free seed-1 run
    spikes 17 times (after it groks; its Σθ² ends at 2 780 against its float64 twin's 1 740) and no
    other default run spikes at all, float64 or n = 4."""
    spikes = {k: o["spikes"] for k, o in runs.items() if k[0] == "default"}
    assert spikes.pop(("default", 0, "cross_entropy", "float32", "adamw", 1)) == 17
    assert set(spikes.values()) == {0}
    f32, f64 = default(runs, 0, "cross_entropy", "float32", 1), default(runs, 0, "cross_entropy", "float64", 1)
    assert round(f32["sum_sq_weights"], -1) == 2780 and round(f64["sum_sq_weights"], -1) == 1740


def test_stablemax_float32_at_the_defaults(runs):
    """Claim 6: StableMax in float32 reaches the float64 softmax outcome at n = 0 (both grok, later:
    14 450 and 12 900 against 9 750 and 8 750) but not at n = 4 (clean test accuracy 0.070 and 0.010
    against 0.151 and 0.147; all noisy labels memorized in both)."""
    assert [default(runs, 0, "stablemax", "float32", s)["grok_epoch"] for s in (0, 1)] == [14450, 12900]
    for s, (g_sm, g_ce) in zip((0, 1), ((0.070, 0.151), (0.010, 0.147))):
        sm, ce = default(runs, 4, "stablemax", "float32", s), default(runs, 4, "cross_entropy", "float64", s)
        assert (sm["G"], ce["G"]) == (pytest.approx(g_sm, abs=5e-4), pytest.approx(g_ce, abs=5e-4))
        assert sm["phase"] == ce["phase"] == "memorization" and sm["M"] == ce["M"] == 1.0


def test_noisy_runs_collapse_less_at_the_defaults(runs):
    """Claim 7 at the defaults: undecided by the page's rule (no float32 CE run reaches collapse 0.5);
    descriptively the opposite of the claim: the n = 4 runs never have more than 0.08 % of their
    training examples collapsed in float32, the noise-free ones up to 5.7 % and 13.3 %."""
    for s, top in ((0, 0.057), (1, 0.133)):
        noisy, clean = default(runs, 4, "cross_entropy", "float32", s), default(runs, 0, "cross_entropy", "float32", s)
        assert noisy["collapse_epoch_f32"] is None and clean["collapse_epoch_f32"] is None
        assert noisy["collapse_max_f32"] <= 2 / 2822 and clean["collapse_max_f32"] == pytest.approx(top, abs=5e-4)


def test_the_no_weight_decay_details(runs):
    """docs/numerics.md's details: float32 CE Σθ² ~8 900 at epoch 1 000 (read in the notebook) rising to
    21 100-22 300; the float32 CE seed-0 slingshot (collapse 0.877 at epoch 1 034 -> 0.022 at 1 182);
    StableMax's logit gap ~20 000 and Σθ² ~200 000; ⊥AdamW float32's spikes."""
    assert [round(wd0(runs, "cross_entropy", "float32", s)["sum_sq_weights"], -2) for s in (0, 1)] == [21100, 22300]
    for s in (0, 1):
        for dtype in ("float32", "float64"):
            o = wd0(runs, "stablemax", dtype, s)
            assert 20_000 < o["logit_gap"] < 21_200 and 197_000 < o["sum_sq_weights"] < 212_000
            assert o["fit_epoch"] == (82, 72)[s]
    assert [wd0(runs, "cross_entropy", "float32", s, "orthoadamw")["spikes"] for s in (0, 1)] == [5, 12]
    assert wd0(runs, "cross_entropy", "float32", 1, "orthoadamw")["G"] == pytest.approx(0.986, abs=5e-4)
    assert [round(wd0(runs, "cross_entropy", "float64", s, "orthoadamw")["sum_sq_weights"], -2)
            for s in (0, 1)] == [4000, 3900]


def test_spikes_and_logit_scales_across_the_sweeps(runs):
    """Every train-loss spike of the 26 runs (62 in all) is in a float32 cross-entropy run; the mean
    top-logit gap ends at 15.3 (n = 4) and 16.3-16.9 (n = 0) for default cross-entropy, 860-1 530 for
    default StableMax; float32 CE at wd 0 has Σθ² ~8 900 at epoch 1 000."""
    assert sum(o["spikes"] for o in runs.values()) == 62
    assert all(k[2] == "cross_entropy" and k[3] == "float32" for k, o in runs.items() if o["spikes"])
    gaps = {(k[1], k[2]): [] for k in runs if k[0] == "default"}
    for k, o in runs.items():
        if k[0] == "default":
            gaps[(k[1], k[2])].append(o["logit_gap"])
    assert all(15.2 < g < 15.4 for g in gaps[(4, "cross_entropy")])
    assert all(16.2 < g < 17.0 for g in gaps[(0, "cross_entropy")])
    assert 860 < min(gaps[(4, "stablemax")] + gaps[(0, "stablemax")]) < max(
        gaps[(4, "stablemax")] + gaps[(0, "stablemax")]) < 1540
    for s in (0, 1):
        [r] = [r for r in wd0(runs, "cross_entropy", "float32", s)["rows"] if r["epoch"] == 1000]
        assert 8_800 < r["sum_sq_weights"] < 9_000


def test_the_float32_slingshot_of_seed_0(runs):
    """Seed 0, float32 CE, wd 0: collapse 0.877 (mean gap 17.8) at epoch 1 034, then 0.022 (gap 9.2) at 1 182."""
    rows = {int(r["epoch"]): r for r in wd0(runs, "cross_entropy", "float32", 0)["rows"]}
    assert (round(rows[1034]["softmax_collapse_f32"], 3), round(rows[1034]["logit_gap_mean"], 1)) == (0.877, 17.8)
    assert (round(rows[1182]["softmax_collapse_f32"], 3), round(rows[1182]["logit_gap_mean"], 1)) == (0.022, 9.2)


def test_the_float64_stall_and_the_rest_of_the_wd0_text(runs):
    """float64 CE at wd 0 ends with mean gap 24.4, train loss ~6e-11, Σθ² ~9 800, cos(-g, W_U) 0.96 and
    0.73-0.74 over all tensors; float32 CE has 99.9 % of its float32 losses exactly 0 at the end; the
    runs fit by epoch 25 (CE); clean test accuracy at initialization 0.0096 / 0.0099 and never above it
    at n = 0; ⊥AdamW float32 collapses from epoch 1 000 / 1 250; n = 4 at wd 0 spikes 7 times, M = 1."""
    for s, g0 in ((0, 0.0096), (1, 0.0099)):
        f32, f64 = wd0(runs, "cross_entropy", "float32", s), wd0(runs, "cross_entropy", "float64", s)
        assert round(f64["logit_gap"], 1) == 24.4 and 6.3e-11 < f64["train_loss"] < 6.5e-11
        assert 9_700 < f64["sum_sq_weights"] < 9_800 and round(f64["grad_cos_W_U"], 2) == 0.96
        assert 0.73 <= f64["grad_cos_all"] <= 0.745
        assert f32["zero_loss_f32"] > 0.999 and f32["fit_epoch"] == f64["fit_epoch"] == 25
        assert round(f32["rows"][0]["test_acc_clean"], 4) == g0 == round(f32["G_max"], 4) == round(f64["G_max"], 4)
        noisy = wd0(runs, "cross_entropy", "float32", s, n=4)
        assert noisy["spikes"] == 7 and noisy["M"] == 1.0
    ortho = [wd0(runs, "cross_entropy", "float32", s, "orthoadamw") for s in (0, 1)]
    assert [o["collapse_epoch_f32"] for o in ortho] == [1000, 1250]


def test_the_rest_of_the_defaults_text(runs):
    """The float32 measure on the float64 noise-free runs peaks at 8.2 % / 4.6 %; StableMax float32 groks
    4 150-4 700 epochs after float64 softmax; the spiking float32 run keeps clean test accuracy 1.0 from
    epoch 13 000 (spikes at 13 716-18 618); the wd-0 spikes at 1 059-9 116; n = 4 float32 CE ends at
    0.143 / 0.140; StableMax's float32 collapse column stays 1.0 once it reaches it; the float64 ⊥AdamW
    runs end stalled; float64 CE at wd 0 has its float32 collapse 0.970 at 905 and 1.0 at 1 000."""
    assert [round(default(runs, 0, "cross_entropy", "float64", s)["collapse_max_f32"], 3) for s in (0, 1)] == [
        0.082, 0.046]
    delays = [default(runs, 0, "stablemax", "float32", s)["grok_epoch"]
              - default(runs, 0, "cross_entropy", "float64", s)["grok_epoch"] for s in (0, 1)]
    assert delays == [4700, 4150]
    spiky = default(runs, 0, "cross_entropy", "float32", 1)
    assert min(r["test_acc_clean"] for r in spiky["rows"] if r["epoch"] >= 13_000) == 1.0
    assert (spiky["spike_epochs"][0], spiky["spike_epochs"][-1]) == (13716, 18618)
    wd0_spikes = [e for s in (0, 1) for e in wd0(runs, "cross_entropy", "float32", s)["spike_epochs"]]
    assert (min(wd0_spikes), max(wd0_spikes)) == (1059, 9116)
    assert [round(default(runs, 4, "cross_entropy", "float32", s)["G"], 3) for s in (0, 1)] == [0.143, 0.140]
    for k, o in runs.items():
        if k[2] == "stablemax":
            c = [r["softmax_collapse_f32"] for r in o["rows"]]
            assert all(x == 1.0 for x in c[c.index(1.0):])
    assert all(wd0(runs, "cross_entropy", "float64", s, "orthoadamw")["stalled"] for s in (0, 1))
    rows = {int(r["epoch"]): r["softmax_collapse_f32"] for r in wd0(runs, "cross_entropy", "float64", 0)["rows"]}
    assert (round(rows[905], 3), rows[1000]) == (0.970, 1.0)
