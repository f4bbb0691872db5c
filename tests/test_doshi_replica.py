"""checkpoints/doshi_replica.py rebuilds Doshi et al.'s own draws: known answers from their printed
notebook outputs, and the committed checkpoints/doshi-replica.json it wrote."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("doshi_replica", ROOT / "checkpoints" / "doshi_replica.py")
replica = importlib.util.module_from_spec(spec)
spec.loader.exec_module(replica)


def test_their_draws_have_their_sizes_and_corruption():
    x_tr, y_tr, x_te, y_te, w1, w2 = replica.their_draws()
    assert (len(y_tr), len(y_te)) == (4704, 4705)  # int(0.5 * 97^2)
    clean_tr = (x_tr[:, 0] + x_tr[:, 1]) % 97
    n_noise = int(0.35 * 4704)
    assert torch.equal(y_tr[n_noise:], clean_tr[n_noise:])  # only the first n_noise training labels are redrawn
    assert torch.equal(y_te, (x_te[:, 0] + x_te[:, 1]) % 97)  # test labels clean
    kept = int((y_tr[:n_noise] == clean_tr[:n_noise]).sum())  # a uniform redraw keeps the label w.p. 1/p
    assert 0 < kept < 40
    assert (w1.shape, w2.shape) == ((500, 194), (97, 500))


@pytest.mark.parametrize("wd", [0.0, 5.0, 15.0, 20.0])
@pytest.mark.parametrize("math", ["their_math", "our_math"])
def test_first_step_reproduces_their_printed_accuracies(wd, math):
    """One step from their draws gives the accuracies their notebook printed at epoch 1, to the
    example (1/4704 = 2e-4): the split, the corruption and the initialization are theirs."""
    torch.set_num_threads(1)
    train, test = replica.run(wd, 1, (1,), math)["1"]
    their_train, their_test = replica.THEIRS[wd][1]
    assert train == pytest.approx(their_train, abs=1e-6)
    assert test == pytest.approx(their_test, abs=1e-6)


REPLICA = json.loads((ROOT / "checkpoints" / "doshi-replica.json").read_text())
RUNS = {r["weight_decay"]: r for r in REPLICA["runs"]}


def test_committed_replica_starts_from_their_draws():
    assert REPLICA["git_dirty"] is False
    for wd, r in RUNS.items():
        for math in ("their_math", "our_math"):
            assert r[math]["1"] == pytest.approx(list(replica.THEIRS[wd][1]), abs=1e-6), (wd, math)


def test_rounding_moves_little_outside_forgetting():
    """docs/reproductions.md: within 0.004 of their printed numbers at wd 0, 5, 15; exact at 15."""
    for wd in (0.0, 5.0, 15.0):
        for e, printed in RUNS[wd]["theirs"].items():
            for math in ("their_math", "our_math"):
                assert RUNS[wd][math][e] == pytest.approx(printed, abs=0.004), (wd, e, math)
                if wd == 15.0:
                    assert RUNS[wd][math][e] == pytest.approx(printed, abs=1e-6)


def test_while_forgetting_rounding_moves_a_lot_and_our_math_forgets_faster():
    r = RUNS[20.0]
    assert r["theirs"]["2000"] == pytest.approx([0.1218, 0.0721], abs=5e-5)
    assert r["their_math"]["2000"] == pytest.approx([0.1346, 0.0801], abs=5e-5)
    assert r["our_math"]["2000"] == pytest.approx([0.1150, 0.0555], abs=5e-5)
    tests_1000 = [r["theirs"]["1000"][1], r["their_math"]["1000"][1], r["our_math"]["1000"][1]]
    assert tests_1000 == pytest.approx([0.6984, 0.8395, 0.7668], abs=5e-5)
    assert r["our_math"]["2000"][0] < r["their_math"]["2000"][0]
    assert r["our_math"]["1000"][1] < r["their_math"]["1000"][1]
    # our seeds (doshi-wd, own draws) forgot less than any run from their draws, at epoch 2000
    with open(ROOT / "checkpoints" / "sweeps" / "doshi-wd" / "analysis" / "table.csv") as f:
        ours = [float(row["train_acc"]) for row in csv.DictReader(f) if row["weight_decay"] == "20.0"]
    assert sorted(round(a, 3) for a in ours) == [0.164, 0.172]
    assert min(ours) > max(r["their_math"]["2000"][0], r["our_math"]["2000"][0], r["theirs"]["2000"][0])
