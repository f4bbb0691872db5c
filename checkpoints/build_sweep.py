"""Copy an analyzed sweep into checkpoints/sweeps/<name>/, analysis-only.

    python checkpoints/build_sweep.py [--no-spectra] /work/sweeps/noise-tf [...]

For a sweep trained by `interp-grok sweep` and analyzed by `interp-grok analyze SWEEP_DIR`, it
keeps sweep.json, analysis/table.csv and, per run, config.json (settings, versions, git commit)
and the small analysis files: progress.csv (one row per checkpoint), summary.json and
embed_fourier.safetensors (N_k of W_E per checkpoint). It leaves out what is large or per
example: checkpoints, train state, dataset, metrics.jsonl, memorization.safetensors, figures,
and the analysis manifest (whose hashes name files not kept). It writes SHA256SUMS beside them
and prints the total size. The copy is read by `interp_grok.load_sweep` (the table) and the
notebooks; it is not a set of run directories that `interp-grok analyze` could redo.
`--no-spectra` leaves embed_fourier out too, for a grid whose use is its table and phases
(doshi-grid, 100 runs), to keep checkpoints/ within its size budget.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from interp_grok import rundir
from interp_grok.sweep import read_sweep
from interp_grok.sweep.table import SWEEP_ANALYSIS_DIR, TABLE

HERE = Path(__file__).parent
RUN_FILES = ("config.json",)
ANALYSIS_FILES = (rundir.PROGRESS_CSV, rundir.SUMMARY, rundir.EMBED_FOURIER)


def build(src: Path, dest: Path, analysis_files: tuple[str, ...] = ANALYSIS_FILES) -> list[Path]:
    sweep = read_sweep(src)
    table = src / SWEEP_ANALYSIS_DIR / TABLE
    if not table.exists():
        raise SystemExit(f"{table}: missing; run `interp-grok analyze {src}` first")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / SWEEP_ANALYSIS_DIR).mkdir(parents=True)
    shutil.copy2(src / "sweep.json", tmp / "sweep.json")
    shutil.copy2(table, tmp / SWEEP_ANALYSIS_DIR / TABLE)
    for name in sweep.runs:
        run, out = sweep.run_dir(name), tmp / "runs" / name
        (out / rundir.ANALYSIS_DIR).mkdir(parents=True)
        for f in RUN_FILES:
            shutil.copy2(run / f, out / f)
        for f in analysis_files:
            shutil.copy2(run / rundir.ANALYSIS_DIR / f, out / rundir.ANALYSIS_DIR / f)
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    sums = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(tmp)}\n" for p in files)
    (tmp / "SHA256SUMS").write_text(sums)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return files


def main(argv: list[str]) -> int:
    spectra = "--no-spectra" not in argv
    argv = [a for a in argv if a != "--no-spectra"]
    if not argv:
        print(__doc__)
        return 2
    keep = ANALYSIS_FILES if spectra else tuple(f for f in ANALYSIS_FILES if f != rundir.EMBED_FOURIER)
    total = 0
    for src in map(Path, argv):
        dest = HERE / "sweeps" / src.name
        files = build(src, dest, keep)
        size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
        total += size
        print(f"{dest}: {len(files)} files, {size / 1e6:.2f} MB")
    print(f"total {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
