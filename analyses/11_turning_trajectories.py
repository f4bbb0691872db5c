# %% [markdown]
# # Turning trajectories run until they settle: the readout of docs/turning-trajectories.md
#
# Jupytext percent format; or run as `python analyses/11_turning_trajectories.py`. Reads the
# analysis-only copies `checkpoints/sweeps/doshi-xi0.1`, `doshi-xi0.3` (Doshi et al.'s quadratic
# MLP, uniform label noise, weight decay 0 and 5, two model seeds, 20 000 epochs),
# `n4-xi0.1-lr1e-2-wd10` (the seed's MLP, additive n = 4 noise on 10 % of the labels, two seeds) and
# `checkpoints/long-runs/n4-100k` (the default n = 4 run trained to 100 000 epochs), and prints the
# readout that docs/turning-trajectories.md fixed before any of them was analyzed: final phase (rule
# v2, v1 beside it) and settled; Doshi et al.'s accuracy phase for the quadratic runs; the first
# epoch of (partial or full) inversion and whether a later checkpoint is back in memorization or
# coexistence; whether G and M are stationary over the last quarter; F, M, C, G at the end. Then the
# answers per cell by the page's rules. Asserted by tests/test_turning_trajectories.py.

# %%
import csv
import json
from collections import defaultdict
from pathlib import Path

from interp_grok import (
    doshi_phase_trajectory,
    last_quarter_change,
    load_sweep,
    phase_changes,
    plotting,
    run_phases,
    turning_epochs,
)
from interp_grok.reference import figures_dir, reference_dir

REF = reference_dir()
INVERTED = ("partial_inversion", "full_inversion")
LONG = REF / "long-runs" / "n4-100k"


def progress(run: Path) -> list[dict]:
    with open(run / "analysis" / "progress.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def readout(run: Path, noise_frac: float | None = None) -> dict:
    """The page's readout of one run; ``noise_frac``: also Doshi et al.'s phase (uniform noise)."""
    rows = progress(run)
    epochs = [int(r["epoch"]) for r in rows]
    v2, v1 = run_phases(epochs, rows), run_phases(epochs, rows, rule="v1")
    turn = turning_epochs(epochs, v2["phases"])
    inv, back = turn["inversion_epoch"], turn["back_epoch"]
    g = last_quarter_change(epochs, [r["test_acc_clean"] for r in rows])
    m = last_quarter_change(epochs, [r["train_noisy_memorized_frac"] for r in rows])
    last = rows[-1]
    out = {"phase": v2["final_phase"], "settled": v2["settled"], "phase_v1": v1["final_phase"],
           "settled_v1": v1["settled"], "inversion_epoch": inv, "back_epoch": back, "rememorized": back is not None,
           "dG": g["delta"], "G_range": g["range"], "G_stationary": g["stationary"],
           "dM": m["delta"], "M_range": m["range"], "M_stationary": m["stationary"],
           "F": last["train_clean_acc"], "M": last["train_noisy_memorized_frac"],
           "C": last["train_noisy_corrected_frac"], "G": last["test_acc_clean"], "epoch": epochs[-1],
           "phases": v2["phases"], "epochs": epochs, "rows": rows}
    if noise_frac is not None:
        out["doshi_phase"] = doshi_phase_trajectory([r["train_acc"] for r in rows],
                                                    [r["test_acc_clean"] for r in rows], noise_frac)[-1]
    return out


def fmt_epoch(e: int | None) -> str:
    return "-" if e is None else str(e)


def show(name: str, o: dict) -> None:
    print(f"{name:<22} {o['phase']:<18} {str(o['settled']):<6} {o['phase_v1']:<18} {o.get('doshi_phase', '-'):<14} "
          f"{fmt_epoch(o['inversion_epoch']):>6} {fmt_epoch(o['back_epoch']):>6} "
          f"{o['dG']:>+7.3f} {o['G_range']:>6.3f} {o['dM']:>+7.3f} {o['M_range']:>6.3f} "
          f"{o['F']:>5.3f} {o['M']:>5.3f} {o['C']:>5.3f} {o['G']:>5.3f}")


HEADER = (f"{'run':<22} {'phase (v2)':<18} {'settl':<6} {'v1':<18} {'Doshi':<14} {'inv@':>6} {'back@':>6} "
          f"{'dG':>7} {'G rng':>6} {'dM':>7} {'M rng':>6} {'F':>5} {'M':>5} {'C':>5} {'G':>5}")

# %% [markdown]
# ## The quadratic cells: weight decay 0 against its weight-decay-5 twin

# %%
runs = {}
for sweep_name in ("doshi-xi0.1", "doshi-xi0.3"):
    res = load_sweep(REF / "sweeps" / sweep_name)
    done = [r for r in res.rows if r["state"] == "done"]
    print(f"{sweep_name}: {len(done)} of {len(res.rows)} runs finished (the others are not read)")
    for r in done:
        o = readout(res.path / "runs" / r["name"], r["noise_frac"])
        assert o["doshi_phase"] == r["doshi_phase"], r["name"]  # the table's column, recomputed
        runs[f"xi{r['noise_frac']:g}_tf{r['train_frac']:g}_wd{r['weight_decay']:g}_s{r['seed']}"] = o | {
            "xi": r["noise_frac"], "tf": r["train_frac"], "wd": r["weight_decay"], "seed": r["seed"]}
print(HEADER)
for name, o in sorted(runs.items(), key=lambda kv: (kv[1]["xi"], kv[1]["tf"], kv[1]["wd"], kv[1]["seed"])):
    show(name, o)


def segments(o: dict) -> str:
    """The run's phases as 'epoch phase' at each change (rule v2)."""
    return ", ".join(f"{e} {ph}" for e, ph in phase_changes(o["epochs"], o["phases"]))


# %% [markdown]
# Each quadratic run's path through the phases (the epoch of each change), the final training
# accuracy against the given labels (what Doshi et al.'s rule reads), and G's last-quarter change.

# %%
for name, o in sorted(runs.items(), key=lambda kv: (kv[1]["xi"], kv[1]["tf"], kv[1]["wd"], kv[1]["seed"])):
    print(f"{name}: {segments(o)}; final training accuracy {o['rows'][-1]['train_acc']:.3f}, dG {o['dG']:+.4f}")


# %%
def converges_to_coexistence(o: dict) -> bool:
    return o["phase"] == "coexistence" and o["settled"] and o["G_stationary"] and o["M_stationary"]


def keeps_inversion(o: dict) -> bool:
    return o["phase"] in INVERTED and o["settled"] and o["G_stationary"] and o["M_stationary"]


def answer(seeds: list[dict], rule) -> str:
    if len(seeds) < 2:
        return "incomplete"
    hits = [rule(o) for o in seeds]
    return "yes" if all(hits) else "no" if not any(hits) else "seeds differ"


# Beyond the readout, to describe the wd-0 runs' test accuracy: its largest value and the first
# checkpoint after that with G < 0.9 (none: "-").
for name, o in sorted(runs.items(), key=lambda kv: (kv[1]["xi"], kv[1]["tf"], kv[1]["wd"], kv[1]["seed"])):
    if o["wd"] == 0:
        top = max(o["rows"], key=lambda r: r["test_acc_clean"])
        below = next((int(r["epoch"]) for r in o["rows"] if r["epoch"] > top["epoch"] and r["test_acc_clean"] < 0.9),
                     None)
        print(f"{name}: largest G {top['test_acc_clean']:.3f} (epoch {int(top['epoch'])}), first below 0.9 at epoch "
              f"{fmt_epoch(below)}, final G {o['G']:.3f}, final M {o['M']:.3f}")

# %% [markdown]
# The wd-0 runs along the way: their most corrected checkpoint, and M, C, G at four epochs. The
# seed-0 runs have the settings and seed of the doshi-grid cells (2 000 epochs, an earlier session and
# commit); M at epoch 2 000 side by side.

# %%
grid = load_sweep(REF / "sweeps" / "doshi-grid")
for name, o in sorted(runs.items(), key=lambda kv: (kv[1]["xi"], kv[1]["tf"], kv[1]["wd"], kv[1]["seed"])):
    if o["wd"] == 0:
        by_epoch = {int(r["epoch"]): r for r in o["rows"]}
        peak = max(o["rows"], key=lambda r: r["train_noisy_corrected_frac"])
        along = ", ".join(f"{e}: M {by_epoch[e]['train_noisy_memorized_frac']:.3f} C "
                          f"{by_epoch[e]['train_noisy_corrected_frac']:.3f} G {by_epoch[e]['test_acc_clean']:.3f}"
                          for e in (2000, 5000, 10000, 20000))
        print(f"{name}: most corrected at epoch {int(peak['epoch'])} (C {peak['train_noisy_corrected_frac']:.3f}, "
              f"M {peak['train_noisy_memorized_frac']:.3f}); {along}")
for name, o in sorted(runs.items()):
    key = (o["xi"], o["tf"], o["wd"])
    cell = [r for r in grid.rows if (r["noise_frac"], r["train_frac"], r["weight_decay"]) == key]
    if o["seed"] == 0 and cell:
        then = {int(r["epoch"]): r for r in progress(grid.path / "runs" / cell[0]["name"])}[2000]
        now = {int(r["epoch"]): r for r in o["rows"]}[2000]
        print(f"{name} at epoch 2 000: M {now['train_noisy_memorized_frac']:.3f}, doshi-grid's {cell[0]['name']} "
              f"{then['train_noisy_memorized_frac']:.3f}")

# %%
cells = defaultdict(list)
for o in runs.values():
    cells[(o["xi"], o["tf"], o["wd"])].append(o)
answers = {}
for (xi, tf, wd), seeds in sorted(cells.items()):
    question, rule = (("wd 0 converges to coexistence", converges_to_coexistence) if wd == 0
                      else ("wd 5 keeps the inversion", keeps_inversion))
    answers[(xi, tf, wd)] = answer(seeds, rule)
    print(f"xi {xi:g} tf {tf:g} wd {wd:g}: {question}? {answers[(xi, tf, wd)]} "
          f"(final phases {', '.join(o['phase'] for o in sorted(seeds, key=lambda o: o['seed']))}; "
          f"re-memorized after inverting: {sum(o['rememorized'] for o in seeds)} of {len(seeds)})")

# %% [markdown]
# ## The additive ξ 0.1, lr 1e-2, wd 10 run of n4-xi-wd-lr, two seeds

# %%
additive = {}
res = load_sweep(REF / "sweeps" / "n4-xi0.1-lr1e-2-wd10")
for r in res.rows:
    if r["state"] == "done":
        additive[f"n4-xi0.1-wd10_s{r['seed']}"] = readout(res.path / "runs" / r["name"])
print(HEADER)
for name, o in additive.items():
    show(name, o)
for name, o in additive.items():
    rows = o["rows"]
    late = [r["train_noisy_memorized_frac"] for r in rows if r["epoch"] >= 1343]
    at1343 = next(r for r in rows if r["epoch"] == 1343)
    print(f"{name}: {segments(o)}")
    print(f"  largest M {max(r['train_noisy_memorized_frac'] for r in rows):.3f}; M from epoch 1 343 on "
          f"{min(late):.3f}-{max(late):.3f}; at 1 343 C {at1343['train_noisy_corrected_frac']:.3f} "
          f"G {at1343['test_acc_clean']:.3f}; largest C {max(r['train_noisy_corrected_frac'] for r in rows):.3f}")

# %% [markdown]
# Seed 0 has every setting of n4-xi-wd-lr's ξ 0.1, lr 1e-2, wd 10 run (3 000 epochs, trained in an
# earlier session by an earlier commit). Side by side at their common checkpoints:

# %%
first = {int(r["epoch"]): r for r in progress(REF / "sweeps" / "n4-xi-wd-lr" / "runs" / "xi0.1_lr0.01_wd10")}
again = {int(r["epoch"]): r for r in additive["n4-xi0.1-wd10_s0"]["rows"]}
common = sorted(set(first) & set(again))
differ = [e for e in common if first[e]["train_loss"] != again[e]["train_loss"]]
a, b = first[differ[0]]["train_loss"], again[differ[0]]["train_loss"]
digits_a, digits_b = (f"{x:.16e}".split("e")[0].replace(".", "") for x in (a, b))  # both here have exponent 0
same_digits = next(i for i, (u, v) in enumerate(zip(digits_a, digits_b)) if u != v)  # leading digits that agree
print(f"{len(common)} common checkpoints; train loss differs at {len(differ)} of them, first at epoch {differ[0]} "
      f"({a!r} against {b!r}: {same_digits} significant digits agree, the {same_digits + 1}th differs)")
for e in (1500, 3000):
    print(f"epoch {e}: M {first[e]['train_noisy_memorized_frac']:.3f} against "
          f"{again[e]['train_noisy_memorized_frac']:.3f}, "
          f"C {first[e]['train_noisy_corrected_frac']:.3f} against {again[e]['train_noisy_corrected_frac']:.3f}, "
          f"G {first[e]['test_acc_clean']:.3f} against {again[e]['test_acc_clean']:.3f}")
for label, d in (("first", first), ("again", again)):
    e = max((e for e in d if e <= 3000), key=lambda e: d[e]["train_noisy_corrected_frac"])
    print(f"{label}: most corrected checkpoint up to 3 000: epoch {e}, C {d[e]['train_noisy_corrected_frac']:.3f}")

# %% [markdown]
# ## The default n = 4 run to 100 000 epochs

# %%
long = readout(LONG) if (LONG / "analysis" / "progress.csv").exists() else None
if long is None:
    print(f"{LONG}: not committed yet")
else:
    print(HEADER)
    show("n4-100k", long)
    rows = progress(LONG)
    late = [r for r in rows if r["epoch"] > 20000]
    g_max = max(r["test_acc_clean"] for r in late)
    last_quarter = [r for r in rows if r["epoch"] >= 0.75 * rows[-1]["epoch"]]
    verdicts = {
        "memorization stationary": long["phase"] == "memorization" and long["settled"] and long["G_stationary"],
        "late grokking": any(r["test_acc_clean"] >= 0.9 for r in late),
        "late collapse": all(r["test_acc_clean"] < g_max - 0.05 for r in last_quarter),
    }
    at20k = max((r for r in rows if r["epoch"] <= 20000), key=lambda r: r["epoch"])
    print(f"largest G after epoch 20 000: {g_max:.3f}; G at the last checkpoint <= 20 000 (epoch "
          f"{int(at20k['epoch'])}): {at20k['test_acc_clean']:.3f}, M {at20k['train_noisy_memorized_frac']:.3f}")
    for k, v in verdicts.items():
        print(f"{k}: {v}")
    g_lq = [r["test_acc_clean"] for r in last_quarter]
    print(f"M after epoch 20 000: smallest {min(r['train_noisy_memorized_frac'] for r in late):.3f}; "
          f"G over the last quarter {min(g_lq):.3f}-{max(g_lq):.3f}; G rose by "
          f"{rows[-1]['test_acc_clean'] - at20k['test_acc_clean']:.3f} from 20 000 to the end")
    cols = ("test_acc_clean", "train_acc", "train_loss", "test_loss", "sum_sq_weights", "train_noisy_memorized_frac")
    other = {int(r["epoch"]): r for r in progress(REF / "sweeps" / "numerics-default" / "runs" /
                                                  "n4_s0_loss_dtypefloat64")}
    mine = {int(r["epoch"]): r for r in rows}
    common = sorted(set(mine) & set(other))
    equal = sum(all(mine[e][c] == other[e][c] for c in cols) for e in common)
    print(f"against numerics-default's float64 n = 4 seed-0 run: {equal} of {len(common)} common checkpoints equal "
          f"in {len(cols)} columns")
    ref = {int(r["epoch"]): r for r in progress(REF / "n4")}
    common = sorted(set(mine) & set(ref))
    drift = max(abs(mine[e]["test_acc_clean"] - ref[e]["test_acc_clean"]) for e in common)
    print(f"against the reference run n4: G at most {drift:.3f} apart over {len(common)} common checkpoints")
    for label, run in (("n4-100k", LONG), ("reference n4 (40 000 epochs)", REF / "n4")):
        keys = json.loads((run / "analysis" / "summary.json").read_text())["key_freqs"]
        print(f"key frequencies of {label}: {keys} (largest {max(keys)})")

# %%
COLUMNS = [("test_acc_clean", "clean test accuracy G"), ("train_noisy_memorized_frac", "memorized fraction M"),
           ("train_noisy_corrected_frac", "corrected fraction C")]
groups, styles = defaultdict(dict), {}
for o in sorted(runs.values(), key=lambda o: (o["xi"], o["tf"], o["wd"], o["seed"])):
    label = f"wd {o['wd']:g}, seed {o['seed']}"
    groups[f"quadratic, uniform xi {o['xi']:g}, training fraction {o['tf']:g}"][label] = o["rows"]
    styles[label] = ("C0" if o["wd"] == 0 else "C1", "-" if o["seed"] == 0 else "--")
for name, o in additive.items():
    label = f"wd 10, seed {name[-1]}"
    groups["MLP, additive n 4 on xi 0.1, lr 1e-2, training fraction 0.3"][label] = o["rows"]
    styles[label] = ("C2", "-" if name.endswith("0") else "--")
fig = plotting.plot_compare_grid(groups, COLUMNS, styles=styles,
                                 title="Turning trajectories to 20 000 epochs (docs/turning-trajectories.md)")
plotting.save_figure(fig, figures_dir() / "turning_trajectories.png")

# %%
if long is not None:
    fig = plotting.plot_compare({"n4-100k": long["rows"]}, [("train_clean_acc", "clean-labelled training fit F")]
                                + COLUMNS, title="The default n = 4 run to 100 000 epochs")
    plotting.save_figure(fig, figures_dir() / "n4_100k.png")
