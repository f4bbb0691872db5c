# %% [markdown]
# # How the embedding's Fourier spectrum forms — and whether key frequencies skew low with noise
#
# Jupytext percent format: open it as a notebook in Jupyter with jupytext installed
# (`pip install -e ".[notebooks]"`) or run its `# %%` cells in VS Code; or run it as a script,
# `python analyses/01_embedding_spectrum.py`. It reads the reference runs in `checkpoints/` (never
# trains), shows its figures inline in Jupyter and writes them to `docs/figures/`. Definitions:
# `docs/measurements.md` §2.
#
# science.md §6 predicts that label noise damps frequency k of the targets by cos(πk/p)ⁿ, so
# as n grows the key frequencies should skew low. Below, each run's final spectrum is drawn
# with that damping curve, and the key frequencies' mean |k| is printed per run.

# %%
import torch

import interp_grok as ig
from interp_grok import key_frequencies, key_set_is_flat, plotting
from interp_grok.reference import figures_dir, load_reference_runs

runs = load_reference_runs()
out = figures_dir()
p = next(iter(runs.values()))[0].config.p

# %% [markdown]
# ## The spectrum over training, run by run

# %%
for n, (_run, an) in runs.items():
    fig = plotting.plot_spectrum_heatmap(an, run_name=f"n = {n}")
    plotting.save_figure(fig, out / f"spectrum_heatmap_n{n}.png")

# %% [markdown]
# ## Final spectra across noise levels, with the label damping cos(πk/p)ⁿ

# %%
analyses = {f"n = {n}": an for n, (_, an) in runs.items()}
fig = plotting.plot_final_spectra(analyses, p, {f"n = {n}": n for n in runs})
plotting.save_figure(fig, out / "final_spectra_by_noise.png")

fig = plotting.plot_compare(analyses, [("gini_W_E", "Gini of N_k (W_E)")], "Spectral sparsity of W_E over training")
plotting.save_figure(fig, out / "gini_by_noise.png")

# %%
print(f"{'n':>3} {'key frequencies (W_E norm, 0.25)':<40} {'mean k':>7} {'share of ||W_E||^2':>19} {'Gini':>6}")
for n, (_run, an) in runs.items():
    keys = key_frequencies(an.norms[-1])  # the W_E-norm rule; the analysis' own set is printed below
    share = (an.norms[-1][keys - 1].pow(2).sum() / an.norms[-1].pow(2).sum()).item()
    mean_k = keys.double().mean().item() if keys.numel() else float("nan")
    flat = key_set_is_flat(keys, an.norms.shape[1])
    shown = f"{keys.numel()} of {an.norms.shape[1]} frequencies (flat)" if flat else str(keys.tolist())
    share = "-" if flat else f"{share:.3f}"  # a flat key set's share of ||W_E||^2 says nothing
    print(f"{n:>3} {shown:<40} {mean_k:7.1f} {share:>19} {an.rows[-1]['gini_W_E']:6.3f}")
    # the default threshold (0.25 x max) marks a partly formed spectrum as flat; a stricter one
    # shows which frequencies stand out (the rule is fixed a priori; this is a sensitivity check)
    strict = key_frequencies(an.norms[-1], threshold=0.5)
    damping = torch.cos(torch.pi * strict.double() / p).abs() ** n
    print(f"    threshold 0.5: {strict.tolist()}; label damping |cos(pi k/p)|^{n} there: "
          f"{[round(d, 3) for d in damping.tolist()]}")
    print(f"    the analysis' key set ({an.key_freq_source.get('name')}): {an.key_freqs.tolist()}")

# %% [markdown]
# summary.json's `key_freq_share_of_nonconstant_W_E_norm2` (for the analysis' key set) divides by the sum of
# N_k² over k = 1..48, which leaves out W_E's constant Fourier row. Its share of the whole ‖W_E‖²
# (the basis is orthonormal, so that is the Frobenius norm), from the final float32 weights, for
# the analysis' key set and for the W_E-norm rule's:

# %%
for n, (run, an) in runs.items():
    W = run.params(run.checkpoint_epochs[-1])["W_E"].double()
    N = ig.frequency_norms(W)
    k, k25 = an.key_freqs, key_frequencies(N)
    share = an.summary["key_freq_share_of_nonconstant_W_E_norm2"]
    print(f"n = {n}: key share of the non-constant part {share:.5f}, of the "
          f"whole ||W_E||^2 {(N[k - 1].pow(2).sum() / W.pow(2).sum()).item():.5f}; W_E-norm keys: "
          f"{(N[k25 - 1].pow(2).sum() / N.pow(2).sum()).item():.5f} / "
          f"{(N[k25 - 1].pow(2).sum() / W.pow(2).sum()).item():.5f}")
