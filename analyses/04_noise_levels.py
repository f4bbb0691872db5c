# %% [markdown]
# # How the noise level changes grokking: n = 0, 2, 4, 8 side by side
#
# Jupytext percent format (open in Jupyter with jupytext, or VS Code's `# %%` cells); or run as
# `python analyses/04_noise_levels.py`. Reads the reference runs
# in `checkpoints/`, writes figures to `docs/figures/`.
#
# The same seeds, split and model for every run; only the label noise X = Bin(n, ½) − ⌊n/2⌋
# changes. Dotted lines: each run's noise floor (H(X) for the test loss against noisy labels).

# %%
from interp_grok import landmarks, plotting
from interp_grok.reference import figures_dir, load_reference_runs

runs = load_reference_runs()
out = figures_dir()
analyses = {f"n = {n}": an for n, (_, an) in runs.items()}
floors = {f"n = {n}": an.summary["noise_floor"]["entropy"] for n, (_, an) in runs.items()}

# %%
fig = plotting.plot_compare(analyses, [("test_acc_clean", "test accuracy vs clean labels"),
                                       ("train_noisy_memorized_frac", "noisy train labels memorized")],
                            "Generalization and memorization across noise levels")
plotting.save_figure(fig, out / "accuracy_by_noise.png")
fig = plotting.plot_compare(analyses, [("test_loss", "test loss vs noisy labels (nats)")],
                            "Test loss against the noise floor H(X) (dotted)", logy=True, floors=floors)
plotting.save_figure(fig, out / "test_loss_by_noise.png")
fig = plotting.plot_compare(analyses, [("sum_sq_weights", "sum of squared weights"),
                                       ("excluded_loss", "excluded loss (train, noisy labels)")],
                            "Weight norm and excluded loss across noise levels")
plotting.save_figure(fig, out / "weights_excluded_by_noise.png")

# %%
for n, (run, _an) in runs.items():
    acc = {r["epoch"]: r["test_acc_clean"] for r in run.evals}
    print(f"n = {n}: clean test accuracy at epoch 10 000 {acc[10_000]:.3f}, 20 000 {acc[20_000]:.3f}, "
          + (f"30 000 {acc[30_000]:.3f} (gains per 10 000 epochs since 20 000: {acc[30_000] - acc[20_000]:.3f}, "
             f"{acc[40_000] - acc[30_000]:.3f}), " if 40_000 in acc else "")
          + f"final {acc[max(acc)]:.3f}")
print(f"{'n':>3} {'epochs':>7} {'test acc clean':>15} {'test acc noisy':>15} {'(best)':>7} {'test loss':>10} "
      f"{'H(X)':>6} {'memorized':>10} {'corrected':>10} {'generalized at':>15}")
for n, (_run, an) in runs.items():
    last, fl = an.rows[-1], an.summary["noise_floor"]
    mem = "-" if n == 0 else f"{last['train_noisy_memorized_frac']:.3f}"
    cor = "-" if n == 0 else f"{last['train_noisy_corrected_frac']:.3f}"
    print(f"{n:>3} {int(an.epochs[-1]):>7} {last['test_acc_clean']:15.3f} {last['test_acc_noisy']:15.3f} "
          f"{fl['p_mode']:7.3f} {last['test_loss']:10.3g} {fl['entropy']:6.3f} {mem:>10} {cor:>10} "
          f"{landmarks(an)['generalized']!s:>15}")
