"""docs/turning-trajectories.md's results (issue 17, item 2), on the committed analysis-only copies
checkpoints/sweeps/{doshi-xi0.1, doshi-xi0.3, n4-xi0.1-lr1e-2-wd10} and checkpoints/long-runs/n4-100k,
read by the readout the page fixed before any of them was analyzed
(analyses/11_turning_trajectories.py prints the same)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from interp_grok import (
    doshi_phase_trajectory,
    last_quarter_change,
    load_sweep,
    phase_changes,
    run_phases,
    turning_epochs,
)

REF = Path(__file__).resolve().parents[1] / "checkpoints"
INVERTED = ("partial_inversion", "full_inversion")


def _progress(run: Path) -> list[dict]:
    with open(run / "analysis" / "progress.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _readout(run: Path, noise_frac: float | None = None) -> dict:
    rows = _progress(run)
    epochs = [int(r["epoch"]) for r in rows]
    v2, v1 = run_phases(epochs, rows), run_phases(epochs, rows, rule="v1")
    g = last_quarter_change(epochs, [r["test_acc_clean"] for r in rows])
    m = last_quarter_change(epochs, [r["train_noisy_memorized_frac"] for r in rows])
    out = {"phase": v2["final_phase"], "settled": v2["settled"], "v1": v1["final_phase"],
           **turning_epochs(epochs, v2["phases"]),
           "dG": g["delta"], "G_range": g["range"], "G_stationary": g["stationary"],
           "dM": m["delta"], "M_range": m["range"], "M_stationary": m["stationary"], "epoch": epochs[-1],
           "C_lq": (min(r["train_noisy_corrected_frac"] for r in rows if r["epoch"] >= 0.75 * epochs[-1]),
                    max(r["train_noisy_corrected_frac"] for r in rows if r["epoch"] >= 0.75 * epochs[-1])),
           **{k: rows[-1][c] for k, c in (("F", "train_clean_acc"), ("M", "train_noisy_memorized_frac"),
                                          ("C", "train_noisy_corrected_frac"), ("G", "test_acc_clean"))},
           "rows": rows}
    if noise_frac is not None:
        out["doshi"] = doshi_phase_trajectory([r["train_acc"] for r in rows], [r["test_acc_clean"] for r in rows],
                                              noise_frac)[-1]
    return out


def _segments(o: dict) -> list[tuple[int, str]]:
    """(epoch, phase) at each change of the rule-v2 phase."""
    epochs = [int(r["epoch"]) for r in o["rows"]]
    return phase_changes(epochs, run_phases(epochs, o["rows"])["phases"])


@pytest.fixture(scope="module")
def additive():
    res = load_sweep(REF / "sweeps" / "n4-xi0.1-lr1e-2-wd10")
    return {r["seed"]: _readout(res.path / "runs" / r["name"]) for r in res.rows if r["state"] == "done"}


@pytest.fixture(scope="module")
def long():
    return _readout(REF / "long-runs" / "n4-100k")


def test_the_additive_run_seed_0_stays_partly_inverted_seed_1_ends_in_coexistence(additive):
    """n = 4 on ξ 0.1 of the labels, lr 1e-2, wd 10, 20 000 epochs. Seed 0 is in partial inversion at
    every checkpoint from 299 on and never memorized its noisy labels (M < 0.9 throughout, at most
    0.863; 0.726-0.857 from epoch 1 343 on, 0.726 at the end, not stationary: range 0.109 over the
    last quarter). Seed 1 is in confusion up to 1 156, in partial inversion at one checkpoint (1 343:
    C 0.229) and in coexistence from 1 500 to the end (M 1.000, G 0.993); C never above 0.320. The
    readout's turning rule counts seed 1 as re-memorized after inverting (back at 1 500): an
    inversion of one checkpoint. Both settled, G stationary."""
    assert sorted(additive) == [0, 1] and all(o["epoch"] == 20_000 for o in additive.values())
    s0, s1 = additive[0], additive[1]
    assert (s0["phase"], s0["v1"], s0["inversion_epoch"], s0["back_epoch"]) == (
        "partial_inversion", "partial_inversion", 299, None)
    ph0 = run_phases([r["epoch"] for r in s0["rows"]], s0["rows"])["phases"]
    assert all(q == "partial_inversion" for r, q in zip(s0["rows"], ph0) if r["epoch"] >= 299)
    assert max(r["train_noisy_memorized_frac"] for r in s0["rows"]) == pytest.approx(0.863, abs=5e-4)
    late = [r["train_noisy_memorized_frac"] for r in s0["rows"] if r["epoch"] >= 1343]
    assert (min(late), max(late)) == pytest.approx((0.726, 0.857), abs=5e-4)
    assert (s0["M"], s0["C"], s0["G"]) == pytest.approx((0.726, 0.200, 0.964), abs=5e-4)
    assert not s0["M_stationary"] and s0["M_range"] == pytest.approx(0.109, abs=5e-4)

    assert (s1["phase"], s1["v1"], s1["inversion_epoch"], s1["back_epoch"]) == (
        "coexistence", "coexistence", 1343, 1500)
    epochs1 = [int(r["epoch"]) for r in s1["rows"]]
    ph1 = dict(zip(epochs1, run_phases(epochs1, s1["rows"])["phases"]))
    assert all(q == "confusion" for e, q in ph1.items() if e <= 1156)
    assert ph1[1343] == "partial_inversion" and all(q == "coexistence" for e, q in ph1.items() if e >= 1500)
    c1343 = next(r for r in s1["rows"] if r["epoch"] == 1343)["train_noisy_corrected_frac"]
    assert c1343 == pytest.approx(0.229, abs=5e-4)
    assert max(r["train_noisy_corrected_frac"] for r in s1["rows"]) == pytest.approx(0.320, abs=5e-4)
    assert (s1["M"], s1["G"]) == pytest.approx((1.0, 0.993), abs=5e-4)
    assert all(o["settled"] and o["G_stationary"] for o in additive.values())


def test_the_100k_run_stays_in_memorization(long):
    """The default n = 4 run to 100 000 epochs: memorization at every checkpoint from the fit on,
    settled, G stationary over 75 000-100 000 (0.176 at the end, at most 0.176 after 20 000: no late
    grokking, no late collapse)."""
    assert long["epoch"] == 100_000
    assert (long["phase"], long["v1"], long["settled"], long["G_stationary"]) == (
        "memorization", "memorization", True, True)
    late = [r for r in long["rows"] if r["epoch"] > 20_000]
    g_max = max(r["test_acc_clean"] for r in late)
    assert g_max < 0.9  # no late grokking
    assert not all(r["test_acc_clean"] < g_max - 0.05 for r in long["rows"] if r["epoch"] >= 75_000)  # no collapse
    assert (long["G"], g_max) == pytest.approx((0.176, 0.176), abs=5e-4)
    assert long["G_range"] == pytest.approx(0.003, abs=5e-4)
    g_lq = [r["test_acc_clean"] for r in long["rows"] if r["epoch"] >= 75_000]
    assert (min(g_lq), max(g_lq)) == pytest.approx((0.173, 0.176), abs=5e-4)  # levels off at 0.17-0.18
    at20k = [r for r in long["rows"] if r["epoch"] == 20_000][0]
    assert at20k["test_acc_clean"] == pytest.approx(0.151, abs=5e-4)
    assert long["G"] - at20k["test_acc_clean"] == pytest.approx(0.025, abs=5e-4)
    assert all(r["train_noisy_memorized_frac"] == 1.0 for r in late)


def test_the_100k_run_repeats_the_default_float64_run_exactly(long):
    """Its first 20 000 epochs are numerics-default's float64 n = 4 seed-0 run (same settings, trained
    by another commit earlier the same day): the six columns compared (losses, accuracies, Σθ², M) are equal
    at all 21 common checkpoints (the key-frequency columns are not compared: the key sets are read
    at each run's own final epoch). Against the reference run n4
    (an earlier commit, another session) clean test accuracy drifts: at most 0.011 apart over the 25
    common checkpoints to 40 000."""
    other = {int(r["epoch"]): r for r in _progress(REF / "sweeps" / "numerics-default" / "runs" /
                                                    "n4_s0_loss_dtypefloat64")}
    ref = {int(r["epoch"]): r for r in _progress(REF / "n4")}
    mine = {int(r["epoch"]): r for r in long["rows"]}
    common = sorted(set(mine) & set(other))
    assert len(common) == 21 and common[-1] == 20_000
    cols = ("test_acc_clean", "train_acc", "train_loss", "test_loss", "sum_sq_weights", "train_noisy_memorized_frac")
    assert all(mine[e][c] == other[e][c] for e in common for c in cols)
    common = sorted(set(mine) & set(ref))
    assert len(common) == 25
    drift = max(abs(mine[e]["test_acc_clean"] - ref[e]["test_acc_clean"]) for e in common)
    assert drift == pytest.approx(0.011, abs=5e-4)


def test_the_additive_seed_0_run_is_another_realization_of_n4_xi_wd_lr_s_run(additive):
    """Same settings and seed as n4-xi-wd-lr's xi0.1_lr0.01_wd10 (trained in an earlier session by an
    earlier commit): the train loss differs already at epoch 0 (in the 12th significant digit), and by
    3 000 epochs M is 0.840 against 0.703, G 0.956 against 0.978; the most corrected checkpoint up to
    3 000 is C 0.789 at 348 against C 0.829 at 300."""
    first = {int(r["epoch"]): r for r in _progress(REF / "sweeps" / "n4-xi-wd-lr" / "runs" / "xi0.1_lr0.01_wd10")}
    again = {int(r["epoch"]): r for r in additive[0]["rows"]}
    common = sorted(set(first) & set(again))
    assert len(common) == 10 and first[0]["train_loss"] != again[0]["train_loss"]
    digits = [f"{x:.16e}".split("e")[0].replace(".", "") for x in (first[0]["train_loss"], again[0]["train_loss"])]
    assert digits[0][:11] == digits[1][:11] and digits[0][11] != digits[1][11]  # the 12th significant digit
    pairs = [(first[3000][c], again[3000][c]) for c in ("train_noisy_memorized_frac", "test_acc_clean")]
    assert pairs == [pytest.approx((0.703, 0.840), abs=5e-4), pytest.approx((0.978, 0.956), abs=5e-4)]
    peak = {k: max((e for e in d if e <= 3000), key=lambda e: d[e]["train_noisy_corrected_frac"])
            for k, d in (("first", first), ("again", again))}
    assert (peak["first"], peak["again"]) == (300, 348)
    assert (first[300]["train_noisy_corrected_frac"], again[348]["train_noisy_corrected_frac"]) == pytest.approx(
        (0.829, 0.789), abs=5e-4)


def test_the_100k_run_and_the_reference_n4_run_reach_key_frequency_19():
    """docs/findings.md, the ξ = 1 key-frequency bullet: both go beyond the sweeps' n = 4 bound of 18."""
    keys = {name: json.loads((REF / path / "analysis" / "summary.json").read_text())["key_freqs"]
            for name, path in (("long", "long-runs/n4-100k"), ("ref", "n4"))}
    assert keys == {"long": [1, 4, 10, 11, 12, 16, 18, 19], "ref": [1, 2, 4, 10, 11, 12, 13, 16, 18, 19]}


@pytest.fixture(scope="module")
def quadratic():
    out = {}
    for sweep in ("doshi-xi0.1", "doshi-xi0.3"):
        res = load_sweep(REF / "sweeps" / sweep)
        for r in res.rows:
            assert r["state"] == "done"
            out[(r["noise_frac"], r["train_frac"], r["weight_decay"], r["seed"])] = _readout(
                res.path / "runs" / r["name"], r["noise_frac"])
    return out


def test_the_quadratic_grid_is_the_one_the_page_fixed(quadratic):
    """Three cells (ξ 0.1 at training fraction 0.5 and 0.7, ξ 0.3 at 0.7) × wd 0, 5 × seeds 0, 1, all
    trained to 20 000 epochs; every run settled with G and M stationary over the last quarter."""
    cells = {(xi, tf) for xi, tf, _, _ in quadratic}
    assert cells == {(0.1, 0.5), (0.1, 0.7), (0.3, 0.7)} and len(quadratic) == 12
    assert all(o["epoch"] == 20_000 and o["settled"] and o["G_stationary"] and o["M_stationary"]
               for o in quadratic.values())


def test_wd_0_at_xi_0_1_memorizes_again_and_loses_test_accuracy(quadratic):
    """ξ 0.1, wd 0: fully inverted early (most corrected at 57-105, C ≥ 0.981), back in coexistence or
    memorization first at 995 (tf 0.5) or 6 996 and 11 500 (tf 0.7), ends in memorization (M 1.000, 1.000,
    0.943, 0.926); G peaks at 1.000 (epochs 49-78), first falls below 0.9 at 4 460-8 000, ends at
    0.855, 0.847, 0.830, 0.830, still falling (-0.009 to -0.020 over the last quarter)."""
    runs = {(tf, s): quadratic[(0.1, tf, 0.0, s)] for tf in (0.5, 0.7) for s in (0, 1)}
    assert all(o["phase"] == "memorization" and o["v1"] == "memorization" and o["doshi"] == "memorization"
               for o in runs.values())
    assert {k: o["back_epoch"] for k, o in runs.items()} == {(0.5, 0): 995, (0.5, 1): 995, (0.7, 0): 6996,
                                                             (0.7, 1): 11500}
    peaks = [max(o["rows"], key=lambda r: r["train_noisy_corrected_frac"]) for o in runs.values()]
    assert all(57 <= p["epoch"] <= 105 and p["train_noisy_corrected_frac"] >= 0.9805 for p in peaks)
    assert [o["M"] for o in runs.values()] == pytest.approx([1.0, 1.0, 0.943, 0.926], abs=5e-4)
    assert [o["G"] for o in runs.values()] == pytest.approx([0.855, 0.847, 0.830, 0.830], abs=5e-4)
    for o in runs.values():
        top = max(o["rows"], key=lambda r: r["test_acc_clean"])
        below = next(r["epoch"] for r in o["rows"] if r["epoch"] > top["epoch"] and r["test_acc_clean"] < 0.9)
        assert top["test_acc_clean"] == 1.0 and 49 <= top["epoch"] <= 78 and 4460 <= below <= 8000
        assert -0.0205 < o["dG"] < -0.0085
        assert 0.99 <= o["rows"][-1]["train_acc"] <= 1.0
    assert runs[(0.7, 1)]["dG"] == pytest.approx(-0.0198, abs=5e-5)  # stationary by 0.0002
    # the paths: memorization from 13-15, full inversion from 49-90; at tf 0.5 coexistence first at 995,
    # memorization from 8 000 / 6 996; at tf 0.7 through forgetting (4 460 / 5 182) to memorization
    # (seed 0 at 6 996 for one checkpoint, from 7 500; seed 1 from 11 500)
    seg = {k: _segments(o) for k, o in runs.items()}
    for sg in seg.values():
        first_of = {ph: e for e, ph in reversed(sg)}
        assert 13 <= first_of["memorization"] <= 15 and 49 <= first_of["full_inversion"] <= 90
    assert [(e, ph) for e, ph in seg[(0.5, 0)] if e >= 995] == [
        (995, "coexistence"), (1000, "partial_inversion"), (1156, "coexistence"), (8000, "memorization")]
    assert [(e, ph) for e, ph in seg[(0.5, 1)] if e >= 995] == [(995, "coexistence"), (6996, "memorization")]
    assert [(e, ph) for e, ph in seg[(0.7, 0)] if e >= 4460] == [
        (4460, "forgetting"), (6996, "memorization"), (7000, "forgetting"), (7500, "memorization")]
    assert [(e, ph) for e, ph in seg[(0.7, 1)] if e >= 4460] == [(5182, "forgetting"), (11500, "memorization")]
    # by Doshi et al.'s rule they never invert
    for o in runs.values():
        doshi = doshi_phase_trajectory([r["train_acc"] for r in o["rows"]], [r["test_acc_clean"] for r in o["rows"]],
                                       0.1)
        assert not any(ph in INVERTED for ph in doshi)


def test_wd_0_at_xi_0_3_stays_partly_inverted_with_m_creeping_up(quadratic):
    """ξ 0.3, training fraction 0.7, wd 0: most corrected at 105 and 122 (C 0.960, 0.949), then M
    climbs (0.522/0.526 at 2 000, 0.575/0.568 at 10 000, 0.586/0.592 at 20 000) while G goes from
    0.999 to 0.988; never back in memorization or coexistence."""
    runs = [quadratic[(0.3, 0.7, 0.0, s)] for s in (0, 1)]
    assert all(o["phase"] == "partial_inversion" and o["doshi"] == "partial_inversion" and o["back_epoch"] is None
               for o in runs)
    at = [{int(r["epoch"]): r for r in o["rows"]} for o in runs]
    peaks = [max(o["rows"], key=lambda r: r["train_noisy_corrected_frac"]) for o in runs]
    assert [(p["epoch"], p["train_noisy_corrected_frac"]) for p in peaks] == [
        (105, pytest.approx(0.960, abs=5e-4)), (122, pytest.approx(0.949, abs=5e-4))]
    for e, ms in ((2000, (0.522, 0.526)), (10000, (0.575, 0.568)), (20000, (0.586, 0.592))):
        assert [a[e]["train_noisy_memorized_frac"] for a in at] == pytest.approx(ms, abs=5e-4)
    assert [a[2000]["test_acc_clean"] for a in at] == pytest.approx([0.999, 0.999], abs=5e-4)
    assert [o["G"] for o in runs] == pytest.approx([0.988, 0.988], abs=5e-4)
    assert [o["C"] for o in runs] == pytest.approx([0.414, 0.408], abs=5e-4)
    assert [o["dM"] for o in runs] == pytest.approx([0.003, 0.013], abs=5e-4)
    assert runs[0]["M_range"] == pytest.approx(0.006, abs=5e-4)


def test_wd_5_keeps_the_full_inversion(quadratic):
    """All six wd-5 runs: inverted at every checkpoint from the first inversion (epochs 37-57) on, full
    inversion at the end (M 0, C 1, G 1). Doshi et al.'s accuracy rule calls the ξ 0.1 ones coexistence
    (training accuracy against the given labels 0.901 ≥ 0.9), the ξ 0.3 ones full inversion."""
    for (xi, _tf, wd, _s), o in quadratic.items():
        if wd != 5.0:
            continue
        epochs = [int(r["epoch"]) for r in o["rows"]]
        phases = run_phases(epochs, o["rows"])["phases"]
        assert 37 <= o["inversion_epoch"] <= 57 and o["back_epoch"] is None
        assert all(q in INVERTED for e, q in zip(epochs, phases) if e >= o["inversion_epoch"])
        full_from = _segments(o)[-1]  # full inversion without a break from 37-78 to the end
        assert full_from[1] == "full_inversion" and 37 <= full_from[0] <= 78
        assert o["C_lq"] == (1.0, 1.0)  # C unchanged over the last quarter
        assert (o["phase"], o["M"], o["C"], o["G"]) == ("full_inversion", 0.0, 1.0, 1.0)
        assert o["doshi"] == ("coexistence" if xi == 0.1 else "full_inversion")
        if xi == 0.1:
            assert o["rows"][-1]["train_acc"] == pytest.approx(0.901, abs=5e-4)


def test_the_seed_0_quadratic_runs_retrace_the_doshi_grid_cells(quadratic):
    """Same settings and seed as doshi-grid's cells (2 000 epochs, an earlier session and commit): M at epoch
    2 000 within 0.01 (0.976/0.974, 0.776/0.778, 0.522/0.530 at wd 0; 0 at wd 5), not equal."""
    grid = load_sweep(REF / "sweeps" / "doshi-grid")
    for (xi, tf, wd, s), o in quadratic.items():
        if s != 0:
            continue
        cell = next(r for r in grid.rows if (r["noise_frac"], r["train_frac"], r["weight_decay"]) == (xi, tf, wd))
        then = {int(r["epoch"]): r for r in _progress(grid.path / "runs" / cell["name"])}[2000]
        now = {int(r["epoch"]): r for r in o["rows"]}[2000]
        assert abs(now["train_noisy_memorized_frac"] - then["train_noisy_memorized_frac"]) < 0.01
        assert now["train_loss"] != then["train_loss"]
