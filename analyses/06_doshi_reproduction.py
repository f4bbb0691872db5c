# %% [markdown]
# # Reproducing Doshi et al.'s corrupted-label MLP: their four example runs, point by point
#
# Jupytext percent format; or `python analyses/06_doshi_reproduction.py`. Reads the sweep
# `checkpoints/sweeps/doshi-wd` (analysis-only), trained with the project's commands:
#
#     interp-grok sweep doshi-wd --model quadratic --noise-kind uniform --noise-frac 0.35 \
#         --train-frac 0.5 --d-mlp 500 --lr 0.01 --loss-dtype float32 --weight-decay 0,5,15,20 \
#         --seed 0,1 --epochs 2000 --checkpoints 40
#     interp-grok analyze doshi-wd --x wd --y seed
#
# Their published numbers are the saved outputs of `Notebooks/Grokking_with_label_corruption.ipynb`
# in d-doshi/Grokking (commit 0b4335f; cells named below): p = 97, N = 500, training fraction 0.5,
# corruption 0.35, lr 1e-2, one run each. The paper publishes its phase diagrams as figures only
# (no numbers), so these four runs are the point-by-point comparison there is. Their phase rule is
# their Appendix C / Table 2 (`interp_grok.analysis.phases.doshi_phase_trajectory`), applied to their
# numbers and ours alike. docs/reproductions.md has the table and the discussion.

# %%
import csv
import json
from collections import Counter

from interp_grok import doshi_phase_trajectory, load_sweep, plotting, settled
from interp_grok.reference import figures_dir, reference_dir

XI = 0.35
# (weight decay, epoch, train accuracy against the given labels, test accuracy, their cell)
PUBLISHED = [
    (0, 1000, 0.9783163, 0.9829968, "cells 7-8, 'Coexistence'"),
    (5, 500, 0.7855017, 1.0, "cells 11-12, 'Partial Inversion'"),
    (15, 500, 0.6536990, 1.0, "cells 15-16, 'Full Inversion'"),
    (20, 300, 0.6563, 1.0, "cells 19-20, 'Forgetting' (logged at epoch 300)"),
    (20, 2000, 0.1218, 0.0721, "cells 19-20, 'Forgetting' (logged at epoch 2000)"),
]
SWEEP = reference_dir() / "sweeps" / "doshi-wd"
res = load_sweep(SWEEP)
print(res)


def progress(run: str, sweep=SWEEP) -> list[dict]:
    with open(sweep / "runs" / run / "analysis" / "progress.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def at(rows: list[dict], epoch: int) -> tuple[dict, str]:
    """The row at ``epoch`` and Doshi et al.'s phase there (forgetting needs the history)."""
    upto = [r for r in rows if r["epoch"] <= epoch]
    phases = doshi_phase_trajectory([r["train_acc"] for r in upto], [r["test_acc_clean"] for r in upto], XI)
    return upto[-1], phases[-1]


def their_trajectory(sweep, row: dict) -> tuple[list[float], list[str], list[dict]]:
    prog = progress(row["name"], sweep.path)
    phases = doshi_phase_trajectory([r["train_acc"] for r in prog], [r["test_acc_clean"] for r in prog],
                                    row["noise_frac"])
    return [r["epoch"] for r in prog], phases, prog


def drawn_by_their_rule(sweep) -> list[dict]:
    out = []
    for r in sweep.rows:
        epochs, phases, _ = their_trajectory(sweep, r)
        assert phases[-1] == r["doshi_phase"], r["name"]
        out.append(dict(r, final_phase=r["doshi_phase"], settled=settled(epochs, phases)))
    return out


# %%
print(f"{'wd':>3} {'epoch':>5}  {'theirs: train / test (phase)':<38} {'ours, seed 0':<36} {'ours, seed 1':<36}")
for wd, epoch, train, test, cell in PUBLISHED:
    hist = [(a, g) for w, e, a, g, _ in PUBLISHED if w == wd and e <= epoch]  # their logged history
    theirs = doshi_phase_trajectory([a for a, _ in hist], [g for _, g in hist], XI)[-1]
    ours, vals = [], []
    for seed in (0, 1):
        row, ph = at(progress(f"s{seed}_wd{wd}"), epoch)
        assert int(row["epoch"]) == epoch
        ours.append(f"{row['train_acc']:.4f} / {row['test_acc_clean']:.4f} ({ph})")
        vals.append((row["train_acc"], row["test_acc_clean"]))
    print(f"{wd:>3} {epoch:>5}  {f'{train:.4f} / {test:.4f} ({theirs})':<38} {ours[0]:<36} {ours[1]:<36}")
    print(f"          ({cell}); largest |ours - theirs|: train {max(abs(o[0] - train) for o in vals):.4f}, "
          f"test {max(abs(o[1] - test) for o in vals):.4f}; seed spread train {abs(vals[0][0] - vals[1][0]):.4f}, "
          f"test {abs(vals[0][1] - vals[1][1]):.4f}")

# %% [markdown]
# ## The same four runs from *their* draws: how far float rounding alone moves a run
#
# `checkpoints/doshi-replica.json`, written by `python checkpoints/doshi_replica.py`: their split,
# corruption and initialization rebuilt from their seeds, each run stepped once by their math
# (one-hot nn.Linear layers, torch's default AdamW) and once by ours (the quadratic family's
# batched loss, fused AdamW), float32, on this machine. Epoch 1 tests the draws against their
# printed numbers; the later epochs show the spread that float rounding alone produces.

# %%
replica = json.loads((reference_dir() / "doshi-replica.json").read_text())
print(f"torch {replica['torch']}, code {replica['git_commit'][:7]} (dirty: {replica['git_dirty']})")
print(f"{'wd':>3} {'epoch':>5}  {'theirs, printed':<17} {'their math, here':<17} {'our math, here':<17} "
      f"largest |here - printed| (train, test)")
for r in replica["runs"]:
    for e, (a, g) in r["theirs"].items():
        tm, om = r["their_math"][e], r["our_math"][e]
        print(f"{r['weight_decay']:>3g} {e:>5}  {a:.4f} / {g:.4f}   {tm[0]:.4f} / {tm[1]:.4f}   "
              f"{om[0]:.4f} / {om[1]:.4f}   {max(abs(tm[0] - a), abs(om[0] - a)):.4f}, "
              f"{max(abs(tm[1] - g), abs(om[1] - g)):.4f}")

# %% [markdown]
# The full-inversion ceiling of the training accuracy against the given labels is
# (1 − ξ) + ξ/p: a uniformly redrawn label equals the true one with probability 1/p.

# %%
print(f"full-inversion ceiling (1 - xi) + xi / p = {(1 - XI) + XI / 97:.4f}")
print("their wd 20 run at its end (epoch 5000, cells 19-20): train 0.0091412, test 0.0108395")
for s in (0, 1):  # our wd 20 runs: the weights decaying towards zero
    rows = progress(f"s{s}_wd20")
    print(f"s{s}_wd20: sum of squared weights {next(r['sum_sq_weights'] for r in rows if r['epoch'] == 300):.1f} at "
          f"epoch 300, {rows[-1]['sum_sq_weights']:.1f} at {int(rows[-1]['epoch'])}")
for r in sorted(res.rows, key=lambda r: (r["weight_decay"], r["seed"])):
    print(f"{r['name']:<8} final (epoch {r['epochs_trained']}): train {r['train_acc']:.4f}, test clean "
          f"{r['test_acc_clean']:.4f}, Doshi phase {r['doshi_phase']}, our phase {r['final_phase']}; corrupted "
          f"labels memorized {r['train_noisy_memorized_frac']:.3f}, corrected {r['train_noisy_corrected_frac']:.3f}")

# %%
curves = {f"wd {wd}": {f"seed {s}": progress(f"s{s}_wd{wd}") for s in (0, 1)} for wd in (0, 5, 15, 20)}
points = {f"wd {wd}": [(e, a, g) for w, e, a, g, _ in PUBLISHED if w == wd] for wd in (0, 5, 15, 20)}
fig = plotting.plot_published_vs_ours(curves, points, title="Doshi et al.'s setting (xi = 0.35, train fraction 0.5): "
                                      "our runs (2 seeds) and their published notebook values")
plotting.save_figure(fig, figures_dir() / "doshi_published_vs_ours.png")

# %% [markdown]
# ## Our phase diagram over corruption fraction × training fraction (their rule), at wd 5 and 15
#
# `checkpoints/sweeps/doshi-xi-tf`: ξ ∈ {0.2, 0.35, 0.5} × training fraction ∈ {0.3, 0.5, 0.7} ×
# weight decay ∈ {5, 15}, one seed, 2 000 epochs (their sweep's length), phases by their rule at the
# last epoch. Their Fig. 3 draws this diagram on a 17 × 17 grid but publishes no numbers, so this is
# ours alone; docs/reproductions.md says what can and cannot be compared.

# %%
grid = load_sweep(reference_dir() / "sweeps" / "doshi-xi-tf")
drawn = drawn_by_their_rule(grid)  # their rule's phase in each cell; dagger: it changed in the last quarter
fig = plotting.plot_phase_diagram(drawn, "noise_frac", "train_frac", "weight_decay",
                                  title="Doshi et al.'s setting, our runs: phase by their rule at 2 000 epochs, "
                                  "one panel per weight decay (\u2020: changed in the last quarter)")
plotting.save_figure(fig, figures_dir() / "doshi_phases_xi_tf.png")
for r in sorted(grid.rows, key=lambda r: (r["weight_decay"], r["train_frac"], r["noise_frac"])):
    print(f"wd {r['weight_decay']:>4} tf {r['train_frac']} xi {r['noise_frac']:<4}: {r['doshi_phase']:<18} "
          f"(train {r['train_acc']:.3f}, test {r['test_acc_clean']:.3f}, 1.05 - xi = {1.05 - r['noise_frac']:.2f}); "
          f"our rule: {r['final_phase']}")
print("phases by their rule:", dict(sorted(Counter(r["doshi_phase"] for r in grid.rows).items())))

# %% [markdown]
# ## Their Fig. 3(a) over their script's range, at a quarter of its resolution: the checks fixed beforehand
#
# `checkpoints/sweeps/doshi-grid`: ξ ∈ {0.1, 0.3, 0.5, 0.7, 0.9} × training fraction ∈ {0.1, 0.3,
# 0.5, 0.7, 0.9} (every fourth point of their script's `linspace(0.1, 0.9, 17)`) × weight decay ∈
# {0, 5, 15, 20}, one seed, 2 000 epochs, otherwise as doshi-wd:
#
#     interp-grok sweep doshi-grid --model quadratic --noise-kind uniform \
#         --noise-frac 0.1,0.3,0.5,0.7,0.9 --train-frac 0.1,0.3,0.5,0.7,0.9 --weight-decay 0,5,15,20 \
#         --d-mlp 500 --lr 0.01 --loss-dtype float32 --epochs 2000 --checkpoints 40
#     interp-grok analyze doshi-grid --x xi --y tf --facet wd
#
# Phases by their rule at the last epoch (as their script records them). Fig. 3(a) itself is an
# image we cannot read here, so the comparison is with four statements drawn from their text about
# the diagrams (one an inference); docs/reproductions.md fixed each as a check before this grid was
# analyzed. A cell's dagger: its phase by their rule changed within the last quarter of the run.

# %%
DAGGER = "\u2020"
GENERALIZING = ("coexistence", "partial_inversion", "full_inversion")
full = load_sweep(reference_dir() / "sweeps" / "doshi-grid")


drawn_full = drawn_by_their_rule(full)
fig = plotting.plot_phase_diagram(drawn_full, "noise_frac", "train_frac", "weight_decay", ncols=2,
                                  title="Doshi et al.'s Fig. 3(a) setting, our runs: phase by their rule at 2 000 "
                                  "epochs\n(\u2020: changed in the last quarter)")
plotting.save_figure(fig, figures_dir() / "doshi_phases_grid.png")
WDS = sorted({r["weight_decay"] for r in full.rows})
count = {wd: Counter(r["doshi_phase"] for r in full.rows if r["weight_decay"] == wd) for wd in WDS}
for wd in WDS:
    print(f"wd {wd:>4}: " + ", ".join(f"{k} {v}" for k, v in sorted(count[wd].items())))
    for tf in sorted({r["train_frac"] for r in full.rows}, reverse=True):
        cells = sorted((r for r in drawn_full if r["weight_decay"] == wd and r["train_frac"] == tf),
                       key=lambda r: r["noise_frac"])
        print(f"   tf {tf}: " + "  ".join(f"xi {r['noise_frac']} {plotting.PHASE_SHORT.get(r['final_phase'])}"
                                         f"{'' if r['settled'] else DAGGER} ({r['train_acc']:.2f}/"
                                         f"{r['test_acc_clean']:.2f})" for r in cells))

# %%
n_gen = {wd: sum(count[wd][ph] for ph in GENERALIZING) for wd in WDS}
n_inv = {wd: count[wd]["partial_inversion"] + count[wd]["full_inversion"] for wd in WDS}
check1 = n_gen[0] <= n_gen[5] <= n_gen[15] and n_inv[0] < n_inv[5] < n_inv[15]
print(f"check 1 (weight decay promotes generalization): cells with test >= 0.9 at wd 0/5/15/20: "
      f"{[n_gen[w] for w in WDS]}; inversion cells: {[n_inv[w] for w in WDS]} -> {'pass' if check1 else 'FAIL'}")
check2 = count[5]["full_inversion"] >= 1 and count[15]["full_inversion"] >= 1
print(f"check 2 (full inversion under weight decay): full-inversion cells at wd 5: {count[5]['full_inversion']}, "
      f"wd 15: {count[15]['full_inversion']} -> {'pass' if check2 else 'FAIL'}")
check3 = count[0]["coexistence"] >= 1 and count[0]["partial_inversion"] >= 1
print(f"check 3 (coexistence and partial inversion at wd 0): coexistence {count[0]['coexistence']}, partial "
      f"inversion {count[0]['partial_inversion']} -> {'pass' if check3 else 'FAIL'}")
forgot = [r for r in full.rows if r["doshi_phase"] == "forgetting"]
best_before = {r["name"]: max(p["test_acc_clean"] for p in their_trajectory(full, r)[2][:-1]) for r in forgot}
check4 = count[20]["forgetting"] >= 1 and all(b >= 0.9 for b in best_before.values())
print(f"check 4 (forgetting at wd 20, after grokking): forgetting cells at wd 20: {count[20]['forgetting']}; "
      f"all forgetting cells {sorted((r['weight_decay'], r['train_frac'], r['noise_frac']) for r in forgot)}; "
      f"their lowest best earlier test accuracy {min(best_before.values(), default=float('nan')):.3f} "
      f"-> {'pass' if check4 else 'FAIL'}")

# %%
TFS = sorted({r["train_frac"] for r in full.rows})
gen = {(r["weight_decay"], r["noise_frac"], r["train_frac"]): r["doshi_phase"] in GENERALIZING for r in full.rows}
for wd in WDS:
    monotone = all(gen[wd, xi, hi] for (w, xi, lo), g in gen.items() if w == wd and g for hi in TFS if hi > lo)
    lowest = min((tf for (w, _, tf), g in gen.items() if w == wd and g), default=None)
    print(f"wd {wd:>4}: memorization cells {count[wd]['memorization']}; every cell above a generalizing one (more "
          f"data, same xi) generalizes: {monotone}; lowest generalizing training fraction: {lowest}")
edge = [r for r in full.rows if r["noise_frac"] >= 0.7 or r["train_frac"] == 0.1]
print(f"memorization cells in all: {sum(count[wd]['memorization'] for wd in WDS)}; all {len(edge)} at xi >= 0.7 or "
      f"tf 0.1 memorize: {all(r['doshi_phase'] == 'memorization' for r in edge)}")

# %% [markdown]
# Their rule against ours on the same runs. At ξ = 0.1 the full-inversion ceiling of the training
# accuracy, (1 − ξ) + ξ/p = 0.901, is above their 0.9 threshold, so their rule calls a run that
# corrected every corrupted label coexistence; our group fractions tell the two apart.

# %%
cross = Counter((r["doshi_phase"], r["final_phase"]) for r in full.rows)
print("their rule -> our rule (runs):", dict(sorted(cross.items())))
for r in sorted(full.rows, key=lambda r: (r["weight_decay"], r["train_frac"])):
    if r["noise_frac"] == 0.1 and r["doshi_phase"] == "coexistence" and r["weight_decay"] > 0:
        print(f"wd {r['weight_decay']:>4} tf {r['train_frac']} xi 0.1: train {r['train_acc']:.4f} (ceiling about "
              f"{0.9 + 0.1 / 97:.4f}), corrupted labels memorized {r['train_noisy_memorized_frac']:.3f}, corrected "
              f"{r['train_noisy_corrected_frac']:.3f} -> our rule: {r['final_phase']}")
