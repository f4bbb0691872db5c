"""What the compact float16 checkpoints lose against the exact float32 weights.

    python checkpoints/precision.py

For each reference run, at its final checkpoint (the one kept in full float32), the measurements
the analyses make, from the exact weights and from the stored compact float16 form of the same
checkpoint (checkpoints/nN/compact/). Prints one line per measurement and run. Then, over every
compact checkpoint of every run, the largest relative difference of each loss from the analysis
row (computed from the float32 weights of the full run), and where it occurs.
"""

from __future__ import annotations

import torch

import interp_grok as ig
from interp_grok.reference import load_reference_runs


def measure(P: dict[str, torch.Tensor], run: ig.Run, keys: torch.Tensor, peaks: torch.Tensor) -> dict[str, float]:
    ds = run.dataset
    m = ig.grid_metrics(P, run.config.act, ds.noisy_labels, ds.clean_labels, ds.train_idx, ds.test_idx)
    L = ig.grid_logits(P, run.config.act)
    curves = ig.neuron_curves(P)
    neuron_ipr = (ig.ipr(curves["in_a"]) + ig.ipr(curves["in_b"])) / 2
    return {
        "train_loss": m["train_loss"], "test_loss": m["test_loss"], "test_acc_clean": m["test_acc_clean"],
        "train_noisy_memorized_frac": m["train_noisy_memorized_frac"],
        "restricted_loss": ig.restricted_loss(L, keys, ds.noisy_labels).item(),
        "excluded_loss": ig.excluded_loss(L, keys, ds.noisy_labels, ds.train_idx).item(),
        "restricted_acc_peaks": ig.restricted_accuracy(L, peaks, ds.clean_labels),
        "gini_W_E": ig.gini(ig.frequency_norms(P["W_E"])).item(),
        "median_neuron_ipr": neuron_ipr.median().item(), "neurons_ipr_ge_0.5": float((neuron_ipr >= 0.5).sum()),
    }, L


def main() -> None:
    torch.set_num_threads(1)
    for n, (run, an) in load_reference_runs().items():
        final = run.checkpoint_epochs[-1]
        exact = run.params(final)
        peaks = ig.key_frequencies(ig.frequency_norms(exact["W_E"]), threshold=0.5)
        a, La = measure(exact, run, an.key_freqs, peaks)
        b, Lb = measure(run.compact(final), run, an.key_freqs, peaks)
        p = run.config.p
        agree = (La.reshape(p * p, p).argmax(-1) == Lb.reshape(p * p, p).argmax(-1)).double().mean().item()
        print(f"n = {n}, epoch {final}: argmax agrees on {agree:.5f} of the {p * p} pairs; "
              f"max |logit difference| {(La - Lb).abs().max().item():.3g} (max |logit| {La.abs().max().item():.3g})")
        for k in a:
            rel = abs(b[k] - a[k]) / abs(a[k]) if a[k] == a[k] and a[k] != 0 else float("nan")
            print(f"    {k:<28} float32 {a[k]:.6g}  float16 compact {b[k]:.6g}  (relative difference {rel:.1e})")

    worst: dict[str, tuple[float, int, int]] = {}
    for n, (run, an) in load_reference_runs().items():
        ds, epochs = run.dataset, an.epochs.tolist()
        for epoch in run.compact_epochs:
            row, P = an.rows[epochs.index(epoch)], run.compact(epoch)
            m = ig.grid_metrics(P, run.config.act, ds.noisy_labels, ds.clean_labels, ds.train_idx, ds.test_idx)
            L = ig.grid_logits(P, run.config.act)
            got = {"train_loss": m["train_loss"], "test_loss": m["test_loss"],
                   "restricted_loss": ig.restricted_loss(L, an.key_freqs, ds.noisy_labels).item(),
                   "excluded_loss": ig.excluded_loss(L, an.key_freqs, ds.noisy_labels, ds.train_idx).item()}
            for k, v in got.items():
                rel = abs(v - row[k]) / abs(row[k])
                if rel > worst.get(k, (-1.0, 0, 0))[0]:
                    worst[k] = (rel, n, epoch)
    for k, (rel, n, epoch) in worst.items():
        print(f"over every compact checkpoint: {k:<16} largest relative difference {rel:.1e} (n = {n}, epoch {epoch})")


if __name__ == "__main__":
    main()
