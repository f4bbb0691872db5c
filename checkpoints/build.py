"""Trim analyzed full runs into the reference runs of this folder.

    python checkpoints/build.py runs/ref/n0 runs/ref/n2 runs/ref/n4 runs/ref/n8

For each full run (trained by `interp-grok train`, analyzed by `interp-grok analyze`) it copies
config.json, dataset.safetensors, metrics.jsonl and analysis/ (without figures) into
checkpoints/<name>/, the final checkpoint in full (float32, checkpoints/), and a compact float16
form (W_E, T_a, T_b, b_in, W_L; rundir.write_compact) of ~20 checkpoints: log-spaced over the run
plus the landmarks `choose_checkpoints` reads off the analysis curves. It then prints their
sha256 sums. The result is a valid run directory: `load_run` and `interp-grok analyze` work on it.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import sys
from pathlib import Path

from interp_grok import rundir
from interp_grok.analysis.pipeline import Analysis, landmarks, read_analysis

HERE = Path(__file__).parent


def _nearest(epochs: list[int], target: float) -> int:
    return min(epochs, key=lambda e: abs(e - target))


def choose_checkpoints(an: Analysis) -> dict[str, int]:
    """Named checkpoints read off the curves with interp_grok.analysis.pipeline.landmarks.

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


N_LOG_SPACED = 16  # compact checkpoints log-spaced over the run, on top of the landmarks


def compact_epochs(an: Analysis, n_log: int = N_LOG_SPACED) -> list[int]:
    """The epochs kept in compact form: the landmarks, epoch 0, and for each of ``n_log`` log-spaced
    targets in [1, final] the analyzed checkpoint nearest to it in log(epoch)."""
    epochs = an.epochs.tolist()
    final = epochs[-1]
    marks = landmarks(an)
    kept = {0, final, *choose_checkpoints(an).values(), marks["peak_weight_norm"], marks["excluded_min"]}
    positive = [e for e in epochs if e > 0]
    for i in range(n_log):
        target = math.log(final) * i / (n_log - 1)
        kept.add(min(positive, key=lambda e: abs(math.log(e) - target)))
    return sorted(kept)


def trim(src: Path, dst: Path) -> tuple[dict[str, int], list[int]]:
    run = rundir.load_run(src)
    an = read_analysis(run)
    chosen = choose_checkpoints(an)
    compact = compact_epochs(an)
    if dst.exists():
        shutil.rmtree(dst)
    (dst / rundir.CHECKPOINT_DIR).mkdir(parents=True)
    for name in (rundir.CONFIG, rundir.DATASET, rundir.METRICS):
        shutil.copyfile(src / name, dst / name)
    # the analysis data of the full run; not its figures (1.4 MB in all, and redrawn in seconds by
    # `interp-grok analyze` from these files), to keep the folder within its budget
    shutil.copytree(src / rundir.ANALYSIS_DIR, dst / rundir.ANALYSIS_DIR, ignore=shutil.ignore_patterns("figures"))
    # exact weights where a finding needs them: the final checkpoint (IPR, pruning, the tests)
    shutil.copyfile(rundir.checkpoint_path(src, chosen["final"]), rundir.checkpoint_path(dst, chosen["final"]))
    for epoch in compact:
        rundir.write_compact(dst, epoch, run.params(epoch))
    return chosen, compact


def main(sources: list[str]) -> None:
    for s in sources:
        src = Path(s)
        chosen, compact = trim(src, HERE / src.name)
        print(f"{src.name}: " + ", ".join(f"{k} {v}" for k, v in chosen.items()) + f"; compact: {compact}")
    for path in sorted(p for p in HERE.rglob("*") if p.is_file() and p.suffix not in (".py", ".md", ".png")):
        print(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(HERE)}")


if __name__ == "__main__":
    main(sys.argv[1:])
