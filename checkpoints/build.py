"""Trim analyzed full runs into the reference runs of this folder.

    python checkpoints/build.py runs/ref/n0 runs/ref/n2 runs/ref/n4 runs/ref/n8

For each full run (trained by `interp-grok train`, analyzed by `interp-grok analyze`) it copies
config.json, dataset.safetensors, metrics.jsonl and analysis/ (without figures) into checkpoints/<name>/,
plus the checkpoints that `choose_checkpoints` picks from the analysis curves, then prints their
sha256 sums. The result is a valid run directory: `load_run` and `interp-grok analyze` work on it.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from interp_grok import rundir
from interp_grok.analyze import Analysis, landmarks, read_analysis

HERE = Path(__file__).parent


def _nearest(epochs: list[int], target: float) -> int:
    return min(epochs, key=lambda e: abs(e - target))


def choose_checkpoints(an: Analysis) -> dict[str, int]:
    """Named checkpoints read off the curves with interp_grok.analyze.landmarks.

    init: epoch 0. end of memorization: first checkpoint fitting >= 99 % of the training labels.
    after generalization: first checkpoint with clean test accuracy >= 95 % (absent when the run
    never gets there). mid circuit formation: the checkpoint nearest the geometric middle between
    the smallest excluded loss after memorization (where circuit formation starts) and
    generalization (the end of the run when it does not generalize). final.
    """
    epochs = an.epochs.tolist()
    final = epochs[-1]
    marks = landmarks(an)
    memorized = marks["memorized"] or final
    general = marks["generalized"]
    mid = _nearest(epochs, (max(marks["excluded_min"], 1) * (general or final)) ** 0.5)
    chosen = {"init": 0, "end_of_memorization": memorized, "mid_circuit_formation": mid}
    if general is not None:
        chosen["after_generalization"] = general
    chosen["final"] = final
    return chosen


def trim(src: Path, dst: Path) -> dict[str, int]:
    run = rundir.load_run(src)
    an = read_analysis(run)
    chosen = choose_checkpoints(an)
    if dst.exists():
        shutil.rmtree(dst)
    (dst / rundir.CHECKPOINT_DIR).mkdir(parents=True)
    for name in (rundir.CONFIG, rundir.DATASET, rundir.METRICS):
        shutil.copyfile(src / name, dst / name)
    # the analysis data of the full run; not its figures (1.4 MB in all, and redrawn in seconds by
    # `interp-grok analyze` from these files), to keep the folder under 40 MB
    shutil.copytree(src / rundir.ANALYSIS_DIR, dst / rundir.ANALYSIS_DIR, ignore=shutil.ignore_patterns("figures"))
    for epoch in sorted(set(chosen.values())):
        shutil.copyfile(rundir.checkpoint_path(src, epoch), rundir.checkpoint_path(dst, epoch))
    return chosen


def main(sources: list[str]) -> None:
    for s in sources:
        src = Path(s)
        chosen = trim(src, HERE / src.name)
        print(f"{src.name}: " + ", ".join(f"{k} {v}" for k, v in chosen.items()))
    for path in sorted(p for p in HERE.rglob("*") if p.is_file() and p.suffix not in (".py", ".md", ".png")):
        print(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(HERE)}")


if __name__ == "__main__":
    main(sys.argv[1:])
