"""Copy an analyzed sweep into checkpoints/sweeps/<name>/, analysis-only.

    python checkpoints/build_sweep.py [--no-spectra] [--final-weights] /work/sweeps/noise-tf [...]
    python checkpoints/build_sweep.py --rephase [--phase-rule v1] [checkpoints/sweeps/noise-tf ...]
    python checkpoints/build_sweep.py --runs DEST RUN_DIR [...]
    python checkpoints/build_sweep.py --keep-committed /work/sweeps/xi1-window

For a sweep trained by `interp-grok sweep` and analyzed by `interp-grok analyze SWEEP_DIR`, it
keeps sweep.json, analysis/table.csv and, per run, config.json (settings, versions, git commit)
and the small analysis files: progress.csv (one row per checkpoint), summary.json and
embed_fourier.safetensors (N_k of W_E per checkpoint). It leaves out what is large or per
example: checkpoints, train state, dataset, metrics.jsonl, memorization.safetensors, figures,
and the analysis manifest (whose hashes name files not kept); a run's audit.csv (the label audit at
its final checkpoint, a few kB) is kept where it exists. It writes SHA256SUMS beside them
and prints the total size. The copy is read by `interp_grok.load_sweep` (the table) and the
notebooks; it is not a set of run directories that `interp-grok analyze` could redo.
`--no-spectra` leaves embed_fourier out too, for a grid whose use is its table and phases
(doshi-grid, 100 runs), to keep checkpoints/ within its size budget. `--final-weights` also keeps
each run's dataset.safetensors and its final checkpoint (exact float32 weights, about 0.9 MB for
the transformer at p = 113): the copy of each run is then a run directory that `load_run` opens
(`run.params(final)`, `to_hooked_transformer(run, final)`), for measurements on the final weights.

`--runs DEST RUN_DIR ...` copies analyzed run directories that belong to no sweep (e.g. the
children of `interp-grok relabel`) the same way, analysis-only plus each run's dataset.safetensors
(a relabelled run's new labels), into checkpoints/DEST/<run name>/, with a SHA256SUMS; a run's
config.json keeps its provenance (the parent and the relabelling).

`--keep-committed` adds to a committed sweep the runs that a second copy of the same sweep
(the same sweep.json, planned from the committed one) trained and analyzed: a run finished and
analyzed there replaces the committed one; every other run, with its table row, is kept as
committed. For a sweep trained in parts on different machines, where the first part's checkpoints
are gone (issue 17's xi1-window). With `--no-spectra` the kept runs lose their embed_fourier too.

`--rephase` re-derives, in the committed copies (all of checkpoints/sweeps/ by default), the
table columns that the phase rule sets (final_phase, settled and the transition epochs) from each
run's committed progress.csv by `run_phases` with the rule given (default: the current default,
docs/measurements.md#phases), and rewrites table.csv and SHA256SUMS. Every other cell is kept as
it is: the copies hold no checkpoints, so nothing else could be recomputed.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import shutil
import sys
from pathlib import Path

from interp_grok import rundir
from interp_grok.analysis.phases import DEFAULT_PHASE_RULE, PHASE_RULES, TRANSITIONS, run_phases
from interp_grok.sweep import read_sweep
from interp_grok.sweep.table import SWEEP_ANALYSIS_DIR, TABLE, read_table, write_table

HERE = Path(__file__).parent
RUN_FILES = ("config.json",)
ANALYSIS_FILES = (rundir.PROGRESS_CSV, rundir.SUMMARY, rundir.EMBED_FOURIER)
OPTIONAL_FILES = (rundir.AUDIT_CSV,)  # kept where the analysis wrote them


def _copy_run(run: Path, out: Path, analysis_files: tuple[str, ...], final_weights: bool = False) -> None:
    (out / rundir.ANALYSIS_DIR).mkdir(parents=True)
    for f in RUN_FILES:
        shutil.copy2(run / f, out / f)
    for f in analysis_files:
        shutil.copy2(run / rundir.ANALYSIS_DIR / f, out / rundir.ANALYSIS_DIR / f)
    for f in OPTIONAL_FILES:
        if (run / rundir.ANALYSIS_DIR / f).exists():
            shutil.copy2(run / rundir.ANALYSIS_DIR / f, out / rundir.ANALYSIS_DIR / f)
    if final_weights:
        final = rundir.checkpoint_epochs_on_disk(run)[-1]
        shutil.copy2(run / rundir.DATASET, out / rundir.DATASET)
        (out / rundir.CHECKPOINT_DIR).mkdir()
        ckpt = rundir.checkpoint_path(run, final)
        shutil.copy2(ckpt, out / rundir.CHECKPOINT_DIR / ckpt.name)


def _finish(tmp: Path, dest: Path) -> list[Path]:
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    sums = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(tmp)}\n" for p in files)
    (tmp / "SHA256SUMS").write_text(sums)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return files


def build_runs(runs: list[Path], dest: Path, analysis_files: tuple[str, ...] = ANALYSIS_FILES) -> list[Path]:
    """``--runs``: analyzed run directories (no sweep) copied analysis-only into dest/<run name>/."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for run in runs:
        if not (run / rundir.ANALYSIS_DIR / rundir.PROGRESS_CSV).exists():
            raise SystemExit(f"{run}: not analyzed; run `interp-grok analyze {run}` first")
        _copy_run(run, tmp / run.name, analysis_files)
        # the dataset (a few hundred kB at p = 97) holds a relabelled run's new labels (relabel_idx/old/new)
        shutil.copy2(run / rundir.DATASET, tmp / run.name / rundir.DATASET)
    return _finish(tmp, dest)


def build(src: Path, dest: Path, analysis_files: tuple[str, ...] = ANALYSIS_FILES, final_weights: bool = False,
          keep_committed: bool = False) -> list[Path]:
    sweep = read_sweep(src)
    table = src / SWEEP_ANALYSIS_DIR / TABLE
    if not table.exists():
        raise SystemExit(f"{table}: missing; run `interp-grok analyze {src}` first")
    kept: dict[str, dict] = {}
    if keep_committed:
        if read_sweep(dest).manifest() != sweep.manifest():
            raise SystemExit(f"{src}/sweep.json differs from {dest}/sweep.json: not a second copy of that sweep")
        kept = {r["name"]: r for r in read_table(dest / SWEEP_ANALYSIS_DIR / TABLE) if r["state"] == "done"}
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / SWEEP_ANALYSIS_DIR).mkdir(parents=True)
    shutil.copy2(src / "sweep.json", tmp / "sweep.json")
    rows = read_table(table)
    for i, r in enumerate(rows):
        name, run = r["name"], sweep.run_dir(r["name"])
        if (run / rundir.ANALYSIS_DIR / rundir.PROGRESS_CSV).exists():
            _copy_run(run, tmp / "runs" / name, analysis_files, final_weights)
            if r["state"] == "done":
                kept.pop(name, None)
        if name in kept:  # finished in the committed copy, not here: keep the committed run and row
            shutil.rmtree(tmp / "runs" / name, ignore_errors=True)
            shutil.copytree(dest / "runs" / name, tmp / "runs" / name)
            if rundir.EMBED_FOURIER not in analysis_files:  # --no-spectra holds for the kept runs too
                (tmp / "runs" / name / rundir.ANALYSIS_DIR / rundir.EMBED_FOURIER).unlink(missing_ok=True)
            rows[i] = kept[name]
        # else: not trained or not analyzed yet (a sweep still running): table.csv gives its state
    write_table(dataclasses.replace(sweep, path=tmp), rows)
    return _finish(tmp, dest)


def _sha256sums(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    sums = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(folder)}\n" for p in files)
    rundir.atomic_write_text(folder / "SHA256SUMS", sums)


def rephase(dest: Path, rule: str = DEFAULT_PHASE_RULE) -> dict[str, tuple[str, str]]:
    """Rewrite the phase columns of a committed sweep's table.csv from its runs' progress.csv by
    ``rule``; returns {run: (old final phase, new final phase)} for the runs whose phase changed."""
    sweep = read_sweep(dest)
    rows = read_table(dest / SWEEP_ANALYSIS_DIR / TABLE)
    changed = {}
    for r in rows:
        an = rundir.read_regular(sweep.run_dir(r["name"]) / rundir.ANALYSIS_DIR / rundir.PROGRESS_CSV).decode()
        prog = [{k: float(v) for k, v in p.items()} for p in csv.DictReader(io.StringIO(an))]
        ph = run_phases([int(p["epoch"]) for p in prog], prog, rule=rule)
        if ph["final_phase"] != r["final_phase"]:
            changed[r["name"]] = (r["final_phase"], ph["final_phase"])
        r |= {"final_phase": ph["final_phase"], "settled": ph["settled"], **{k: ph[k] for k in TRANSITIONS}}
    write_table(sweep, rows)
    _sha256sums(dest)
    return changed


def main(argv: list[str]) -> int:
    if "--rephase" in argv:
        argv = [a for a in argv if a != "--rephase"]
        rule = DEFAULT_PHASE_RULE
        if "--phase-rule" in argv:
            i = argv.index("--phase-rule")
            rule = argv[i + 1] if i + 1 < len(argv) else ""
            del argv[i:i + 2]
        if rule not in PHASE_RULES:
            print(f"--phase-rule must be one of {', '.join(PHASE_RULES)} (got {rule!r})", file=sys.stderr)
            return 2
        for dest in map(Path, argv) if argv else sorted(p for p in (HERE / "sweeps").iterdir() if p.is_dir()):
            changed = rephase(dest, rule)
            print(f"{dest.name}: {len(changed)} final phases changed" + "".join(
                f"\n    {n}: {a} -> {b}" for n, (a, b) in sorted(changed.items())))
        return 0
    if argv[:1] == ["--runs"]:
        if len(argv) < 3:
            print(__doc__)
            return 2
        dest = HERE / argv[1]
        files = build_runs([Path(a) for a in argv[2:]], dest)
        size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
        print(f"{dest}: {len(files)} files, {size / 1e6:.2f} MB")
        return 0
    spectra, weights = "--no-spectra" not in argv, "--final-weights" in argv
    keep_committed = "--keep-committed" in argv
    argv = [a for a in argv if a not in ("--no-spectra", "--final-weights", "--keep-committed")]
    if not argv:
        print(__doc__)
        return 2
    keep = ANALYSIS_FILES if spectra else tuple(f for f in ANALYSIS_FILES if f != rundir.EMBED_FOURIER)
    total = 0
    for src in map(Path, argv):
        dest = HERE / "sweeps" / src.name
        files = build(src, dest, keep, final_weights=weights, keep_committed=keep_committed)
        size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
        total += size
        print(f"{dest}: {len(files)} files, {size / 1e6:.2f} MB")
    print(f"total {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
