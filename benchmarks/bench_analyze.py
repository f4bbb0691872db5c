"""Time `interp-grok analyze` on a default-sized run (p = 97, about 100 checkpoints).

    python benchmarks/bench_analyze.py [RUN_DIR] [--repeats 3] [--threads N]

With RUN_DIR (e.g. runs/n4 after `make demo`) it times that run; without, it builds a
run directory with the default config and 100 checkpoints of perturbed initial weights
(the cost does not depend on the weight values). Each repeat analyzes every checkpoint
from scratch (as --force) and draws the figures; the split into computing, writing and
drawing is printed. Do not run anything else while it runs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from interp_grok import rundir
from interp_grok.analysis import analyze_run, write_analysis, x_value_columns
from interp_grok.cli import _default_threads
from interp_grok.config import Config
from interp_grok.data import make_dataset
from interp_grok.models.mlp import SimpleMLP
from interp_grok.plotting import draw_all


def synthetic_run(path: Path) -> None:
    config = Config().finalize()
    dataset = make_dataset(config)
    rundir.write_dataset(path, dataset.to_tensors(), config.p)
    rundir.write_config(path, config, {"note": "synthetic run for benchmarks/bench_analyze.py"})
    g = torch.Generator().manual_seed(0)
    params = SimpleMLP.from_config(config).params()
    for epoch in config.checkpoint_epochs:
        noisy = {k: v.detach() + 0.01 * torch.randn(v.shape, generator=g) for k, v in params.items()}
        rundir.write_checkpoint(path, epoch, noisy)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=_default_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        run_path = Path(tmp) / "run"
        if args.run_dir is None:
            synthetic_run(run_path)
            what = "synthetic default-config run"
        else:
            shutil.copytree(rundir.require_run_dir(args.run_dir), run_path,
                            ignore=shutil.ignore_patterns(rundir.ANALYSIS_DIR))
            what = str(args.run_dir)
        run = rundir.load_run(run_path)
        print(f"{what}: p = {run.config.p}, {len(run.checkpoint_epochs)} checkpoints, {args.threads} threads")
        totals = []
        for i in range(args.repeats):
            t0 = time.perf_counter()
            run = rundir.load_run(run_path)
            an = analyze_run(run)
            t1 = time.perf_counter()
            out = write_analysis(run, an)
            t2 = time.perf_counter()
            draw_all(an, an.summary["noise_floor"], x_value_columns(run.dataset.noise), out / "figures")
            t3 = time.perf_counter()
            totals.append(t3 - t0)
            print(f"  repeat {i + 1}: compute {t1 - t0:.1f} s, write {t2 - t1:.2f} s, figures {t3 - t2:.1f} s, "
                  f"total {t3 - t0:.1f} s")
        print(f"analyze: {statistics.median(totals):.1f} s (median of {args.repeats}) for "
              f"{len(run.checkpoint_epochs)} checkpoints")


if __name__ == "__main__":
    sys.exit(main())
