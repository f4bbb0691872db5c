"""Phases of learning under label noise: a label per checkpoint, transition epochs, a final phase.

Doshi et al. (2024, "To grok or not to grok", science.md §8) name the phases of a network trained
on corrupted labels from its train and test accuracy with 90 % thresholds. Here they are adapted
to additive noise and read from four measures the analysis already has at every checkpoint
(progress.csv columns, each a fraction whose best achievable value is 1 whatever the noise):

    F = train_clean_acc             clean-labelled training examples (X = 0) predicted as labelled
    M = train_noisy_memorized_frac  noisy-labelled training examples (X != 0) predicted as labelled
    C = train_noisy_corrected_frac  noisy-labelled training examples predicted as their clean label
    G = test_acc_clean              test pairs predicted as a + b

Because each is a fraction of its own group, the thresholds need no correction for the noise
level: Doshi et al.'s "training accuracy about 1 - corrupted fraction" (full inversion) is F = 1
and C = 1 here, whatever the noisy fraction. The decision list, with tau = PHASE_THRESHOLD, is

    F < tau                       forgetting if an earlier checkpoint had a phase other than
                                  confusion or forgetting, else confusion
    else G < tau and M >= tau     memorization      (every group of training labels fit)
    else G < tau                  forgetting or confusion, as in the first line (the noisy labels
                                  are neither memorized nor is the test generalized)
    else no noisy training label  generalization (noise-free: Liu et al.'s comprehension)
    else M >= tau                 coexistence       (clean test generalizes, noisy labels kept)
    else C >= tau                 full inversion    (noisy labels predicted as their clean label)
    else                          partial inversion

where "M >= tau" holds when there is no noisy training label (M is NaN: F is then the whole
training fit). That is rule "v2" (DEFAULT_PHASE_RULE). Rule "v1", the one fixed before the sweeps
were first analyzed, read "G < tau: memorization" without looking at M, so a network that had
inverted and then lost its test accuracy (clean labels still fit, noisy ones neither memorized nor
corrected) was called memorization; it stays selectable (``rule="v1"``) to compare with. Under v1,
where every checkpoint with F >= tau gets another phase, "an earlier phase other than confusion or
forgetting" is v1's "F >= tau at an earlier checkpoint".

A run's transition epochs are read off its trajectory (see ``transition_epochs``), and its final
phase counts as settled when every checkpoint in the last SETTLE_FRACTION of its epochs has it.
Thresholds and the settling window were fixed before any sweep was looked at. Pure functions on
tensors; docs/measurements.md#phases gives the reasoning.
"""

from __future__ import annotations

import math

import torch

PHASE_THRESHOLD = 0.9  # Doshi et al.'s 90 %
SETTLE_FRACTION = 0.25  # the final phase must hold over the last quarter of the epochs
PHASES = ("confusion", "forgetting", "memorization", "generalization", "coexistence", "partial_inversion",
          "full_inversion")
MEASURES = ("train_clean_acc", "train_noisy_memorized_frac", "train_noisy_corrected_frac", "test_acc_clean")
TRANSITIONS = ("fit_epoch", "grok_epoch", "inversion_epoch", "forget_epoch")
# "v2": memorization needs M >= tau (default); "v1": the first rule, which did not look at M there
PHASE_RULES = ("v2", "v1")
DEFAULT_PHASE_RULE = "v2"

__all__ = ["DEFAULT_PHASE_RULE", "MEASURES", "PHASES", "PHASE_RULES", "PHASE_THRESHOLD", "SETTLE_FRACTION",
           "STATIONARY_DELTA", "STATIONARY_RANGE", "TRANSITIONS", "doshi_phase_trajectory", "last_quarter_change",
           "nanda_phase_epochs", "phase_trajectory",
           "phase_changes", "run_phases", "settled", "transition_epochs", "turning_epochs"]


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64).flatten()


def _check_rule(rule: str) -> None:
    if rule not in PHASE_RULES:
        raise ValueError(f"phase rule must be one of {', '.join(PHASE_RULES)} (got {rule!r})")


def phase_trajectory(clean_fit, memorized, corrected, test_clean, tau: float = PHASE_THRESHOLD,
                     rule: str = DEFAULT_PHASE_RULE) -> list[str]:
    """The phase at each checkpoint from the four measures (each [T], in checkpoint order).

    ``memorized`` and ``corrected`` are NaN where a run has no noisy training label (n = 0 or
    xi = 0): its generalizing checkpoints are "generalization". ``rule``: "v2" (default) or
    "v1" (memorization whenever F >= tau and G < tau; see the module docstring).
    """
    _check_rule(rule)
    F, M, C, G = (_f64(x) for x in (clean_fit, memorized, corrected, test_clean))
    if not F.shape == M.shape == C.shape == G.shape:
        raise ValueError(f"the four measures need one value per checkpoint; got shapes "
                         f"{[list(x.shape) for x in (F, M, C, G)]}")
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must be in (0, 1] (got {tau})")
    out, was_other = [], False  # was_other: an earlier checkpoint in a phase other than these two
    for f, m, c, g in zip(F.tolist(), M.tolist(), C.tolist(), G.tolist()):
        lost = "forgetting" if was_other else "confusion"
        if not f >= tau:  # NaN F (no clean-labelled example) counts as not fit
            out.append(lost)
            continue
        if not g >= tau:
            memorized = rule == "v1" or math.isnan(m) or m >= tau
            out.append("memorization" if memorized else lost)
        elif math.isnan(m):
            out.append("generalization")
        elif m >= tau:
            out.append("coexistence")
        elif c >= tau:
            out.append("full_inversion")
        else:
            out.append("partial_inversion")
        was_other = was_other or out[-1] not in ("confusion", "forgetting")
    return out


def _first_from(epochs: list[int], holds: list[bool]) -> int | None:
    """The first epoch from which ``holds`` is true at every later checkpoint (None: not at the end)."""
    if not holds or not holds[-1]:
        return None
    i = len(holds) - 1
    while i > 0 and holds[i - 1]:
        i -= 1
    return epochs[i]


def transition_epochs(epochs, clean_fit, memorized, corrected, test_clean,
                      tau: float = PHASE_THRESHOLD) -> dict[str, int | None]:
    """The epochs where a run enters its phases (None where it never does).

    fit_epoch        first checkpoint fitting the training labels: F >= tau and, where there are
                     noisy labels, M >= tau (Doshi et al.'s memorization; a first crossing)
    grok_epoch       first checkpoint from which G >= tau holds at every later one
    inversion_epoch  first checkpoint from which C >= tau (and F >= tau) holds at every later one
    forget_epoch     first checkpoint from which F < tau holds at every later one, after fit_epoch

    "From which it holds" rather than a first crossing, so a run that crosses and falls back
    has no grok epoch yet; a run whose condition holds at the last checkpoint has one.
    """
    e = [int(x) for x in _f64(epochs).tolist()]
    F, M, C, G = (_f64(x).tolist() for x in (clean_fit, memorized, corrected, test_clean))
    fit = next((ep for ep, f, m in zip(e, F, M) if f >= tau and (math.isnan(m) or m >= tau)), None)
    forget = None
    if fit is not None:
        after = [ep >= fit for ep in e]
        start = after.index(True)
        forget = _first_from(e[start:], [not f >= tau for f in F[start:]])
    return {
        "fit_epoch": fit,
        "grok_epoch": _first_from(e, [g >= tau for g in G]),
        "inversion_epoch": _first_from(e, [c >= tau and f >= tau for c, f in zip(C, F)]),
        "forget_epoch": forget,
    }


def settled(epochs, phases: list[str], fraction: float = SETTLE_FRACTION) -> bool:
    """Whether the final phase holds at every checkpoint in the last ``fraction`` of the epochs."""
    e = _f64(epochs).tolist()
    if not phases:
        return False
    start = e[-1] * (1.0 - fraction)
    return all(ph == phases[-1] for ep, ph in zip(e, phases) if ep >= start)


# docs/xi1-window.md's readout, fixed before its runs were analyzed: a column is stationary over the
# last quarter when it moved by at most STATIONARY_DELTA from its start and spanned at most STATIONARY_RANGE
STATIONARY_DELTA = 0.02
STATIONARY_RANGE = 0.05


def last_quarter_change(epochs, values, fraction: float = SETTLE_FRACTION) -> dict[str, float | bool]:
    """How a column moved over the last ``fraction`` of the epochs (the window ``settled`` reads):
    ``delta`` = its final value minus its value at the first checkpoint of the window, ``range`` =
    max - min over the window's checkpoints, ``stationary`` = |delta| <= STATIONARY_DELTA and
    range <= STATIONARY_RANGE. NaN values are skipped; all NaN gives NaN and not stationary."""
    e, v = _f64(epochs).tolist(), _f64(values).tolist()
    if len(e) != len(v) or not e:
        raise ValueError(f"epochs and values must be non-empty and of one length (got {len(e)} and {len(v)})")
    start = e[-1] * (1.0 - fraction)
    window = [x for ep, x in zip(e, v) if ep >= start and not math.isnan(x)]
    if not window:
        return {"delta": math.nan, "range": math.nan, "stationary": False}
    delta, span = window[-1] - window[0], max(window) - min(window)
    return {"delta": delta, "range": span,
            "stationary": abs(delta) <= STATIONARY_DELTA and span <= STATIONARY_RANGE}


INVERTED = ("partial_inversion", "full_inversion")
TURNED_BACK = ("memorization", "coexistence")


def phase_changes(epochs, phases: list[str]) -> list[tuple[int, str]]:
    """A trajectory's path through the phases: (epoch, phase) at the first checkpoint and at every
    checkpoint whose phase differs from the one before."""
    e = [int(x) for x in _f64(epochs).tolist()]
    if len(e) != len(phases):
        raise ValueError(f"epochs and phases must be of one length (got {len(e)} and {len(phases)})")
    return [(e[i], q) for i, q in enumerate(phases) if i == 0 or q != phases[i - 1]]


def turning_epochs(epochs, phases: list[str]) -> dict[str, int | None]:
    """Where a trajectory inverts and turns back (docs/turning-trajectories.md): ``inversion_epoch``,
    the first checkpoint in partial or full inversion, and ``back_epoch``, the first later checkpoint
    in memorization or coexistence (the noisy labels memorized again); None where there is none."""
    e = [int(x) for x in _f64(epochs).tolist()]
    if len(e) != len(phases):
        raise ValueError(f"epochs and phases must be of one length (got {len(e)} and {len(phases)})")
    inv = next((i for i, q in enumerate(phases) if q in INVERTED), None)
    back = None if inv is None else next((i for i in range(inv + 1, len(e)) if phases[i] in TURNED_BACK), None)
    return {"inversion_epoch": None if inv is None else e[inv], "back_epoch": None if back is None else e[back]}


def run_phases(epochs, rows: list[dict], tau: float = PHASE_THRESHOLD, rule: str = DEFAULT_PHASE_RULE) -> dict:
    """Phase trajectory, final phase, whether it settled and the transition epochs of one run,
    from its progress.csv rows (``Analysis.rows``) at ``epochs``, by phase rule ``rule``."""
    cols = [[r[k] for r in rows] for k in MEASURES]
    traj = phase_trajectory(*cols, tau=tau, rule=rule)
    return {
        "phases": traj,
        "final_phase": traj[-1] if traj else None,
        "settled": settled(epochs, traj),
        **transition_epochs(epochs, *cols, tau=tau),
    }


def doshi_phase_trajectory(train_acc, test_acc, noise_frac: float, tau: float = PHASE_THRESHOLD) -> list[str]:
    """Doshi et al.'s own phases (their Appendix C, Table 2), from the training accuracy against
    the given (corrupted) labels and the test accuracy, for a corrupted fraction xi = noise_frac:

        test >= tau, train >= tau                      coexistence
        test >= tau, 1.05 - xi <= train < tau          partial_inversion
        test >= tau, train < 1.05 - xi                 full_inversion
        test < tau,  train >= tau                      memorization
        test < tau,  train < tau                       forgetting after any checkpoint in another
                                                       phase, else confusion (their text tells the
                                                       two apart by the dynamics only)

    For comparing with their published phases; ``phase_trajectory`` is this project's definition
    (group fractions, which need no correction for the noisy fraction).
    """
    tr, te = _f64(train_acc).tolist(), _f64(test_acc).tolist()
    if len(tr) != len(te):
        raise ValueError(f"train and test accuracy need one value per checkpoint; got {len(tr)} and {len(te)}")
    out, was_other = [], False
    for a, g in zip(tr, te):
        if g >= tau:
            ph = "coexistence" if a >= tau else "partial_inversion" if a >= 1.05 - noise_frac else "full_inversion"
        elif a >= tau:
            ph = "memorization"
        else:
            ph = "forgetting" if was_other else "confusion"
        was_other = was_other or ph not in ("confusion", "forgetting")
        out.append(ph)
    return out


# Nanda et al.'s three phases of grokking, as epochs: this project's operational reading of their
# §5.2 descriptions, fixed (docs/reproductions.md) before the transformer reproduction runs were analyzed
MEMORIZED_ACC = 0.99  # "the training set is fit": landmarks' memorized
CLEANUP_DROP = 0.5  # cleanup starts when the test loss has fallen to this share of its maximum since
NORM_FALL_DONE = 0.9  # cleanup ends when Σθ² has made this share of its fall from cleanup's start to its minimum


def nanda_phase_epochs(epochs, train_acc, test_loss, excluded_loss, sum_sq_weights) -> dict[str, int | None]:
    """The epochs that bound Nanda et al.'s (2023, §5.2) phases, read off a run's checkpoints:

    memorization_end  the checkpoint of the smallest excluded loss at or after the first one with
                      train accuracy >= MEMORIZED_ACC (their memorization: train and excluded loss
                      fall together; circuit formation: the excluded loss rises). Also where
                      circuit formation starts.
    cleanup_start     the first checkpoint after memorization_end whose test loss is at most
                      CLEANUP_DROP x the largest test loss since memorization_end (their cleanup:
                      the test loss suddenly drops). Also where circuit formation ends.
    cleanup_end       the first checkpoint at or after cleanup_start whose Σθ² has made NORM_FALL_DONE
                      of its fall from its value at cleanup_start to its minimum over the rest of
                      the run (their cleanup: Σθ² sharply drops; after it, little changes).

    None where the run never gets there; NaN excluded losses (not measured) are skipped. The
    epochs are checkpoint epochs: their resolution is the checkpoint spacing.
    Known answer: tests/test_phases.py builds curves with the three transitions placed by hand.
    """
    e = [int(x) for x in _f64(epochs).tolist()]
    acc, test, excl, sq = (_f64(x).tolist() for x in (train_acc, test_loss, excluded_loss, sum_sq_weights))
    if not len(e) == len(acc) == len(test) == len(excl) == len(sq):
        raise ValueError("epochs and the four columns need one value per checkpoint")
    out: dict[str, int | None] = {"memorization_end": None, "cleanup_start": None, "cleanup_end": None}
    fit = next((i for i, a in enumerate(acc) if a >= MEMORIZED_ACC), None)
    if fit is None:
        return out
    measured = [i for i in range(fit, len(e)) if not math.isnan(excl[i])]
    if not measured:
        return out
    m = min(measured, key=lambda i: excl[i])  # the first of equal minima
    out["memorization_end"] = e[m]
    peak = test[m]
    c = None
    for i in range(m + 1, len(e)):
        peak = max(peak, test[i])
        if test[i] <= CLEANUP_DROP * peak:
            c = i
            break
    if c is None:
        return out
    out["cleanup_start"] = e[c]
    low = min(sq[c:])
    bound = low + (1.0 - NORM_FALL_DONE) * (sq[c] - low)
    out["cleanup_end"] = e[next(i for i in range(c, len(e)) if sq[i] <= bound)]
    return out
