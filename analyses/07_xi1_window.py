# %% [markdown]
# # The weight-decay window at ξ = 1: the readout of docs/xi1-window.md
#
# Jupytext percent format; or run as `python analyses/07_xi1_window.py`. Reads the sweep
# `checkpoints/sweeps/xi1-window` (analysis-only; n = 4, every label noised, lr 1e-2, weight
# decay × training fraction × model seed, 20 000 epochs) and its second data seed
# `checkpoints/sweeps/xi1-window-ds347` (training fraction 0.3, wd 10-15, model seed 0), and
# prints, for every finished run, the readout fixed in docs/xi1-window.md before any run was
# analyzed: final phase (rule v2, and v1
# beside it), settled, the change and range of clean test accuracy over the last quarter and
# whether it is stationary, F, M, C, G at the end, and the key frequencies. Then the verdict per
# (weight decay, training fraction) cell, by the page's rule, for the cells whose two seeds are
# both finished. Asserted by tests/test_xi1_window.py on the same committed data.

# %%
import csv
import math
from collections import defaultdict

from interp_grok import last_quarter_change, load_sweep, phase_changes, plotting, run_phases
from interp_grok.reference import figures_dir, reference_dir

SWEEP = reference_dir() / "sweeps" / "xi1-window"
SWEEP_DS347 = reference_dir() / "sweeps" / "xi1-window-ds347"
res = load_sweep(SWEEP)
GROKKED = ("coexistence", "partial_inversion", "full_inversion")


def progress(name: str, sweep=SWEEP) -> list[dict]:
    with open(sweep / "runs" / name / "analysis" / "progress.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def readout(name: str, sweep=SWEEP) -> dict:
    rows = progress(name, sweep)
    epochs = [int(r["epoch"]) for r in rows]
    v2, v1 = run_phases(epochs, rows), run_phases(epochs, rows, rule="v1")
    g = last_quarter_change(epochs, [r["test_acc_clean"] for r in rows])
    last = rows[-1]
    return {"phase": v2["final_phase"], "settled": v2["settled"], "phase_v1": v1["final_phase"],
            "settled_v1": v1["settled"], "dG": g["delta"], "G_range": g["range"], "stationary": g["stationary"],
            "F": last["train_clean_acc"], "M": last["train_noisy_memorized_frac"],
            "C": last["train_noisy_corrected_frac"], "G": last["test_acc_clean"], "epoch": epochs[-1],
            "G_best": max(r["test_acc_clean"] for r in rows),
            "G_best_epoch": int(max(rows, key=lambda r: r["test_acc_clean"])["epoch"]),
            "path": phase_changes(epochs, v2["phases"])}


HEADER = (f"{'run':<16} {'phase (v2)':<18} {'settled':<7} {'v1':<18} {'dG':>7} {'range':>6} {'stat':<5} "
          f"{'F':>5} {'M':>5} {'C':>5} {'G':>5}  key frequencies")


def read_all(sweep_rows: list[dict], sweep=SWEEP) -> dict:
    """The readout of every finished run, printed one line each, keyed by run name."""
    out = {}
    print(HEADER)
    for r in sorted(sweep_rows, key=lambda r: (r["train_frac"], r["weight_decay"], r["seed"])):
        o = out[r["name"]] = readout(r["name"], sweep) | {"key_freqs": r["key_freqs"], "wd": r["weight_decay"],
                                                           "tf": r["train_frac"], "seed": r["seed"]}
        print(f"{r['name']:<16} {o['phase']:<18} {str(o['settled']):<7} {o['phase_v1']:<18} {o['dG']:>+7.3f} "
              f"{o['G_range']:>6.3f} {str(o['stationary']):<5} {o['F']:>5.3f} {o['M']:>5.3f} {o['C']:>5.3f} "
              f"{o['G']:>5.3f}  {o['key_freqs']}")
    return out


done = [r for r in res.rows if r["state"] == "done"]
print(f"{len(done)} of {len(res.rows)} runs finished (the others are not read)")
out = read_all(done)
best = max(out, key=lambda n: out[n]["G_best"])
print(f"largest clean test accuracy at any checkpoint: {out[best]['G_best']:.3f} ({best}, epoch "
      f"{out[best]['G_best_epoch']})")
for name, o in out.items():
    if not (o["settled"] and o["settled_v1"]):
        print(f"{name}: settled {o['settled']} (v1 {o['settled_v1']}); phases "
              + ", ".join(f"{e} {ph}" for e, ph in o["path"]))

# %% [markdown]
# ## Training fraction 0.7 between wd 5 and 10: the third sweep (wd 6-9, model seed 0)
#
# Added to the page before any of its runs started (docs/xi1-window.md, "The grid"); same data seed
# (346), so its runs join the grid's cells.

# %%
SWEEP_TF07 = reference_dir() / "sweeps" / "xi1-window-tf0.7"
if (SWEEP_TF07 / "sweep.json").exists():
    res3 = load_sweep(SWEEP_TF07)
    done3 = [r for r in res3.rows if r["state"] == "done"]
    print(f"{len(done3)} of {len(res3.rows)} runs finished (the others are not read)")
    out3 = read_all(done3, SWEEP_TF07)
    for name, o in sorted(out3.items(), key=lambda kv: kv[1]["wd"]):
        print(f"{name}: largest G {o['G_best']:.3f} (epoch {o['G_best_epoch']}); v1 settled {o['settled_v1']}; phases "
              + ", ".join(f"{e} {ph}" for e, ph in o["path"]))
else:
    done3, out3 = [], {}
    print(f"{SWEEP_TF07}: not committed yet")

# %%
fig = plotting.plot_phase_diagram(done + done3, "weight_decay", "train_frac", title="Final phase at 20 000 epochs, "
                                  "n = 4, xi = 1, lr 1e-2, data seed 346 (finished runs; seeds pooled per cell)")
plotting.save_figure(fig, figures_dir() / "xi1_window_phases.png")

# %% [markdown]
# Key frequencies (readout item 4; the table above). Beyond the readout, an observation with no rule
# fixed for it: how many runs' key sets are all multiples of one frequency ≥ 2 (harmonics), by phase.

# %%
for phase in ("memorization", "confusion"):
    runs = [o for o in out.values() if o["phase"] == phase and o["key_freqs"]]
    keys = [[int(k) for k in str(o["key_freqs"]).split()] for o in runs]
    harmonic = [ks for ks in keys if math.gcd(*ks) >= 2]
    print(f"{phase}: {len(harmonic)} of {len(runs)} runs have every key a multiple of 2 or more "
          f"(of 2: {sum(math.gcd(*k) == 2 for k in harmonic)}, of 3: {sum(math.gcd(*k) == 3 for k in harmonic)}); "
          f"largest key {max(max(k) for k in keys)}")

# %% [markdown]
# ## The verdict, per cell (docs/xi1-window.md)
#
# A window cell has both model seeds grokked (coexistence, partial or full inversion) and settled;
# a cell with exactly one such seed makes the answer "suggestive"; a cell with one seed finished and
# not grokked is incomplete and does not enter the verdict.

# %%
cells = defaultdict(list)
for o in list(out.values()) + list(out3.values()):
    cells[(o["tf"], o["wd"])].append(o)
verdict = {}
for (tf, wd), runs in sorted(cells.items()):
    grokked = sum(o["phase"] in GROKKED and o["settled"] for o in runs)
    verdict[(tf, wd)] = ("window" if grokked == 2 else "one seed" if grokked == 1
                         else "incomplete" if len(runs) < 2 else "no")
    print(f"tf {tf:g} wd {wd:g}: {len(runs)} seed(s) finished, {grokked} grokked and settled -> {verdict[(tf, wd)]}")
for tf in sorted({tf for tf, _ in verdict}):
    mine = {wd: v for (t, wd), v in verdict.items() if t == tf}
    complete = sorted(wd for wd, v in mine.items() if v != "incomplete")
    answer = ("yes" if "window" in mine.values() else "suggestive, not established"
              if "one seed" in mine.values() else "no window in the range sampled" if complete
              else "no cell has both seeds finished yet")
    one_seed = sorted(wd for wd, v in mine.items() if v == "incomplete")
    print(f"training fraction {tf:g}: {answer} (cells with both seeds: weight decay {complete or '-'}; "
          f"one seed, not grokked: {one_seed or '-'})")

# %% [markdown]
# ## The second data seed (347): training fraction 0.3, wd 10-15, model seed 0
#
# One model seed, so no cell here can be a window cell by the page's rule; a run that groks and
# settles would make the answer "suggestive". Beside each run, the same weight decay's two model
# seeds on the first data split (346).

# %%
if (SWEEP_DS347 / "sweep.json").exists():
    res2 = load_sweep(SWEEP_DS347)
    done2 = [r for r in res2.rows if r["state"] == "done"]
    print(f"{len(done2)} of {len(res2.rows)} runs finished (the others are not read)")
    out2 = read_all(done2, SWEEP_DS347)
    for name, o in out2.items():
        if not (o["settled"] and o["settled_v1"]):
            print(f"data seed 347 {name}: settled {o['settled']}, by rule v1 {o['phase_v1']} settled {o['settled_v1']}")
    first_split = {(o["tf"], o["wd"], o["seed"]): o for o in out.values()}
    for o in sorted(out2.values(), key=lambda o: o["wd"]):
        same = [first_split.get((o["tf"], o["wd"], s)) for s in (0, 1)]
        beside = ", ".join(f"seed {s}: {x['phase']} (F {x['F']:.3f}, G {x['G']:.3f})" if x else f"seed {s}: -"
                           for s, x in zip((0, 1), same))
        print(f"wd {o['wd']:g}: data seed 347 {o['phase']} (F {o['F']:.3f}, G {o['G']:.3f}); data seed 346 {beside}")
    grokked2 = [o for o in out2.values() if o["phase"] in GROKKED and o["settled"]]
    print(f"data seed 347: {len(grokked2)} of {len(out2)} runs grokked and settled")
else:
    print(f"{SWEEP_DS347}: not committed yet")
