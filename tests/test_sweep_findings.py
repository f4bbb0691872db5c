"""The claims of docs/findings.md §1-§3, asserted on the committed reference sweeps
(checkpoints/sweeps/, analysis-only; analyses/05_phase_diagrams.py prints each number)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from interp_grok import load_sweep
from interp_grok.analysis.phases import doshi_phase_trajectory, run_phases, settled

SWEEPS = Path(__file__).resolve().parents[1] / "checkpoints" / "sweeps"


def rows(sweep: str) -> dict[str, dict]:
    return {r["name"]: r for r in load_sweep(SWEEPS / sweep).rows}


def progress(sweep: str, run: str) -> list[dict]:
    with open(SWEEPS / sweep / "runs" / run / "analysis" / "progress.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def summary(sweep: str, run: str) -> dict:
    return json.loads((SWEEPS / sweep / "runs" / run / "analysis" / "summary.json").read_text())


@pytest.mark.parametrize("sweep", ["n4-xi-wd-lr", "n4-init", "noise-tf", "doshi-wd", "doshi-xi-tf", "doshi-grid"])
def test_the_table_agrees_with_each_runs_progress_csv(sweep):
    """table.csv's phases and final numbers are what the committed per-run files give."""
    for name, r in rows(sweep).items():
        prog = progress(sweep, name)
        ph = run_phases([p["epoch"] for p in prog], prog)
        assert (r["final_phase"], r["settled"], r["grok_epoch"], r["fit_epoch"]) == (
            ph["final_phase"], ph["settled"], ph["grok_epoch"], ph["fit_epoch"]), name
        assert r["test_acc_clean"] == pytest.approx(prog[-1]["test_acc_clean"], abs=1e-12)
        assert r["epochs_trained"] == int(prog[-1]["epoch"])


def test_n4_phase_counts_and_where_noisy_runs_grok():
    t = rows("n4-xi-wd-lr")
    counts = Counter(r["final_phase"] for r in t.values())
    assert counts == {"coexistence": 2, "confusion": 8, "memorization": 13, "partial_inversion": 1}
    generalized = sorted(n for n, r in t.items() if r["test_acc_clean"] >= 0.9)
    # only the smallest noised fraction, only at the larger learning rate, below weight decay 30
    assert generalized == ["xi0.1_lr0.01_wd1", "xi0.1_lr0.01_wd10", "xi0.1_lr0.01_wd3"]
    assert t["xi0.1_lr0.01_wd1"]["final_phase"] == "coexistence" and t["xi0.1_lr0.01_wd1"]["grok_epoch"] == 1103
    assert t["xi0.1_lr0.01_wd3"]["final_phase"] == "coexistence" and t["xi0.1_lr0.01_wd3"]["settled"] is False
    assert t["xi0.1_lr0.01_wd3"]["grok_epoch"] == 1200
    dip = [r for r in progress("n4-xi-wd-lr", "xi0.1_lr0.01_wd3") if r["epoch"] >= 450]
    low = min(dip, key=lambda r: r["test_acc_clean"])
    assert (int(low["epoch"]), round(low["test_acc_clean"], 3), round(low["train_noisy_memorized_frac"], 3)) == (
        1125, 0.841, 0.771)
    assert round(min(r["test_acc_clean"] for r in dip if r is not low), 3) == 0.906
    unmemorized = {int(r["epoch"]): (round(r["train_noisy_memorized_frac"], 3),
                                    round(r["train_noisy_corrected_frac"], 3))
                   for r in dip if r["train_noisy_memorized_frac"] < 0.9}
    assert unmemorized == {1125: (0.771, 0.154), 2400: (0.674, 0.309)}  # 2 400 is in the last quarter (>= 2 250)
    assert next(r["epoch"] for r in progress("n4-xi-wd-lr", "xi0.1_lr0.01_wd3") if r["test_acc_clean"] >= 0.9) == 450
    # every wd = 30 run is in confusion: training fit below 5 %, chance-level clean test accuracy
    for n, r in t.items():
        if r["weight_decay"] == 30:
            assert r["final_phase"] == "confusion" and r["train_clean_acc"] < 0.05 and r["test_acc_clean"] < 0.01, n
    # lr 1e-3, wd 10: xi >= 0.3 on a training-fit plateau (confusion); xi = 0.1 left it and memorizes
    assert [t[f"xi{x}_lr0.001_wd10"]["final_phase"] for x in ("0.1", "0.3", "1")] == [
        "memorization", "confusion", "confusion"]
    p3, p1, p01 = (progress("n4-xi-wd-lr", f"xi{x}_lr0.001_wd10") for x in ("0.3", "1", "0.1"))
    f3 = {int(r["epoch"]): round(r["train_clean_acc"], 3) for r in p3}
    assert (f3[1539], f3[2775], f3[3000]) == (0.627, 0.657, 0.657)
    assert (round(max(r["train_clean_acc"] for r in p1), 3), round(p1[-1]["train_clean_acc"], 3)) == (0.682, 0.676)
    assert next(r["epoch"] for r in p01 if r["train_clean_acc"] >= 0.9) == 1500
    assert round(t["xi0.1_lr0.001_wd10"]["test_acc_clean"], 3) == 0.362
    # lr 1e-3, wd <= 3: nothing generalizes within 3 000 epochs
    assert max(r["test_acc_clean"] for r in t.values() if r["lr"] == 0.001 and r["weight_decay"] <= 3) < 0.0325
    # lr 1e-2 memorizing runs keep >= 98.4 % of their noisy labels; some still moving at the end
    assert min(r["train_noisy_memorized_frac"] for r in t.values()
               if r["lr"] == 0.01 and r["final_phase"] == "memorization") > 0.9835
    g = {int(r["epoch"]): round(r["test_acc_clean"], 3) for r in progress("n4-xi-wd-lr", "xi0.3_lr0.01_wd1")}
    assert (g[1500], g[2250], g[3000]) == (0.303, 0.388, 0.435)
    # the confusion runs' key sets: 0-3 frequencies that explain almost nothing
    conf = [r for r in t.values() if r["final_phase"] == "confusion"]
    assert sorted(r["n_key_freqs"] for r in conf) == [0, 1, 1, 1, 2, 2, 2, 3]
    assert round(max(r["key_fve"] for r in conf), 5) == 0.00011
    # clean test accuracy of the memorizing lr 1e-2 runs falls with xi at every wd < 30
    for wd in (1, 3, 10):
        acc = [t[f"xi{x}_lr0.01_wd{wd}"]["test_acc_clean"] for x in ("0.1", "0.3", "1")]
        assert acc[0] > acc[1] > acc[2], wd
    assert round(t["xi0.3_lr0.01_wd3"]["test_acc_clean"], 3) == 0.780
    assert round(t["xi1_lr0.01_wd3"]["test_acc_clean"], 3) == 0.294


def test_the_one_inversion_is_transient():
    prog = progress("n4-xi-wd-lr", "xi0.1_lr0.01_wd10")
    best = max(prog, key=lambda r: r["train_noisy_corrected_frac"])
    assert (int(best["epoch"]), round(best["train_noisy_corrected_frac"], 3)) == (300, 0.829)
    assert round(best["train_noisy_memorized_frac"], 3) == 0.154 and best["test_acc_clean"] > 0.98
    last = prog[-1]
    assert (round(last["train_noisy_memorized_frac"], 3), round(last["train_noisy_corrected_frac"], 3)) == (0.703,
                                                                                                           0.229)
    assert last["train_clean_acc"] == 1.0 and round(last["test_acc_clean"], 3) == 0.978
    late = [r["train_noisy_memorized_frac"] for r in prog if r["epoch"] >= 675]
    assert (round(min(late), 3), round(max(late), 3)) == (0.663, 0.760)
    # it generalized before it fit the training set: no fit epoch (F and M >= 0.9 never together)
    assert rows("n4-xi-wd-lr")["xi0.1_lr0.01_wd10"]["fit_epoch"] is None
    before = [r for r in prog if r["epoch"] < 290]
    assert round(max(r["train_clean_acc"] for r in before), 3) == 0.867
    assert round(max(r["train_noisy_memorized_frac"] for r in before), 3) == 0.834
    ph = run_phases([r["epoch"] for r in prog], prog)["phases"]
    assert {p for p, r in zip(ph, prog) if r["epoch"] >= 290} == {"partial_inversion"}
    # by Doshi et al.'s own rule it is coexistence throughout (train accuracy never below 1.05 - xi)
    doshi = doshi_phase_trajectory([r["train_acc"] for r in prog], [r["test_acc_clean"] for r in prog], 0.1)
    assert {p for p, r in zip(doshi, prog) if r["epoch"] >= 290} == {"coexistence"}
    assert round(min(r["train_acc"] for r in prog if r["epoch"] >= 290), 3) == 0.947
    assert min(r["train_clean_acc"] for r in prog if r["epoch"] >= 290) >= 0.9996
    assert round(min(r["test_acc_clean"] for r in prog if r["epoch"] >= 290), 3) == 0.974
    assert round(prog[-1]["train_acc"], 3) == 0.982


def test_memorized_noisy_labels_live_outside_the_key_subspace():
    f = progress("n4-xi-wd-lr", "xi0.1_lr0.01_wd1")[-1]
    # restricted logits (key sum components only) fit the clean labels, of noisy examples too ...
    assert f["restricted_loss_train_clean"] < 1e-5 and f["restricted_loss_train_noisy_vs_clean"] < 1e-5
    assert f["restricted_loss_train_noisy"] > 15  # ... and not the noisy labels
    # the rest of the logits carries the noisy labels, not the clean ones
    assert f["excluded_loss_train_noisy"] < 0.4 and f["excluded_loss_train_clean"] > 6.9
    assert f["excluded_loss_train_noisy_vs_clean"] > 30
    assert round(f["key_fve"], 3) == 0.894
    f3 = progress("n4-xi-wd-lr", "xi0.1_lr0.01_wd3")[-1]  # less cleanly at wd 3
    assert (f"{f3['restricted_loss_train_clean']:.2g}", round(f3["restricted_loss_train_noisy"], 1),
            f"{f3['restricted_loss_train_noisy_vs_clean']:.2g}") == ("0.00036", 10.2, "0.00057")
    assert (round(f3["excluded_loss_train_clean"], 2), round(f3["excluded_loss_train_noisy"], 3),
            round(f3["excluded_loss_train_noisy_vs_clean"])) == (5.49, 0.718, 18)
    f10 = progress("n4-xi-wd-lr", "xi0.1_lr0.01_wd10")[-1]  # not at wd 10: excluded logits near chance
    assert (round(f10["restricted_loss_train_clean"], 3), round(f10["restricted_loss_train_noisy"], 1),
            round(f10["restricted_loss_train_noisy_vs_clean"], 3)) == (0.166, 3.6, 0.193)
    assert (round(f10["excluded_loss_train_clean"], 2), round(f10["excluded_loss_train_noisy"], 1),
            round(f10["excluded_loss_train_noisy_vs_clean"], 2)) == (4.75, 3.8, 7.58)
    assert [rows("n4-xi-wd-lr")[f"xi0.1_lr0.01_wd{w}"]["n_key_freqs"] for w in (1, 3, 10)] == [12, 13, 13]


def test_pruning_low_ipr_neurons_against_the_control():
    pr = summary("n4-xi-wd-lr", "xi0.1_lr0.01_wd1")["pruning"]
    assert pr["n_silenced"] == 268
    cut, ctl = pr["ipr_pruned"], pr["control"]
    assert round(cut["train_noisy_memorized_frac"], 3) == 0.880
    assert round(ctl["train_noisy_memorized_frac"]["mean"], 3) == 0.964
    assert round(ctl["train_noisy_memorized_frac"]["sd"], 3) == 0.020
    assert cut["train_noisy_memorized_frac"] < ctl["train_noisy_memorized_frac"]["min"]
    assert cut["train_clean_acc"] == 1.0 and cut["test_acc_clean"] > pr["full"]["test_acc_clean"]
    # in the wd = 3 coexistence run nearly every neuron is periodic: pruning has nothing to remove
    assert summary("n4-xi-wd-lr", "xi0.1_lr0.01_wd3")["pruning"]["n_silenced"] == 3
    assert summary("n4-xi-wd-lr", "xi0.1_lr0.01_wd10")["pruning"]["n_silenced"] == 0
    assert round(cut["test_acc_clean"], 3) == 0.991 and round(ctl["test_acc_clean"]["mean"], 3) == 0.986


def test_init_scale_changes_no_phase():
    t = rows("n4-init")
    assert {r["final_phase"] for r in t.values()} == {"memorization"}
    assert [round(t[f"xi0.3_a{a}"]["test_acc_clean"], 3) for a in ("0.5", "1", "2")] == [0.543, 0.435, 0.590]
    assert [round(t[f"xi1_a{a}"]["test_acc_clean"], 3) for a in ("0.5", "1", "2")] == [0.085, 0.171, 0.177]
    for a, (mid, end) in {"0.5": (0.390, 0.543), "2": (0.512, 0.590)}.items():  # still rising at 3 000
        g = {int(r["epoch"]): round(r["test_acc_clean"], 3) for r in progress("n4-init", f"xi0.3_a{a}")}
        assert (g[2250], g[3000]) == (mid, end)
    # over alpha = 0.5, 1, 2: no monotone order at xi = 0.3, increasing at xi = 1
    g03, g1 = ([t[f"xi{x}_a{a}"]["test_acc_clean"] for a in ("0.5", "1", "2")] for x in ("0.3", "1"))
    assert g03 != sorted(g03) and g03 != sorted(g03, reverse=True) and g1 == sorted(g1)


def test_xi1_window_gives_a_seed_spread_at_n4():
    """findings §3 and Caveats: xi1-window (n = 4, xi = 1, lr 1e-2, tf 0.3 and 0.7) has two model seeds
    per weight decay; its seed-0 wd-10 run repeats n4-xi-wd-lr's xi1_lr0.01_wd10."""
    a = {int(r["epoch"]): r for r in progress("n4-xi-wd-lr", "xi1_lr0.01_wd10")}
    b = {int(r["epoch"]): r for r in progress("xi1-window", "tf0.3_s0_wd10")}
    common = sorted(set(a) & set(b))
    assert len(common) == 10 and common[-1] == 3000
    assert all(a[e][k] == b[e][k] for e in common for k in ("test_acc_clean", "train_acc"))
    gap3, gap_end = {}, {}
    for wd in (5, 10, 11, 12, 13, 14, 15, 20):
        p0, p1 = (progress("xi1-window", f"tf0.3_s{s}_wd{wd}") for s in (0, 1))
        g3 = [next(r["test_acc_clean"] for r in p if r["epoch"] == 3000) for p in (p0, p1)]
        gap3[wd], gap_end[wd] = abs(g3[0] - g3[1]), abs(p0[-1]["test_acc_clean"] - p1[-1]["test_acc_clean"])
        if wd == 10:
            assert [round(g, 3) for g in g3] == [0.169, 0.297]
            assert [round(p[-1]["test_acc_clean"], 3) for p in (p0, p1)] == [0.171, 0.311]
    assert (round(max(gap3.values()), 3), max(gap3, key=gap3.get)) == (0.128, 10)
    assert (round(max(gap_end.values()), 3), max(gap_end, key=gap_end.get)) == (0.140, 10)
    # at training fraction 0.7 the seeds differ more: up to 0.318 (wd 15) at 3 000 and at 20 000
    gap3, gap_end = {}, {}
    for wd in (5, 10, 11, 12, 13, 14, 15, 20):
        p0, p1 = (progress("xi1-window", f"tf0.7_s{s}_wd{wd}") for s in (0, 1))
        g3 = [next(r["test_acc_clean"] for r in p if r["epoch"] == 3000) for p in (p0, p1)]
        gap3[wd], gap_end[wd] = abs(g3[0] - g3[1]), abs(p0[-1]["test_acc_clean"] - p1[-1]["test_acc_clean"])
    assert (round(max(gap3.values()), 3), max(gap3, key=gap3.get)) == (0.318, 15)
    assert (round(max(gap_end.values()), 3), max(gap_end, key=gap_end.get)) == (0.318, 15)
    # and at xi = 0.1, wd 10: n4-xi0.1-lr1e-2-wd10's two seeds differ by 0.037 at 3 000 and 0.029 at 20 000
    p0, p1 = (progress("n4-xi0.1-lr1e-2-wd10", f"s{s}") for s in (0, 1))
    g3 = [next(r["test_acc_clean"] for r in p if r["epoch"] == 3000) for p in (p0, p1)]
    assert round(abs(g3[0] - g3[1]), 3) == 0.037
    assert round(abs(p0[-1]["test_acc_clean"] - p1[-1]["test_acc_clean"]), 3) == 0.029


def test_key_rule_picks_few_frequencies_on_noisy_runs():
    counts = sorted(r["n_key_freqs"] for r in rows("n4-xi-wd-lr").values())
    assert min(counts) == 0 and max(counts) == 13  # the old rule gave 44-48 of 48 on noisy runs
    assert counts[len(counts) // 2] == 5


def test_noise_tf_no_noisy_run_generalizes_and_n0_groks_sooner_with_more_data():
    t = rows("noise-tf")
    assert {r["final_phase"] for r in t.values() if r["noise_n"] == 0} == {"generalization"}
    assert {r["final_phase"] for r in t.values() if r["noise_n"] > 0} == {"memorization"}
    grok = {(r["train_frac"], r["seed"]): r["grok_epoch"] for r in t.values() if r["noise_n"] == 0}
    assert grok == {(0.3, 0): 10000, (0.3, 1): 8750, (0.5, 0): 1468, (0.5, 1): 1468, (0.7, 0): 681, (0.7, 1): 500}
    assert round(t["n0_tf0.3_s0"]["test_acc_clean"], 3) == 0.960
    assert [t[f"n0_tf0.3_s{s}"]["settled"] for s in (0, 1)] == [False, False]
    for r in t.values():
        if r["noise_n"] > 0:
            assert r["train_noisy_memorized_frac"] == 1.0 and r["train_noisy_corrected_frac"] == 0.0, r["name"]
    acc = {(r["noise_n"], r["train_frac"], r["seed"]): round(r["test_acc_clean"], 3) for r in t.values()}
    assert [acc[(2, tf, s)] for tf in (0.3, 0.5, 0.7) for s in (0, 1)] == [0.055, 0.023, 0.402, 0.380, 0.440, 0.522]
    assert [acc[(4, tf, s)] for tf in (0.3, 0.5, 0.7) for s in (0, 1)] == [0.079, 0.029, 0.204, 0.234, 0.258, 0.294]
    assert [acc[(8, tf, s)] for tf in (0.3, 0.5, 0.7) for s in (0, 1)] == [0.058, 0.012, 0.170, 0.134, 0.187, 0.236]
    assert max(abs(acc[(n, tf, 0)] - acc[(n, tf, 1)]) for n in (2, 4, 8) for tf in (0.3, 0.5, 0.7)) < 0.085


def test_noisy_runs_predict_the_noise_distribution_on_test_pairs():
    from interp_grok import noise_pmf

    t = rows("noise-tf")
    kl = {(r["noise_n"], r["train_frac"], r["seed"]): r["shift_kl"] for r in t.values() if r["noise_n"] > 0}
    low = [v for (n, tf, s), v in kl.items() if tf == 0.3]
    high = [v for (n, tf, s), v in kl.items() if tf == 0.7]
    assert (round(min(low), 1), round(max(low), 1)) == (6.9, 12.6)
    assert (round(min(high), 2), round(max(high), 2)) == (0.10, 1.26)
    clean_kl = {n: -noise_pmf(n, 0.5, 97)[0].log().item() for n in (2, 4, 8)}
    assert [round(clean_kl[n], 3) for n in (2, 4, 8)] == [0.693, 0.981, 1.297]
    for n in (2, 4, 8):  # KL falls with the training fraction for every n and seed
        for s in (0, 1):
            assert kl[(n, 0.3, s)] > kl[(n, 0.5, s)] > kl[(n, 0.7, s)], (n, s)
    noisy_acc = [round(t[f"n2_tf0.7_s{s}"]["test_acc_noisy"], 3) for s in (0, 1)]
    assert noisy_acc == [0.357, 0.370]  # always predicting a + b would score P(X = 0) = 0.5
    w4 = [round(t[f"n4_tf0.7_s{s}"]["shift_within1"], 2) for s in (0, 1)]
    assert w4 == [0.69, 0.78]
    pmf4 = noise_pmf(4, 0.5, 97)
    assert round((pmf4[0] + pmf4[1] + pmf4[-1]).item(), 3) == 0.875  # P(|X| <= 1) at n = 4
    w = {s: t[f"n2_tf0.7_s{s}"]["shift_within1"] for s in (0, 1)}
    assert (round(w[0], 3), round(w[1], 3)) == (0.947, 0.971)
    assert round(t["n2_tf0.7_s1"]["shift_kl"], 3) == 0.350


def test_the_noised_fraction_at_xi_0_1():
    assert round(rows("n4-xi-wd-lr")["xi0.1_lr0.01_wd1"]["noisy_train_frac"], 3) == 0.062


def test_doshi_et_al_published_runs_reproduce():
    """docs/reproductions.md: their four notebook runs (xi 0.35, train fraction 0.5), ours at the same epochs."""
    from interp_grok.analysis.phases import doshi_phase_trajectory

    published = {(0, 1000): (0.9783163, 0.9829968, "coexistence"), (5, 500): (0.7855017, 1.0, "partial_inversion"),
                 (15, 500): (0.6536990, 1.0, "full_inversion"), (20, 300): (0.6563, 1.0, "full_inversion"),
                 (20, 2000): (0.1218, 0.0721, "forgetting")}
    gaps = {}
    for (wd, epoch), (train, test, phase) in published.items():
        for seed in (0, 1):
            prog = [r for r in progress("doshi-wd", f"s{seed}_wd{wd}") if r["epoch"] <= epoch]
            assert int(prog[-1]["epoch"]) == epoch
            ph = doshi_phase_trajectory([r["train_acc"] for r in prog], [r["test_acc_clean"] for r in prog], 0.35)
            assert ph[-1] == phase, (wd, epoch, seed)
            gaps.setdefault((wd, epoch), []).append((abs(prog[-1]["train_acc"] - train),
                                                     abs(prog[-1]["test_acc_clean"] - test)))
    assert max(max(g) for g in gaps[(0, 1000)]) < 0.0041
    assert max(g[0] for g in gaps[(15, 500)]) < 0.0003
    assert max(g[0] for g in gaps[(20, 2000)]) == pytest.approx(0.0502, abs=1e-4)
    assert max(g[1] for g in gaps[(20, 2000)]) == pytest.approx(0.0310, abs=1e-4)
    t = rows("doshi-wd")
    assert {(r["weight_decay"], r["doshi_phase"]) for r in t.values()} == {
        (0, "coexistence"), (5, "partial_inversion"), (15, "full_inversion"), (20, "forgetting")}
    assert all(r["doshi_phase"] == r["final_phase"] for r in t.values())
    assert {round(t[f"s{s}_wd15"]["train_acc"], 4) for s in (0, 1)} == {0.6535}  # ceiling (1 - xi) + xi / p
    assert [round(t[f"s{s}_wd0"]["train_noisy_memorized_frac"], 3) for s in (0, 1)] == [0.945, 0.946]
    assert [round(t[f"s{s}_wd5"]["train_noisy_corrected_frac"], 3) for s in (0, 1)] == [0.667, 0.648]
    for s, (start, end) in {0: (256, 22.0), 1: (282, 25.8)}.items():  # wd 20: the weights decay towards zero
        prog = progress("doshi-wd", f"s{s}_wd20")
        ssq = {int(r["epoch"]): r["sum_sq_weights"] for r in prog}
        assert (round(ssq[300]), round(ssq[2000], 1)) == (start, end)


def test_doshi_phase_diagram_slice():
    """docs/reproductions.md: a 3 x 3 slice of their (xi, training fraction) diagram at wd 5 and 15, ours."""
    t = rows("doshi-xi-tf")
    counts = Counter(r["doshi_phase"] for r in t.values())
    assert counts == {"full_inversion": 9, "coexistence": 4, "partial_inversion": 3, "memorization": 2}
    mem = sorted(n for n, r in t.items() if r["doshi_phase"] == "memorization")
    assert mem == ["xi0.5_tf0.3_wd15", "xi0.5_tf0.3_wd5"]
    assert [round(t[n]["test_acc_clean"], 3) for n in ("xi0.5_tf0.3_wd5", "xi0.5_tf0.3_wd15")] == [0.010, 0.007]
    full_02 = [r for r in t.values() if r["noise_frac"] == 0.2 and r["doshi_phase"] == "full_inversion"]
    assert len(full_02) == 5 and {round(r["train_acc"], 3) for r in full_02} == {0.802}
    wd15 = {(r["train_frac"], r["noise_frac"]): r["doshi_phase"] for r in t.values() if r["weight_decay"] == 15}
    assert [k for k, v in wd15.items() if k[0] >= 0.5 and v != "full_inversion"] == [(0.5, 0.5)]
    assert wd15[(0.5, 0.5)] == "partial_inversion"
    differ = sorted(n for n, r in t.items() if r["doshi_phase"] != r["final_phase"])
    assert differ == ["xi0.2_tf0.3_wd5", "xi0.35_tf0.3_wd15"]
    assert [round(t[n]["train_acc"], 3) for n in differ] == [0.967, 0.930]


GENERALIZING = ("coexistence", "partial_inversion", "full_inversion")


def test_doshi_grid_is_every_fourth_point_of_their_axes():
    axes = json.loads((SWEEPS / "doshi-grid" / "sweep.json").read_text())["axes"]
    theirs = [round(0.1 + 0.05 * i, 2) for i in range(17)][::4]  # numpy.linspace(0.1, 0.9, 17)[::4]
    assert axes["noise_frac"] == axes["train_frac"] == theirs
    assert axes["weight_decay"] == [0.0, 5.0, 15.0, 20.0] and axes["epochs"] == [2000]


def test_doshi_grid_checks_fixed_beforehand():
    """docs/reproductions.md, 'Their phase diagram (Fig. 3(a))': the counts and the four checks."""
    t = rows("doshi-grid")
    assert len(t) == 100
    count = {wd: {} for wd in (0.0, 5.0, 15.0, 20.0)}
    for r in t.values():
        c = count[r["weight_decay"]]
        c[r["doshi_phase"]] = c.get(r["doshi_phase"], 0) + 1
    assert count == {
        0.0: {"coexistence": 5, "partial_inversion": 3, "memorization": 17},
        5.0: {"coexistence": 6, "partial_inversion": 1, "full_inversion": 4, "memorization": 14},
        15.0: {"coexistence": 4, "partial_inversion": 1, "full_inversion": 6, "memorization": 14},
        20.0: {"memorization": 16, "forgetting": 9},
    }
    n_gen = [sum(count[wd].get(ph, 0) for ph in GENERALIZING) for wd in (0.0, 5.0, 15.0, 20.0)]
    n_inv = [count[wd].get("partial_inversion", 0) + count[wd].get("full_inversion", 0) for wd in (0.0, 5.0, 15.0)]
    assert n_gen == [8, 11, 11, 0] and n_inv == [3, 5, 7]  # check 1
    assert n_gen[0] <= n_gen[1] <= n_gen[2] and n_inv[0] < n_inv[1] < n_inv[2]
    partial0 = sorted((r["train_frac"], r["noise_frac"]) for r in t.values()
                      if r["weight_decay"] == 0 and r["doshi_phase"] == "partial_inversion")
    assert partial0 == [(0.7, 0.3), (0.9, 0.3), (0.9, 0.5)]  # check 3
    forgot = {(r["train_frac"], r["noise_frac"]): n for n, r in t.items() if r["doshi_phase"] == "forgetting"}
    assert all(t[n]["weight_decay"] == 20 for n in forgot.values())  # check 4
    expected = [(tf, 0.1) for tf in (0.3, 0.5, 0.7, 0.9)] + [(tf, 0.3) for tf in (0.5, 0.7, 0.9)]
    assert sorted(forgot) == sorted(expected + [(tf, 0.5) for tf in (0.7, 0.9)])
    best_before = [max(p["test_acc_clean"] for p in progress("doshi-grid", n)[:-1]) for n in forgot.values()]
    assert round(min(best_before), 3) == 0.996
    unsettled = []
    for n, r in t.items():  # the table's phase is their rule over the committed history
        prog = progress("doshi-grid", n)
        ph = doshi_phase_trajectory([p["train_acc"] for p in prog], [p["test_acc_clean"] for p in prog],
                                    r["noise_frac"])
        assert ph[-1] == r["doshi_phase"], n
        if not settled([p["epoch"] for p in prog], ph):
            unsettled.append(n)
    assert unsettled == ["xi0.3_tf0.3_wd15"] and t["xi0.3_tf0.3_wd15"]["doshi_phase"] == "full_inversion"


def test_doshi_grid_other_observations():
    t = rows("doshi-grid")
    assert sum(r["doshi_phase"] == "memorization" for r in t.values()) == 61
    edge = [r for r in t.values() if r["noise_frac"] >= 0.7 or r["train_frac"] == 0.1]
    assert len(edge) == 52 and all(r["doshi_phase"] == "memorization" for r in edge)
    gen = {(r["weight_decay"], r["noise_frac"], r["train_frac"]): r["doshi_phase"] in GENERALIZING for r in t.values()}
    tfs = (0.1, 0.3, 0.5, 0.7, 0.9)
    for wd, lowest in ((0.0, 0.5), (5.0, 0.3), (15.0, 0.3)):
        assert all(gen[wd, xi, hi] for (w, xi, lo), g in gen.items() if w == wd and g for hi in tfs if hi > lo)
        assert min(tf for (w, _, tf), g in gen.items() if w == wd and g) == lowest
    assert not any(g for (w, _, _), g in gen.items() if w == 20)
    # their rule calls the xi 0.1 full inversions coexistence: train above 0.9, every corrupted label corrected
    hidden = [r for r in t.values()
              if r["noise_frac"] == 0.1 and r["weight_decay"] in (5, 15) and r["train_frac"] >= 0.3]
    assert len(hidden) == 8
    assert all(r["doshi_phase"] == "coexistence" and r["final_phase"] == "full_inversion" for r in hidden)
    train = [r["train_acc"] for r in hidden]
    assert (round(min(train), 4), round(max(train), 4)) == (0.9008, 0.9011)
    assert min(r["train_noisy_corrected_frac"] for r in hidden) >= 0.996
    assert sum(r["doshi_phase"] != r["final_phase"] for r in t.values()) == 13


def test_doshi_grid_repeats_doshi_xi_tf_exactly():
    """Six cells of doshi-grid were trained a session earlier in doshi-xi-tf: the same numbers at
    every checkpoint (their final weights were bit-identical before trimming)."""
    shared = [f"xi0.5_tf{tf}_wd{wd}" for tf in (0.3, 0.5, 0.7) for wd in (5, 15)]
    for n in shared:
        a = (SWEEPS / "doshi-grid" / "runs" / n / "analysis" / "progress.csv").read_bytes()
        assert a == (SWEEPS / "doshi-xi-tf" / "runs" / n / "analysis" / "progress.csv").read_bytes(), n
    cfg = [json.loads((SWEEPS / s / "runs" / "xi0.5_tf0.5_wd5" / "config.json").read_text())
           for s in ("doshi-grid", "doshi-xi-tf")]
    assert cfg[0]["provenance"]["git_commit"] != cfg[1]["provenance"]["git_commit"]


ALL_SWEEPS = ("noise-tf", "n4-xi-wd-lr", "n4-init", "doshi-wd", "doshi-xi-tf", "doshi-grid")


def test_phase_rule_v2_against_v1_on_every_sweep():
    """docs/measurements.md#phases: v2 calls memorization only with M >= 0.9; what that changed."""
    moved = {}
    for sweep in ALL_SWEEPS:
        for name, r in rows(sweep).items():
            prog = progress(sweep, name)
            old = run_phases([p["epoch"] for p in prog], prog, rule="v1")["final_phase"]
            if old != r["final_phase"]:
                moved[(sweep, name)] = (old, r["final_phase"], r["settled"])
    assert moved == {("doshi-grid", "xi0.3_tf0.3_wd20"): ("memorization", "forgetting", False),
                     ("doshi-grid", "xi0.5_tf0.7_wd20"): ("memorization", "forgetting", True)}
    assert Counter(r["final_phase"] for r in rows("doshi-grid").values()) == {
        "coexistence": 4, "forgetting": 10, "full_inversion": 17, "memorization": 60, "partial_inversion": 9}
    last = progress("doshi-grid", "xi0.5_tf0.7_wd20")[-1]
    assert [round(last[k], 3) for k in ("train_clean_acc", "train_noisy_memorized_frac", "train_noisy_corrected_frac",
                                        "test_acc_clean")] == [0.925, 0.165, 0.374, 0.431]
    assert round(progress("doshi-grid", "xi0.3_tf0.3_wd20")[-1]["train_noisy_memorized_frac"], 3) == 0.837
    grid = rows("doshi-grid")  # against their rule: v2 agrees on the first, disagrees on the second
    assert [grid[n]["doshi_phase"] for n in ("xi0.5_tf0.7_wd20", "xi0.3_tf0.3_wd20")] == ["forgetting", "memorization"]
    # the second keeps training accuracy above 0.9 with M below it: v2 is stricter than their rule
    prog = progress("doshi-grid", "xi0.3_tf0.3_wd20")
    assert (round(prog[-1]["train_acc"], 3), round(prog[-1]["test_acc_clean"], 3)) == (0.951, 0.525)
    ph = run_phases([p["epoch"] for p in prog], prog)
    dips = [(int(p["epoch"]), q) for p, q in zip(prog, ph["phases"])
            if p["epoch"] > ph["fit_epoch"] and p["train_noisy_memorized_frac"] < 0.9]
    assert [e for e, _ in dips] == [700, 750, 800, 1850, 1950, 2000] and {q for _, q in dips} == {"forgetting"}
    assert round(next(p["train_noisy_memorized_frac"] for p in prog if p["epoch"] == 700), 3) == 0.889
    assert all(p["train_noisy_memorized_frac"] >= 0.9 for p in prog if 850 <= p["epoch"] <= 1800)


def test_corrected_statements_of_section_2():
    p01 = progress("n4-xi-wd-lr", "xi0.1_lr0.001_wd10")
    at = {int(r["epoch"]): r for r in p01}
    assert (round(at[1500]["train_clean_acc"], 3), round(at[1500]["train_noisy_memorized_frac"], 3)) == (0.922, 0.657)
    assert next(int(r["epoch"]) for r in p01 if r["train_clean_acc"] >= 0.9
                and r["train_noisy_memorized_frac"] >= 0.9) == 2250
    assert round(p01[-1]["train_noisy_memorized_frac"], 3) == 0.954
    inv = {int(r["epoch"]): r for r in progress("n4-xi-wd-lr", "xi0.1_lr0.01_wd10")}
    assert round(max(r["train_noisy_memorized_frac"] for r in inv.values()), 3) == 0.834  # never 0.9
    assert (round(inv[225]["train_clean_acc"], 3), round(inv[225]["test_acc_clean"], 3)) == (0.867, 0.008)
    assert (round(inv[290]["train_clean_acc"], 3), round(inv[290]["test_acc_clean"], 3)) == (1.0, 0.978)
    # their rule cannot show inversion here: a full inversion keeps training accuracy 1 - 0.062 >= 0.9
    frac = rows("n4-xi-wd-lr")["xi0.1_lr0.01_wd10"]["noisy_train_frac"]
    assert round(1 - frac, 3) == 0.938
    assert doshi_phase_trajectory([1 - frac], [1.0], 0.1) == ["coexistence"]


def test_lowest_shift_kl_and_init_scale_spread():
    t = rows("noise-tf")
    noisy = [r for r in t.values() if r["noise_n"] > 0]
    low = min(noisy, key=lambda r: r["shift_kl"])
    assert len(noisy) == 18 and low["name"] == "n8_tf0.7_s1" and round(low["shift_kl"], 2) == 0.10
    i = rows("n4-init")
    span = {xi: max(r["test_acc_clean"] for r in i.values() if r["noise_frac"] == xi)
            - min(r["test_acc_clean"] for r in i.values() if r["noise_frac"] == xi) for xi in (0.3, 1.0)}
    assert (round(span[0.3], 3), round(span[1.0], 3)) == (0.155, 0.092)


def test_pruning_by_ipr_against_keeping_the_largest_neurons():
    """findings §4: the wd 1 coexistence run's final weights (compact float16, kept for this check)."""
    from interp_grok import rundir
    from interp_grok.analysis.neurons import size_ranked_pruning
    from interp_grok.data import make_dataset

    wd1 = SWEEPS / "n4-xi-wd-lr" / "runs" / "xi0.1_lr0.01_wd1"
    cfg, _ = rundir.read_config(wd1)
    ds = make_dataset(cfg)
    _, P = rundir.read_compact(rundir.compact_path(wd1, 3000), cfg.p, cfg.d_model, cfg.d_mlp)
    sr = size_ranked_pruning(P, cfg, ds.noisy_labels, ds.clean_labels, ds.train_idx, ds.test_idx)
    committed = summary("n4-xi-wd-lr", "xi0.1_lr0.01_wd1")["pruning"]
    for k in ("full", "ipr_pruned"):  # the kept weights give back the committed analysis's numbers
        for m, v in committed[k].items():
            assert sr[k][m] == pytest.approx(v, abs=0.0016), (k, m)
    assert (sr["n_periodic"], sr["n_periodic_among_largest"]) == (244, 218)
    assert round(sr["largest_kept"]["train_noisy_memorized_frac"], 3) == 0.949
    assert round(sr["largest_kept"]["test_acc_clean"], 3) == 0.990 and sr["largest_kept"]["train_clean_acc"] == 1.0
    assert sr["ipr_pruned"]["train_noisy_memorized_frac"] < sr["largest_kept"]["train_noisy_memorized_frac"]
    n_noisy = int((ds.noisy_labels != ds.clean_labels)[ds.train_idx].sum())
    kept = {k: round(sr[k]["train_noisy_memorized_frac"] * n_noisy) for k in ("ipr_pruned", "largest_kept")}
    assert (n_noisy, kept["ipr_pruned"], kept["largest_kept"]) == (175, 154, 166)  # a gap of 12 examples


def test_the_quartile_control_is_biased_against_the_claim_and_a_close_size_match_agrees():
    """findings §4: the committed control matches size quartiles only; the low-IPR neurons are the
    smaller ones, so its draws silence more total size. Bins of 4 neurons adjacent in size match it."""
    import torch

    from interp_grok import rundir
    from interp_grok.analysis.neurons import neuron_ipr, neuron_sizes, norm_matched_controls, pruning_experiment
    from interp_grok.data import make_dataset

    wd1 = SWEEPS / "n4-xi-wd-lr" / "runs" / "xi0.1_lr0.01_wd1"
    cfg, _ = rundir.read_config(wd1)
    ds = make_dataset(cfg)
    _, P = rundir.read_compact(rundir.compact_path(wd1, 3000), cfg.p, cfg.d_model, cfg.d_mlp)
    sizes, low = neuron_sizes(P), neuron_ipr(P) < 0.5
    rank = torch.empty(512, dtype=torch.int64)
    rank[torch.argsort(sizes, stable=True)] = torch.arange(512)
    assert [int((low & (rank * 4 // 512 == b)).sum()) for b in (3, 2, 1, 0)] == [0, 34, 110, 124]
    total = sizes[low].sum().item()
    quartile = [sizes[d].sum().item() for d in norm_matched_controls(sizes, low, n_bins=4)]
    close = [sizes[d].sum().item() for d in norm_matched_controls(sizes, low, n_bins=128)]
    assert (round(total), round(min(quartile)), round(max(quartile))) == (1657, 1957, 2172)
    assert (round(min(close)), round(max(close))) == (1654, 1659)
    committed = summary("n4-xi-wd-lr", "xi0.1_lr0.01_wd1")["pruning"]["control"]["train_noisy_memorized_frac"]
    q = pruning_experiment(P, cfg, ds.noisy_labels, ds.clean_labels, ds.train_idx, ds.test_idx, n_bins=4)
    assert q["control"]["train_noisy_memorized_frac"]["mean"] == pytest.approx(committed["mean"], abs=0.0016)
    pe = pruning_experiment(P, cfg, ds.noisy_labels, ds.clean_labels, ds.train_idx, ds.test_idx, n_bins=128)
    mem = pe["control"]["train_noisy_memorized_frac"]
    assert (round(mem["mean"], 3), round(mem["min"], 3), round(mem["max"], 3)) == (0.939, 0.914, 0.954)
    assert round(pe["control"]["test_acc_clean"]["mean"], 3) == 0.990 and pe["control"]["train_clean_acc"]["min"] == 1.0
    cut = pe["ipr_pruned"]["train_noisy_memorized_frac"]
    assert cut < mem["min"]  # still below every draw ...
    assert (round((mem["mean"] - cut) * 175), round((mem["min"] - cut) * 175)) == (10, 6)  # ... by 10 (6) of 175


def test_trajectories_that_invert_and_memorize_again():
    found, top_c, last_g, partial_only = {}, {}, {}, {}
    for sweep in ("doshi-grid", "n4-xi-wd-lr"):
        for name in rows(sweep):
            prog = progress(sweep, name)
            ph = run_phases([p["epoch"] for p in prog], prog)["phases"]
            top = max(prog, key=lambda p: p["train_noisy_corrected_frac"])
            back = prog[-1]["train_noisy_memorized_frac"] - top["train_noisy_memorized_frac"]
            if back > 0.1 and prog[-1]["test_acc_clean"] >= 0.9:
                if "full_inversion" in ph or name == "xi0.1_lr0.01_wd10":
                    found[name] = (int(top["epoch"]), round(prog[-1]["train_noisy_memorized_frac"], 3))
                    top_c[name], last_g[name] = top["train_noisy_corrected_frac"], prog[-1]["test_acc_clean"]
                elif top["train_noisy_corrected_frac"] >= 0.5:  # turning back from a partial inversion
                    partial_only[name] = (int(top["epoch"]), round(top["train_noisy_corrected_frac"], 3),
                                          round(prog[-1]["train_noisy_memorized_frac"], 3))
    assert found == {"xi0.1_tf0.5_wd0": (100, 0.974), "xi0.1_tf0.7_wd0": (50, 0.778), "xi0.1_tf0.9_wd0": (50, 0.503),
                     "xi0.3_tf0.7_wd0": (122, 0.530), "xi0.3_tf0.9_wd0": (81, 0.229),
                     "xi0.1_lr0.01_wd10": (300, 0.703)}
    wd0 = [n for n in found if n.endswith("_wd0")]
    assert (round(min(top_c[n] for n in wd0), 3), round(max(top_c[n] for n in wd0), 3)) == (0.950, 1.0)
    assert min(last_g[n] for n in wd0) >= 0.94
    assert partial_only == {"xi0.5_tf0.9_wd0": (200, 0.673, 0.515)}


def test_xi_1_runs_keep_only_low_key_frequencies():
    """findings: the largest key frequency by noise level (outside confusion) and the label damping there."""
    import math

    top: dict = {}
    for sweep in ("noise-tf", "n4-xi-wd-lr", "n4-init"):
        for r in rows(sweep).values():
            if r["final_phase"] != "confusion" and r["key_freqs"]:
                key = (r.get("noise_n", 4), r.get("noise_frac", 1.0))
                top[key] = max(top.get(key, 0), max(int(k) for k in str(r["key_freqs"]).split()))
    assert top == {(0, 1.0): 48, (2, 1.0): 26, (4, 0.1): 47, (4, 0.3): 47, (4, 1.0): 18, (8, 1.0): 16}
    damp = {n: math.cos(math.pi * top[(n, 1.0)] / 97) ** n for n in (2, 4, 8)}
    assert [round(damp[n], 3) for n in (2, 4, 8)] == [0.443, 0.486, 0.324]
    # xi1-window (n = 4, xi = 1; not in the count above) goes higher, outside confusion too
    xi1 = {r["name"]: r for r in load_sweep(SWEEPS / "xi1-window").rows if r["state"] == "done"}
    top_xi1 = {n: max(int(k) for k in str(r["key_freqs"]).split()) for n, r in xi1.items() if r["key_freqs"]}
    outside = {n: k for n, k in top_xi1.items() if xi1[n]["final_phase"] != "confusion"}
    assert max(outside.values()) == 21 and [n for n, k in outside.items() if k > 18] == ["tf0.3_s1_wd10"]
    assert round(math.cos(math.pi * 21 / 97) ** 4, 3) == 0.365
    assert top_xi1["tf0.3_s0_wd20"] == 34 and xi1["tf0.3_s0_wd20"]["final_phase"] == "confusion"
    assert max(top_xi1, key=top_xi1.get) == "tf0.7_s1_wd20" and max(top_xi1.values()) == 36
    assert xi1["tf0.7_s1_wd20"]["final_phase"] == "confusion"


def test_noisy_labels_are_fit_no_later_than_clean_ones():
    import math

    order = Counter()
    for sweep in ("noise-tf", "n4-xi-wd-lr", "n4-init"):
        for name in rows(sweep):
            prog = progress(sweep, name)
            if math.isnan(prog[-1]["train_noisy_memorized_frac"]):
                continue
            m = next((p["epoch"] for p in prog if p["train_noisy_memorized_frac"] >= 0.5), None)
            f = next((p["epoch"] for p in prog if p["train_clean_acc"] >= 0.5), None)
            if m is not None and f is not None:
                order["noisy first" if m < f else "same" if m == f else "clean first"] += 1
    assert order == {"noisy first": 14, "same": 28}
    # not in every sweep: the other sweeps' finished runs where the clean-labelled half came first
    later, never = {}, {}
    for sweep in ("xi1-window", "doshi-grid", "doshi-wd", "doshi-xi-tf"):
        for r in load_sweep(SWEEPS / sweep).rows:
            if r.get("state", "done") != "done":
                continue
            prog = progress(sweep, r["name"])
            if math.isnan(prog[-1]["train_noisy_memorized_frac"]):
                continue
            m = next((p["epoch"] for p in prog if p["train_noisy_memorized_frac"] >= 0.5), None)
            f = next((p["epoch"] for p in prog if p["train_clean_acc"] >= 0.5), None)
            if m is not None and f is not None and m > f:
                later[(sweep, r["name"])] = (int(m), int(f))
            if m is None and f is not None:  # half the clean labels fit, half the noisy ones never memorized
                never[(sweep, r["name"])] = (int(f), round(max(p["train_noisy_memorized_frac"] for p in prog), 3))
    assert later == {("xi1-window", "tf0.3_s0_wd14"): (4460, 3839), ("doshi-grid", "xi0.9_tf0.1_wd20"): (2, 1),
                     ("doshi-grid", "xi0.9_tf0.9_wd0"): (16, 11)}
    assert never == {("doshi-grid", "xi0.1_tf0.7_wd20"): (25, 0.476), ("doshi-grid", "xi0.1_tf0.9_wd20"): (25, 0.364),
                     ("doshi-grid", "xi0.3_tf0.9_wd20"): (37, 0.447), ("xi1-window", "tf0.7_s1_wd11"): (164, 0.486),
                     ("xi1-window", "tf0.7_s1_wd15"): (1156, 0.282)}


def test_repeated_settings_reproduce():
    same_cols = ("train_loss", "test_loss", "test_acc_noisy", "test_acc_clean", "train_acc", "train_clean_acc",
                 "train_noisy_memorized_frac", "train_noisy_corrected_frac", "sum_sq_weights", "gini_W_E")
    for a, b in (("n4-init/runs/xi0.3_a1", "n4-xi-wd-lr/runs/xi0.3_lr0.01_wd1"),
                 ("n4-init/runs/xi1_a1", "n4-xi-wd-lr/runs/xi1_lr0.01_wd1")):
        assert (SWEEPS / a / "analysis" / "progress.csv").read_bytes() == (
            SWEEPS / b / "analysis" / "progress.csv").read_bytes()
    pa = {int(r["epoch"]): r for r in progress("n4-xi-wd-lr", "xi1_lr0.001_wd1")}
    pb = {int(r["epoch"]): r for r in progress("noise-tf", "n4_tf0.3_s0")}
    common = sorted(set(pa) & set(pb))
    assert len(common) == 11 and all(pa[e][k] == pb[e][k] for e in common for k in same_cols)
    diffs = []
    for n in (0, 2, 4, 8):  # against the reference runs (other commit, other session): close, not identical
        ref = SWEEPS.parent / f"n{n}" / "analysis" / "progress.csv"
        with open(ref) as f:
            pr = {int(r["epoch"]): {k: float(v) for k, v in r.items()} for r in csv.DictReader(f)}
        ps = {int(r["epoch"]): r for r in progress("noise-tf", f"n{n}_tf0.3_s0")}
        common = sorted(set(pr) & set(ps))
        assert len(common) == 28 and common[-1] == 10000
        diffs.append(max(abs(pr[e]["test_acc_clean"] - ps[e]["test_acc_clean"]) for e in common))
        assert all(pr[e]["train_acc"] == ps[e]["train_acc"] for e in common), n  # training accuracy: identical
    assert [round(d, 4) for d in diffs] == [0.0038, 0.0026, 0.0014, 0.0017]
