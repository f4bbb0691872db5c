"""Phases under noise (interp_grok.analysis.phases): each rule of the decision list on hand-made measures
whose phase is known, transition epochs and settling on trajectories written out by hand."""

from __future__ import annotations

import math

import pytest

from interp_grok.analysis.phases import PHASES, phase_trajectory, run_phases, settled, transition_epochs

NAN = math.nan


@pytest.mark.parametrize("F, M, C, G, phase", [
    (0.5, 0.5, 0.0, 0.1, "confusion"),           # nothing fit yet
    (1.0, 1.0, 0.0, 0.1, "memorization"),        # everything fit, no generalization
    (1.0, 0.2, 0.1, 0.1, "confusion"),           # clean fit, noisy labels not memorized, no generalization
    (1.0, 1.0, 0.0, 0.95, "coexistence"),        # test generalizes, noisy labels kept
    (1.0, 0.0, 1.0, 0.95, "full_inversion"),     # noisy labels predicted as their clean label
    (1.0, 0.5, 0.45, 0.95, "partial_inversion"),
    (1.0, NAN, NAN, 0.95, "generalization"),     # no noisy training label (n = 0)
    (1.0, NAN, NAN, 0.5, "memorization"),
    (0.9, 0.9, 0.0, 0.9, "coexistence"),         # the threshold itself counts as reached
    (0.8999, 0.9, 0.0, 0.9, "confusion"),
])
def test_each_rule_of_the_decision_list(F, M, C, G, phase):
    assert phase_trajectory([F], [M], [C], [G]) == [phase]


def test_forgetting_after_inversion_is_not_memorization():
    """The hole rule v2 closes: doshi-grid xi 0.5, tf 0.7, wd 20 ends at F 0.925, M 0.165, C 0.374,
    G 0.431 after a full inversion; v1 called that memorization without looking at M."""
    F, M, C, G = [0.2, 1.0, 1.0, 0.925], [0.1, 0.0, 0.02, 0.165], [0.0, 1.0, 0.97, 0.374], [0.0, 1.0, 0.99, 0.431]
    assert phase_trajectory(F, M, C, G) == ["confusion", "full_inversion", "full_inversion", "forgetting"]
    assert phase_trajectory(F, M, C, G, rule="v1") == ["confusion", "full_inversion", "full_inversion",
                                                       "memorization"]
    # the two rules differ only where F >= tau, G < tau and M < tau
    assert phase_trajectory([1.0], [0.95], [0.0], [0.2], rule="v1") == phase_trajectory([1.0], [0.95], [0.0], [0.2])
    with pytest.raises(ValueError, match="phase rule"):
        phase_trajectory([1.0], [1.0], [0.0], [0.0], rule="v3")


def test_forgetting_needs_an_earlier_fit():
    F = [0.2, 1.0, 1.0, 0.5, 0.3]
    traj = phase_trajectory(F, [0.1, 1.0, 1.0, 0.1, 0.1], [0.0] * 5, [0.0] * 5)
    assert traj == ["confusion", "memorization", "memorization", "forgetting", "forgetting"]
    assert set(traj) <= set(PHASES)


def test_transition_epochs_of_a_grokking_then_inverting_run():
    epochs = [0, 10, 100, 1000, 2000, 3000, 4000]
    F = [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    M = [0.0, 0.5, 1.0, 1.0, 0.5, 0.05, 0.0]
    C = [0.0, 0.0, 0.0, 0.0, 0.4, 0.92, 0.99]
    G = [0.0, 0.0, 0.1, 0.95, 0.8, 0.97, 0.99]  # crosses at 1000, falls back, stays from 3000
    assert transition_epochs(epochs, F, M, C, G) == {
        "fit_epoch": 100, "grok_epoch": 3000, "inversion_epoch": 3000, "forget_epoch": None}
    traj = phase_trajectory(F, M, C, G)
    assert traj == ["confusion", "confusion", "memorization", "coexistence", "forgetting", "full_inversion",
                    "full_inversion"]  # at 2000 half the noisy labels are lost and the test is: not memorization
    assert phase_trajectory(F, M, C, G, rule="v1")[4] == "memorization"


def test_forget_epoch_and_a_run_that_never_fits():
    epochs = [0, 10, 20, 30]
    assert transition_epochs(epochs, [0.0, 1.0, 0.2, 0.1], [NAN] * 4, [NAN] * 4, [0.0] * 4)["forget_epoch"] == 20
    never = transition_epochs(epochs, [0.1] * 4, [0.1] * 4, [0.0] * 4, [0.0] * 4)
    assert never == {"fit_epoch": None, "grok_epoch": None, "inversion_epoch": None, "forget_epoch": None}


def test_settled_means_the_last_quarter_of_the_epochs():
    epochs = [0, 100, 700, 800, 1000]  # the last quarter is epochs >= 750
    assert settled(epochs, ["confusion", "memorization", "memorization", "coexistence", "coexistence"])
    assert not settled(epochs, ["confusion", "memorization", "memorization", "memorization", "coexistence"])
    assert not settled([], [])


def test_run_phases_reads_progress_rows():
    rows = [{"train_clean_acc": f, "train_noisy_memorized_frac": m, "train_noisy_corrected_frac": c,
             "test_acc_clean": g} for f, m, c, g in [(0.0, 0.0, 0.0, 0.0), (1.0, 1.0, 0.0, 0.0), (1.0, 1.0, 0.0, 1.0)]]
    out = run_phases([0, 50, 100], rows)
    assert out["phases"] == ["confusion", "memorization", "coexistence"] == run_phases([0, 50, 100], rows,
                                                                                        rule="v1")["phases"]
    assert (out["final_phase"], out["settled"], out["fit_epoch"], out["grok_epoch"]) == ("coexistence", True, 50, 100)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="one value per checkpoint"):
        phase_trajectory([1.0, 1.0], [1.0], [0.0], [0.0])
    with pytest.raises(ValueError, match="tau"):
        phase_trajectory([1.0], [1.0], [0.0], [0.0], tau=0.0)


@pytest.mark.parametrize("train, test, phase", [
    (0.98, 0.98, "coexistence"),       # Doshi et al.'s wd = 0 notebook run (xi = 0.35)
    (0.7855, 1.0, "partial_inversion"),  # their wd = 5: 0.70 = 1.05 - 0.35 <= 0.7855 < 0.9
    (0.6537, 1.0, "full_inversion"),   # their wd = 15: below 1.05 - xi
    (1.0, 0.2, "memorization"),
    (0.5, 0.2, "confusion"),
])
def test_doshi_phases_from_their_table(train, test, phase):
    from interp_grok.analysis.phases import doshi_phase_trajectory

    assert doshi_phase_trajectory([train], [test], 0.35) == [phase]


def test_doshi_forgetting_comes_after_another_phase():
    from interp_grok.analysis.phases import doshi_phase_trajectory

    assert doshi_phase_trajectory([0.2, 0.66, 0.12], [0.0, 1.0, 0.07], 0.35) == [
        "confusion", "full_inversion", "forgetting"]  # their wd = 20 run: inverted at 300, lost by 2000


def test_last_quarter_change_reads_the_settling_window():
    """docs/xi1-window.md's stationarity: over the checkpoints at or after 0.75 x the last epoch."""
    from interp_grok.analysis.phases import last_quarter_change

    epochs = [0, 100, 500, 740, 750, 800, 900, 1000]
    flat = last_quarter_change(epochs, [0, 0.1, 0.5, 0.9, 0.90, 0.95, 0.91, 0.91])
    assert flat["delta"] == pytest.approx(0.01) and flat["range"] == pytest.approx(0.05) and flat["stationary"]
    rising = last_quarter_change(epochs, [0, 0, 0, 0, 0.5, 0.6, 0.7, 0.8])
    assert rising["delta"] == pytest.approx(0.3) and not rising["stationary"]
    wobbly = last_quarter_change(epochs, [0, 0, 0, 0, 0.5, 0.6, 0.4, 0.5])  # back where it began, but spread 0.2
    assert wobbly["delta"] == 0.0 and wobbly["range"] == pytest.approx(0.2) and not wobbly["stationary"]
    gone = last_quarter_change(epochs, [0.0] * 4 + [math.nan] * 4)
    assert math.isnan(gone["delta"]) and not gone["stationary"]
    with pytest.raises(ValueError):
        last_quarter_change([0, 1], [0.0])


def test_nanda_phase_epochs_on_curves_with_the_transitions_placed():
    from interp_grok.analysis.phases import nanda_phase_epochs

    epochs = list(range(0, 2100, 100))  # 21 checkpoints
    acc = [0.1, 0.5] + [1.0] * 19  # fit from epoch 200
    # excluded loss falls with the train loss to its minimum at 400, then rises (circuit formation)
    excl = [5.0, 3.0, 1.0, 0.5, 0.2] + [0.3 + 0.1 * i for i in range(16)]
    # test loss rises to 10 by 700, stays near it, then drops below half of 10 at 1200 (cleanup starts)
    test = [4.6, 6.0, 8.0, 9.0, 9.5, 9.8, 9.9, 10.0, 9.9, 9.7, 9.0, 7.0, 4.0, 1.0, 0.1] + [0.01] * 6
    # Σθ² falls from 100 at 1200 to its minimum 20; 90 % of that fall (<= 28) is done at 1500
    sq = [50.0] * 12 + [100.0, 60.0, 35.0, 27.0, 24.0, 22.0, 21.0, 20.5, 20.0]
    got = nanda_phase_epochs(epochs, acc, test, excl, sq)
    assert got == {"memorization_end": 400, "cleanup_start": 1200, "cleanup_end": 1500}
    # NaN excluded losses are skipped; a run whose test loss never halves has no cleanup
    excl_nan = [math.nan if e == 400 else x for e, x in zip(epochs, excl)]
    assert nanda_phase_epochs(epochs, acc, test, excl_nan, sq)["memorization_end"] == 500
    flat = nanda_phase_epochs(epochs, acc, [10.0] * 21, excl, sq)
    assert flat == {"memorization_end": 400, "cleanup_start": None, "cleanup_end": None}
    assert nanda_phase_epochs(epochs, [0.5] * 21, test, excl, sq)["memorization_end"] is None
    with pytest.raises(ValueError, match="one value per checkpoint"):
        nanda_phase_epochs(epochs, acc[:-1], test, excl, sq)


def test_phase_changes_the_first_checkpoint_and_every_change():
    from interp_grok.analysis.phases import phase_changes

    ph = ["confusion", "memorization", "memorization", "forgetting", "memorization"]
    assert phase_changes([0, 10, 20, 30, 40], ph) == [(0, "confusion"), (10, "memorization"), (30, "forgetting"),
                                                      (40, "memorization")]
    assert phase_changes([5, 6], ["confusion", "confusion"]) == [(5, "confusion")]
    assert phase_changes([], []) == []
    with pytest.raises(ValueError, match="one length"):
        phase_changes([0, 1], ["confusion"])


def test_turning_epochs_first_inversion_and_first_return_after_it():
    """docs/turning-trajectories.md's turning: the first checkpoint in partial or full inversion, and
    the first later one in memorization or coexistence; a memorization before the inversion does not
    count, and a trajectory that never inverts or never returns gets None."""
    from interp_grok.analysis.phases import turning_epochs

    ph = ["confusion", "memorization", "full_inversion", "partial_inversion", "coexistence", "memorization"]
    assert turning_epochs([0, 10, 20, 30, 40, 50], ph) == {"inversion_epoch": 20, "back_epoch": 40}
    assert turning_epochs([0, 10, 20], ph[:3]) == {"inversion_epoch": 20, "back_epoch": None}
    assert turning_epochs([0, 10], ["memorization", "coexistence"]) == {"inversion_epoch": None, "back_epoch": None}
    assert turning_epochs([0, 5, 9], ["confusion", "partial_inversion", "forgetting"]) == {
        "inversion_epoch": 5, "back_epoch": None}
    with pytest.raises(ValueError, match="one length"):
        turning_epochs([0, 1], ["confusion"])
