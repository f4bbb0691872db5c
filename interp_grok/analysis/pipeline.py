"""The analysis pipeline: every checkpoint of a run through every measurement, and back to disk.

``analyze_run`` computes; ``write_analysis`` / ``read_analysis`` own RUN/analysis/:

    progress.csv                one row per checkpoint (columns in PROGRESS_COLUMNS + extras)
    embed_fourier.safetensors   epochs [T], norms [T, floor(p/2)] (N_k of W_E), key_freqs,
                                logit_power [T, floor(p/2)] (the logits' power along
                                cos/sin(w_k(a+b-c))), excluded_loss_by_key [T, n_keys]
    memorization.safetensors    per training example over checkpoints (see MEMO_KEYS)
    summary.json                key frequencies and the rule that chose them, noise floor,
                                headline numbers, checkpoints that could not be read
    manifest.json               written last: the sha256 of the four files above, the settings
                                the rows were computed with (key frequencies, dataset, analysis
                                version) and the sha256 of each row's checkpoint
    audit.csv                   the label audit at the last analyzed checkpoint on disk
                                (analyze_run_dir writes it: correction.audit_run, write_audit;
                                derived, like the figures, not in the manifest)
    figures/*.png               drawn by interp_grok.plotting

The manifest makes the four files one analysis: read_analysis refuses files that do not match
it (a kill between two renames, or two writers), and analyze_run reuses a stored row only when
it was computed under the same settings from a checkpoint whose bytes are unchanged. Writers
hold the run's analysis lock (rundir.ANALYSIS_LOCK); the CLI takes it.

Nothing here prints; progress is reported through a callback.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import rundir
from ..config import ConfigError
from ..models import family
from ..noise import noise_floor
from .circuits import (
    LOGIT_KEY_RULE,
    LOGIT_KEY_Z,
    excluded_loss_by_frequency,
    logit_frequency_power,
    logit_key_frequencies,
)
from .correction import audit_run, write_audit
from .fourier import KEY_FREQ_RULE, KEY_FREQ_THRESHOLD, frequency_norms, key_frequencies, key_set_is_flat
from .measures import Checkpoint, columns, headline_columns, measure_row
from .memorization import first_fit_epoch, forgetting_events
from .neurons import pruning_experiment
from .numerics import SPIKE_FACTOR, SPIKE_FLOOR, SPIKE_WINDOW, loss_spikes

# "epoch" and the headline columns (summary.json's final values); progress.csv's full column list,
# which depends on the run, is progress_columns(run): every registered measure's (measures.py)
PROGRESS_COLUMNS = ["epoch", *headline_columns()]
# key-frequency rules of analyze_run / `interp-grok analyze --key-rule`: name -> (description, default threshold)
KEY_RULES = {
    "logit_outlier": (LOGIT_KEY_RULE, LOGIT_KEY_Z),
    "W_E_norm": (KEY_FREQ_RULE, KEY_FREQ_THRESHOLD),
}
DEFAULT_KEY_RULE = "logit_outlier"
MEMO_KEYS = ("pred", "margin", "nll_noisy", "nll_clean")
PROGRESS_CSV, EMBED_FOURIER, MEMORIZATION, SUMMARY, MANIFEST = (
    rundir.PROGRESS_CSV, rundir.EMBED_FOURIER, rundir.MEMORIZATION, rundir.SUMMARY, rundir.MANIFEST)
FIGURES = rundir.FIGURES_DIR
ANALYSIS_FORMAT = "interp-grok-analysis"
# bump when what a row holds changes: rows of another version are recomputed, never reused
# (2: key_fve, gini_W_L, IPR, shift and train-split restricted/excluded columns; logit_power,
# excluded_loss_by_key; the logit-outlier key rule by default)
ANALYSIS_VERSION = 2

ProgressFn = Callable[[int, int, int], None]  # (done, total, epoch)


@dataclass(repr=False)
class Analysis:
    """Everything `interp-grok analyze` computes for one run, in checkpoint order (T checkpoints).

    epochs           int64 [T]
    rows             progress.csv rows, one dict per checkpoint (``column(name)``: float64 [T])
    norms            float64 [T, floor(p/2)]: N_k of W_E; ``norms[:, k - 1]`` is frequency k
    key_freqs        int64, 1-based frequencies k
    logit_power      float64 [T, floor(p/2)]: P_k of the logits along cos/sin(w_k(a+b-c))
                     (circuits.logit_frequency_power); NaN rows for rows of older analyses
    excluded_by_key  float64 [T, n_keys]: excluded loss (train, noisy labels) with only key_freqs[i]
                     removed (circuits.excluded_loss_by_frequency); NaN where not computed
    memo             per training example: pred int16 [T, n_train] (argmax class), margin,
                     nll_noisy, nll_clean float32 [T, n_train]; examples in ``train_idx`` order
    train_idx        int64 [n_train]: pair index a * p + b of each training example (a-major)
    train_noise      int64 [n_train]: its label noise X
    first_fit_epoch  int64 [n_train]: first checkpoint epoch whose prediction is the noisy label, -1 never
    forgetting_events int64 [n_train]: fit -> not-fit transitions between consecutive checkpoints

    ``to_frame()`` gives the rows as a pandas DataFrame (pandas is an optional extra).
    """

    epochs: torch.Tensor  # int64 [T]
    rows: list[dict]  # progress.csv rows
    norms: torch.Tensor  # float64 [T, floor(p/2)]: N_k of W_E, k = 1..floor(p/2)
    key_freqs: torch.Tensor  # int64, 1-based
    key_freq_source: dict  # rule, threshold, epoch it was read at (or "user")
    memo: dict[str, torch.Tensor]  # MEMO_KEYS, each [T, n_train]
    summary: dict = field(default_factory=dict)
    bad_checkpoints: list[str] = field(default_factory=list)  # one message each
    n_reused: int = 0  # rows taken from a previous analysis rather than computed (this call only)
    # sha256 of the checkpoint each row was computed from, by epoch (None: not known, e.g. a row
    # of an analysis written before manifests existed); and of the dataset
    checkpoint_sha256: dict[int, str | None] = field(default_factory=dict)
    dataset_sha256: str | None = None
    verified: bool = True  # False for an analysis from before manifests (nothing to check it against)
    train_idx: torch.Tensor | None = None  # int64 [n_train]
    train_noise: torch.Tensor | None = None  # int64 [n_train]
    first_fit_epoch: torch.Tensor | None = None  # int64 [n_train]
    forgetting_events: torch.Tensor | None = None  # int64 [n_train]
    logit_power: torch.Tensor | None = None  # float64 [T, floor(p/2)]
    excluded_by_key: torch.Tensor | None = None  # float64 [T, n_keys]

    def column(self, name: str) -> torch.Tensor:
        """One progress.csv column as float64 [T] (KeyError lists the columns there are)."""
        if self.rows and name not in self.rows[0]:
            raise KeyError(f"no column {name!r}; columns: {', '.join(self.rows[0])}")
        return torch.tensor([r[name] for r in self.rows], dtype=torch.float64)

    def to_frame(self):
        """progress.csv as a pandas DataFrame indexed by epoch (needs pandas: pip install 'interp-grok[pandas]')."""
        from .frames import analysis_frame

        return analysis_frame(self)

    def __repr__(self) -> str:
        T, K = self.norms.shape if self.norms.ndim == 2 else (len(self.rows), 0)
        e = self.epochs.tolist()
        span = f"epochs {e[0]}..{e[-1]}" if e else "no epochs"
        n_train = next(iter(self.memo.values())).shape[-1] if self.memo else 0
        keys = self.key_freqs.tolist()
        keys = f"{len(keys)} of {K} (flat)" if key_set_is_flat(self.key_freqs, K) else str(keys)
        cols = len(self.rows[0]) if self.rows else 0
        return (f"Analysis({T} checkpoints, {span}; key_freqs {keys}; progress {T} rows x {cols} columns; "
                f"memo {sorted(self.memo)} [{T}, {n_train}]"
                + (f"; {len(self.bad_checkpoints)} bad checkpoints" if self.bad_checkpoints else "") + ")")


def progress_columns(run: rundir.Run) -> list[str]:
    """progress.csv's columns for this run, in file order (measures.columns)."""
    return columns(run)


@torch.no_grad()
def analyze_checkpoint(
    params: dict[str, torch.Tensor], run: rundir.Run, key_freqs: torch.Tensor
) -> tuple[dict, torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(progress row, N_k of W_E, per-training-example stats, per-frequency arrays) for one set of
    weights. The last holds logit_power [floor(p/2)] and excluded_by_key [n_keys] (float64)."""
    c = Checkpoint(params, run, key_freqs)
    row = measure_row(c)
    row = {k: row[k] for k in columns(run) if k in row}  # file order
    spectra = {"logit_power": c.power,
               "excluded_by_key": excluded_loss_by_frequency(c.logits, key_freqs, run.dataset.noisy_labels,
                                                             run.dataset.train_idx)}
    return row, c.norms, c.stats, spectra


def analyze_run(
    run: rundir.Run,
    *,
    key_freqs: list[int] | None = None,
    key_rule: str = DEFAULT_KEY_RULE,
    threshold: float | None = None,
    previous: Analysis | None = None,
    force: bool = False,
    drop_missing: bool = False,
    progress: ProgressFn | None = None,
) -> Analysis:
    """Analyze every checkpoint on disk; reuse ``previous`` rows computed with the same key set.

    Rows of ``previous`` whose checkpoint file is gone (a trimmed run) are kept as they are. When
    they cannot be kept (``force``, or a different key set) a RunDirError says so, unless
    ``drop_missing``: an analysis of a trimmed run is never silently thrown away.

    The key frequencies are fixed once, from the last readable checkpoint (science.md §2
    choice), unless ``key_freqs`` is given, by ``key_rule`` with parameter ``threshold`` (None:
    the rule's default, KEY_RULES): "logit_outlier" (default; circuits.logit_key_frequencies on
    that checkpoint's logit spectrum, threshold = z) or "W_E_norm" (fourier.key_frequencies,
    N_k >= threshold * max N_k). Unreadable checkpoints are skipped and listed.

    summary["pruning"] is neurons.pruning_experiment on the last readable checkpoint on disk.
    """
    if key_rule not in KEY_RULES:
        raise ValueError(f"key_rule must be one of {', '.join(KEY_RULES)} (got {key_rule!r})")
    if threshold is None:
        threshold = KEY_RULES[key_rule][1]
    if key_rule == "W_E_norm" and not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1] for the W_E_norm rule (got {threshold})")
    if key_rule == "logit_outlier" and not threshold > 0.0:
        raise ValueError(f"threshold (z) must be > 0 for the logit_outlier rule (got {threshold})")
    if not run.checkpoint_epochs:
        raise rundir.RunDirError(f"{run.path}: no checkpoints in {rundir.CHECKPOINT_DIR}/")
    bad: dict[int, str] = {}
    loaded: dict[int, dict[str, torch.Tensor]] = {}
    digests: dict[int, str | None] = {}

    def load(epoch: int) -> dict[str, torch.Tensor] | None:
        if epoch not in loaded and epoch not in bad:
            try:
                _, loaded[epoch], digests[epoch] = rundir.read_checkpoint(
                    rundir.checkpoint_path(run.path, epoch), run.shapes, digest=True)
            except rundir.RunDirError as e:
                bad[epoch] = str(e)
        return loaded.get(epoch)

    if key_freqs is not None:
        keys = torch.tensor(sorted(set(key_freqs)), dtype=torch.int64)
        if keys.numel() and not (1 <= keys.min() and keys.max() <= run.config.p // 2):
            raise ValueError(f"key frequencies must be in 1..{run.config.p // 2}")
        source = {"rule": "user", "name": "user", "threshold": None, "epoch": None}
    final = next((e for e in reversed(run.checkpoint_epochs) if load(e) is not None), None)
    if final is None:
        raise rundir.RunDirError(f"{run.path}: none of the {len(run.checkpoint_epochs)} checkpoints is readable; "
                                 f"first error: {next(iter(bad.values()))}")
    final_params = loaded[final]  # kept for the pruning experiment
    if key_freqs is None:
        if key_rule == "W_E_norm":
            keys = key_frequencies(frequency_norms(family(run.config).embedding(final_params)), threshold)
        else:
            logits = family(run.config).grid_logits(final_params, run.config)
            keys = logit_key_frequencies(logit_frequency_power(logits), threshold)
        source = {"rule": KEY_RULES[key_rule][0], "name": key_rule, "threshold": threshold, "epoch": final}
    dataset_sha = rundir.file_sha256(run.path / rundir.DATASET)

    reuse: dict[int, int] = {}
    if previous is not None:
        gone = sorted(set(previous.epochs.tolist()) - set(run.checkpoint_epochs))
        same = torch.equal(previous.key_freqs, keys) and previous.dataset_sha256 in (None, dataset_sha)
        if gone and (force or not same) and not drop_missing:
            why = ("--force" if force else f"key frequencies {keys.tolist()} differ from the stored ones"
                   if not torch.equal(previous.key_freqs, keys) else "the dataset changed since")
            raise rundir.RunDirError(
                f"{run.path}: the stored analysis has {len(gone)} rows for checkpoints no longer on disk (a trimmed "
                f"run) that cannot be recomputed ({why}); pass --drop-missing to keep only the "
                f"{len(run.checkpoint_epochs)} checkpoints on disk, or analyze a copy")
        if same and not force:
            on_disk = set(run.checkpoint_epochs)
            wanted = set(progress_columns(run))
            for i, e in enumerate(previous.epochs.tolist()):
                recorded = previous.checkpoint_sha256.get(e)
                if e not in on_disk:
                    reuse[e] = i  # a trimmed run's row: kept as computed
                elif recorded is not None and wanted <= previous.rows[i].keys():  # else: a measure added since
                    try:
                        if rundir.file_sha256(rundir.checkpoint_path(run.path, e)) == recorded:
                            reuse[e] = i  # same settings, same bytes: the same row
                    except rundir.RunDirError:
                        pass  # unreadable now: analyzed (and reported) below

    columns = progress_columns(run)
    rows, norms, stats, spectra = [], [], [], []
    epochs, n_reused, row_sha = [], 0, {}
    n_freq = run.config.p // 2
    # rows of checkpoints no longer on disk (a trimmed run) are kept: they were computed from them
    todo = sorted(set(run.checkpoint_epochs) | set(reuse))
    for i, epoch in enumerate(todo):
        if epoch in reuse:
            j = reuse[epoch]
            row, nk, st = previous.rows[j], previous.norms[j], {k: v[j] for k, v in previous.memo.items()}
            if any(c not in row for c in columns):  # a kept row of an older analysis: NaN where never computed
                row = {**dict.fromkeys(columns, math.nan), **row}
            # an older analysis (before manifests) of a checkpoint no longer on disk has no spectra: NaN
            sp = {"logit_power": _row_or_nan(previous.logit_power, j, n_freq),
                  "excluded_by_key": _row_or_nan(previous.excluded_by_key, j, keys.numel())}
            row_sha[epoch] = previous.checkpoint_sha256.get(epoch)
            n_reused += 1
        else:
            params = load(epoch)
            if params is None:
                if progress:
                    progress(i + 1, len(todo), epoch)
                continue
            row, nk, st, sp = analyze_checkpoint(params, run, keys)
            row = {"epoch": epoch, **row}
            row_sha[epoch] = digests[epoch]
            loaded.pop(epoch, None)  # keep memory flat over 100+ checkpoints
        rows.append(row)
        norms.append(nk)
        stats.append(st)
        spectra.append(sp)
        epochs.append(epoch)
        if progress:
            progress(i + 1, len(todo), epoch)
    if not rows:
        raise rundir.RunDirError(f"{run.path}: no checkpoint could be analyzed; first error: "
                                 f"{next(iter(bad.values()))}")
    memo = {
        "pred": torch.stack([s["pred"] for s in stats]).to(torch.int16),
        "margin": torch.stack([s["margin"] for s in stats]).to(torch.float32),
        "nll_noisy": torch.stack([s["nll_noisy"] for s in stats]).to(torch.float32),
        "nll_clean": torch.stack([s["nll_clean"] for s in stats]).to(torch.float32),
    }
    an = Analysis(torch.tensor(epochs, dtype=torch.int64), rows, torch.stack(norms), keys, source, memo,
                  bad_checkpoints=[bad[e] for e in sorted(bad)], checkpoint_sha256=row_sha,
                  dataset_sha256=dataset_sha,
                  logit_power=torch.stack([sp["logit_power"] for sp in spectra]),
                  excluded_by_key=torch.stack([sp["excluded_by_key"] for sp in spectra]))
    an.summary = summarize(run, an)
    ds = run.dataset
    an.summary["pruning"] = {"epoch": final, **pruning_experiment(
        final_params, run.config, ds.noisy_labels, ds.clean_labels, ds.train_idx, ds.test_idx)}
    an.n_reused = n_reused
    _attach_examples(run, an)
    return an


def _row_or_nan(t: torch.Tensor | None, j: int, n: int) -> torch.Tensor:
    """Row j of a stored per-checkpoint array, or NaN [n] when the stored analysis has none."""
    if t is None or t.shape[-1] != n:
        return torch.full((n,), math.nan, dtype=torch.float64)
    return t[j]


def _attach_examples(run: rundir.Run, an: Analysis) -> None:
    """Fill the per-training-example fields (what memorization.safetensors stores besides memo)."""
    fit = fit_matrix(run, an)
    an.train_idx = run.dataset.train_idx
    an.train_noise = run.dataset.noise[run.dataset.train_idx]
    an.first_fit_epoch = first_fit_epoch(fit, an.epochs)
    an.forgetting_events = forgetting_events(fit)


def landmarks(an: Analysis) -> dict[str, int | None]:
    """Epochs that mark the phases, read off the analysis (None where a run never gets there).

    memorized: first checkpoint fitting >= 99 % of the training labels (noisy ones included).
    peak_weight_norm: checkpoint of the largest sum of squared weights.
    excluded_min: checkpoint of the smallest excluded loss at or after memorization — where the
    circuit starts to carry the training fit (Nanda's circuit formation begins); checkpoints
    without an excluded loss (NaN) are skipped.
    generalized: first checkpoint with clean test accuracy >= 95 %.
    """
    epochs = an.epochs.tolist()
    memorized = next((r["epoch"] for r in an.rows if r["train_acc"] >= 0.99), None)
    sq = an.column("sum_sq_weights")
    excl = an.column("excluded_loss").nan_to_num(nan=math.inf)  # NaN: not measured there (a trimmed run)
    start = epochs.index(memorized) if memorized is not None else 0
    return {
        "memorized": memorized,
        "peak_weight_norm": epochs[int(sq.argmax())],
        "excluded_min": epochs[start + int(excl[start:].argmin())],
        "generalized": next((r["epoch"] for r in an.rows if r["test_acc_clean"] >= 0.95), None),
    }


def fit_matrix(run: rundir.Run, an: Analysis) -> torch.Tensor:
    """bool [T, n_train]: whether each training example's noisy label is predicted."""
    y = run.dataset.noisy_labels[run.dataset.train_idx]
    return an.memo["pred"].to(torch.int64) == y


def summarize(run: rundir.Run, an: Analysis) -> dict:
    """Headline numbers of an analysis (what the CLI prints and summary.json keeps)."""
    c = run.config
    last = an.rows[-1]
    clean_acc = [(r["epoch"], r["test_acc_clean"]) for r in (run.evals or an.rows)]
    first_95 = next((e for e, acc in clean_acc if acc >= 0.95), None)
    norms = an.norms[-1]
    share = (norms[an.key_freqs - 1].pow(2).sum() / norms.pow(2).sum()).item() if an.key_freqs.numel() else 0.0
    return {
        "key_freqs": an.key_freqs.tolist(),
        "key_freq_source": an.key_freq_source,
        "key_freq_share_of_nonconstant_W_E_norm2": share,
        "gini_over": "the floor(p/2) per-frequency norms N_k of W_E",
        "noise_floor": noise_floor(c.noise_n, c.p_bin, c.p, c.noise_frac, c.noise_kind),
        "final_epoch": int(an.epochs[-1]),
        "final": {k: last.get(k, math.nan) for k in PROGRESS_COLUMNS if k != "epoch"},
        "epoch_test_acc_clean_first_95": first_95,
        "epoch_test_acc_clean_first_95_from": "metrics.jsonl evaluations" if run.evals else "checkpoints",
        "n_checkpoints_analyzed": len(an.rows),
        "bad_checkpoints": an.bad_checkpoints,
        **train_loss_spikes(run),
    }


def train_loss_spikes(run: rundir.Run) -> dict:
    """summary.json's slingshot-like spikes of the per-epoch train loss in metrics.jsonl (numerics.loss_spikes):
    their count, the epochs they start at, and the rule."""
    epochs, losses = rundir.train_losses(run.metrics)
    starts = loss_spikes(torch.tensor(losses, dtype=torch.float64)).tolist() if losses else []
    return {"train_loss_spikes": len(starts), "train_loss_spike_epochs": [epochs[i] for i in starts],
            "train_loss_spike_rule": f"loss[t] >= {SPIKE_FACTOR:g} x min(loss[t-{SPIKE_WINDOW}:t]) and loss[t] >= "
                                     f"{SPIKE_FLOOR:g}; consecutive such epochs are one spike, dated by its first"}


# ------------------------------------------------------------------ on disk


def analysis_dir(run_path: Path) -> Path:
    return Path(run_path) / rundir.ANALYSIS_DIR


def write_analysis(run: rundir.Run, an: Analysis) -> Path:
    """Write the analysis files atomically each, then manifest.json, which makes them one set.

    The old manifest is removed first and the files are written in an order that leaves, after
    a kill at any moment, either a complete set or files that read_analysis refuses. Callers
    hold the analysis lock (`interp-grok analyze` does: rundir.locked(run.path, ...,
    rundir.ANALYSIS_LOCK)).
    """
    out = rundir.own_subdir(run.path, rundir.ANALYSIS_DIR)
    (out / MANIFEST).unlink(missing_ok=True)
    columns = progress_columns(run)
    buf = io.StringIO()
    # restval: a kept row of an older analysis (checkpoint no longer on disk) lacks the new columns
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", restval="nan", lineterminator="\n")
    w.writeheader()
    for r in an.rows:
        w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    meta = {"key_freq_source": json.dumps(an.key_freq_source), "analysis_version": ANALYSIS_VERSION}
    spectra = {k: v for k, v in (("logit_power", an.logit_power), ("excluded_loss_by_key", an.excluded_by_key))
               if v is not None}
    rundir.save_tensors(out / EMBED_FOURIER, {"epochs": an.epochs, "norms": an.norms, "key_freqs": an.key_freqs,
                                              **spectra}, meta)
    fit = fit_matrix(run, an)
    rundir.save_tensors(out / MEMORIZATION, {
        "epochs": an.epochs,
        "train_idx": run.dataset.train_idx,
        "noise": run.dataset.noise[run.dataset.train_idx],
        **an.memo,
        "first_fit_epoch": first_fit_epoch(fit, an.epochs),
        "forgetting_events": forgetting_events(fit),
    }, meta)
    rundir.atomic_write_json(out / SUMMARY, {**an.summary, "analysis_version": ANALYSIS_VERSION})
    rundir.atomic_write_text(out / PROGRESS_CSV, buf.getvalue())
    files = (PROGRESS_CSV, EMBED_FOURIER, MEMORIZATION, SUMMARY)
    rundir.atomic_write_json(out / MANIFEST, {
        "format": ANALYSIS_FORMAT,
        "analysis_version": ANALYSIS_VERSION,
        "files": {f: rundir.file_sha256(out / f) for f in files},
        "key_freqs": an.key_freqs.tolist(),
        "key_freq_source": an.key_freq_source,
        "dataset_sha256": an.dataset_sha256,
        "checkpoint_sha256": {str(e): an.checkpoint_sha256.get(e) for e in an.epochs.tolist()},
    })
    return out


def stored_epochs(run: rundir.Run) -> list[int]:
    """The epoch column of a stored progress.csv, read leniently (the rest may be unreadable)."""
    try:
        text = rundir.read_regular(analysis_dir(run.path) / PROGRESS_CSV).decode("utf-8", "replace")
        return sorted({int(r["epoch"]) for r in csv.DictReader(io.StringIO(text)) if (r.get("epoch") or "").isdigit()})
    except (rundir.RunDirError, csv.Error, KeyError):
        return []


def _inconsistent(out: Path, what: str) -> rundir.RunDirError:
    return rundir.RunDirError(f"{out}: {what} (an analysis interrupted between its files, or written by two "
                              f"processes at once); rerun `interp-grok analyze` on the run")


def read_analysis(run: rundir.Run) -> Analysis:
    """Read back what write_analysis wrote; RunDirError (naming the file) if it is missing,
    malformed, or does not match its manifest."""
    out = analysis_dir(run.path)
    path = out / PROGRESS_CSV
    if not path.exists():
        raise rundir.RunDirError(f"{path}: missing; run `interp-grok analyze {run.path}` first")
    manifest = rundir.read_json(out / MANIFEST) if (out / MANIFEST).exists() else None
    if manifest is not None:
        if manifest.get("format") != ANALYSIS_FORMAT or not isinstance(manifest.get("files"), dict):
            raise rundir.RunDirError(f"{out / MANIFEST}: not an interp-grok analysis manifest")
        if manifest.get("analysis_version") != ANALYSIS_VERSION:
            raise rundir.RunDirError(f"{out / MANIFEST}: analysis_version {manifest.get('analysis_version')!r} is "
                                     f"not {ANALYSIS_VERSION}; rerun `interp-grok analyze` on the run")
        for name, sha in manifest["files"].items():
            if name not in (PROGRESS_CSV, EMBED_FOURIER, MEMORIZATION, SUMMARY):
                raise rundir.RunDirError(f"{out / MANIFEST}: lists an unknown file {name!r}")
            if rundir.file_sha256(out / name) != sha:
                raise _inconsistent(out, f"{name} does not match {MANIFEST}")
    try:
        text = rundir.read_regular(path).decode("utf-8")
        rows = [{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items()}
                for r in csv.DictReader(io.StringIO(text))]
    except (UnicodeDecodeError, ValueError, TypeError, csv.Error) as e:
        raise rundir.RunDirError(f"{path}: not a progress table ({e})") from None
    ef, meta = rundir.load_tensors(out / EMBED_FOURIER)
    mem, mem_meta = rundir.load_tensors(out / MEMORIZATION)
    summary = rundir.read_json(out / SUMMARY)
    if manifest is None and ("analysis_version" in meta or "analysis_version" in mem_meta
                             or "analysis_version" in summary):
        raise _inconsistent(out, f"files of this version but no {MANIFEST}")
    for name, t, keys in ((EMBED_FOURIER, ef, ("epochs", "norms", "key_freqs")), (MEMORIZATION, mem, MEMO_KEYS)):
        missing = [k for k in keys if k not in t]
        if missing:
            raise rundir.RunDirError(f"{out / name}: missing tensor(s) {', '.join(missing)}")
    if "epochs" not in mem or "key_freq_source" not in meta:
        raise rundir.RunDirError(f"{out}: epochs or key_freq_source missing from the safetensors files")
    if [r.get("epoch") for r in rows] != ef["epochs"].tolist() or not torch.equal(ef["epochs"], mem["epochs"]):
        raise rundir.RunDirError(f"{out}: progress.csv and the safetensors files disagree on the epochs")
    T = len(rows)
    if ef["norms"].shape[0] != T or any(mem[k].shape[0] != T for k in MEMO_KEYS):
        raise rundir.RunDirError(f"{out}: the safetensors files do not have one row per epoch of progress.csv")
    try:
        source = json.loads(meta["key_freq_source"])
    except ValueError:
        raise rundir.RunDirError(f"{out / EMBED_FOURIER}: key_freq_source is not JSON") from None
    if manifest is not None:
        shas = manifest.get("checkpoint_sha256") or {}
        checkpoint_sha = {e: shas.get(str(e)) for e in ef["epochs"].tolist()}
        dataset_sha = manifest.get("dataset_sha256")
        if manifest.get("key_freqs") != ef["key_freqs"].tolist():
            raise _inconsistent(out, f"{EMBED_FOURIER} and {MANIFEST} disagree on the key frequencies")
    else:
        checkpoint_sha, dataset_sha = {}, None
    an = Analysis(ef["epochs"], rows, ef["norms"], ef["key_freqs"], source,
                  {k: mem[k] for k in MEMO_KEYS}, summary, summary.get("bad_checkpoints", []),
                  checkpoint_sha256=checkpoint_sha, dataset_sha256=dataset_sha, verified=manifest is not None)
    an.train_idx, an.train_noise = mem.get("train_idx"), mem.get("noise")  # everything the file stores
    an.first_fit_epoch, an.forgetting_events = mem.get("first_fit_epoch"), mem.get("forgetting_events")
    # absent from analyses of version 1 and from the reference runs' legacy analyses
    an.logit_power, an.excluded_by_key = ef.get("logit_power"), ef.get("excluded_loss_by_key")
    for name, t in (("logit_power", an.logit_power), ("excluded_loss_by_key", an.excluded_by_key)):
        if t is not None and t.shape[0] != T:
            raise rundir.RunDirError(f"{out / EMBED_FOURIER}: {name} does not have one row per epoch of progress.csv")
    return an


def analyze_run_dir(
    path: Path,
    *,
    key_freqs: list[int] | None = None,
    key_rule: str = DEFAULT_KEY_RULE,
    threshold: float | None = None,
    force: bool = False,
    drop_missing: bool = False,
    progress: ProgressFn | None = None,
    on_note: Callable[[str], None] | None = None,
    draw: Callable[[rundir.Run, Analysis, Path], list[Path]] | None = None,
) -> tuple[rundir.Run, Analysis, Path, list[Path]]:
    """What `interp-grok analyze RUN_DIR` does, for a run or a sweep's worker: under the run's
    analysis lock, read the stored analysis (reusing its rows), analyze, write, and ``draw``.

    A stored analysis that cannot be read is recomputed (``on_note`` is told why), unless it holds
    rows of checkpoints no longer on disk: those cannot be recomputed, so RunDirError unless
    ``drop_missing``. Returns (run, analysis, analysis directory, the paths ``draw`` returned).
    """
    # the lock before the run is read: a `train --overwrite` cannot replace it under us
    with rundir.locked(rundir.require_run_dir(Path(path)), rundir.ANALYSIS_LOCK) as lock:
        lock.announce(rundir.command_line())
        run = rundir.load_run(path)
        # before anything is computed or written: a linked analysis/ or figures/ is refused
        rundir.own_subdir(run.path, rundir.ANALYSIS_DIR, *([FIGURES] if draw is not None else []))
        if key_freqs is not None and any(not 1 <= k <= run.config.p // 2 for k in key_freqs):
            raise ConfigError(f"key frequencies must be in 1..{run.config.p // 2} (got {key_freqs})")
        previous = None
        if (analysis_dir(run.path) / PROGRESS_CSV).exists():
            try:
                previous = read_analysis(run)
            except rundir.RunDirError as e:
                # rows of checkpoints no longer on disk (a trimmed run) cannot be recomputed: never
                # drop them silently because the stored files are unreadable or mixed
                gone = sorted(set(stored_epochs(run)) - set(run.checkpoint_epochs))
                if gone and not drop_missing:
                    raise rundir.RunDirError(
                        f"{e}; it also holds rows for {len(gone)} checkpoints no longer on disk, which cannot be "
                        "recomputed: restore analysis/ (e.g. from git or a backup), or pass --drop-missing to "
                        "analyze only the checkpoints on disk") from None
                if on_note:
                    on_note(f"the stored analysis is not reused: {e}")
        an = analyze_run(run, key_freqs=key_freqs, key_rule=key_rule, threshold=threshold, previous=previous,
                         force=force,
                         drop_missing=drop_missing, progress=progress)
        out = write_analysis(run, an)
        write_audit(run, audit_run(run, an))  # derived from the analysis, like the figures
        figures = draw(run, an, out) if draw is not None else []
    return run, an, out, figures


def is_current(run: rundir.Run) -> bool:
    """Whether the run's stored analysis covers every checkpoint on disk, at this analysis version,
    and matches its manifest (what a sweep's analyze skips)."""
    out = analysis_dir(run.path)
    if not (out / MANIFEST).exists():
        return False
    try:
        if rundir.read_json(out / MANIFEST).get("analysis_version") != ANALYSIS_VERSION:
            return False
        an = read_analysis(run)
    except rundir.RunDirError:
        return False
    return set(an.epochs.tolist()) >= set(run.checkpoint_epochs)
