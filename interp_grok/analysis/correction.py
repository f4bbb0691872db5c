"""The label audit of a run at one checkpoint, and correct-and-resume (science.md §12, Ashraf 2026).

``audit_checkpoint`` scores every training example at a checkpoint (audit.audit_scores: loss,
margin, first-fit epoch, disagreement of the restricted prediction with the given label) and
tabulates precision and recall of each score at a list of budgets. ``relabel_run`` turns an
audit into an intervention: the top-B examples by one score get the circuit's label (the
argmax of the restricted logits at that checkpoint), written as a new ordinary run directory
that ``train.resume`` (`interp-grok train --resume`) continues:

- mode "continue": the new run starts at the parent's checkpoint epoch E with its weights;
  its own history (metrics.jsonl, checkpoints) begins at E. The optimizer is fresh ("reset":
  zero AdamW moments, step 0 at E) unless the parent's saved train state sits at E ("keep":
  its moments, bit-identical to resuming the parent when nothing is relabelled).
- mode "scratch": the new run starts at epoch 0 from the parent's initialization (same seed)
  on the corrected labels: retraining from scratch.

Budget 0 relabels nothing, which makes the controls: "continue" at budget 0 is the parent
continued unchanged (under the same optimizer policy), "scratch" at budget 0 is the parent
itself, retrained.

The new run records where it came from in config.json's provenance (rundir.PARENT:
the parent's path, config and checkpoint sha256, the epoch, the score, budget, key
frequencies, the audit's precision at that budget, the optimizer policy) and the relabelling
itself, example by example, in dataset.safetensors (relabel_idx: pair index a * p + b;
relabel_old, relabel_new: the labels before and after; its noise already gives the new labels).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import rundir
from ..data import Dataset, centered
from ..evaluation import evaluate
from ..models import family
from ..train import TrainError, check_out_dir, provenance, trained_threads
from .audit import AUDIT_SCORES, audit_budgets, audit_curve, audit_scores, audit_table, flag
from .circuits import logit_frequency_power, logit_key_frequencies, project_sum_frequencies
from .memorization import example_stats, first_fit_epoch

RELABEL_MODES = ("continue", "scratch")
ADAM_STATE_POLICIES = ("reset", "keep")
BEST = "best"  # relabel by the score with the highest audit precision at the budget (an oracle choice)


@dataclass
class Audit:
    """The label audit of one checkpoint (n_train training examples, in train_idx order)."""

    epoch: int
    key_freqs: torch.Tensor  # int64, 1-based: the frequencies the restricted logits keep
    key_freq_source: str  # "user", or the rule that chose them at this checkpoint
    given: torch.Tensor  # int64 [n_train]: the labels trained on
    is_noisy: torch.Tensor  # bool [n_train]: given label != clean label
    restricted_pred: torch.Tensor  # int64 [n_train]: the circuit's label (argmax of the restricted logits)
    scores: dict[str, torch.Tensor]  # audit.audit_scores, float64 [n_train] each
    budgets: torch.Tensor  # int64
    rows: list[dict] = field(default_factory=list)  # audit.audit_table

    def precision(self, score: str, budget: int) -> float:
        return audit_curve(self.scores[score], self.is_noisy, torch.tensor([budget]))["precision"][0].item()


def first_fit_upto(run: rundir.Run, epoch: int) -> tuple[torch.Tensor, str]:
    """(first-fit epoch per training example, where it came from), using only checkpoints up to
    ``epoch``: from the run's stored analysis when it holds at least every such checkpoint on disk
    (a trimmed run keeps its analysis' rows of checkpoints no longer there), else from the
    checkpoints on disk (train_fit_history)."""
    from .pipeline import read_analysis  # pipeline imports this module: read lazily

    on_disk = [e for e in run.checkpoint_epochs if e <= epoch]
    try:
        an = read_analysis(run)
    except rundir.RunDirError:
        an = None
    if an is not None:
        upto = an.epochs <= epoch
        if set(on_disk) <= set(an.epochs[upto].tolist()):
            fit = an.memo["pred"][upto].to(torch.int64) == run.dataset.noisy_labels[run.dataset.train_idx]
            return first_fit_epoch(fit, an.epochs[upto]), f"analysis ({int(upto.sum())} checkpoints)"
    epochs, fit = train_fit_history(run, epoch)
    return first_fit_epoch(fit, epochs), f"checkpoints on disk ({len(on_disk)})"


def train_fit_history(run: rundir.Run, upto: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(epochs int64 [T], fit bool [T, n_train]): whether each training example's given label is
    the prediction, at every checkpoint on disk up to ``upto``."""
    fam, ds = family(run.config), run.dataset
    tr = ds.train_idx
    a, b, y = tr // run.config.p, tr % run.config.p, ds.noisy_labels[tr]
    epochs = [e for e in run.checkpoint_epochs if e <= upto]
    with torch.no_grad():
        fit = [fam.logits(run.params(e), a, b, run.config).argmax(-1) == y for e in epochs]
    return torch.tensor(epochs, dtype=torch.int64), torch.stack(fit)


@torch.no_grad()
def audit_checkpoint(run: rundir.Run, epoch: int, *, key_freqs: torch.Tensor | list[int] | None = None,
                     first_fit: torch.Tensor | None = None, budgets: torch.Tensor | None = None) -> Audit:
    """Audit the training labels at checkpoint ``epoch``.

    key_freqs: the restricted logits' frequencies; None chooses them at this checkpoint by the
    logit-outlier rule (circuits.logit_key_frequencies, the analysis' default rule), so that an
    audit at epoch E uses nothing from after E. first_fit: per training example (as
    memorization.first_fit_epoch); None computes it from the checkpoints on disk up to ``epoch``
    (on a trimmed run pass first_fit_upto's, which reads the stored analysis).
    budgets: None gives audit.audit_budgets.
    """
    if epoch not in run.checkpoint_epochs:
        on_disk = run.checkpoint_epochs
        raise rundir.RunDirError(f"{run.path}: no checkpoint at epoch {epoch} (checkpoints: {on_disk[0]}.."
                                 f"{on_disk[-1]}, {len(on_disk)} on disk)" if on_disk
                                 else f"{run.path}: no checkpoints on disk")
    ds, p = run.dataset, run.config.p
    tr = ds.train_idx
    logits = family(run.config).grid_logits(run.params(epoch), run.config)
    if key_freqs is None:
        keys, source = logit_key_frequencies(logit_frequency_power(logits)), f"logit_outlier at epoch {epoch}"
    else:
        keys, source = torch.as_tensor(key_freqs, dtype=torch.int64), "user"
    flat = logits.reshape(p * p, p)
    restricted = (project_sum_frequencies(logits, keys).reshape(p * p, p) + flat.to(torch.float64).mean(0))[tr]
    given = ds.noisy_labels[tr]
    stats = example_stats(flat[tr], given, ds.clean_labels[tr])
    r_nll = -restricted.log_softmax(-1).gather(-1, given[:, None])[:, 0]
    if first_fit is None:
        epochs, fit = train_fit_history(run, epoch)
        first_fit = first_fit_epoch(fit, epochs)
    r_pred = restricted.argmax(-1)
    scores = audit_scores(stats["nll_noisy"], stats["margin"], r_pred, r_nll, given, first_fit)
    is_noisy = ds.is_noisy[tr]
    budgets = audit_budgets(tr.numel(), int(is_noisy.sum())) if budgets is None else torch.as_tensor(budgets)
    return Audit(epoch, keys, source, given, is_noisy, r_pred, scores, budgets,
                 audit_table(scores, is_noisy, budgets))


AUDIT_CSV_COLUMNS = ("epoch", "score", "budget", "budget_frac", "hits", "precision", "recall", "baseline_precision",
                     "baseline_recall", "lift")


def audit_run(run: rundir.Run, an) -> Audit | None:
    """The audit `interp-grok analyze` writes: at the last analyzed checkpoint still on disk, with
    the analysis' key frequencies and first-fit epochs (an: pipeline.Analysis); None when no
    analyzed checkpoint is on disk or the run has no training label noise to find."""
    on_disk = sorted(set(an.epochs.tolist()) & set(run.checkpoint_epochs))
    if not on_disk or not run.dataset.is_noisy[run.dataset.train_idx].any():
        return None
    epoch = on_disk[-1]
    fit = (an.memo["pred"].to(torch.int64) == run.dataset.noisy_labels[run.dataset.train_idx])
    upto = an.epochs <= epoch
    first_fit = first_fit_epoch(fit[upto], an.epochs[upto])
    return audit_checkpoint(run, epoch, key_freqs=an.key_freqs, first_fit=first_fit)


def audit_path(run_path: Path) -> Path:
    return Path(run_path) / rundir.ANALYSIS_DIR / rundir.AUDIT_CSV


def write_audit(run: rundir.Run, audit: Audit | None) -> Path | None:
    """Write RUN/analysis/audit.csv (one row per score and budget, AUDIT_CSV_COLUMNS) atomically;
    with no audit, remove a stale one. Returns the path written (None if none)."""
    path = audit_path(run.path)
    if audit is None:
        path.unlink(missing_ok=True)
        return None
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=AUDIT_CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in audit.rows:
        w.writerow({"epoch": audit.epoch, **{k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()}})
    rundir.atomic_write_text(path, buf.getvalue())
    return path


def read_audit(run_path: Path) -> list[dict]:
    """audit.csv's rows (numbers as int / float); RunDirError naming the file if it is missing or malformed."""
    path = audit_path(run_path)
    try:
        rows = list(csv.DictReader(io.StringIO(rundir.read_regular(path).decode("utf-8"))))
        return [{k: (v if k == "score" else int(v) if k in ("epoch", "budget") else float(v)) for k, v in r.items()}
                for r in rows]
    except (UnicodeDecodeError, ValueError, TypeError, csv.Error) as e:
        raise rundir.RunDirError(f"{path}: not an audit table ({e})") from None


def best_score(audit: Audit, budget: int) -> str:
    """The score with the highest precision at ``budget`` (the first in AUDIT_SCORES order on a tie).

    It reads the true noise to choose: an oracle choice of the score (not of the examples),
    the "best audit" of a study where the noise is known."""
    prec = {s: audit.precision(s, budget) for s in audit.scores}
    return max(prec, key=lambda s: (prec[s], -list(AUDIT_SCORES).index(s)))


@dataclass
class RelabelResult:
    out: Path
    mode: str
    epoch: int
    score: str
    budget: int
    pairs: torch.Tensor  # int64 [budget]: pair indices a * p + b of the flagged examples
    old: torch.Tensor  # their labels before
    new: torch.Tensor  # and after (the circuit's labels)
    n_noisy_flagged: int  # flagged examples whose label was noisy
    n_changed: int  # flagged examples whose label the circuit changes
    n_now_clean: int  # changed examples whose new label is the clean one
    precision: float  # the audit's expected precision of this score at this budget (ties in expectation)
    record: dict  # what config.json's provenance keeps under rundir.PARENT


def relabelled_dataset(ds: Dataset, pairs: torch.Tensor, new: torch.Tensor) -> Dataset:
    """``ds`` with the training pairs ``pairs`` given the labels ``new`` (their noise becomes
    new - a - b, centered), and the record of it (Dataset.relabel)."""
    p = ds.p
    old = ds.noisy_labels[pairs]
    noise = ds.noise.clone()
    noise[pairs] = centered(new - pairs // p - pairs % p, p)
    order = pairs.argsort()
    relabel = {"relabel_idx": pairs[order].clone(), "relabel_old": old[order], "relabel_new": new[order].clone()}
    return Dataset(p=p, noise=noise, train_idx=ds.train_idx, test_idx=ds.test_idx, corrupted=ds.corrupted,
                   relabel=relabel)


def relabel_run(parent: Path | str, out: Path | str, *, epoch: int, budget: int, score: str = "loss",
                key_freqs: list[int] | None = None, mode: str = "continue", adam_state: str = "reset",
                overwrite: bool = False) -> RelabelResult:
    """Write a new run directory ``out``: ``parent``'s run with the top-``budget`` training examples
    by ``score`` at checkpoint ``epoch`` relabelled with the circuit's prediction (module docstring).

    score: one of audit.AUDIT_SCORES, or "best" (best_score). The run is continued with
    train.resume (`interp-grok train --resume --out OUT`, which may extend it with --epochs).
    ``out`` must not exist (or hold only a run's own files, with ``overwrite``); nothing is
    written anywhere else.
    """
    if mode not in RELABEL_MODES:
        raise ValueError(f"mode must be one of {', '.join(RELABEL_MODES)} (got {mode!r})")
    if adam_state not in ADAM_STATE_POLICIES:
        raise ValueError(f"adam_state must be one of {', '.join(ADAM_STATE_POLICIES)} (got {adam_state!r})")
    if score not in (*AUDIT_SCORES, BEST):
        raise ValueError(f"score must be one of {', '.join((*AUDIT_SCORES, BEST))} (got {score!r})")
    run = rundir.load_run(parent)
    n_train = run.dataset.train_idx.numel()
    if not 0 <= budget <= n_train:
        raise ValueError(f"budget must be in 0..{n_train}, the training set's size (got {budget})")
    if key_freqs is not None and any(not 1 <= k <= run.config.p // 2 for k in key_freqs):
        raise ValueError(f"key frequencies must be in 1..{run.config.p // 2} (got {key_freqs})")
    out = Path(os.path.abspath(out))
    if out == Path(os.path.abspath(run.path)):
        raise TrainError(f"{out}: the new run must go to another directory than its parent")
    state = None
    if mode == "continue" and adam_state == "keep":
        start, state = rundir.read_train_state(run.path, run.shapes)
        if start != epoch:
            raise TrainError(f"--adam-state keep needs the parent's saved optimizer state at epoch {epoch}, but "
                             f"{run.path / rundir.TRAIN_STATE} is at epoch {start}; use --adam-state reset")
    if epoch not in run.checkpoint_epochs:
        audit_checkpoint(run, epoch)  # the one-line error naming the checkpoints there are
    first_fit, first_fit_from = first_fit_upto(run, epoch)
    audit = audit_checkpoint(run, epoch, key_freqs=key_freqs, first_fit=first_fit, budgets=torch.tensor([budget]))
    chosen = best_score(audit, budget) if score == BEST else score
    pos = flag(audit.scores[chosen], budget)
    pairs = run.dataset.train_idx[pos]
    old, new = audit.given[pos], audit.restricted_pred[pos]
    changed = old != new
    ds = relabelled_dataset(run.dataset, pairs, new)
    clean = run.dataset.clean_labels[pairs]
    config = run.config
    parent_prov = run.provenance
    record = {
        "run": str(Path(os.path.abspath(run.path))),
        "config_sha256": rundir.file_sha256(run.path / rundir.CONFIG),
        "dataset_sha256": rundir.file_sha256(run.path / rundir.DATASET),
        "epoch": epoch,
        "checkpoint_sha256": rundir.file_sha256(rundir.checkpoint_path(run.path, epoch)),
        "mode": mode,
        "start_epoch": epoch if mode == "continue" else 0,
        "optimizer": adam_state if mode == "continue" else "init",  # the Adam-state policy (run-format.md)
        "adam_step_origin": epoch if mode == "continue" and adam_state == "reset" else 0,
        "score": chosen,
        "score_requested": score,
        "budget": budget,
        "budget_frac": budget / n_train,
        "key_freqs": audit.key_freqs.tolist(),
        "key_freq_source": audit.key_freq_source,
        "first_fit_from": first_fit_from,
        "new_label": "argmax of the restricted logits at the checkpoint",
        "n_relabelled": budget,
        "n_noisy_flagged": int(audit.is_noisy[pos].sum()),
        "n_changed": int(changed.sum()),
        "n_now_clean": int((changed & (new == clean)).sum()),
        "audit_precision": audit.precision(chosen, budget) if budget else None,
        "audit_baseline_precision": audit.is_noisy.double().mean().item(),
        "examples": f"{rundir.DATASET}: {', '.join(rundir.RELABEL_KEYS)}",
    }
    threads = trained_threads(parent_prov) or torch.get_num_threads()
    prov = {**provenance(torch.device("cpu"), threads), rundir.PARENT: record}
    check_out_dir(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    with rundir.locked(out) as lock:
        replace = check_out_dir(out, overwrite)
        lock.announce(rundir.command_line())
        if replace:
            with rundir.locked(out, rundir.ANALYSIS_LOCK):
                rundir.clear_run(out)
        rundir.write_config(out, config, prov)  # first: from here on a run that --overwrite may clear
        rundir.write_dataset(out, ds.to_tensors(), config.p)
        if mode == "continue":
            params = run.params(epoch)
            rundir.write_checkpoint(out, epoch, params)
            rec = evaluate(params, config, ds.noisy_labels, ds.clean_labels, ds.train_idx, ds.test_idx)
            rundir.write_metrics(out, [{"kind": "eval", "epoch": epoch, **rec}])  # against the new labels
            tensors = {f"param.{k}": v for k, v in params.items()}
            if state is not None:  # the parent's moments and step at this epoch
                tensors |= {k: v for k, v in state.items() if not k.startswith("param.")}
            rundir.write_train_state(out, epoch, tensors, rundir.file_sha256(out / rundir.DATASET))
    return RelabelResult(out, mode, epoch, chosen, budget, pairs, old, new, record["n_noisy_flagged"],
                         record["n_changed"], record["n_now_clean"],
                         record["audit_precision"] if budget else float("nan"), record)
