"""docs/noisy-labels.md's results on committed data: the default n = 4 parents (the float64 n = 4 runs
of checkpoints/sweeps/numerics-default) and their correct-and-resume children
(checkpoints/correct-resume), read by the readout the page fixed before the runs were analyzed
(analyses/10_noisy_labels.py prints the same)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from interp_grok import load_sweep, lookup_extraction_control, make_dataset, run_phases, rundir

ROOT = Path(__file__).resolve().parents[1] / "checkpoints"
PARENTS = ROOT / "sweeps" / "numerics-default"
CHILDREN = ROOT / "correct-resume"
ARMS = ("control", "b4", "b62", "b62_scratch")


def _progress(run: Path) -> list[dict]:
    with open(run / "analysis" / "progress.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _parent(seed: int) -> Path:
    [name] = [r["name"] for r in load_sweep(PARENTS).rows
              if r["noise_n"] == 4 and r["seed"] == seed and r["loss_dtype"] == "float64"]
    return PARENTS / "runs" / name


@pytest.mark.parametrize("seed, at, extr_test, ctl_test, extr_noisy, ctl_noisy", [
    (0, 5000, 0.144, 0.396, 0.140, 0.377), (0, 20000, 0.441, 0.396, 0.414, 0.377),
    (1, 5000, 0.101, 0.551, 0.097, 0.525), (1, 20000, 0.494, 0.551, 0.458, 0.525)])
def test_extraction_is_not_above_the_lookup_control(seed, at, extr_test, ctl_test, extr_noisy, ctl_noisy):
    run = _parent(seed)
    cfg, _ = rundir.read_config(run)
    ds = make_dataset(cfg)
    keys = json.loads((run / "analysis" / "summary.json").read_text())["key_freqs"]
    assert keys == ([1, 2, 4, 10], [2, 5, 8, 10, 15])[seed]
    noisy_tr = ds.train_idx[ds.noise[ds.train_idx] != 0]
    ctl = [lookup_extraction_control(cfg.p, ds.train_idx, ds.noisy_labels, keys, ds.clean_labels, idx)
           for idx in (ds.test_idx, noisy_tr)]
    [row] = [r for r in _progress(run) if r["epoch"] == at]
    got = (row["extraction_acc_test"], ctl[0], row["extraction_acc_train_noisy"], ctl[1])
    assert got == pytest.approx((extr_test, ctl_test, extr_noisy, ctl_noisy), abs=5e-4)
    assert row["test_acc_clean"] == pytest.approx({(0, 5000): 0.019, (0, 20000): 0.151, (1, 5000): 0.014,
                                                   (1, 20000): 0.147}[(seed, at)], abs=5e-4)
    # the page's rule (more than 0.02 above the control, in both seeds): met only by seed 0 at the end,
    # so the circuit is not shown to know more than the table
    above = min(got[0] - got[1], got[2] - got[3]) > 0.02
    assert above == ((seed, at) == (0, 20000))


def test_the_audit_at_the_final_checkpoint():
    """R-precision (B = n_noisy = 1 774 of 2 822) and precision at 4 % (B = 113) per score, both seeds."""
    want = {0: {"loss": (0.699, 0.653), "margin": (0.602, 0.638), "first_fit_late": (0.638, 0.618),
                "first_fit_early": (0.653, 0.638), "restricted_disagree": (0.722, 0.722),
                "restricted_nll": (0.858, 0.723)},
            1: {"loss": (0.708, 0.648), "margin": (0.735, 0.648), "first_fit_late": (0.576, 0.626),
                "first_fit_early": (0.637, 0.638), "restricted_disagree": (0.748, 0.748),
                "restricted_nll": (1.000, 0.736)}}
    for seed, scores in want.items():
        with open(_parent(seed) / "analysis" / "audit.csv") as f:
            rows = list(csv.DictReader(f))
        assert all(float(r["baseline_precision"]) == pytest.approx(1774 / 2822) for r in rows)
        at = {(r["score"], int(r["budget"])): float(r["precision"]) for r in rows}
        for score, (p4, rprec) in scores.items():
            assert (at[(score, 113)], at[(score, 1774)]) == pytest.approx((p4, rprec), abs=5e-4)
        best = max({s for s, _ in at}, key=lambda s: at[(s, 1774)])
        assert best == ("restricted_nll", "restricted_disagree")[seed]
        assert max(at[(s, 1774)] for s, _ in at) < 0.75


@pytest.mark.parametrize("seed", [0, 1])
def test_correct_and_resume_restores_nothing(seed):
    """No child groks by 20 000; all end in settled memorization; what the relabelling did at E = 5 000."""
    did = {0: {"b4": (113, 69, 105, 18), "b62": (1764, 1090, 1497, 195)},
           1: {"b4": (113, 68, 108, 2), "b62": (1764, 1091, 1670, 73)}}[seed]
    final_G = {0: (0.152, 0.150, 0.141, 0.142), 1: (0.146, 0.144, 0.063, 0.061)}[seed]
    for arm, G in zip(ARMS, final_G):
        run = CHILDREN / f"s{seed}_{arm}"
        rel = rundir.read_config(run)[1]["relabelled_from"]
        assert rel["epoch"] == 5000 and rel["score"] == "loss" and rel["mode"] == ("scratch" if "scratch" in arm else
                                                                                     "continue")
        key = arm.removesuffix("_scratch")
        if key != "control":
            assert (rel["budget"], rel["n_noisy_flagged"], rel["n_changed"], rel["n_now_clean"]) == did[key]
            # the loss audit at E: at chance (random 1 774 / 2 822 = 0.629)
            assert rel["audit_precision"] == pytest.approx({(0, "b4"): 0.611, (0, "b62"): 0.618, (1, "b4"): 0.602,
                                                            (1, "b62"): 0.618}[(seed, key)], abs=5e-4)
            assert rel["key_freqs"] == ([1, 2, 4, 5, 8, 10], [2, 5])[seed]
        else:
            assert rel["budget"] == 0
        rows = _progress(run)
        ph = run_phases([int(r["epoch"]) for r in rows], rows)
        assert json.loads((run / "analysis" / "summary.json").read_text())["epoch_test_acc_clean_first_95"] is None
        assert (ph["final_phase"], ph["settled"], int(rows[-1]["epoch"])) == ("memorization", True, 20000)
        assert rows[-1]["test_acc_clean"] == pytest.approx(G, abs=5e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_relabelling_made_the_training_labels_noisier(seed):
    """From the children's datasets: each changed label went wrong -> clean, clean -> wrong or wrong ->
    wrong, and the children's training sets hold more noisy labels than the parent's 1 774."""
    want = {0: {"b4": (18, 40, 47, 1796), "b62": (195, 576, 726, 2155)},
            1: {"b4": (2, 43, 63, 1815), "b62": (73, 626, 971, 2327)}}[seed]
    parent = make_dataset(rundir.read_config(_parent(seed))[0])
    assert int(parent.is_noisy[parent.train_idx].sum()) == 1774
    for arm, (to_clean, clean_to_wrong, wrong_to_wrong, noisy_after) in want.items():
        ds = rundir.load_dataset(CHILDREN / f"s{seed}_{arm}", parent.p)
        changed = ds.relabel["relabel_old"] != ds.relabel["relabel_new"]
        old, new = ds.relabel["relabel_old"][changed], ds.relabel["relabel_new"][changed]
        clean = ds.clean_labels[ds.relabel["relabel_idx"][changed]]
        assert int(((old != clean) & (new == clean)).sum()) == to_clean
        assert int((old == clean).sum()) == clean_to_wrong
        assert int(((old != clean) & (new != clean)).sum()) == wrong_to_wrong
        assert int(ds.is_noisy[ds.train_idx].sum()) == noisy_after
