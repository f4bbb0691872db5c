"""Batched training on a GPU: is a batch of K runs the same as K solo runs there, and how many
model-epochs per second does one process reach at K = 1, 16, 128, 512 (default size)?

    python benchmarks/gpu_batch.py                       # on a CUDA machine
    python benchmarks/gpu_batch.py --device cpu --ks 1,4 --epochs 20 --check-epochs 20   # a smoke run here

It uses the trainer's own step (interp_grok.train._run_batch's pieces: models.mlp.batched_logits,
models.mlp.batched_cross_entropy, AdamW with one param group per model), without the run directory
I/O, which a real sweep adds at its checkpoints only. Goal (issue 8): a 100-run x 80 000-epoch
sweep in about 10 minutes on a modern datacenter GPU, i.e. >= 13 000 model-epochs/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from interp_grok import Config, make_dataset, rundir, train, train_batch
from interp_grok.models.mlp import PARAM_NAMES, batched_cross_entropy, batched_logits, init_params
from interp_grok.optim import make_optimizer


def check_equivalence(device: str, epochs: int) -> None:
    """Four runs (different noise, seeds, weight decays, one other training fraction) as one batch
    and alone, through train_batch / train (run directories in a temp folder)."""
    base = dict(epochs=epochs, eval_every=max(1, epochs // 4), n_checkpoints=4)
    configs = [Config(**base, noise_n=4, seed=0), Config(**base, noise_n=0, seed=1, weight_decay=3.0),
               Config(**base, noise_n=8, seed=2, lr=3e-3), Config(**base, noise_n=4, seed=3, train_frac=0.5)]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        train_batch(configs, [d / f"b{k}" for k in range(4)], device=device)
        for k, c in enumerate(configs):
            train(Config(**{**c.to_dict(), "checkpoint_epochs": []}), d / f"s{k}", device=device)
        for k in range(4):
            a = rundir.load_tensors(d / f"b{k}" / rundir.TRAIN_STATE)[0]
            b = rundir.load_tensors(d / f"s{k}" / rundir.TRAIN_STATE)[0]
            ea = [r for r in rundir.read_metrics(d / f"b{k}") if r["kind"] == "eval"][-1]
            eb = [r for r in rundir.read_metrics(d / f"s{k}") if r["kind"] == "eval"][-1]
            diff = max((a[n] - b[n]).abs().max().item() for n in a)
            print(f"run {k}: max |batch - solo| over weights and moments {diff:.3g}; test acc clean "
                  f"{ea['test_acc_clean']:.4f} vs {eb['test_acc_clean']:.4f}; train acc {ea['train_acc']:.4f} vs "
                  f"{eb['train_acc']:.4f}")


def throughput(device: str, K: int, epochs: int) -> float:
    """Model-epochs per second of the batched step for K default-size runs (different seeds)."""
    dev = torch.device(device)
    configs = [Config(seed=k, data_seed=346 + k).finalize() for k in range(K)]
    leaves = [{n: nn.Parameter(v.to(dev)) for n, v in init_params(c, torch.Generator().manual_seed(c.seed)).items()}
              for c in configs]
    opt = make_optimizer(leaves, configs)
    data = [make_dataset(c) for c in configs]
    p = configs[0].p
    idx = torch.stack([d.train_idx for d in data]).to(dev)  # same size for every run: [K, n]
    a, b = idx // p, idx % p
    y = torch.stack([d.noisy_labels[d.train_idx] for d in data]).to(dev)
    n_k = torch.full((K,), idx.shape[1], device=dev)

    def step() -> torch.Tensor:
        stacked = ({k: v.unsqueeze(0) for k, v in leaves[0].items()} if K == 1
                   else {k: torch.stack([lv[k] for lv in leaves]) for k in PARAM_NAMES})
        loss = batched_cross_entropy(batched_logits(stacked, a, b), y, n_k)
        loss.sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(3):  # warm-up
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(epochs):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return K * epochs / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--ks", default="1,16,128,512")
    ap.add_argument("--epochs", type=int, default=200, help="timed steps per K")
    ap.add_argument("--check-epochs", type=int, default=300, help="epochs of the batch == solo check")
    args = ap.parse_args()
    if args.device.startswith("cuda"):
        print(torch.cuda.get_device_name(), "torch", torch.__version__)
    check_equivalence(args.device, args.check_epochs)
    for K in (int(k) for k in args.ks.split(",")):
        try:
            rate = throughput(args.device, K, args.epochs)
            print(f"K = {K:4d}: {rate:9.0f} model-epochs/s")
        except torch.OutOfMemoryError:
            print(f"K = {K:4d}: out of memory")
            break


if __name__ == "__main__":
    main()
