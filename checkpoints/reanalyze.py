"""Bring the trimmed reference runs' analyses to the current analysis version.

    python checkpoints/reanalyze.py checkpoints/n0 checkpoints/n2 checkpoints/n4 checkpoints/n8

A reference run keeps the analysis of its full run (100 / 124 checkpoints, computed from the
float32 weights), but only the final checkpoint in full and ~20 in compact float16 form (see
README.md). `interp-grok analyze` cannot redo rows whose checkpoint is gone, and refuses a key set
that differs from the stored one. This script re-analyzes what the kept weights allow, with the
current default key rule (`pipeline.DEFAULT_KEY_RULE`, read at the final checkpoint, exactly as
`interp-grok analyze` reads it), and keeps what does not depend on the key set:

- final checkpoint: every column, from the exact float32 weights (`pipeline.analyze_checkpoint`);
- compact checkpoints: the columns the stored analysis lacks and the key-dependent ones
  (restricted / excluded losses, key_fve, extraction accuracy, the restricted-logit audit scores;
  every measure but `weights`, which needs W_in, W_out
  and W_U apart), from the float16 compact form; the other columns as stored (float32);
- other checkpoints: the stored columns that do not depend on the key set; NaN in the others
  (and in logit_power / excluded_loss_by_key), unless the key set is unchanged.

N_k of W_E and the per-example predictions do not depend on the key set and are kept. The result
is written with `pipeline.write_analysis` (manifest, current version); `interp-grok analyze` on the
run afterwards reuses every row. Idempotent: a run already at the current version is re-derived
from its own rows the same way.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from interp_grok import rundir
from interp_grok.analysis.circuits import excluded_loss_by_frequency, logit_frequency_power, logit_key_frequencies
from interp_grok.analysis.measures import MEASURES, Checkpoint, weights
from interp_grok.analysis.neurons import pruning_experiment
from interp_grok.analysis.pipeline import (
    DEFAULT_KEY_RULE,
    KEY_RULES,
    Analysis,
    _attach_examples,
    analyze_checkpoint,
    progress_columns,
    read_analysis,
    summarize,
    write_analysis,
)
from interp_grok.models import family

# the progress.csv columns whose value depends on the key set (measurements.md §3, §3b)
KEY_DEPENDENT_MEASURES = ("restricted_excluded", "circuits_by_label", "excluded_by_x", "extraction")
KEY_DEPENDENT_EXTRA = ("key_fve", "audit_rprec_restricted_disagree", "audit_rprec_restricted_nll")


def key_dependent(run: rundir.Run) -> set[str]:
    cols = {c for m in MEASURES if m.name in KEY_DEPENDENT_MEASURES for c in m.columns(run)}
    return cols | set(KEY_DEPENDENT_EXTRA)


def compact_row(params: dict[str, torch.Tensor], run: rundir.Run, keys: torch.Tensor) -> tuple[dict, dict]:
    """Every measure but ``weights`` on a compact checkpoint, and its per-frequency arrays."""
    c = Checkpoint(params, run, keys)
    row: dict[str, float] = {}
    for m in MEASURES:
        if m.fn is not weights and m.columns(run):
            row |= m.fn(c)
    spectra = {"logit_power": c.power,
               "excluded_by_key": excluded_loss_by_frequency(c.logits, keys, run.dataset.noisy_labels,
                                                             run.dataset.train_idx)}
    return row, spectra


@torch.no_grad()
def reanalyze(path: Path) -> tuple[list[int], list[int], Analysis]:
    run = rundir.load_run(path)
    old = read_analysis(run)
    final = run.checkpoint_epochs[-1]
    exact = run.params(final)
    z = KEY_RULES[DEFAULT_KEY_RULE][1]
    keys = logit_key_frequencies(logit_frequency_power(family(run.config).grid_logits(exact, run.config)), z)
    same_keys = torch.equal(keys, old.key_freqs)
    columns = progress_columns(run)
    dependent = key_dependent(run)
    n_freq = run.config.p // 2
    nan = torch.full((n_freq,), math.nan, dtype=torch.float64)
    rows, power, by_key = [], [], []
    compact = set(run.compact_epochs)
    for i, epoch in enumerate(old.epochs.tolist()):
        stored = old.rows[i]
        if epoch == final:
            row, _, _, sp = analyze_checkpoint(exact, run, keys)
            row = {"epoch": epoch, **row}
        else:
            row = {c: (stored[c] if c in stored and (same_keys or c not in dependent) else math.nan)
                   for c in columns}
            row["epoch"] = epoch
            sp = {"logit_power": nan, "excluded_by_key": torch.full((keys.numel(),), math.nan, dtype=torch.float64)}
            if epoch in compact:
                got, sp = compact_row(run.compact(epoch), run, keys)
                row |= {c: v for c, v in got.items() if c not in stored or (c in dependent and not same_keys)
                        or math.isnan(stored[c])}
        rows.append(row)
        power.append(sp["logit_power"])
        by_key.append(sp["excluded_by_key"])
    source = {"rule": KEY_RULES[DEFAULT_KEY_RULE][0], "name": DEFAULT_KEY_RULE, "threshold": z, "epoch": final}
    sha = {e: None for e in old.epochs.tolist()}
    sha[final] = rundir.file_sha256(rundir.checkpoint_path(run.path, final))
    an = Analysis(old.epochs, rows, old.norms, keys, source, old.memo, checkpoint_sha256=sha,
                  dataset_sha256=rundir.file_sha256(run.path / rundir.DATASET),
                  logit_power=torch.stack(power), excluded_by_key=torch.stack(by_key))
    an.summary = summarize(run, an)
    ds = run.dataset
    an.summary["pruning"] = {"epoch": final, **pruning_experiment(
        exact, run.config, ds.noisy_labels, ds.clean_labels, ds.train_idx, ds.test_idx)}
    _attach_examples(run, an)
    with rundir.locked(run.path, rundir.ANALYSIS_LOCK) as lock:
        lock.announce(rundir.command_line())
        write_analysis(run, an)
    return old.key_freqs.tolist(), keys.tolist(), an


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    torch.set_num_threads(1)
    for p in map(Path, argv):
        before, after, an = reanalyze(p)
        print(f"{p}: key frequencies {len(before)} -> {after}; {len(an.rows)} rows, "
              f"{sum(not math.isnan(r['key_fve']) for r in an.rows)} with key-dependent columns")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
