"""A grid of 4 default-size runs three ways, side by side: one after another at 2 threads, the
sweep's local pool (one 1-thread worker per core), and one batch of 4 (one process, 2 threads).
Prints aggregate model-epochs/s and the ratios (median over interleaved repeats).

    python benchmarks/bench_sweep.py [--epochs 300] [--repeats 2]

Everything is measured end to end, as a user meets it: run directories, checkpoints, evaluations
and (for the pool) starting the worker processes. Nothing else should run on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from interp_grok import Config, train, train_batch
from interp_grok.sweep import Grid, plan_sweep, run_sweep, usable_cores

GRID = [dict(noise_n=n, seed=s) for n in (0, 4) for s in (0, 1)]  # equal training sets: no padding


def shorter(epochs: int) -> dict:
    """A shorter run with the default run's density of checkpoints (100 per 20 000 epochs) and
    evaluations, so that the I/O share is the default run's."""
    return {"epochs": epochs, "n_checkpoints": max(2, epochs * 100 // 20_000)}


def configs(epochs: int) -> list[Config]:
    return [Config(**g, **shorter(epochs)) for g in GRID]


def sequential(d: Path, epochs: int) -> float:
    torch.set_num_threads(2)
    t = time.perf_counter()
    for k, c in enumerate(configs(epochs)):
        train(c, d / f"seq{k}", device="cpu", threads=2)
    return time.perf_counter() - t


def pool(d: Path, epochs: int) -> float:
    sweep = plan_sweep(d / "pool", Grid({"noise_n": [0, 4], "seed": [0, 1]}, shorter(epochs)))
    t = time.perf_counter()
    results = run_sweep(sweep, workers=usable_cores(), threads=1)
    assert all(r["status"] == "trained" for r in results.values()), results
    return time.perf_counter() - t


def batch(d: Path, epochs: int) -> float:
    t = time.perf_counter()
    res = train_batch(configs(epochs), [d / f"batch{k}" for k in range(4)], device="cpu", threads=2)
    assert all(r.error is None for r in res)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    work = 4 * args.epochs
    rates: dict[str, list[float]] = {"sequential, 2 threads": [], "local pool": [], "batch of 4": []}
    for r in range(args.repeats):
        for name, fn in zip(rates, (sequential, pool, batch)):
            with tempfile.TemporaryDirectory() as d:
                rates[name].append(work / fn(Path(d), args.epochs))
            print(f"repeat {r + 1}: {name}: {rates[name][-1]:.1f} model-epochs/s", flush=True)
    base = rates["sequential, 2 threads"]
    print(f"\n4 default-size runs x {args.epochs} epochs, {usable_cores()} cores, median of {args.repeats}:")
    for name, values in rates.items():
        ratios = [v / b for v, b in zip(values, base)]
        print(f"  {name:22s} {statistics.median(values):7.1f} model-epochs/s   "
              f"x{statistics.median(ratios):.2f} vs sequential (per repeat: {', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
