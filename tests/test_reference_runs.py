"""Facts the committed reference runs show, each recomputed here from their weights.

The runs live in checkpoints/ (see checkpoints/README.md for how they were made). Bounds
leave room for float differences on another machine; every number is computed by the
analysis code from the committed safetensors, not copied from a file.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

import interp_grok as ig
from interp_grok.analysis.pipeline import read_analysis

REF = Path(__file__).resolve().parents[1] / "checkpoints"
_spec = importlib.util.spec_from_file_location("build", REF / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)


def _load(n: int) -> ig.Run:
    return ig.load_run(REF / f"n{n}")


def _weights(run: ig.Run, epoch: int) -> dict[str, torch.Tensor]:
    """The exact float32 weights where kept (the final checkpoint), else the compact float16 form."""
    return run.params(epoch) if epoch in run.checkpoint_epochs else run.compact(epoch)


def _measure(run: ig.Run, epoch: int, keys: torch.Tensor) -> dict:
    """Full-grid metrics, spectrum and restricted/excluded loss of one checkpoint."""
    ds, P = run.dataset, _weights(run, epoch)
    m = ig.grid_metrics(P, run.config.act, ds.noisy_labels, ds.clean_labels, ds.train_idx, ds.test_idx)
    L = ig.grid_logits(P, run.config.act)
    N = ig.frequency_norms(P["W_E"])
    found = ig.key_frequencies(N)
    return m | {
        "N": N,
        "key_freqs": found,
        "key_share": (N[found - 1].pow(2).sum() / N.pow(2).sum()).item(),
        "gini": ig.gini(N).item(),
        "full_loss_all": ig.cross_entropy(L.reshape(-1, run.config.p), ds.noisy_labels).item(),
        "restricted": ig.restricted_loss(L, keys, ds.noisy_labels).item(),
        "excluded": ig.excluded_loss(L, keys, ds.noisy_labels, ds.train_idx).item(),
    }


@pytest.mark.parametrize("n", [0, 2, 4, 8])
def test_reference_run_is_a_valid_trimmed_run(n):
    run = _load(n)
    assert run.config.noise_n == n and run.config.p == 97 and run.config.d_mlp == 512
    an = read_analysis(run)
    assert len(an.rows) >= 100  # the analysis of the full run is kept
    # the final checkpoint in full, ~20 compact ones from init to the end, landmarks included
    assert run.checkpoint_epochs == [an.epochs.tolist()[-1]]
    # (chosen by build.py from the version-1 analysis; its excluded-loss landmark used the W_E-norm keys)
    assert 18 <= len(run.compact_epochs) <= 24 and set(run.compact_epochs) <= set(an.epochs.tolist())
    chosen = build.choose_checkpoints(an)
    assert {chosen[k] for k in chosen if k != "mid_circuit_formation"} <= set(run.compact_epochs)
    # re-analyzed at the current version (checkpoints/reanalyze.py): the default key rule, a manifest
    assert an.verified and an.key_freq_source["name"] == "logit_outlier"
    assert {int(r["epoch"]) for r in an.rows if not math.isnan(r["key_fve"])} == set(run.compact_epochs)
    # the stored analysis and the trainer's metrics agree with a recomputation from the weights
    final = run.checkpoint_epochs[-1]
    m = _measure(run, final, an.key_freqs)
    row = an.rows[an.epochs.tolist().index(final)]
    last_eval = run.evals[-1]
    assert last_eval["epoch"] == final
    for k in ("train_loss", "test_loss", "test_acc_clean", "train_noisy_memorized_frac"):
        assert row[k] == pytest.approx(m[k], rel=1e-4, abs=1e-9, nan_ok=True)
        assert (last_eval[k] if last_eval[k] is not None else math.nan) == pytest.approx(
            m[k], rel=1e-4, abs=1e-9, nan_ok=True)
    assert row["restricted_loss"] == pytest.approx(m["restricted"], rel=1e-4, abs=1e-9)


@pytest.mark.parametrize("n", [0, 2, 4, 8])
def test_compact_checkpoints_reproduce_the_analysis_within_float16_precision(n):
    """Every compact checkpoint gives back the measurements the analysis made from the float32
    weights of the full run: test loss, clean test accuracy, Gini (checkpoints/README.md quotes the
    sizes of the differences). The restricted-loss rows at the compact epochs were recomputed from
    the float16 form itself by checkpoints/reanalyze.py, so that check only confirms the re-analysis."""
    run = _load(n)
    an = read_analysis(run)
    epochs = an.epochs.tolist()
    for epoch in run.compact_epochs:
        m = _measure(run, epoch, an.key_freqs)
        row = an.rows[epochs.index(epoch)]
        assert m["test_loss"] == pytest.approx(row["test_loss"], rel=1.5e-3), epoch
        if (n, epoch) == (0, 10_500):  # the largest difference over every compact checkpoint (checkpoints/README.md)
            assert round(abs(m["test_loss"] - row["test_loss"]) / row["test_loss"], 4) == 0.0014
        assert m["train_loss"] == pytest.approx(row["train_loss"], rel=5.5e-4), epoch
        if (n, epoch) == (4, 5_000):  # the largest train-loss difference (checkpoints/README.md)
            assert round(abs(m["train_loss"] - row["train_loss"]) / row["train_loss"], 4) == 0.0005
        assert m["restricted"] == pytest.approx(row["restricted_loss"], rel=2e-3, abs=1e-6), epoch
        assert m["test_acc_clean"] == pytest.approx(row["test_acc_clean"], abs=0.005), epoch
        assert m["gini"] == pytest.approx(row["gini_W_E"], abs=1e-4), epoch


def test_n0_groks_through_four_key_frequencies():
    run = _load(0)
    an = read_analysis(run)
    keys = an.key_freqs
    chosen = build.choose_checkpoints(an) | {"mid_circuit_formation": 3_839}  # as build.py chose it (README)
    init, memorized, mid, general, final = (_measure(run, chosen[k], keys) for k in (
        "init", "end_of_memorization", "mid_circuit_formation", "after_generalization", "final"))
    sq = {r["epoch"]: r["sum_sq_weights"] for r in an.rows}  # Σθ² needs the five weights: from the analysis
    mid["sum_sq_weights"], final["sum_sq_weights"] = sq[chosen["mid_circuit_formation"]], sq[chosen["final"]]
    # the final model is a perfect generalizer with a sparse spectrum
    assert final["test_acc_clean"] == 1.0 and final["train_acc"] == 1.0
    # the W_E-norm rule finds the four frequencies of the embedding; the logit-outlier rule (the
    # analysis' key set) finds them and ten more in the logits
    assert final["key_freqs"].tolist() == [1, 6, 27, 40] and set(final["key_freqs"].tolist()) <= set(keys.tolist())
    assert keys.tolist() == [1, 2, 3, 4, 5, 6, 11, 12, 16, 17, 23, 27, 40, 43]
    assert final["key_share"] > 0.98 and final["gini"] > 0.7
    # restricted loss at most the full loss; removing the key frequencies leaves ~chance
    assert final["restricted"] <= final["full_loss_all"]
    assert final["excluded"] > math.log(97) - 0.5
    # memorization: training set fit, test at chance
    assert memorized["train_acc"] >= 0.99 and memorized["test_acc_clean"] < 0.05
    # the test loss goes on rising after memorization, peaks (19.5 at epoch 1 343) and falls through
    # circuit formation; mid-way it is still above its value at memorization, and the restricted loss
    # already falls
    peak = max(an.rows, key=lambda r: r["test_loss"])
    assert chosen["end_of_memorization"] < peak["epoch"] < chosen["mid_circuit_formation"]
    assert peak["test_loss"] > mid["test_loss"] > memorized["test_loss"]
    assert mid["restricted"] < memorized["restricted"] - 1.0
    assert mid["test_acc_clean"] < 0.01
    # cleanup: weight norm falls by more than half from circuit formation to the end
    assert final["sum_sq_weights"] < 0.5 * mid["sum_sq_weights"]
    assert general["test_acc_clean"] >= 0.95
    # ... and goes on long after generalization: at 10 000 Σθ² is 2 725 and Gini 0.23; they reach
    # 1 581 (within 1 % of the final 1 567) and 0.68 only at 14 000
    gen = {r["epoch"]: r for r in an.rows}[chosen["after_generalization"]]
    assert gen["sum_sq_weights"] > 1.5 * final["sum_sq_weights"] and gen["gini_W_E"] < 0.3 < 0.7 < final["gini"]
    settled = next(r["epoch"] for r in an.rows if all(
        q["sum_sq_weights"] <= 1.01 * final["sum_sq_weights"] for q in an.rows if q["epoch"] >= r["epoch"]))
    assert 13_000 <= settled <= 15_000
    # the stored summary says when: between 9 000 and 11 000 epochs
    assert 9_000 <= an.summary["epoch_test_acc_clean_first_95"] <= 11_000


def _restricted_vs_control(run: ig.Run, epoch: int, keys: torch.Tensor) -> tuple[float, float]:
    """Clean-label accuracy (all pairs) of the restricted logits, and of the same projection of a
    pure lookup table of the noisy training labels (the memorization-only control)."""
    from interp_grok.analysis.circuits import lookup_table_logits, restricted_accuracy

    ds = run.dataset
    logits = ig.grid_logits(run.params(epoch), run.config.act)
    table = lookup_table_logits(run.config.p, ds.train_idx, ds.noisy_labels)
    return (restricted_accuracy(logits, keys, ds.clean_labels),
            restricted_accuracy(table, keys, ds.clean_labels, ties="expected"))


def test_n2_memorizes_every_noisy_label_while_a_low_frequency_circuit_grows():
    run = _load(2)
    an = read_analysis(run)
    final = run.checkpoint_epochs[-1]
    assert final == 40_000  # extended: the clean test accuracy had not settled at 20 000
    m = _measure(run, final, an.key_freqs)
    assert m["train_noisy_memorized_frac"] == 1.0 and m["train_noisy_corrected_frac"] == 0.0
    assert 0.3 < m["test_acc_clean"] < 0.45  # far from generalized ...
    floor = ig.noise_floor(2, 0.5, 97)
    assert m["test_loss"] > 4 * floor["entropy"]  # ... and far from the noise floor
    # the clean test accuracy was still rising between 20 000 and 40 000 epochs
    acc = {r["epoch"]: r["test_acc_clean"] for r in run.evals}
    assert acc[40_000] > acc[20_000] + 0.05
    # three low frequencies stand out (threshold 0.5); the noise-free run uses higher ones too
    assert ig.key_frequencies(m["N"], threshold=0.5).tolist() == [1, 4, 11]
    n0_final = _load(0)
    assert max(ig.key_frequencies(ig.frequency_norms(n0_final.params(20_000)["W_E"]), 0.5).tolist()) > 25
    # projected on those three frequencies, the logits classify clean labels well above what the
    # same projection of a pure lookup table of the noisy labels gets (0.70 vs 0.46 here) ...
    restricted, control = _restricted_vs_control(run, final, torch.tensor([1, 4, 11]))
    assert restricted > control + 0.2
    # ... while over the flat W_E-norm key set, memorization alone explains it (0.77 vs 0.89)
    restricted_flat, control_flat = _restricted_vs_control(run, final, ig.key_frequencies(m["N"]))
    assert restricted_flat < control_flat
    assert an.key_freqs.tolist() == [1, 4, 11]  # the analysis' key set (logit-outlier rule): the three peaks


@pytest.mark.parametrize("n", [4, 8])
def test_n4_n8_memorize_every_noisy_label_and_stay_far_from_the_noise_floor(n):
    run = _load(n)
    an = read_analysis(run)
    final = run.checkpoint_epochs[-1]
    m = _measure(run, final, an.key_freqs)
    floor = ig.noise_floor(n, 0.5, 97)
    # every noisy training label is fit as given, none is corrected, at 40 000 epochs
    assert m["train_noisy_memorized_frac"] == 1.0 and m["train_noisy_corrected_frac"] == 0.0
    assert m["train_clean_acc"] == 1.0
    # test accuracy against the noisy labels is well below what a perfect generalizer gets,
    # and the clean-label accuracy is low but above chance (1/97) and still rising
    assert m["test_acc_noisy"] < floor["p_mode"] - 0.1
    assert 0.1 < m["test_acc_clean"] < 0.25
    assert m["test_loss"] > 4 * floor["entropy"]
    acc = {r["epoch"]: r["test_acc_clean"] for r in run.evals}
    assert acc[40_000] > acc[20_000]
    # the spectrum is not sparse, but what stands out is low frequencies
    assert m["gini"] < 0.2
    peaks = ig.key_frequencies(m["N"], threshold=0.5)
    assert max(peaks.tolist()) <= 11
    # projected on those peaks, the logits beat the memorization-only control
    restricted, control = _restricted_vs_control(run, final, peaks)
    assert restricted > control + 0.1


def test_pruning_low_ipr_neurons_against_a_size_quartile_control():
    """What silencing the non-periodic neurons shows, with its control (docs/findings.md §7): n = 0's
    neurons are single-frequency (all but one). In the noisy n = 4 run, silencing the 479 neurons
    with IPR < 0.5 drops the clean-labelled fit as much as the memorized noisy labels (so it is not
    Doshi et al.'s selective forgetting), the pruned network still predicts the noisy label more
    often than the clean one, and clean test accuracy rises; random sets of 479 neurons with the
    same count per size quartile, which must also take periodic ones, destroy everything."""
    from interp_grok.analysis.neurons import pruning_experiment

    run0 = _load(0)
    curves0 = ig.neuron_curves(run0.params(20_000))
    ipr0 = (ig.ipr(curves0["in_a"]) + ig.ipr(curves0["in_b"])) / 2
    assert int((ipr0 >= 0.99).sum()) >= 510 and (ig.ipr(curves0["out"]) > 0.9).float().mean() > 0.95  # 511 of 512

    run = _load(4)
    ds = run.dataset
    pr = pruning_experiment(run.params(40_000), run.config, ds.noisy_labels, ds.clean_labels, ds.train_idx, ds.test_idx)
    full, cut, ctl = pr["full"], pr["ipr_pruned"], pr["control"]
    assert pr["n_silenced"] == 479
    assert (round(cut["train_clean_acc"], 3), round(cut["train_noisy_memorized_frac"], 3),
            round(cut["train_noisy_corrected_frac"], 3)) == (0.389, 0.317, 0.286)
    assert cut["train_noisy_memorized_frac"] > cut["train_noisy_corrected_frac"]
    assert (round(full["test_acc_clean"], 3), round(cut["test_acc_clean"], 3)) == (0.157, 0.277)
    assert round(ctl["train_noisy_memorized_frac"]["mean"], 3) == 0.067
    assert round(ctl["test_acc_clean"]["mean"], 3) == 0.026
    assert ctl["test_acc_clean"]["max"] < full["test_acc_clean"] < cut["test_acc_clean"]

    # the n = 2 and n = 8 rows of the table in docs/findings.md §7
    for n, want in {2: (464, 0.455, 0.412, 0.643, 0.492, 0.109, 0.054),
                    8: (482, 0.208, 0.149, 0.231, 0.160, 0.050, 0.019)}.items():
        run = _load(n)
        ds = run.dataset
        pr = pruning_experiment(run.params(40_000), run.config, ds.noisy_labels, ds.clean_labels, ds.train_idx,
                                ds.test_idx)
        cut, ctl = pr["ipr_pruned"], pr["control"]
        keys = ("train_noisy_memorized_frac", "train_noisy_corrected_frac", "train_clean_acc", "test_acc_clean")
        got = (pr["n_silenced"], *(round(cut[k], 3) for k in keys),
               round(ctl["train_noisy_memorized_frac"]["mean"], 3), round(ctl["test_acc_clean"]["mean"], 3))
        assert got == want, n


def test_periodic_neurons_are_the_largest_so_ipr_pruning_is_size_pruning():
    """docs/findings.md §7: keeping the K periodic neurons against keeping the K largest ones."""
    from interp_grok.analysis.neurons import size_ranked_pruning

    keys = ("train_noisy_memorized_frac", "train_noisy_corrected_frac", "train_clean_acc", "test_acc_clean")
    want = {2: (48, 47, (0.451, 0.416, 0.658, 0.495)), 4: (33, 27, (0.333, 0.223, 0.381, 0.257)),
            8: (30, 30, (0.208, 0.149, 0.231, 0.160))}
    for n, (k, among, largest) in want.items():
        run = _load(n)
        ds = run.dataset
        sr = size_ranked_pruning(run.params(40_000), run.config, ds.noisy_labels, ds.clean_labels, ds.train_idx,
                                 ds.test_idx)
        assert (sr["n_periodic"], sr["n_periodic_among_largest"]) == (k, among), n
        assert tuple(round(sr["largest_kept"][m], 3) for m in keys) == largest, n
    n0 = _load(0)  # periodic neurons over training: no compact checkpoint between 10 500 and 20 000
    counts = {e: int((ig.neuron_ipr(n0.compact(e)) >= 0.5).sum()) for e in (10_000, 10_500, 20_000)}
    assert counts == {10_000: 83, 10_500: 121, 20_000: 511}
    assert not [e for e in n0.compact_epochs if 10_500 < e < 20_000]


def test_key_share_with_and_without_the_constant_row():
    """summary.json's key_freq_share_of_nonconstant_W_E_norm2 leaves W_E's constant Fourier row out of the
    denominator (docs/measurements.md); n = 0's four W_E-norm key frequencies carry 98.9 % of
    ||W_E||^2 either way, its 14 logit-outlier ones (the analysis' key set) 99.1 %."""
    from interp_grok.analysis.fourier import frequency_norms

    run = _load(0)
    an = read_analysis(run)
    W = run.params(20_000)["W_E"].double()
    N = frequency_norms(W)
    k = an.key_freqs
    share = an.summary["key_freq_share_of_nonconstant_W_E_norm2"]
    assert share == pytest.approx((N[k - 1].pow(2).sum() / N.pow(2).sum()).item())
    whole = (N[k - 1].pow(2).sum() / W.pow(2).sum()).item()
    assert whole < an.summary["key_freq_share_of_nonconstant_W_E_norm2"] and round(whole, 3) == 0.991
    k4 = ig.key_frequencies(N)
    assert k4.tolist() == [1, 6, 27, 40]
    assert round((N[k4 - 1].pow(2).sum() / N.pow(2).sum()).item(), 3) == round(
        (N[k4 - 1].pow(2).sum() / W.pow(2).sum()).item(), 3) == 0.989
    for n in (2, 4, 8):
        run, an = _load(n), read_analysis(_load(n))
        W = run.params(40_000)["W_E"].double()
        N = frequency_norms(W)
        whole_n = (N[an.key_freqs - 1].pow(2).sum() / W.pow(2).sum()).item()
        gap = an.summary["key_freq_share_of_nonconstant_W_E_norm2"] - whole_n
        assert 0 < gap < 2e-4, n


def test_restricted_accuracy_over_the_analysis_key_sets_against_the_control():
    """docs/findings.md §8: the logit-outlier key sets' restricted clean-label accuracy (from the
    compact form of the final checkpoint, as analyses/02 computes it) against the lookup table's;
    the flat key sets' from the compact form and from the exact weights."""
    from interp_grok.analysis.circuits import lookup_table_logits, restricted_accuracy

    got = {}
    for n in (2, 4, 8):
        run = _load(n)
        an, ds = read_analysis(run), run.dataset
        logits = ig.grid_logits(run.compact(40_000), run.config.act)
        table = lookup_table_logits(run.config.p, ds.train_idx, ds.noisy_labels)
        got[n] = (len(an.key_freqs), round(restricted_accuracy(logits, an.key_freqs, ds.clean_labels), 3),
                  round(restricted_accuracy(table, an.key_freqs, ds.clean_labels, ties="expected"), 3))
    assert got == {2: (3, 0.701, 0.464), 4: (10, 0.505, 0.680), 8: (5, 0.402, 0.443)}
    # the flat W_E-norm key sets: from the compact form as in the table, and from the exact float32
    # weights, which differ at n = 4 and 8 by one anti-diagonal of 97 (1/97 = 0.0103)
    flat = {}
    for n in (2, 4, 8):
        run = _load(n)
        an, ds = read_analysis(run), run.dataset
        keys = ig.key_frequencies(an.norms[-1])
        flat[n] = tuple(round(restricted_accuracy(ig.grid_logits(P, run.config.act), keys, ds.clean_labels), 3)
                        for P in (run.compact(40_000), run.params(40_000)))
    assert flat == {2: (0.773, 0.773), 4: (0.557, 0.546), 8: (0.536, 0.546)}


def test_n0_restricted_and_excluded_loss_at_the_kept_checkpoints():
    """docs/findings.md §5, with the analysis' 14 logit-outlier key frequencies (analyses/02 prints them)."""
    an = read_analysis(_load(0))
    rows = {r["epoch"]: r for r in an.rows}
    kept = [e for e, r in rows.items() if not math.isnan(r["excluded_loss"])]
    assert [round(rows[e]["restricted_loss"], 2) for e in (122, 1500)] == [4.37, 3.00]
    assert round(rows[10_000]["restricted_loss"], 4) == 0.0072 and round(rows[10_000]["excluded_loss"], 1) == 2.9
    after = [e for e in kept if e >= 122]
    assert min(after, key=lambda e: rows[e]["excluded_loss"]) == 1500
    assert f"{rows[1500]['excluded_loss']:.2g}" == "6.8e-06"
    assert f"{rows[20_000]['restricted_loss']:.2g}" == "3.1e-07" and round(rows[20_000]["excluded_loss"], 2) == 4.44
    sq = {e: r["sum_sq_weights"] for e, r in rows.items()}  # §5's Σθ² over training
    assert [round(sq[e]) for e in (0, 122, 1000, 9000, 10_000, 14_000, 20_000)] == [
        836, 3374, 5490, 3222, 2725, 1581, 1567]
    assert max(sq, key=sq.get) == 1000
    noisy = {n: read_analysis(_load(n)).rows[-1]["excluded_loss"] for n in (2, 4, 8)}  # §8
    assert [round(noisy[n], 2) for n in (2, 4, 8)] == [1.85, 0.41, 0.14]
