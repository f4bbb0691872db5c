# %% [markdown]
# # Phase diagrams of noisy grokking: the reference sweeps
#
# Jupytext percent format; or run as `python analyses/05_phase_diagrams.py`. Reads the reference
# sweeps in `checkpoints/sweeps/` (analysis-only copies, see `checkpoints/README.md`), writes
# figures to `docs/figures/`. Every number in `docs/findings.md` §1–§3 is printed here, and
# asserted by `tests/test_sweep_findings.py` on the same committed data.
#
# Phases (docs/measurements.md#phases) are read at every checkpoint from the clean-labelled
# training fit F, the memorized and corrected fractions M and C of the noisy-labelled training
# examples, and the clean test accuracy G, with Doshi et al.'s 90 % threshold; a run's final
# phase is *settled* when it holds over the last quarter of its epochs.
#
# Three sweeps (all p = 97, d_model 128, d_mlp 512, AdamW betas (0.9, 0.98), float64 loss,
# data seed 346):
# - `noise-tf`: noise n ∈ {0, 2, 4, 8} × training fraction ∈ {0.3, 0.5, 0.7} × model seed {0, 1}
#   at the defaults (lr 1e-3, weight decay 1), 10 000 epochs.
# - `n4-xi-wd-lr`: n = 4, noised fraction ξ ∈ {0.1, 0.3, 1} × weight decay ∈ {1, 3, 10, 30} ×
#   lr ∈ {1e-3, 1e-2}, training fraction 0.3, seed 0, 3 000 epochs.
# - `n4-init`: n = 4, ξ ∈ {0.3, 1} × initialization scale α ∈ {0.5, 1, 2}, lr 1e-2, weight decay 1,
#   3 000 epochs.

# %%
import csv
from collections import Counter

from interp_grok import doshi_phase_trajectory, load_sweep, plotting, run_phases
from interp_grok.reference import figures_dir, reference_dir

SWEEPS = ("noise-tf", "n4-xi-wd-lr", "n4-init")
SWEEP_RUNS = reference_dir() / "sweeps"
sweeps = {name: load_sweep(SWEEP_RUNS / name) for name in SWEEPS}
out = figures_dir()
for res in sweeps.values():
    print(res)


def fmt(v, spec=".3f"):
    return "-" if v is None else format(v, spec) if isinstance(v, float) else str(v)


# %% [markdown]
# ## 1. Noise × training fraction at the default settings (2 seeds each)

# %%
rows = sweeps["noise-tf"].rows
fig = plotting.plot_phase_diagram(rows, "noise_n", "train_frac", title="Final phase at 10 000 epochs: noise n x "
                                  "training fraction (2 seeds per cell; lr 1e-3, wd 1)")
plotting.save_figure(fig, out / "sweep_phases_noise_tf.png")
fig = plotting.plot_sweep_values(rows, "noise_n", "train_frac", "test_acc_clean",
                                 title="Clean test accuracy at 10 000 epochs (mean, ±sd over 2 seeds)")
plotting.save_figure(fig, out / "sweep_acc_noise_tf.png")
if any(r["grok_epoch"] is not None for r in rows):
    fig = plotting.plot_sweep_values(rows, "noise_n", "train_frac", "grok_epoch", log=True,
                                     title="Grok epoch (clean test accuracy >= 0.9 from then on; runs that "
                                     "got there / runs)")
    plotting.save_figure(fig, out / "sweep_grok_epoch_noise_tf.png")
print(f"{'n':>2} {'tf':>4} {'phases (seeds 0, 1)':<34} {'settled':<12} {'test acc clean':<15} {'best':<13} "
      f"{'memorized':<13} {'grok epoch':<13}")
for n in sweeps["noise-tf"].axes["noise_n"]:
    for tf in sweeps["noise-tf"].axes["train_frac"]:
        cell = sorted((r for r in rows if r["noise_n"] == n and r["train_frac"] == tf), key=lambda r: r["seed"])
        print(f"{n:>2} {tf:>4} {', '.join(r['final_phase'] for r in cell):<34} "
              f"{', '.join(str(r['settled']) for r in cell):<12} "
              f"{', '.join(fmt(r['test_acc_clean']) for r in cell):<15} "
              f"{', '.join(fmt(r['test_acc_clean_best']) for r in cell):<13} "
              f"{', '.join(fmt(r['train_noisy_memorized_frac']) for r in cell):<13} "
              f"{', '.join(fmt(r['grok_epoch']) for r in cell):<13}")
print("final phases:", dict(sorted(Counter(r["final_phase"] for r in rows).items())))

# %% [markdown]
# On the test pairs: the predicted shift (pred − a − b) against the noise distribution P_X.
# `shift_kl` = KL(Q ‖ P_X) (docs/measurements.md §5); a model that always predicts the clean label
# (the Bayes-optimal argmax) has KL = −log P(X = 0); `shift_within1` = fraction of test pairs whose
# predicted shift is −1, 0 or +1, against P(|X| ≤ 1).

# %%
from interp_grok import noise_pmf  # noqa: E402

for n in sweeps["noise-tf"].axes["noise_n"]:
    if n == 0:
        continue
    pmf = noise_pmf(n, 0.5, 97)
    within = (pmf[0] + pmf[1] + pmf[-1]).item()
    print(f"n = {n}: clean-label predictor KL {-pmf[0].log().item():.3f}, P(|X| <= 1) {within:.3f}")
    for tf in sweeps["noise-tf"].axes["train_frac"]:
        cell = sorted((r for r in rows if r["noise_n"] == n and r["train_frac"] == tf), key=lambda r: r["seed"])
        print(f"    tf {tf}: shift KL {', '.join(fmt(r['shift_kl']) for r in cell)}; within 1 "
              f"{', '.join(fmt(r['shift_within1']) for r in cell)}; test acc clean "
              f"{', '.join(fmt(r['test_acc_clean']) for r in cell)}; test acc vs the noisy test labels "
              f"{', '.join(fmt(r['test_acc_noisy']) for r in cell)} (always a + b: {pmf[0].item():.3f})")
noisy_runs = [r for r in rows if r["noise_n"] > 0]
gap = max(abs(a["test_acc_clean"] - b["test_acc_clean"]) for a in noisy_runs for b in noisy_runs
          if (a["noise_n"], a["train_frac"]) == (b["noise_n"], b["train_frac"]))
lowest = min(noisy_runs, key=lambda r: r["shift_kl"])
print(f"lowest shift KL of the {len(noisy_runs)} noisy runs: {lowest['shift_kl']:.3f} ({lowest['name']}); at tf 0.7 "
      + ", ".join(f"{r['name']} {r['shift_kl']:.3f}" for r in noisy_runs if r["train_frac"] == 0.7))
print(f"noisy runs: corrected fraction <= {max(r['train_noisy_corrected_frac'] for r in noisy_runs):.3f}; "
      f"largest seed gap in clean test accuracy {gap:.3f}")

# %% [markdown]
# ## 2. n = 4: noised fraction ξ × weight decay × learning rate

# %%
rows = sweeps["n4-xi-wd-lr"].rows
print("noisy fraction of the training labels:", {xi: round(next(r["noisy_train_frac"] for r in rows
                                                                 if r["noise_frac"] == xi), 4)
                                                 for xi in sweeps["n4-xi-wd-lr"].axes["noise_frac"]})
fig = plotting.plot_phase_diagram(rows, "weight_decay", "noise_frac", "lr",
                                  title="n = 4, 3 000 epochs: final phase over weight decay x noised fraction xi, "
                                  "one panel per learning rate")
plotting.save_figure(fig, out / "sweep_phases_n4_xi_wd_lr.png")
fig = plotting.plot_sweep_values(rows, "weight_decay", "noise_frac", "test_acc_clean", "lr",
                                 title="n = 4: clean test accuracy at 3 000 epochs")
plotting.save_figure(fig, out / "sweep_acc_n4_xi_wd_lr.png")
fig = plotting.plot_sweep_values(rows, "weight_decay", "noise_frac", "train_noisy_memorized_frac", "lr",
                                 title="n = 4: noisy training labels still memorized at 3 000 epochs")
plotting.save_figure(fig, out / "sweep_memorized_n4_xi_wd_lr.png")
print(f"{'lr':>6} {'wd':>3} {'xi':>4} {'lr*wd':>6} {'phase':<18} {'settled':<7} {'test clean':>10} "
      f"{'clean fit':>9} {'memorized':>9} {'corrected':>9} {'grok ep':>7} {'fit ep':>6} {'keys':>4} {'key_fve':>7}")
for r in sorted(rows, key=lambda r: (r["lr"], r["weight_decay"], r["noise_frac"])):
    print(f"{r['lr']:>6} {r['weight_decay']:>3} {r['noise_frac']:>4} {r['lr'] * r['weight_decay']:>6.3f} "
          f"{r['final_phase']:<18} {str(r['settled']):<7} {fmt(r['test_acc_clean']):>10} "
          f"{fmt(r['train_clean_acc']):>9} {fmt(r['train_noisy_memorized_frac']):>9} "
          f"{fmt(r['train_noisy_corrected_frac']):>9} {fmt(r['grok_epoch']):>7} {fmt(r['fit_epoch']):>6} "
          f"{r['n_key_freqs']:>4} {fmt(r['key_fve']):>7}")
print("final phases:", dict(sorted(Counter(r["final_phase"] for r in rows).items())))
conf = [r for r in rows if r["final_phase"] == "confusion"]
print(f"confusion runs: key frequencies {sorted(r['n_key_freqs'] for r in conf)}, key_fve <= "
      f"{max(r['key_fve'] for r in conf):.5f}")
mem = [r for r in rows if r["final_phase"] == "memorization" and r["lr"] == 0.01]
print(f"lr 1e-2 memorizing runs: memorized >= {min(r['train_noisy_memorized_frac'] for r in mem):.3f}")


def progress(sweep: str, run: str) -> list[dict]:
    with open(SWEEP_RUNS / sweep / "runs" / run / "analysis" / "progress.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def value_at(prog: list[dict], epoch: int, column: str) -> float:
    return next(r[column] for r in prog if r["epoch"] == epoch)


for xi in ("0.1", "0.3", "1"):  # lr 1e-3, wd 10: the clean-labelled fit over training
    prog = progress("n4-xi-wd-lr", f"xi{xi}_lr0.001_wd10")
    fs = [(int(r["epoch"]), r["train_clean_acc"]) for r in prog]
    first = next((e for e, f in fs if f >= 0.9), None)
    print(f"lr 1e-3 wd 10 xi {xi}: F at 1539 {value_at(prog, 1539, 'train_clean_acc'):.3f}, at 2775 "
          f"{value_at(prog, 2775, 'train_clean_acc'):.3f}, max {max(f for _, f in fs):.3f} at "
          f"{max(fs, key=lambda t: t[1])[0]}, final {fs[-1][1]:.3f}; first F >= 0.9: {first}")
p01 = progress("n4-xi-wd-lr", "xi0.1_lr0.001_wd10")
both = next(int(r["epoch"]) for r in p01 if r["train_clean_acc"] >= 0.9 and r["train_noisy_memorized_frac"] >= 0.9)
print(f"lr 1e-3 wd 10 xi 0.1: at 1500 F {value_at(p01, 1500, 'train_clean_acc'):.3f} M "
      f"{value_at(p01, 1500, 'train_noisy_memorized_frac'):.3f}; F and M >= 0.9 first at {both}; at 3000 M "
      f"{p01[-1]['train_noisy_memorized_frac']:.3f}")
for name in ("xi0.3_lr0.01_wd1", "xi0.3_lr0.01_wd3", "xi1_lr0.01_wd3"):  # still moving at the end?
    prog = progress("n4-xi-wd-lr", name)
    print(f"{name}: G at 1500 {value_at(prog, 1500, 'test_acc_clean'):.3f}, at 2250 "
          f"{value_at(prog, 2250, 'test_acc_clean'):.3f}, at 3000 {prog[-1]['test_acc_clean']:.3f}")

# %% [markdown]
# ## 3. n = 4: initialization scale

# %%
rows = sweeps["n4-init"].rows
for r in sorted(rows, key=lambda r: (r["noise_frac"], r["init_scale"])):
    print(f"xi {r['noise_frac']:>4} alpha {r['init_scale']:>4}: {r['final_phase']:<18} settled {r['settled']!s:<5} "
          f"test clean {fmt(r['test_acc_clean'])}, memorized {fmt(r['train_noisy_memorized_frac'])}, "
          f"corrected {fmt(r['train_noisy_corrected_frac'])}, grok epoch {fmt(r['grok_epoch'])}")
    prog = progress("n4-init", r["name"])
    print(f"    G at 2250 {value_at(prog, 2250, 'test_acc_clean'):.3f} -> 3000 {prog[-1]['test_acc_clean']:.3f}")

for xi in sweeps["n4-init"].axes["noise_frac"]:
    g = [r["test_acc_clean"] for r in rows if r["noise_frac"] == xi]
    g = [r["test_acc_clean"] for r in sorted(rows, key=lambda r: r["init_scale"]) if r["noise_frac"] == xi]
    order = "increasing" if g == sorted(g) else "decreasing" if g == sorted(g, reverse=True) else "not monotone"
    print(f"xi {xi}: clean test accuracy over alpha spans {max(g) - min(g):.3f}; over alpha = 0.5, 1, 2 {order}")

# %% [markdown]
# A seed spread at n = 4: the `xi1-window` sweep (docs/xi1-window.md; n = 4, ξ = 1, lr 1e-2, training
# fraction 0.3 and 0.7, 20 000 epochs) has two model seeds per weight decay. Its seed-0 wd-10 run repeats
# n4-xi-wd-lr's ξ = 1, lr 1e-2, wd 10 run (the same numbers at their common checkpoints).

# %%
XI1 = SWEEP_RUNS / "xi1-window"
xi1 = {r["name"]: r for r in load_sweep(XI1).rows if r["state"] == "done"}
a = {int(r["epoch"]): r for r in progress("n4-xi-wd-lr", "xi1_lr0.01_wd10")}
b = {int(r["epoch"]): r for r in progress("xi1-window", "tf0.3_s0_wd10")}
common = sorted(set(a) & set(b))
same = sum(all(a[e][k] == b[e][k] for k in ("test_acc_clean", "train_acc")) for e in common)
print(f"xi1-window tf0.3_s0_wd10 vs n4-xi-wd-lr xi1_lr0.01_wd10: {len(common)} common checkpoints, identical in "
      f"clean test and training accuracy at {same}")
def print_seed_gap(label: str, sweep: str, names: list[str]) -> None:
    """Clean test accuracy of two seeds' runs at epoch 3 000 and at their end (20 000), and the gaps."""
    g3, gf = zip(*((value_at(p, 3000, "test_acc_clean"), p[-1]["test_acc_clean"])
                   for p in (progress(sweep, n) for n in names)))
    print(f"{label}, seeds 0 / 1: G at 3000 {g3[0]:.3f} / {g3[1]:.3f} (gap {abs(g3[0] - g3[1]):.3f}), "
          f"at 20000 {gf[0]:.3f} / {gf[1]:.3f} (gap {abs(gf[0] - gf[1]):.3f})")


for tf in sorted({r["train_frac"] for r in xi1.values()}):
    for wd in sorted({r["weight_decay"] for r in xi1.values()}):
        pair = [f"tf{tf:g}_s{s}_wd{wd:g}" for s in (0, 1)]
        if all(n in xi1 for n in pair):
            print_seed_gap(f"xi1-window tf {tf:g} wd {wd:g}", "xi1-window", pair)
# and at ξ = 0.1: the two seeds of n4-xi0.1-lr1e-2-wd10 (lr 1e-2, wd 10; docs/turning-trajectories.md)
print_seed_gap("n4-xi0.1-lr1e-2-wd10", "n4-xi0.1-lr1e-2-wd10", ["s0", "s1"])

# %% [markdown]
# ## 4. The one inversion: ξ = 0.1, lr 1e-2, weight decay 10
#
# Its trajectory at every checkpoint: the clean-labelled fit F, the memorized and corrected
# fractions M and C of the 175 noisy-labelled training examples, the clean test accuracy G.

# %%
inv = progress("n4-xi-wd-lr", "xi0.1_lr0.01_wd10")
best = max(inv, key=lambda r: r["train_noisy_corrected_frac"])
for r in inv:
    if r["epoch"] in (55, 149, 229, 290, 353, 450, 566, 675, 900, 1500, 3000) or r is best:
        print(f"epoch {int(r['epoch']):>5}: F {r['train_clean_acc']:.3f} M {r['train_noisy_memorized_frac']:.3f} "
              f"C {r['train_noisy_corrected_frac']:.3f} G {r['test_acc_clean']:.3f}")
print(f"most corrected: C = {best['train_noisy_corrected_frac']:.3f} at epoch {int(best['epoch'])} "
      f"(M {best['train_noisy_memorized_frac']:.3f}, G {best['test_acc_clean']:.3f}); "
      f"final M {inv[-1]['train_noisy_memorized_frac']:.3f}, C {inv[-1]['train_noisy_corrected_frac']:.3f}")
before = [r for r in inv if r["epoch"] < 290]
print(f"before it generalized (epochs < 290): F <= {max(r['train_clean_acc'] for r in before):.3f}, M <= "
      f"{max(r['train_noisy_memorized_frac'] for r in before):.3f}; M > F at epochs "
      f"{[int(r['epoch']) for r in before if r['train_noisy_memorized_frac'] > r['train_clean_acc']]}")
print(f"largest M over the whole run {max(r['train_noisy_memorized_frac'] for r in inv):.3f}; at 225: F "
      f"{value_at(inv, 225, 'train_clean_acc'):.3f} G {value_at(inv, 225, 'test_acc_clean'):.3f}; at 290: F "
      f"{value_at(inv, 290, 'train_clean_acc'):.3f} G {value_at(inv, 290, 'test_acc_clean'):.3f}")
noisy01 = next(r["noisy_train_frac"] for r in sweeps["n4-xi-wd-lr"].rows if r["noise_frac"] == 0.1)
print(f"xi 0.1: {noisy01:.4f} of the training labels noisy, so a full inversion (F = C = 1) has training accuracy "
      f"{1 - noisy01:.3f} >= 0.9: their rule calls it coexistence; below 0.9 needs clean-labelled examples lost")
print("phases from 290 on:", sorted({ph for ph, r in zip(run_phases([r["epoch"] for r in inv], inv)["phases"], inv)
                                     if r["epoch"] >= 290}))
doshi = doshi_phase_trajectory([r["train_acc"] for r in inv], [r["test_acc_clean"] for r in inv], 0.1)
print(f"by Doshi et al.'s rule (train accuracy vs the given labels): final {doshi[-1]}; phases from 290 on "
      f"{sorted({ph for ph, r in zip(doshi, inv) if r['epoch'] >= 290})}; train accuracy from 290 on >= "
      f"{min(r['train_acc'] for r in inv if r['epoch'] >= 290):.3f}, final {inv[-1]['train_acc']:.3f}")
print(f"from 290 on: F >= {min(r['train_clean_acc'] for r in inv if r['epoch'] >= 290):.4f}, G >= "
      f"{min(r['test_acc_clean'] for r in inv if r['epoch'] >= 290):.3f}")
late = [r["train_noisy_memorized_frac"] for r in inv if r["epoch"] >= 675]
print(f"from epoch 675 on, M stays in {min(late):.3f}-{max(late):.3f}")
dip = progress("n4-xi-wd-lr", "xi0.1_lr0.01_wd3")
low = min((r for r in dip if r["epoch"] >= 450), key=lambda r: r["test_acc_clean"])
print(f"xi0.1_lr0.01_wd3 after grokking: lowest G {low['test_acc_clean']:.3f} at epoch {int(low['epoch'])} "
      f"(M {low['train_noisy_memorized_frac']:.3f}); other checkpoints from 450 on: G >= "
      f"{min(r['test_acc_clean'] for r in dip if r['epoch'] >= 450 and r is not low):.3f}")
for r in dip:
    if r["epoch"] >= 450 and r["train_noisy_memorized_frac"] < 0.9:
        print(f"    epoch {int(r['epoch'])}: F {r['train_clean_acc']:.3f} M {r['train_noisy_memorized_frac']:.3f} "
              f"C {r['train_noisy_corrected_frac']:.3f} G {r['test_acc_clean']:.3f}")
print(f"its first G >= 0.9: epoch {int(next(r['epoch'] for r in dip if r['test_acc_clean'] >= 0.9))}; settling "
      f"window: epochs >= {0.75 * dip[-1]['epoch']:.0f}")

# %% [markdown]
# ## 5. Where the memorized noisy labels live: the key subspace versus the rest
#
# For each run that generalizes (G ≥ 0.9 at the end), at its final checkpoint: restricted loss
# (only the key-frequency sum components of the logits) and excluded loss (the logits without
# them), each over the clean-labelled and the noisy-labelled training examples, against the given
# label, and for the noisy ones also against the clean label. Key frequencies by the logit-outlier
# rule (docs/measurements.md §3b).

# %%
grokked = [(s, r) for s in ("n4-xi-wd-lr", "n4-init") for r in sweeps[s].rows
           if r["test_acc_clean"] is not None and r["test_acc_clean"] >= 0.9]
print(f"{'run':<20} {'keys':>4} {'key_fve':>7} {'restr clean':>11} {'restr noisy':>11} {'(vs clean)':>10} "
      f"{'excl clean':>10} {'excl noisy':>10} {'(vs clean)':>10}")
for s, r in grokked:
    f = progress(s, r["name"])[-1]
    print(f"{r['name']:<20} {r['n_key_freqs']:>4} {f['key_fve']:>7.3f} {f['restricted_loss_train_clean']:>11.3g} "
          f"{f['restricted_loss_train_noisy']:>11.3g} {f['restricted_loss_train_noisy_vs_clean']:>10.3g} "
          f"{f['excluded_loss_train_clean']:>10.3g} {f['excluded_loss_train_noisy']:>10.3g} "
          f"{f['excluded_loss_train_noisy_vs_clean']:>10.3g}")

# %% [markdown]
# ## 6. Pruning the low-IPR neurons, against a size-quartile-matched random control
#
# `summary.json` → `pruning` of each generalizing run (docs/measurements.md §5): every neuron whose
# input-curve IPR is below 0.5 silenced, against 8 random sets of as many neurons with the same
# count in each size quartile (`neurons.norm_matched_controls`, 4 bins).

# %%
import json  # noqa: E402

for s, r in grokked:
    pr = json.loads((SWEEP_RUNS / s / "runs" / r["name"] / "analysis" / "summary.json").read_text())["pruning"]
    full, cut, ctl = pr["full"], pr["ipr_pruned"], pr["control"]
    print(f"{r['name']}: {pr['n_silenced']} of {pr['n_neurons']} silenced; memorized "
          f"{full['train_noisy_memorized_frac']:.3f} -> {cut['train_noisy_memorized_frac']:.3f} (control "
          f"{ctl['train_noisy_memorized_frac']['mean']:.3f} +- {ctl['train_noisy_memorized_frac']['sd']:.3f}), "
          f"clean test {full['test_acc_clean']:.3f} -> {cut['test_acc_clean']:.3f} (control "
          f"{ctl['test_acc_clean']['mean']:.3f}), clean-labelled fit {full['train_clean_acc']:.3f} -> "
          f"{cut['train_clean_acc']:.3f} (control {ctl['train_clean_acc']['mean']:.3f})")

# %% [markdown]
# ## 7. Key frequencies: the logit-outlier rule on every swept run

# %%
for name, res in sweeps.items():
    counts = [r["n_key_freqs"] for r in res.rows if r["n_key_freqs"] is not None]
    print(f"{name}: key frequencies per run {min(counts)}-{max(counts)} (median {sorted(counts)[len(counts) // 2]})"
          f" of 48; rule {res.rows[0]['key_freq_rule']}")

# %% [markdown]
# The size-quartile control above cannot separate periodicity from size where the periodic
# neurons are the largest ones. The run's final weights are kept in compact float16 form
# (`runs/xi0.1_lr0.01_wd1/compact/`, from a retraining whose progress.csv is identical to the
# committed one, cell for cell); its labels are regenerated from config.json
# (`interp_grok.make_dataset`). Keep the K largest neurons against the K periodic ones.

# %%
from interp_grok import make_dataset, rundir, size_ranked_pruning  # noqa: E402

wd1 = SWEEP_RUNS / "n4-xi-wd-lr" / "runs" / "xi0.1_lr0.01_wd1"
cfg, _ = rundir.read_config(wd1)
ds = make_dataset(cfg)
_, compact = rundir.read_compact(rundir.compact_path(wd1, 3000), cfg.p, cfg.d_model, cfg.d_mlp)
sr = size_ranked_pruning(compact, cfg, ds.noisy_labels, ds.clean_labels, ds.train_idx, ds.test_idx)
print(f"xi0.1_lr0.01_wd1: {sr['n_periodic_among_largest']} of its {sr['n_periodic']} periodic neurons are among its "
      f"{sr['n_periodic']} largest")
for what in ("full", "ipr_pruned", "largest_kept"):
    print(f"    {what}: " + ", ".join(f"{m} {v:.3f}" for m, v in sr[what].items()))

# %% [markdown]
# How far the quartile control is from size-matched, and a control matched closely in size: the same
# count of silenced neurons in bins of 4 neurons adjacent in size (128 bins instead of 4). Total size
# is the sum of `neuron_sizes` over the silenced neurons.

# %%
import torch  # noqa: E402

from interp_grok import neuron_ipr, neuron_sizes, norm_matched_controls, pruning_experiment  # noqa: E402

n_noisy = int((ds.noisy_labels != ds.clean_labels)[ds.train_idx].sum())
sizes, low = neuron_sizes(compact), neuron_ipr(compact) < 0.5
rank = torch.empty(sizes.numel(), dtype=torch.int64)
rank[torch.argsort(sizes, stable=True)] = torch.arange(sizes.numel())
print(f"xi0.1_lr0.01_wd1: {n_noisy} noisy-labelled training examples; its {int(low.sum())} low-IPR neurons by size "
      f"quartile, largest first: {[int((low & (rank * 4 // sizes.numel() == b)).sum()) for b in (3, 2, 1, 0)]}; "
      f"their total size {sizes[low].sum().item():.0f}")
for bins in (4, 128):
    draws = norm_matched_controls(sizes, low, n_bins=bins)
    total = [sizes[d].sum().item() for d in draws]
    pe = pruning_experiment(compact, cfg, ds.noisy_labels, ds.clean_labels, ds.train_idx, ds.test_idx, n_bins=bins)
    mem = pe["control"]["train_noisy_memorized_frac"]
    print(f"    control in {bins} size bins: total size {min(total):.0f}-{max(total):.0f}; memorized {mem['mean']:.3f} "
          f"({mem['min']:.3f}-{mem['max']:.3f}), clean test {pe['control']['test_acc_clean']['mean']:.3f}, "
          f"clean-labelled fit {pe['control']['train_clean_acc']['mean']:.3f}; noisy examples memorized "
          f"{mem['mean'] * n_noisy:.1f} ({mem['min'] * n_noisy:.0f}-{mem['max'] * n_noisy:.0f}) against "
          f"{pe['ipr_pruned']['train_noisy_memorized_frac'] * n_noisy:.0f} after IPR pruning")
print(f"    keeping the {sr['n_periodic']} largest: {sr['largest_kept']['train_noisy_memorized_frac'] * n_noisy:.0f} "
      f"noisy examples memorized")

# %% [markdown]
# ## 8. The phase rule: v2 against v1, on every committed sweep
#
# Rule v2 (docs/measurements.md#phases) calls a checkpoint memorization only when the noisy
# labels are memorized too (M ≥ 0.9); v1 did not look at M there. The tables hold v2.

# %%
ALL_SWEEPS = ("noise-tf", "n4-xi-wd-lr", "n4-init", "doshi-wd", "doshi-xi-tf", "doshi-grid")
for name in ALL_SWEEPS:
    res = sweeps.get(name) or load_sweep(SWEEP_RUNS / name)
    v1, v2, moved = Counter(), Counter(), []
    for r in res.rows:
        prog = progress(name, r["name"])
        old = run_phases([p["epoch"] for p in prog], prog, rule="v1")
        v1[old["final_phase"]] += 1
        v2[r["final_phase"]] += 1
        if old["final_phase"] != r["final_phase"]:
            last = prog[-1]
            moved.append(f"{r['name']} {old['final_phase']} -> {r['final_phase']} (settled {r['settled']}; F "
                         f"{last['train_clean_acc']:.3f} M {last['train_noisy_memorized_frac']:.3f} C "
                         f"{last['train_noisy_corrected_frac']:.3f} G {last['test_acc_clean']:.3f})")
    print(f"{name}: v1 {dict(sorted(v1.items()))}")
    print(f"{' ' * len(name)}  v2 {dict(sorted(v2.items()))}" + "".join(f"\n    {m}" for m in moved))

# where v2 and Doshi et al.'s rule part: training accuracy >= 0.9 does not need M >= 0.9
grid = {r["name"]: r for r in load_sweep(SWEEP_RUNS / "doshi-grid").rows}
for name in ("xi0.5_tf0.7_wd20", "xi0.3_tf0.3_wd20"):
    prog = progress("doshi-grid", name)
    ph = run_phases([p["epoch"] for p in prog], prog)
    last = prog[-1]
    dips = [p for p in prog if p["epoch"] > ph["fit_epoch"] and p["train_noisy_memorized_frac"] < 0.9]
    print(f"doshi-grid {name}: final training accuracy {last['train_acc']:.3f}, G {last['test_acc_clean']:.3f}; "
          f"their rule {grid[name]['doshi_phase']}, v2 {ph['final_phase']}; M < 0.9 after the fit epoch "
          f"{ph['fit_epoch']:.0f} at epochs {[int(p['epoch']) for p in dips]} (first: M "
          f"{dips[0]['train_noisy_memorized_frac']:.3f})")

# %% [markdown]
# ## 9. Trajectories that turn back: full inversion, then memorization again
#
# Runs with a checkpoint in full inversion (v2; for the additive ξ 0.1, lr 1e-2, wd 10 run, whose
# most corrected checkpoint is a partial inversion, that one) that memorize their noisy labels
# again while the test stays generalized: final M more than 0.1 above M at the most corrected
# checkpoint, final G ≥ 0.9.

# %%
turning = []
for name in ("doshi-grid", "n4-xi-wd-lr"):
    for r in (sweeps.get(name) or load_sweep(SWEEP_RUNS / name)).rows:
        prog = progress(name, r["name"])
        ph = run_phases([p["epoch"] for p in prog], prog)
        top = max(prog, key=lambda p: p["train_noisy_corrected_frac"])
        last = prog[-1]
        full = [int(p["epoch"]) for p, q in zip(prog, ph["phases"]) if q == "full_inversion"]
        back = last["train_noisy_memorized_frac"] - top["train_noisy_memorized_frac"]
        if (full or r["name"] == "xi0.1_lr0.01_wd10") and back > 0.1 and last["test_acc_clean"] >= 0.9:
            turning.append((name, r))
            print(f"{name} {r['name']}: most corrected C {top['train_noisy_corrected_frac']:.3f} at epoch "
                  f"{int(top['epoch'])} (M {top['train_noisy_memorized_frac']:.3f}); full inversion at "
                  f"{full[:1] or 'none'}; final M {last['train_noisy_memorized_frac']:.3f} C "
                  f"{last['train_noisy_corrected_frac']:.3f} G {last['test_acc_clean']:.3f}: {r['final_phase']}, "
                  f"settled {r['settled']}")
print("weight decays of the turning runs:", sorted({r["weight_decay"] for _, r in turning}))
for r in (sweeps.get("doshi-grid") or load_sweep(SWEEP_RUNS / "doshi-grid")).rows:  # turning without full inversion
    prog = progress("doshi-grid", r["name"])
    top = max(prog, key=lambda p: p["train_noisy_corrected_frac"])
    back = prog[-1]["train_noisy_memorized_frac"] - top["train_noisy_memorized_frac"]
    if r["name"] not in {t["name"] for _, t in turning} and top["train_noisy_corrected_frac"] >= 0.5 and back > 0.1 \
            and prog[-1]["test_acc_clean"] >= 0.9:
        print(f"doshi-grid {r['name']} (not selected: no full inversion): most corrected C "
              f"{top['train_noisy_corrected_frac']:.3f} at epoch {int(top['epoch'])}; final M "
              f"{prog[-1]['train_noisy_memorized_frac']:.3f} G {prog[-1]['test_acc_clean']:.3f}: {r['final_phase']}")

# %% [markdown]
# ## 10. Key frequencies at ξ = 1 against label damping
#
# Additive noise multiplies the target's Fourier component at frequency k by
# (1 − ξ) + ξ cos(πk/p)ⁿ (science.md §6). The largest key frequency (logit-outlier rule) of every
# run, by noise level, outside confusion; and the damping at it.

# %%
import math  # noqa: E402


def damping(k: int, n: int, xi: float, p: int = 97) -> float:
    return (1 - xi) + xi * math.cos(math.pi * k / p) ** n


top_key: dict[tuple[int, float], list[int]] = {}
for name in SWEEPS:
    for r in sweeps[name].rows:
        if r["final_phase"] == "confusion" or not r["key_freqs"]:
            continue
        n, xi = r.get("noise_n", 4), r.get("noise_frac", 1.0)
        top_key.setdefault((n, xi), []).append(max(int(k) for k in str(r["key_freqs"]).split()))
for (n, xi), ks in sorted(top_key.items()):
    print(f"n {n} xi {xi}: {len(ks)} runs, largest key frequency {max(ks)} (runs: {sorted(ks)}); damping there "
          f"{damping(max(ks), n, xi):.3f}" + (f"; at k = 48 it would be {damping(48, n, xi):.2g}" if n else ""))
for r in load_sweep(SWEEP_RUNS / "xi1-window").rows:  # not in the count above
    if r["state"] == "done" and r["key_freqs"]:
        k = max(int(k) for k in str(r["key_freqs"]).split())
        print(f"xi1-window {r['name']} ({r['final_phase']}): largest key frequency {k}, "
              f"damping {damping(k, 4, 1.0):.3f}")

# %% [markdown]
# ## 11. Noisy labels are fit slightly before clean ones (in the three sweeps; not in every sweep)
#
# First checkpoint at which half the noisy-labelled training examples are memorized (M ≥ 0.5),
# against half the clean-labelled ones fit (F ≥ 0.5), in every run with noisy labels that gets there.

# %%
def half_fit(prog: list[dict]) -> tuple[float, float] | None:
    """(first epoch with M >= 0.5, first with F >= 0.5) of a run with noisy labels; None otherwise."""
    if math.isnan(prog[-1]["train_noisy_memorized_frac"]):
        return None
    m = next((p["epoch"] for p in prog if p["train_noisy_memorized_frac"] >= 0.5), None)
    f = next((p["epoch"] for p in prog if p["train_clean_acc"] >= 0.5), None)
    return None if m is None or f is None else (m, f)


def fit_order(m: float, f: float) -> str:
    return "noisy first" if m < f else "same checkpoint" if m == f else "clean first"


order = Counter()
for name in SWEEPS:
    for r in sweeps[name].rows:
        if (mf := half_fit(progress(name, r["name"]))) is not None:
            order[fit_order(*mf)] += 1
print("M >= 0.5 against F >= 0.5:", dict(sorted(order.items())))
for name in ("xi1-window", "doshi-grid", "doshi-wd", "doshi-xi-tf"):  # the other sweeps (finished runs)
    order, later = Counter(), []
    for r in load_sweep(SWEEP_RUNS / name).rows:
        if r.get("state", "done") != "done" or (mf := half_fit(progress(name, r["name"]))) is None:
            continue
        m, f = mf
        order[fit_order(m, f)] += 1
        if m > f:
            later.append(f"{r['name']} (M >= 0.5 at {m:.0f}, F >= 0.5 at {f:.0f}; {r['final_phase']})")
    print(f"{name}: {dict(sorted(order.items()))}" + "".join(f"\n    clean first: {x}" for x in later))
    for r in load_sweep(SWEEP_RUNS / name).rows:  # half the clean ones fit, half the noisy ones never memorized
        if r.get("state", "done") != "done":
            continue
        prog = progress(name, r["name"])
        if half_fit(prog) is None and not math.isnan(prog[-1]["train_noisy_memorized_frac"]):
            f = next((p["epoch"] for p in prog if p["train_clean_acc"] >= 0.5), None)
            if f is not None:
                print(f"    never M >= 0.5: {r['name']} (F >= 0.5 at {f:.0f}, largest M "
                      f"{max(p['train_noisy_memorized_frac'] for p in prog):.3f}; {r['final_phase']})")

# %% [markdown]
# ## 12. Reproducibility: the same settings in two sweeps, and the sweeps against the reference runs

# %%
SAME = ("train_loss", "test_loss", "test_acc_noisy", "test_acc_clean", "train_acc", "train_clean_acc",
        "train_noisy_memorized_frac", "train_noisy_corrected_frac", "sum_sq_weights", "gini_W_E")


def by_epoch(path) -> dict[int, dict]:
    with open(path) as f:
        return {int(r["epoch"]): r for r in csv.DictReader(f)}


for a, b in (("n4-init/runs/xi0.3_a1", "n4-xi-wd-lr/runs/xi0.3_lr0.01_wd1"),
             ("n4-init/runs/xi1_a1", "n4-xi-wd-lr/runs/xi1_lr0.01_wd1"),
             ("n4-xi-wd-lr/runs/xi1_lr0.001_wd1", "noise-tf/runs/n4_tf0.3_s0")):
    pa = by_epoch(SWEEP_RUNS / a / "analysis" / "progress.csv")
    pb = by_epoch(SWEEP_RUNS / b / "analysis" / "progress.csv")
    common = sorted(set(pa) & set(pb))
    same = sum(all(pa[e][k] == pb[e][k] for k in SAME) for e in common)
    print(f"{a} vs {b}: {same} of {len(common)} common checkpoints identical in {len(SAME)} columns")
ref = reference_dir()
for n in (0, 2, 4, 8):  # noise-tf's tf 0.3 seed 0 cells have the reference runs' settings, 10 000 epochs
    pa = by_epoch(SWEEP_RUNS / "noise-tf" / "runs" / f"n{n}_tf0.3_s0" / "analysis" / "progress.csv")
    pb = by_epoch(ref / f"n{n}" / "analysis" / "progress.csv")
    common = sorted(set(pa) & set(pb))
    acc, train = (max(abs(float(pa[e][k]) - float(pb[e][k])) for e in common) for k in ("test_acc_clean", "train_acc"))
    print(f"noise-tf n{n}_tf0.3_s0 vs reference n{n}: {len(common)} common checkpoints up to {common[-1]}; largest "
          f"difference in clean test accuracy {acc:.4f}, in training accuracy {train:.4f}; at {common[-1]}: clean test "
          f"{float(pa[common[-1]]['test_acc_clean']):.4f} against {float(pb[common[-1]]['test_acc_clean']):.4f}")
