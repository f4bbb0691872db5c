"""Time the seed notebook's loop and interp-grok's trainer side by side, in one process.

    python benchmarks/bench_train.py [--epochs 600] [--repeats 5] [--threads N]

Both run the default config (p = 97, d_model = 128, d_mlp = 512, n = 4) from the same
initialization, at the same torch thread count, interleaved (seed, ours, seed, ours, ...),
after a warm-up. The trainer is timed end to end: dataset, config, metrics.jsonl,
evaluations, checkpoints and resume state included, at the default run's density (one
full-grid evaluation per 50 epochs, about one checkpoint per 200 epochs). Prints the
median epochs/s of each, their ratio, and the largest difference between the two train-loss
trajectories over the first epochs. Do not run anything else while it runs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from seed_loop import seed_train  # noqa: E402

from interp_grok import rundir  # noqa: E402
from interp_grok.cli import _default_threads  # noqa: E402
from interp_grok.config import Config  # noqa: E402
from interp_grok.data import make_dataset  # noqa: E402
from interp_grok.models.mlp import SimpleMLP  # noqa: E402
from interp_grok.train import train  # noqa: E402

DEFAULT_RUN = Config().finalize()


def bench_config(epochs: int) -> Config:
    # the default run's checkpoint density: len(checkpoints) / epochs of a 20 000-epoch run
    n_ckpt = max(2, round(len(DEFAULT_RUN.checkpoint_epochs) * epochs / DEFAULT_RUN.epochs))
    return Config(epochs=epochs, n_checkpoints=n_ckpt, max_checkpoint_gap=1.0).finalize()


def time_seed(config: Config, epochs: int) -> tuple[float, list[float]]:
    ds = make_dataset(config)
    x = torch.stack([ds.a, ds.b], dim=1)  # [p*p, 2] token pairs, as the notebook's dataset
    y = ds.noisy_labels
    params = {k: v.detach() for k, v in SimpleMLP.from_config(config).params().items()}
    t0 = time.perf_counter()
    losses, _ = seed_train(params, x[ds.train_idx], y[ds.train_idx], x[ds.test_idx], y[ds.test_idx], epochs)
    return epochs / (time.perf_counter() - t0), losses


def time_ours(config: Config, threads: int) -> tuple[float, list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(config, Path(tmp) / "run", device="cpu", threads=threads)
        rate = config.epochs / (time.perf_counter() - t0)
        _, losses = rundir.train_losses(rundir.read_metrics(Path(tmp) / "run"))
    return rate, losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=_default_threads())
    ap.add_argument("--compare-epochs", type=int, default=300, help="epochs of trajectory to compare")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = bench_config(args.epochs)
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}; "
          f"{args.epochs} epochs x {args.repeats} repeats; trainer: {len(config.checkpoint_epochs)} checkpoints, "
          f"eval every {config.eval_every}")

    time_seed(config, 20)  # warm-up: allocator, MKL and thread pools
    time_ours(bench_config(20), args.threads)
    seed_rates, our_rates = [], []
    for i in range(args.repeats):
        r, seed_losses = time_seed(config, args.epochs)
        seed_rates.append(r)
        r, our_losses = time_ours(config, args.threads)
        our_rates.append(r)
        print(f"  repeat {i + 1}: seed {seed_rates[-1]:.1f} epochs/s, interp-grok {our_rates[-1]:.1f} epochs/s")

    n = min(args.compare_epochs, args.epochs)
    a, b = torch.tensor(seed_losses[:n]), torch.tensor(our_losses[:n])
    rel = ((a - b).abs() / a.abs()).max().item()
    seed_med, our_med = statistics.median(seed_rates), statistics.median(our_rates)
    print(f"seed notebook loop : {seed_med:8.1f} epochs/s (median)")
    print(f"interp-grok train  : {our_med:8.1f} epochs/s (median)")
    # each repeat times both back to back, so its ratio is the least exposed to the machine's
    # drifting speed (a shared VM here): the headline is the median of the per-repeat ratios
    ratios = sorted(o / s for o, s in zip(our_rates, seed_rates))
    print(f"speed-up           : {statistics.median(ratios):8.2f}x (median of per-repeat ratios "
          f"{', '.join(f'{r:.2f}' for r in ratios)}; ratio of medians {our_med / seed_med:.2f}x)")
    print(f"train-loss trajectories, epochs 0-{n - 1}: max relative difference {rel:.2e} "
          f"(loss {a[0]:.4f} -> {a[-1]:.3g})")
    if not rel < 1e-2:
        sys.exit("trajectories differ by more than 1e-2 relative: the trainer does not train the seed's model")


if __name__ == "__main__":
    main()
