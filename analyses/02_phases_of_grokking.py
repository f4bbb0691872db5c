# %% [markdown]
# # The phases of grokking, from restricted / excluded loss and the weight norm
#
# Jupytext percent format; run as `python analyses/02_phases_of_grokking.py`. Reads the reference
# runs in `checkpoints/`, writes figures to `docs/figures/`. Measurements: `docs/measurements.md`
# §3–4.
#
# Nanda et al. (2023) split grokking into memorization (train loss falls, Σθ² rises), circuit
# formation (Σθ² falls, excluded loss rises, restricted loss starts to fall) and cleanup (test
# loss drops, Σθ² drops sharply, Gini rises). `landmarks` reads the epochs that bound them off
# each run's curves; the table below is what the committed runs show.

# %%
from interp_grok import grid_logits, plotting, restricted_logits
from interp_grok.analyze import landmarks
from interp_grok.reference import figures_dir, load_reference_runs

runs = load_reference_runs()
out = figures_dir()

# %%
for n, (_run, an) in runs.items():
    floor = an.summary["noise_floor"]
    fig = plotting.plot_restricted_excluded(an, floor, f"n = {n}")
    plotting.save_figure(fig, out / f"restricted_excluded_n{n}.png")
    plotting.save_figure(plotting.plot_weight_norms(an, f"n = {n}"), out / f"weight_norms_n{n}.png")
    plotting.save_figure(plotting.plot_losses(an, floor, f"n = {n}"), out / f"losses_n{n}.png")

# %% [markdown]
# ## Landmarks per run
#
# `memorized`: ≥ 99 % of training labels fit. `peak_weight_norm`: largest Σθ². `excluded_min`:
# smallest excluded loss after memorization (the key frequencies start to carry the fit).
# `generalized`: clean test accuracy ≥ 95 % (None: not within the run).

# %%
print(f"{'n':>3} {'memorized':>10} {'peak Σθ²':>9} {'excl. min':>10} {'generalized':>12}   final Σθ², "
      "restricted / full / excluded loss (noisy labels)")
for n, (_run, an) in runs.items():
    m = landmarks(an)
    last = an.rows[-1]
    print(f"{n:>3} {m['memorized']!s:>10} {m['peak_weight_norm']!s:>9} {m['excluded_min']!s:>10} "
          f"{m['generalized']!s:>12}   {last['sum_sq_weights']:.0f}, {last['restricted_loss']:.3g} / "
          f"{last['train_loss']:.3g} (train) {last['test_loss']:.3g} (test) / {last['excluded_loss']:.3g}")

# %% [markdown]
# ## Is the circuit there before the network uses it?
#
# Accuracy of the *restricted* logits (key-frequency sum components + constant) against the
# clean labels on all pairs, next to the full network's, at each committed checkpoint. The key
# set is the one the analysis fixed at the final checkpoint.

# %%
for n, (run, an) in runs.items():
    ds, p = run.dataset, run.config.p
    for epoch in run.checkpoint_epochs:
        logits = grid_logits(run.params(epoch), run.config.act)
        restricted = restricted_logits(logits, an.key_freqs).reshape(p * p, p)
        acc_r = (restricted.argmax(-1) == ds.clean_labels).double().mean().item()
        acc_f = (logits.reshape(p * p, p).argmax(-1) == ds.clean_labels).double().mean().item()
        print(f"n = {n} epoch {epoch:>6}: clean accuracy on all pairs, full {acc_f:.3f}, restricted {acc_r:.3f}")
