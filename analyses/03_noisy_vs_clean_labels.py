# %% [markdown]
# # What happens to noisy versus clean training labels
#
# Jupytext percent format (open in Jupyter with jupytext, or VS Code's `# %%` cells); or run as
# `python analyses/03_noisy_vs_clean_labels.py`. Reads the
# reference runs in `checkpoints/`, writes figures to `docs/figures/`. Measurements:
# `docs/measurements.md` §5.
#
# A training example is *noisy* when the noise changed its label (X ≠ 0). For each noisy run:
# does the network fit the noisy labels (memorize), predict the clean label instead (correct),
# and does it later forget memorized labels (Doshi et al.'s inversion)? When is each example
# first fit, and how often is it forgotten? Last, Doshi et al.'s neuron test: which neurons are
# periodic (high IPR of their Fourier spectrum), and what silencing the others does.

# %%
import torch

from interp_grok import plotting, predicted_shift, x_value_columns
from interp_grok.reference import figures_dir, load_reference_runs

runs = {n: r for n, r in load_reference_runs().items() if n > 0}
out = figures_dir()

# %%
for n, (run, an) in runs.items():
    fig = plotting.plot_memorization(an, an.summary["noise_floor"], x_value_columns(run.dataset.noise), f"n = {n}")
    plotting.save_figure(fig, out / f"memorization_n{n}.png")

# %% [markdown]
# ## First fit and forgetting, noisy versus clean examples

# %%
for n, (run, an) in runs.items():
    ds = run.dataset
    first, forgot = an.first_fit_epoch, an.forgetting_events  # as memorization.safetensors stores them
    noisy = ds.is_noisy[ds.train_idx]
    fig = plotting.plot_fit_epochs({"clean-labelled": first[~noisy], "noisy-labelled": first[noisy]},
                                   f"When training examples are first fit — n = {n}")
    plotting.save_figure(fig, out / f"first_fit_n{n}.png")
    pred = an.memo["pred"][-1].to(torch.int64)
    shift = predicted_shift(pred, ds.a[ds.train_idx], ds.b[ds.train_idx], run.config.p)
    x = ds.noise[ds.train_idx]
    print(f"n = {n}: {int(noisy.sum())} noisy of {noisy.numel()} training labels")
    print(f"  median first-fit epoch: clean {first[~noisy].median().item()}, noisy {first[noisy].median().item()}")
    print(f"  examples with a forgetting event: clean {(forgot[~noisy] > 0).double().mean():.3f}, "
          f"noisy {(forgot[noisy] > 0).double().mean():.3f}")
    fit = an.memo["pred"].to(torch.int64) == ds.noisy_labels[ds.train_idx]  # [T, n_train]
    lost = (fit[:-1] & ~fit[1:]).any(1).nonzero().flatten()  # checkpoint pairs where some example is forgotten
    print(f"  forgetting events happen between epochs {an.epochs[lost[0]].item()} and {an.epochs[lost[-1] + 1].item()}")
    median = int(first[noisy].median())
    at_median = fit[an.epochs.tolist().index(median)]
    x_all = ds.noise[ds.train_idx]
    by_x = {v: at_median[x_all == v].double().mean().item() for v in sorted(x_all.unique().tolist()) if v != 0}
    print(f"  fit at epoch {median}: clean-labelled {at_median[~noisy].double().mean():.3f}; by X "
          + ", ".join(f"{v:+d}: {f:.3f}" for v, f in by_x.items()))
    print(f"  final margin (z_noisy - max other), median: clean {an.memo['margin'][-1][~noisy].median():.2f}, "
          f"noisy {an.memo['margin'][-1][noisy].median():.2f}")
    for v in sorted(x.unique().tolist()):
        sel = x == v
        print(f"  X = {v:+d}: {int(sel.sum()):4d} examples, final predicted shift = X for "
              f"{(shift[sel] == v).double().mean():.3f}, = 0 (clean) for {(shift[sel] == 0).double().mean():.3f}")

# %% [markdown]
# ## Periodic and memorizing neurons (Doshi et al. 2024)
#
# Per-neuron inverse participation ratio of the input curves' Fourier spectra (one-sided rfft
# with DC: 1 for a pure cosine, 2/3 for a square wave, about 0.04 for noise at p = 97), at the
# final checkpoint. Then every neuron below an IPR threshold is silenced (its W_out row zeroed)
# and the full-grid metrics are recomputed, next to a size-quartile-matched random control.

# %%
from interp_grok import neuron_ipr, pruning_experiment  # noqa: E402

all_runs = load_reference_runs()
neuron_iprs = {}
for n, (run, _an) in all_runs.items():
    neuron_iprs[n] = neuron_ipr(run.params(run.checkpoint_epochs[-1]))  # mean of the two input curves' IPR
fig = plotting.plot_ipr_histograms({f"n = {n}": v for n, v in neuron_iprs.items()},
                                   "Per-neuron IPR at the final checkpoint")
plotting.save_figure(fig, out / "neuron_ipr.png")
for n, v in neuron_iprs.items():
    print(f"n = {n}: per-neuron IPR median {v.median():.3f}, min {v.min():.3f}; >= 0.99: {int((v >= 0.99).sum())}, "
          f">= 0.9: {int((v >= 0.9).sum())}, >= 0.5: {int((v >= 0.5).sum())} of {v.numel()}")

# Silencing any neurons costs fit, so each pruning is compared with a control: as many neurons,
# drawn at random but matched in size (||in curves|| * ||out curve|| quartiles; 8 draws, seed 0;
# `interp_grok.pruning_experiment`, docs/measurements.md §5). Control: mean (min-max) over draws.
metrics = ("train_noisy_memorized_frac", "train_noisy_corrected_frac", "train_clean_acc", "test_acc_clean")
print(f"{'n':>3} {'silence':>10} {'neurons':>8} {'':>8} {'memorized':>18} {'corrected':>18} {'clean train':>18} "
      f"{'test clean':>18}")
for n, (run, _an) in all_runs.items():
    ds, params = run.dataset, run.params(run.checkpoint_epochs[-1])
    for threshold in (0.1, 0.5):
        pr = pruning_experiment(params, run.config, ds.noisy_labels, ds.clean_labels, ds.train_idx,
                                ds.test_idx, threshold=threshold)
        label = f"IPR < {threshold}"
        print(f"{n:>3} {label:>10} {pr['n_silenced']:>8} {'full':>8} "
              + " ".join(f"{pr['full'][m]:18.3f}" for m in metrics))
        print(f"{'':>3} {'':>10} {'':>8} {'pruned':>8} " + " ".join(f"{pr['ipr_pruned'][m]:18.3f}" for m in metrics))
        print(f"{'':>3} {'':>10} {'':>8} {'control':>8} " + " ".join(
            f"{pr['control'][m]['mean']:6.3f} ({pr['control'][m]['min']:.2f}-{pr['control'][m]['max']:.2f})"
            for m in metrics))

# %% [markdown]
# The periodic neurons are among the largest ones, so the size-quartile control can only
# reshuffle neurons inside the top quartile. The comparison that holds size fixed: keep the K
# largest neurons (K = the number of periodic ones; `interp_grok.analysis.neurons.size_ranked_pruning`)
# against keeping the K periodic ones.

# %%
from interp_grok import size_ranked_pruning  # noqa: E402

for n, (run, _an) in all_runs.items():
    if n == 0:
        continue
    ds, params = run.dataset, run.params(run.checkpoint_epochs[-1])
    sr = size_ranked_pruning(params, run.config, ds.noisy_labels, ds.clean_labels, ds.train_idx, ds.test_idx)
    print(f"n = {n}: {sr['n_periodic_among_largest']} of its {sr['n_periodic']} periodic neurons are among its "
          f"{sr['n_periodic']} largest")
    for what in ("ipr_pruned", "largest_kept"):
        print(f"    keep {'the periodic' if what == 'ipr_pruned' else 'the largest'}: "
              + ", ".join(f"{m} {sr[what][m]:.3f}" for m in metrics))

# %% [markdown]
# ## Periodic neurons over training, from the compact checkpoints
#
# A measurement that is not in `progress.csv`, recomputed over training from the ~20 compact
# (float16) checkpoints each reference run keeps (`run.compact(epoch)`; what that form supports:
# `checkpoints/README.md`): how many neurons have input-curve IPR ≥ 0.5 at each kept epoch.

# %%
for n, (run, _an) in all_runs.items():
    counts = []
    for epoch in run.compact_epochs:
        counts.append(f"{epoch}: {int((neuron_ipr(run.compact(epoch)) >= 0.5).sum())}")
    print(f"n = {n}: neurons with IPR >= 0.5 at epoch " + ", ".join(counts))
