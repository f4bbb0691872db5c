"""Time Nanda et al.'s training loop and `interp-grok train --model transformer` side by side, in one process.

    python benchmarks/bench_transformer.py [--epochs 300] [--repeats 3] [--threads N]

The paper's setting (p = 113, d_model 128, 4 heads, d_mlp 512, 30 % of the pairs, their split,
10-step warm-up, AdamW lr 1e-3 wd 1 betas (0.9, 0.98)), from the same initialization, at the same
torch thread count, interleaved (theirs, ours, MLP, theirs, ...), after a warm-up:

- their loop: benchmarks/nanda_loop.py, their modules and their per-epoch work (a train and a
  test forward, backward, AdamW and LambdaLR steps), as written (the Python list of triples
  indexes the embedding every call) and, as a second baseline, with the triples turned into one
  index tensor once (``their loop, tensor inputs``);
- ours: `interp-grok train` end to end (dataset, config, metrics.jsonl, full-grid evaluations
  every 50 epochs, checkpoints at the default density, resume state), float64 loss;
- the MLP family at the same training-set size (p = 113, d_model 128, d_mlp 512, 3 830 pairs), end
  to end the same way.

Prints the median epochs/s of each, the per-repeat ratios, and the largest relative difference
between their train losses and ours (ours in float64, theirs in float32) over the first epochs.
Do not run anything else while it runs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import time_ours  # noqa: E402  (interp-grok train end to end, timed)
from nanda_loop import nanda_train  # noqa: E402

from interp_grok.cli import _default_threads  # noqa: E402
from interp_grok.config import Config  # noqa: E402

DEFAULT_RUN = Config().finalize()
PAPER = dict(model="transformer", p=113, noise_n=0, split="python_shuffle", data_seed=0, seed=0, warmup_steps=10)


def bench_config(epochs: int, **kw) -> Config:
    # the default run's checkpoint density: len(checkpoints) / epochs of a 20 000-epoch run
    n_ckpt = max(2, round(len(DEFAULT_RUN.checkpoint_epochs) * epochs / DEFAULT_RUN.epochs))
    return Config(**{**PAPER, **kw}, epochs=epochs, n_checkpoints=n_ckpt, max_checkpoint_gap=1.0).finalize()


def time_theirs(epochs: int, tensor_data: bool) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    losses, _ = nanda_train(113, epochs, seed=0, init_seed=0, tensor_data=tensor_data)
    return epochs / (time.perf_counter() - t0), losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=_default_threads())
    ap.add_argument("--compare-epochs", type=int, default=100, help="epochs of trajectory to compare")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = bench_config(args.epochs)
    mlp = bench_config(args.epochs, model="mlp", warmup_steps=0, split="randperm")
    assert mlp.train_frac == config.train_frac and mlp.p == config.p  # equal training-set size
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}; "
          f"{args.epochs} epochs x {args.repeats} repeats; trainer: {len(config.checkpoint_epochs)} checkpoints, "
          f"eval every {config.eval_every}")

    time_theirs(5, False)  # warm-up: allocator, MKL and thread pools
    time_ours(bench_config(10), args.threads)
    rates: dict[str, list[float]] = {"theirs": [], "theirs_tensor": [], "ours": [], "mlp": []}
    for i in range(args.repeats):
        r, their_losses = time_theirs(args.epochs, False)
        rates["theirs"].append(r)
        rates["theirs_tensor"].append(time_theirs(args.epochs, True)[0])
        r, our_losses = time_ours(config, args.threads)
        rates["ours"].append(r)
        rates["mlp"].append(time_ours(mlp, args.threads)[0])
        print(f"  repeat {i + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()) + " epochs/s")

    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"their loop                 : {med['theirs']:8.1f} epochs/s (median)")
    print(f"their loop, tensor inputs  : {med['theirs_tensor']:8.1f} epochs/s (median)")
    print(f"interp-grok train (transf.): {med['ours']:8.1f} epochs/s (median)")
    print(f"interp-grok train (MLP)    : {med['mlp']:8.1f} epochs/s (median, same training-set size)")
    # each repeat times all of them back to back: per-repeat ratios are the least exposed to the
    # machine's drifting speed, so the headline is their median
    for base in ("theirs", "theirs_tensor"):
        ratios = sorted(o / s for o, s in zip(rates["ours"], rates[base]))
        print(f"speed-up over {base:<13}: {statistics.median(ratios):8.2f}x (per repeat "
              f"{', '.join(f'{r:.2f}' for r in ratios)})")
    ratios = sorted(m / o for o, m in zip(rates["ours"], rates["mlp"]))
    print(f"MLP / transformer          : {statistics.median(ratios):8.2f}x (per repeat "
          f"{', '.join(f'{r:.2f}' for r in ratios)})")
    n = min(args.compare_epochs, args.epochs)
    a, b = torch.tensor(their_losses[:n], dtype=torch.float64), torch.tensor(our_losses[:n])
    rel = ((a - b).abs() / a.abs()).max().item()
    print(f"train-loss trajectories, epochs 0-{n - 1}: max relative difference {rel:.2e} "
          f"(loss {a[0]:.4f} -> {a[-1]:.3g}; theirs float32, ours float64)")
    if not rel < 1e-2:
        sys.exit("trajectories differ by more than 1e-2 relative: the trainer does not train their model")


if __name__ == "__main__":
    main()
