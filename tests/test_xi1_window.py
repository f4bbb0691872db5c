"""docs/xi1-window.md's results, on the committed sweeps checkpoints/sweeps/xi1-window (32 runs),
xi1-window-ds347 (the second data seed) and xi1-window-tf0.7 (training fraction 0.7, wd 6-9, where it
is committed), analysis-only, read by the readout the page fixed before the runs were analyzed
(analyses/07_xi1_window.py prints the same)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from interp_grok import last_quarter_change, load_sweep, phase_changes, run_phases

SWEEPS = Path(__file__).resolve().parents[1] / "checkpoints" / "sweeps"
SWEEP = SWEEPS / "xi1-window"
GROKKED = ("coexistence", "partial_inversion", "full_inversion")
WDS = (5.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 20.0)


def _readout(sweep: Path, name: str) -> dict:
    with open(sweep / "runs" / name / "analysis" / "progress.csv") as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    epochs = [int(r["epoch"]) for r in rows]
    ph = run_phases(epochs, rows)
    v1_all = run_phases(epochs, rows, rule="v1")
    v1 = v1_all["final_phase"]
    return {"phase": ph["final_phase"], "settled": ph["settled"], "v1": v1,
            **last_quarter_change(epochs, [r["test_acc_clean"] for r in rows]), "G": rows[-1]["test_acc_clean"],
            "M": rows[-1]["train_noisy_memorized_frac"], "C": rows[-1]["train_noisy_corrected_frac"],
            "F": rows[-1]["train_clean_acc"], "epoch": epochs[-1], "settled_v1": v1_all["settled"],
            "G_best": max((r["test_acc_clean"], r["epoch"]) for r in rows),
            "path": phase_changes(epochs, ph["phases"])}


def _finished(sweep: Path) -> dict:
    res = load_sweep(sweep)
    return {(r["train_frac"], r["weight_decay"], r["seed"]): _readout(sweep, r["name"])
            for r in res.rows if r["state"] == "done"}


@pytest.fixture(scope="module")
def finished():
    return _finished(SWEEP)


def test_every_run_of_the_grid_finished_and_none_generalizes(finished):
    """All 32 runs to 20 000 epochs (training fraction 0.3 and 0.7 × wd 5, 10-15, 20 × seeds 0, 1).
    No run generalizes: the largest final clean test accuracy is 0.479 (tf 0.7, seed 1, wd 15)."""
    assert sorted(finished) == sorted((tf, wd, s) for tf in (0.3, 0.7) for wd in WDS for s in (0, 1))
    assert all(o["epoch"] == 20_000 for o in finished.values())
    top = max(finished, key=lambda k: finished[k]["G"])
    assert top == (0.7, 15.0, 1) and finished[top]["G"] == pytest.approx(0.479, abs=5e-4)
    best = max(finished, key=lambda k: finished[k]["G_best"])  # at any checkpoint: 0.533 (tf 0.7, s0, wd 10, 164)
    assert best == (0.7, 10.0, 0) and finished[best]["G_best"] == (pytest.approx(0.533, abs=5e-4), 164)
    assert all(o["phase"] == o["v1"] for o in finished.values())  # the two phase rules agree here


def test_phases_memorization_then_confusion(finished):
    """Training fraction 0.3: memorization at wd 5, 10, 11 (both seeds), confusion from wd 12 on; the
    clean-labelled fit F drops from >= 0.944 (wd 11) to <= 0.708 (wd 12). Training fraction 0.7:
    memorization at wd 5 only, confusion from wd 10 on (F 0.733-0.811 at wd 10)."""
    mem = {k for k, o in finished.items() if o["phase"] == "memorization"}
    assert mem == {(0.3, wd, s) for wd in (5.0, 10.0, 11.0) for s in (0, 1)} | {(0.7, 5.0, s) for s in (0, 1)}
    assert all(o["phase"] == "confusion" for k, o in finished.items() if k not in mem)
    f = {k: o["F"] for k, o in finished.items()}
    assert min(f[(0.3, 11.0, s)] for s in (0, 1)) == pytest.approx(0.944, abs=5e-4)
    assert max(f[(0.3, 12.0, s)] for s in (0, 1)) == pytest.approx(0.708, abs=5e-4)
    assert [f[(0.7, 10.0, s)] for s in (0, 1)] == pytest.approx([0.811, 0.733], abs=5e-4)


def test_settled_and_stationary_but_a_few(finished):
    """Every run's phase is settled but tf 0.3, seed 1, wd 11's; clean test accuracy is stationary over
    the last quarter in all but three: that run (+0.113), tf 0.7, seed 0, wd 15 (+0.024) and tf 0.7,
    seed 1, wd 20 (+0.022)."""
    assert {k for k, o in finished.items() if not o["settled"]} == {(0.3, 11.0, 1)}
    assert finished[(0.3, 11.0, 1)]["path"] == [(0, "confusion"), (18000, "memorization")]  # for that seed at wd 11
    assert finished[(0.3, 11.0, 1)]["G"] == pytest.approx(0.171, abs=5e-4)
    moving = {k: round(o["delta"], 3) for k, o in finished.items() if not o["stationary"]}
    assert moving == {(0.3, 11.0, 1): 0.113, (0.7, 15.0, 0): 0.024, (0.7, 20.0, 1): 0.022}


def test_confusion_at_tf_0_7_corrects_some_noisy_labels(finished):
    """In confusion at training fraction 0.7 the network gives the clean label to up to 43.7 % of the
    noisy-labelled training examples (seed 1, wd 15: C 0.437, G 0.479); at 0.3 to at most 4.2 %."""
    c = {k: o["C"] for k, o in finished.items() if o["phase"] == "confusion"}
    top = max(c, key=c.get)
    assert top == (0.7, 15.0, 1) and c[top] == pytest.approx(0.437, abs=5e-4)
    assert max(v for k, v in c.items() if k[0] == 0.3) == pytest.approx(0.042, abs=5e-4)


def test_no_window_cell(finished):
    """The page's rule: a window cell has both seeds grokked (G >= 0.9) and settled; a cell with one
    such seed would make the answer suggestive. No run of the grid grokked: no window in the range
    sampled, at either training fraction."""
    assert not any(o["phase"] in GROKKED for o in finished.values())


def test_the_second_data_seed():
    """Data seed 347, training fraction 0.3, model seed 0: memorization at wd 10 (G 0.289), confusion
    at 11-15 (by rule v1, memorization at 11 and 12: M 0.856 and 0.705 < 0.9); none grokked. At wd
    11 and 12 its clean-labelled fit stays higher than data seed 346's (F 0.962 and 0.902)."""
    ds = _finished(SWEEPS / "xi1-window-ds347")
    assert sorted(ds) == [(0.3, wd, 0) for wd in (10.0, 11.0, 12.0, 13.0, 14.0, 15.0)]
    assert all(o["epoch"] == 20_000 and o["settled"] for o in ds.values())
    assert {k[1]: o["phase"] for k, o in ds.items()} == {10.0: "memorization", 11.0: "confusion", 12.0: "confusion",
                                                         13.0: "confusion", 14.0: "confusion", 15.0: "confusion"}
    assert [ds[(0.3, wd, 0)]["v1"] for wd in (11.0, 12.0)] == ["memorization", "memorization"]
    assert [ds[(0.3, wd, 0)]["M"] for wd in (11.0, 12.0)] == pytest.approx([0.856, 0.705], abs=5e-4)
    assert [ds[(0.3, wd, 0)]["F"] for wd in (11.0, 12.0)] == pytest.approx([0.962, 0.902], abs=5e-4)
    assert [ds[(0.3, wd, 0)]["settled_v1"] for wd in (11.0, 12.0)] == [True, False]
    first = _finished(SWEEP)  # the first split's two seeds: F 0.944-0.946 at wd 11, 0.687-0.708 at wd 12
    for wd, (lo, hi) in ((11.0, (0.944, 0.946)), (12.0, (0.687, 0.708))):
        f = sorted(first[(0.3, wd, s)]["F"] for s in (0, 1))
        assert f == pytest.approx([lo, hi], abs=5e-4) and ds[(0.3, wd, 0)]["F"] > hi
    assert ds[(0.3, 10.0, 0)]["G"] == pytest.approx(0.289, abs=5e-4)
    assert not any(o["phase"] in GROKKED for o in ds.values())


def test_key_frequencies_low_when_memorizing_harmonic_in_confusion():
    """Memorizing runs' largest key frequency is 21; in 18 of the 24 confusion runs every key is a
    multiple of 2 (15) or of 3 (3), in none of the 8 memorizing runs (an observation, no rule fixed)."""
    import math

    rows = [r for r in load_sweep(SWEEP).rows if r["key_freqs"]]
    keys = {r["name"]: [int(k) for k in str(r["key_freqs"]).split()] for r in rows}
    phase = {r["name"]: r["final_phase"] for r in rows}
    mem = [n for n in keys if phase[n] == "memorization"]
    conf = [n for n in keys if phase[n] == "confusion"]
    assert (len(mem), len(conf)) == (8, 24) and max(max(keys[n]) for n in mem) == 21
    gcds = [math.gcd(*keys[n]) for n in conf]
    assert (sum(g == 2 for g in gcds), sum(g == 3 for g in gcds), sum(g >= 2 for g in gcds)) == (15, 3, 18)
    assert all(math.gcd(*keys[n]) == 1 for n in mem)


def test_the_third_sweep_tf_0_7_wd_6_to_9():
    """Training fraction 0.7, wd 6-9, seed 0: wd 6 memorization (forgetting at three checkpoints
    between 5 000 and 13 000), wd 7 forgetting from 2 844 (rule v1: memorization, not settled), wd 8
    and 9 confusion (v1 calls wd 8 forgetting, not settled); none grokked (G at most 0.446, wd 9,
    epoch 141; 0.392 at the end). F falls 0.985, 0.937, 0.896, 0.875; C rises 0.023 -> 0.173."""
    ext = _finished(SWEEPS / "xi1-window-tf0.7")
    assert sorted(ext) == [(0.7, wd, 0) for wd in (6.0, 7.0, 8.0, 9.0)]
    o = {k[1]: v for k, v in ext.items()}
    assert all(v["epoch"] == 20_000 and v["settled"] and v["stationary"] for v in o.values())
    assert [o[wd]["phase"] for wd in (6.0, 7.0, 8.0, 9.0)] == ["memorization", "forgetting", "confusion", "confusion"]
    assert [(o[wd]["v1"], o[wd]["settled_v1"]) for wd in (7.0, 8.0)] == [("memorization", False), ("forgetting", False)]
    assert [e for e, p in o[6.0]["path"] if p == "forgetting"] == [5000, 12000, 13000]
    assert o[6.0]["path"][-1] == (13500, "memorization")
    assert o[7.0]["path"][1:] == [(222, "memorization"), (2106, "forgetting"), (2447, "memorization"),
                                  (2844, "forgetting")]
    assert [round(o[wd]["M"], 3) for wd in (6.0, 7.0)] == [0.945, 0.845] and round(o[6.0]["G"], 3) == 0.335
    assert [round(o[wd]["C"], 3) for wd in (7.0, 8.0)] == [0.073, 0.131]
    assert [round(o[wd]["F"], 3) for wd in (6.0, 7.0, 8.0, 9.0)] == [0.985, 0.937, 0.896, 0.875]
    assert (round(o[6.0]["C"], 3), round(o[9.0]["C"], 3)) == (0.023, 0.173)
    best = max(o, key=lambda wd: o[wd]["G_best"])
    assert best == 9.0 and o[9.0]["G_best"] == (pytest.approx(0.446, abs=5e-4), 141)
    assert max(v["G"] for v in o.values()) == pytest.approx(0.392, abs=5e-4)
    assert not any(v["phase"] in GROKKED for v in o.values())
