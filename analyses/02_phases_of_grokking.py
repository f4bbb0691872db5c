# %% [markdown]
# # The phases of grokking, from restricted / excluded loss and the weight norm
#
# Jupytext percent format (open in Jupyter with jupytext, or VS Code's `# %%` cells); or run as
# `python analyses/02_phases_of_grokking.py`. Reads the reference
# runs in `checkpoints/`, writes figures to `docs/figures/`. Measurements: `docs/measurements.md`
# §3–4.
#
# Nanda et al. (2023) split grokking into memorization (train loss falls, Σθ² rises), circuit
# formation (Σθ² falls, excluded loss rises, restricted loss starts to fall) and cleanup (test
# loss drops, Σθ² drops sharply, Gini rises). `landmarks` reads the epochs that bound them off
# each run's curves; the table below is what the committed runs show.

# %%
from interp_grok import (
    grid_logits,
    key_frequencies,
    key_set_is_flat,
    landmarks,
    lookup_table_logits,
    plotting,
    restricted_accuracy,
)
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
# The curves at those landmarks (and at the start and the end), from the analysis of the full run.

# %%
for n, (_run, an) in runs.items():
    rows = {r["epoch"]: r for r in an.rows}
    marks = {"start": 0, **landmarks(an), "final": int(an.epochs[-1])}
    print(f"n = {n}: " + "; ".join(
        f"{name} {e}: Σθ² {rows[e]['sum_sq_weights']:.0f}, test loss {rows[e]['test_loss']:.3g}, restricted "
        f"{rows[e]['restricted_loss']:.3g}, excluded {rows[e]['excluded_loss']:.2g}, Gini {rows[e]['gini_W_E']:.2f}"
        for name, e in marks.items() if e is not None))

# %% [markdown]
# The test loss keeps rising after memorization, peaks, and falls through circuit formation; in
# a run that generalizes, the cleanup (Σθ² falling, Gini rising) goes on for thousands of epochs
# after the clean test accuracy passes 95 %: the curves around generalization, and the first
# epoch from which Σθ² stays within 1 % of its final value.

# %%
for n, (_run, an) in runs.items():
    rows = {r["epoch"]: r for r in an.rows}
    peak = max(an.rows, key=lambda r: r["test_loss"])
    line = f"n = {n}: test loss peaks at {peak['test_loss']:.3g} at epoch {peak['epoch']}"
    g = landmarks(an)["generalized"]
    if g is not None:
        final_sq = an.rows[-1]["sum_sq_weights"]
        settled = next(e for e in rows if all(rows[f]["sum_sq_weights"] <= 1.01 * final_sq for f in rows if f >= e))
        line += "; around generalization: " + "; ".join(
            f"{e}: test loss {rows[e]['test_loss']:.3g}, Σθ² {rows[e]['sum_sq_weights']:.0f}, Gini "
            f"{rows[e]['gini_W_E']:.2f}" for e in (g - 1000, g, g + 2000, g + 4000) if e in rows)
        line += f"; Σθ² within 1 % of its final {final_sq:.0f} from epoch {settled}"
    print(line)

# %% [markdown]
# ## Is the circuit there before the network uses it?
#
# Accuracy against the clean labels, on all pairs, of the full logits and of the *restricted*
# logits (key-frequency sum components + constant) at each kept checkpoint (the ~20 compact,
# float16 ones: `run.compact(epoch)`, see checkpoints/README.md). Three key sets:
# the analysis' own (the logit-outlier rule at the final checkpoint, docs/measurements.md §3b),
# the W_E-norm rule's (N_k ≥ 0.25 · max; flat for the noisy runs) and
# the peaks at threshold 0.5. **Control**: the same projection of a pure lookup table of the
# noisy training labels (`lookup_table_logits`). Projecting averages the logits along each
# anti-diagonal a + b = s, where the memorized labels s + X vote most often for s, the clean
# label, so memorization alone scores well here; only accuracy above the control's is evidence
# of a circuit.

# %%
for n, (run, an) in runs.items():
    ds, p = run.dataset, run.config.p
    norm_keys = key_frequencies(an.norms[-1])  # the W_E-norm rule, threshold 0.25
    peaks = key_frequencies(an.norms[-1], threshold=0.5)
    sets = (an.key_freqs, norm_keys, peaks)
    table = lookup_table_logits(p, ds.train_idx, ds.noisy_labels)
    control = [restricted_accuracy(table, k, ds.clean_labels, ties="expected") for k in sets]
    shown = ["flat" if key_set_is_flat(k, an.norms.shape[1]) else str(k.tolist()) for k in sets]
    print(f"n = {n}: key sets {shown[0]} (logit outlier), {shown[1]} (W_E norm 0.25), {shown[2]} (0.5); "
          f"lookup-table control: " + " / ".join(f"{c:.3f}" for c in control))
    for epoch in run.compact_epochs:
        logits = grid_logits(run.compact(epoch), run.config.act)
        full = (logits.reshape(p * p, p).argmax(-1) == ds.clean_labels).double().mean().item()
        restricted = [restricted_accuracy(logits, k, ds.clean_labels) for k in sets]
        print(f"    epoch {epoch:>6}: full {full:.3f}, restricted " + " / ".join(f"{r:.3f}" for r in restricted))
    final = run.checkpoint_epochs[-1]  # the final checkpoint's exact float32 weights, against its compact form
    logits = grid_logits(run.params(final), run.config.act)
    print(f"    epoch {final:>6}, float32: restricted " + " / ".join(
        f"{restricted_accuracy(logits, k, ds.clean_labels):.3f}" for k in sets))
