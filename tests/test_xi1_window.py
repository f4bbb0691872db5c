"""docs/xi1-window.md's results, on the committed sweep checkpoints/sweeps/xi1-window (analysis-only,
the runs finished so far), read by the readout the page fixed before the runs were analyzed
(analyses/07_xi1_window.py prints the same)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from interp_grok import last_quarter_change, load_sweep, run_phases

SWEEP = Path(__file__).resolve().parents[1] / "checkpoints" / "sweeps" / "xi1-window"
GROKKED = ("coexistence", "partial_inversion", "full_inversion")


def _readout(name: str) -> dict:
    with open(SWEEP / "runs" / name / "analysis" / "progress.csv") as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    epochs = [int(r["epoch"]) for r in rows]
    ph = run_phases(epochs, rows)
    v1 = run_phases(epochs, rows, rule="v1")["final_phase"]
    return {"phase": ph["final_phase"], "settled": ph["settled"], "v1": v1,
            **last_quarter_change(epochs, [r["test_acc_clean"] for r in rows]), "G": rows[-1]["test_acc_clean"],
            "M": rows[-1]["train_noisy_memorized_frac"], "F": rows[-1]["train_clean_acc"], "epoch": epochs[-1]}


@pytest.fixture(scope="module")
def finished():
    res = load_sweep(SWEEP)
    return {(r["train_frac"], r["weight_decay"], r["seed"]): _readout(r["name"])
            for r in res.rows if r["state"] == "done"}


def test_the_finished_runs_and_their_readout(finished):
    """12 of the 32 runs had finished (20 000 epochs) when the sweep was committed: training
    fraction 0.3, both seeds at wd 5, 10, 11, 12 and seed 0 at wd 13, 14, 15, 20."""
    assert sorted(finished) == sorted([(0.3, wd, s) for wd in (5.0, 10.0, 11.0, 12.0) for s in (0, 1)]
                                      + [(0.3, wd, 0) for wd in (13.0, 14.0, 15.0, 20.0)])
    assert all(o["epoch"] == 20_000 for o in finished.values())
    phases = {k: o["phase"] for k, o in finished.items()}
    assert {k for k, v in phases.items() if v == "memorization"} == {(0.3, wd, s) for wd in (5.0, 10.0, 11.0)
                                                                      for s in (0, 1)}
    assert all(v == "confusion" for k, v in phases.items() if k[1] >= 12)
    assert all(o["phase"] == o["v1"] for o in finished.values())  # the two phase rules agree here
    # no run generalizes: the largest final clean test accuracy is 0.337 (wd 5, seed 1)
    assert max(o["G"] for o in finished.values()) == pytest.approx(0.337, abs=5e-4)
    # every run is settled and stationary but one: wd 11, seed 1 (clean test accuracy +0.113 over the last quarter)
    moving = {k for k, o in finished.items() if not (o["settled"] and o["stationary"])}
    assert moving == {(0.3, 11.0, 1)} and finished[(0.3, 11.0, 1)]["delta"] == pytest.approx(0.113, abs=5e-4)
    # the boundary between wd 11 and 12: the clean-labelled training fit drops from >= 0.94 to <= 0.71
    assert min(finished[(0.3, 11.0, s)]["F"] for s in (0, 1)) > 0.94 > 0.71 > max(
        finished[(0.3, 12.0, s)]["F"] for s in (0, 1))


def test_no_window_cell_among_the_complete_cells(finished):
    """The page's rule: a window cell has both seeds grokked (G >= 0.9) and settled. Of the cells
    with both seeds finished (training fraction 0.3, wd 5, 10, 11, 12) none is."""
    complete = {(tf, wd) for tf, wd, s in finished if (tf, wd, 1 - s) in finished}
    assert complete == {(0.3, wd) for wd in (5.0, 10.0, 11.0, 12.0)}
    assert not any(finished[(tf, wd, s)]["phase"] in GROKKED for tf, wd in complete for s in (0, 1))
