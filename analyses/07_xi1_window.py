# %% [markdown]
# # The weight-decay window at ξ = 1: the readout of docs/xi1-window.md
#
# Jupytext percent format; or run as `python analyses/07_xi1_window.py`. Reads the sweep
# `checkpoints/sweeps/xi1-window` (analysis-only; n = 4, every label noised, lr 1e-2, weight
# decay × training fraction × model seed, 20 000 epochs) and prints, for every finished run, the
# readout fixed in docs/xi1-window.md before any run was analyzed: final phase (rule v2, and v1
# beside it), settled, the change and range of clean test accuracy over the last quarter and
# whether it is stationary, F, M, C, G at the end, and the key frequencies. Then the verdict per
# (weight decay, training fraction) cell, by the page's rule, for the cells whose two seeds are
# both finished. Asserted by tests/test_xi1_window.py on the same committed data.

# %%
import csv
from collections import defaultdict

from interp_grok import last_quarter_change, load_sweep, plotting, run_phases
from interp_grok.reference import figures_dir, reference_dir

SWEEP = reference_dir() / "sweeps" / "xi1-window"
res = load_sweep(SWEEP)
GROKKED = ("coexistence", "partial_inversion", "full_inversion")


def progress(name: str) -> list[dict]:
    with open(SWEEP / "runs" / name / "analysis" / "progress.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def readout(name: str) -> dict:
    rows = progress(name)
    epochs = [int(r["epoch"]) for r in rows]
    v2, v1 = run_phases(epochs, rows), run_phases(epochs, rows, rule="v1")
    g = last_quarter_change(epochs, [r["test_acc_clean"] for r in rows])
    last = rows[-1]
    return {"phase": v2["final_phase"], "settled": v2["settled"], "phase_v1": v1["final_phase"],
            "settled_v1": v1["settled"], "dG": g["delta"], "G_range": g["range"], "stationary": g["stationary"],
            "F": last["train_clean_acc"], "M": last["train_noisy_memorized_frac"],
            "C": last["train_noisy_corrected_frac"], "G": last["test_acc_clean"], "epoch": epochs[-1]}


done = [r for r in res.rows if r["state"] == "done"]
print(f"{len(done)} of {len(res.rows)} runs finished (the others are not read)")
out = {}
print(f"{'run':<16} {'phase (v2)':<18} {'settled':<7} {'v1':<18} {'dG':>7} {'range':>6} {'stat':<5} "
      f"{'F':>5} {'M':>5} {'C':>5} {'G':>5}  key frequencies")
for r in sorted(done, key=lambda r: (r["train_frac"], r["weight_decay"], r["seed"])):
    o = out[r["name"]] = readout(r["name"]) | {"key_freqs": r["key_freqs"], "wd": r["weight_decay"],
                                                "tf": r["train_frac"], "seed": r["seed"]}
    print(f"{r['name']:<16} {o['phase']:<18} {str(o['settled']):<7} {o['phase_v1']:<18} {o['dG']:>+7.3f} "
          f"{o['G_range']:>6.3f} {str(o['stationary']):<5} {o['F']:>5.3f} {o['M']:>5.3f} {o['C']:>5.3f} "
          f"{o['G']:>5.3f}  {o['key_freqs']}")

# %%
fig = plotting.plot_phase_diagram(done, "weight_decay", "train_frac", title="Final phase at 20 000 epochs, "
                                  "n = 4, xi = 1, lr 1e-2 (finished runs; seeds pooled per cell)")
plotting.save_figure(fig, figures_dir() / "xi1_window_phases.png")

# %% [markdown]
# ## The verdict, per cell (docs/xi1-window.md): a window cell needs both seeds grokked and settled

# %%
cells = defaultdict(list)
for o in out.values():
    cells[(o["tf"], o["wd"])].append(o)
verdict = {}
for (tf, wd), runs in sorted(cells.items()):
    grokked = sum(o["phase"] in GROKKED and o["settled"] for o in runs)
    verdict[(tf, wd)] = ("incomplete" if len(runs) < 2 else "window" if grokked == 2
                         else "one seed" if grokked == 1 else "no")
    print(f"tf {tf:g} wd {wd:g}: {len(runs)} seed(s) finished, {grokked} grokked and settled -> {verdict[(tf, wd)]}")
for tf in sorted({tf for tf, _ in verdict}):
    complete = {wd: v for (t, wd), v in verdict.items() if t == tf and v != "incomplete"}
    answer = ("yes" if "window" in complete.values() else "suggestive, not established"
              if "one seed" in complete.values() else "no window in the range sampled" if complete
              else "no cell has both seeds finished yet")
    print(f"training fraction {tf:g}: {answer} (complete cells: weight decay {sorted(complete) or '-'})")
