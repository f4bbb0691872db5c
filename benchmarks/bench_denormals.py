"""Time training steps with and without flushing denormals, from a run's saved state, in one process.

    python benchmarks/bench_denormals.py RUN_DIR [--epochs 150] [--repeats 2] [--threads 1]

Copies RUN_DIR (a run with a train state, e.g. one past memorization) twice into a temporary
folder and resumes each copy for --epochs epochs: one as the trainer does (denormals flushed to
zero, train._denormals_flushed) and one with flushing turned off, interleaved, at one thread
count. Prints the machine, both wall times, their ratio and whether the two copies end with the
same weights bit for bit. Late in a run most wrong-class softmax probabilities and their float32
gradients fall below float32's smallest normal number, and each operation on one costs an x86 CPU
a microcode assist; flushing them is where the difference comes from. Run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from interp_grok import resume, rundir  # noqa: E402

trainer = sys.modules["interp_grok.train"]


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock", "analysis"))
    return dst


def timed(src: Path, tmp: Path, epochs: int, threads: int, flush: bool, tag: str) -> tuple[float, dict]:
    dst = _copy(src, tmp / tag)
    start = rundir.read_train_state(dst)[0]
    real = trainer._denormals_flushed
    if not flush:
        trainer._denormals_flushed = contextlib.nullcontext
    try:
        t = time.perf_counter()
        resume(dst, epochs=start + epochs, device="cpu", threads=threads)
        return time.perf_counter() - t, load_file(dst / rundir.TRAIN_STATE)
    finally:
        trainer._denormals_flushed = real


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if not (args.run_dir / rundir.TRAIN_STATE).exists():
        print(f"{args.run_dir}: no {rundir.TRAIN_STATE} (not a run directory of interp-grok train)", file=sys.stderr)
        return 2
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s); run {args.run_dir} from epoch {rundir.read_train_state(args.run_dir)[0]}")
    ratios = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(args.repeats):
            t_off, s_off = timed(args.run_dir, Path(d), args.epochs, args.threads, False, f"off{i}")
            t_on, s_on = timed(args.run_dir, Path(d), args.epochs, args.threads, True, f"on{i}")
            same = all(torch.equal(s_on[k], s_off[k]) for k in s_on if k.startswith("param."))
            ratios.append(t_off / t_on)
            print(f"repeat {i}: {args.epochs} epochs without flushing {t_off:.1f} s, flushed {t_on:.1f} s: "
                  f"{t_off / t_on:.2f}x; weights bit-identical: {same}")
    print(f"flushing denormals: {statistics.median(ratios):.2f}x faster (median of {len(ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
