# %% [markdown]
# # Numerics: float32 vs float64, softmax collapse, StableMax and ⊥AdamW (docs/numerics.md)
#
# Jupytext percent format; or run as `python analyses/09_numerics.py`. Reads the five committed
# sweeps `checkpoints/sweeps/numerics-*` (analysis-only; the seed's MLP at p = 97, two model seeds
# each) and prints, for every run, the readout docs/numerics.md fixed before any run was analyzed
# (`numerics_readout`), then the verdict on each of the page's seven claims, per seed, by the page's
# rules. Asserted by tests/test_numerics_sweeps.py on the same committed data.

# %%
import csv
import json
import math

from interp_grok import load_sweep, numerics_readout, plotting, rundir
from interp_grok.reference import figures_dir, reference_dir

SWEEPS = ["numerics-wd0", "numerics-wd0-ortho", "numerics-wd0-noise", "numerics-default", "numerics-default-stablemax"]


def read_run(run) -> dict:
    cfg, _ = rundir.read_config(run)
    with open(run / "analysis" / "progress.csv") as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    summary = json.loads((run / "analysis" / "summary.json").read_text())
    setting = {"wd": cfg.weight_decay, "n": cfg.noise_n, "loss": cfg.loss, "dtype": cfg.loss_dtype,
               "opt": cfg.optimizer, "seed": cfg.seed}
    return {"setting": setting, "rows": rows, **numerics_readout(rows, summary)}


runs = {}
for sweep in SWEEPS:
    res = load_sweep(reference_dir() / "sweeps" / sweep)
    for r in res.rows:
        if r["state"] == "done":
            o = read_run(reference_dir() / "sweeps" / sweep / "runs" / r["name"])
            s = o["setting"]
            runs[("wd0" if s["wd"] == 0 else "default", s["n"], s["loss"], s["dtype"], s["opt"], s["seed"])] = o
print(f"{len(runs)} finished runs")
for key, o in sorted(runs.items(), key=lambda kv: str(kv[0])):
    if o["spikes"]:
        first, last = o["spike_epochs"][0], o["spike_epochs"][-1]
        print(" ".join(map(str, key)), f"spikes {o['spikes']}, at epochs {first}-{last}")


def fmt(x) -> str:
    return "-" if x is None else f"{x:.3g}" if isinstance(x, float) else str(x)


cols = ["fit_epoch", "grok_epoch", "collapse_epoch_f32", "collapse_max_f32", "collapse_epoch_f64",
        "collapse_max_f64", "stalled", "G", "G_max", "M", "train_loss", "collapse_f32", "collapse_f64",
        "zero_loss_f32", "logit_gap", "grad_cos_all", "grad_cos_W_U", "sum_sq_weights", "phase", "spikes"]
for key in sorted(runs, key=str):
    o = runs[key]
    print(" ".join(map(str, key)), "| epochs", o["epoch"])
    print("   " + "  ".join(f"{c}={fmt(o[c])}" for c in cols))

# %% [markdown]
# ## The claims, per seed (docs/numerics.md's rules)

# %%
SEEDS = (0, 1)
INF = math.inf


def grok(o: dict) -> float:
    return INF if o["grok_epoch"] is None else o["grok_epoch"]


def collapse32(o: dict) -> float:
    return INF if o["collapse_epoch_f32"] is None else o["collapse_epoch_f32"]


def verdict(holds: list[bool | None]) -> str:
    decided = [h for h in holds if h is not None]
    if len(decided) < len(holds):
        return f"undecided in {len(holds) - len(decided)} seed(s); holds in {sum(decided)} of {len(decided)} decided"
    return {2: "reproduced", 1: "in one seed of two", 0: "not reproduced"}[sum(holds)]


def wd0(loss: str, dtype: str, seed: int, opt: str = "adamw", n: int = 0) -> dict:
    return runs[("wd0", n, loss, dtype, opt, seed)]


def default(n: int, loss: str, dtype: str, seed: int) -> dict:
    return runs[("default", n, loss, dtype, "adamw", seed)]


claims = {}
h = [(o := wd0("cross_entropy", "float32", s))["grok_epoch"] is None and o["collapse_f32"] >= 0.5 and o["stalled"]
     for s in SEEDS]
claims["1 float32 CE stalls at collapse without grokking (wd 0)"] = h
claims["2 float64 goes further (wd 0)"] = [
    wd0("cross_entropy", "float64", s)["G_max"] >= wd0("cross_entropy", "float32", s)["G_max"] + 0.05
    or grok(wd0("cross_entropy", "float64", s)) < INF == grok(wd0("cross_entropy", "float32", s)) for s in SEEDS]
for dtype in ("float32", "float64"):
    claims[f"3 StableMax groks (wd 0, {dtype})"] = [wd0("stablemax", dtype, s)["grok_epoch"] is not None
                                                    for s in SEEDS]
for dtype in ("float32", "float64"):
    claims[f"4 orthoadamw groks with less delay (wd 0, {dtype})"] = [
        grok(wd0("cross_entropy", dtype, s, "orthoadamw")) < min(grok(wd0(loss, dtype, s))
                                                                 for loss in ("cross_entropy", "stablemax"))
        for s in SEEDS]
for n in (0, 4):
    def changes(s: int, n: int = n) -> bool:
        a, b = default(n, "cross_entropy", "float32", s), default(n, "cross_entropy", "float64", s)
        g32, g64 = grok(a), grok(b)
        return (a["phase"] != b["phase"] or abs(a["G"] - b["G"]) > 0.05 or (g32 == INF) != (g64 == INF)
                or (g64 < INF and abs(g32 - g64) > 0.1 * g64))
    claims[f"5 float32 changes the trajectory (defaults, n = {n})"] = [changes(s) for s in SEEDS]

    def same_outcome(s: int, n: int = n) -> bool:
        a, b = default(n, "stablemax", "float32", s), default(n, "cross_entropy", "float64", s)
        return a["phase"] == b["phase"] and abs(a["G"] - b["G"]) <= 0.05 and (n == 0 or abs(a["M"] - b["M"]) <= 0.05)
    claims[f"6 StableMax float32 reaches the float64 outcome (defaults, n = {n})"] = [same_outcome(s) for s in SEEDS]


def sooner(noisy: dict, clean: dict) -> bool | None:
    if noisy["collapse_epoch_f32"] is None and clean["collapse_epoch_f32"] is None:
        return None
    return collapse32(noisy) < collapse32(clean)


claims["7 noisy runs collapse sooner (wd 0)"] = [
    sooner(wd0("cross_entropy", "float32", s, n=4), wd0("cross_entropy", "float32", s)) for s in SEEDS]
claims["7 noisy runs collapse sooner (defaults)"] = [
    sooner(default(4, "cross_entropy", "float32", s), default(0, "cross_entropy", "float32", s)) for s in SEEDS]
for claim, holds in claims.items():
    print(f"{claim}: per seed {holds} -> {verdict(holds)}")

# %% [markdown]
# ## Behind the no-weight-decay text: collapse, then a slingshot (float32) or a stall (float64)

# %%
for s in SEEDS:
    f32, f64 = wd0("cross_entropy", "float32", s), wd0("cross_entropy", "float64", s)
    at1000 = {o["setting"]["dtype"]: [r for r in o["rows"] if r["epoch"] == 1000][0] for o in (f32, f64)}
    print(f"seed {s}: clean test accuracy at initialization {f32['rows'][0]['test_acc_clean']:.4f}; float32 CE "
          f"sum of squares {at1000['float32']['sum_sq_weights']:.0f} at epoch 1000 -> {f32['sum_sq_weights']:.0f}; "
          f"float64 {at1000['float64']['sum_sq_weights']:.0f} -> {f64['sum_sq_weights']:.0f}")
print("seed 0, float32 CE, epochs 700-1300 (epoch, f32 collapse fraction, mean top-logit gap):",
      [(int(r["epoch"]), round(r["softmax_collapse_f32"], 3), round(r["logit_gap_mean"], 1))
       for r in wd0("cross_entropy", "float32", 0)["rows"] if 700 <= r["epoch"] <= 1300])
for s in SEEDS:
    for dtype in ("float32", "float64"):
        o = wd0("stablemax", dtype, s)
        first = min(r["epoch"] for r in o["rows"] if r["softmax_collapse_f32"] == 1.0)
        print(f"StableMax {dtype} seed {s}: fit at {o['fit_epoch']}, f32 collapse column 1.0 from {first:.0f}, "
              f"final mean top-logit gap {o['logit_gap']:.0f}, sum of squares {o['sum_sq_weights']:.0f}")

# %% [markdown]
# ## Behind the defaults text

# %%
for s in SEEDS:
    f64_run = default(0, "cross_entropy", "float64", s)
    print(f"seed {s}: float64 noise-free run, largest float32 collapse fraction {f64_run['collapse_max_f32']:.3f}; "
          f"float32 n = 4 largest {default(4, 'cross_entropy', 'float32', s)['collapse_max_f32']:.5f}; "
          f"StableMax float32 groks {default(0, 'stablemax', 'float32', s)['grok_epoch']} against float64 "
          f"softmax {default(0, 'cross_entropy', 'float64', s)['grok_epoch']} and float32 softmax "
          f"{default(0, 'cross_entropy', 'float32', s)['grok_epoch']}")
spiky = default(0, "cross_entropy", "float32", 1)
print("float32 noise-free seed 1: lowest clean test accuracy from epoch 13 000 on",
      min(r["test_acc_clean"] for r in spiky["rows"] if r["epoch"] >= 13_000))
print("wd 0, float64 CE seed 0, float32 collapse fraction at epochs 905 and 1000:",
      [round(r["softmax_collapse_f32"], 3) for r in wd0("cross_entropy", "float64", 0)["rows"]
       if r["epoch"] in (905, 1000)])
print("wd 0, n = 4 float32 CE: clean test accuracy at initialization",
      [round(wd0("cross_entropy", "float32", s, n=4)["rows"][0]["test_acc_clean"], 4) for s in SEEDS],
      "largest", [round(wd0("cross_entropy", "float32", s, n=4)["G_max"], 4) for s in SEEDS])

# %% [markdown]
# ## The collapse epochs and largest fractions behind claim 7

# %%
for label, pairs in (("wd 0", [(wd0("cross_entropy", "float32", s, n=4), wd0("cross_entropy", "float32", s))
                               for s in SEEDS]),
                     ("defaults", [(default(4, "cross_entropy", "float32", s),
                                    default(0, "cross_entropy", "float32", s)) for s in SEEDS])):
    for s, (noisy, clean) in zip(SEEDS, pairs):
        print(f"{label}, seed {s}: n = 4 collapse epoch {fmt(noisy['collapse_epoch_f32'])} "
              f"(largest {noisy['collapse_max_f32']:.3f}); n = 0 {fmt(clean['collapse_epoch_f32'])} "
              f"(largest {clean['collapse_max_f32']:.3f})")

# %% [markdown]
# ## Figures: each arm, one figure per seed

# %%
for seed in SEEDS:
    arms = {"CE float32": ("cross_entropy", "float32", "adamw", 0, ("C3", "-")),
            "CE float64": ("cross_entropy", "float64", "adamw", 0, ("C0", "-")),
            "StableMax float32": ("stablemax", "float32", "adamw", 0, ("C2", "-")),
            "StableMax float64": ("stablemax", "float64", "adamw", 0, ("C2", "--")),
            "orthoadamw CE float32": ("cross_entropy", "float32", "orthoadamw", 0, ("C4", "-")),
            "orthoadamw CE float64": ("cross_entropy", "float64", "orthoadamw", 0, ("C4", "--")),
            "CE float32, n = 4": ("cross_entropy", "float32", "adamw", 4, ("C1", "-"))}
    fig = plotting.plot_numerics({k: wd0(loss, dt, seed, opt, n)["rows"] for k, (loss, dt, opt, n, _) in arms.items()},
                                 f"No weight decay (lr 1e-2, training fraction 0.4), seed {seed}",
                                 styles={k: v[-1] for k, v in arms.items()})
    plotting.save_figure(fig, figures_dir() / f"numerics_wd0_s{seed}.png")

    arms = {f"n = {n}, {name}": (n, loss, dt, (color, "-" if n == 0 else "--"))
            for n in (0, 4) for name, loss, dt, color in (("CE float32", "cross_entropy", "float32", "C3"),
                                                          ("CE float64", "cross_entropy", "float64", "C0"),
                                                          ("StableMax float32", "stablemax", "float32", "C2"))}
    fig = plotting.plot_numerics({k: default(n, loss, dt, seed)["rows"] for k, (n, loss, dt, _) in arms.items()},
                                 f"The seed's defaults (wd 1, lr 1e-3, training fraction 0.3), seed {seed}",
                                 styles={k: v[-1] for k, v in arms.items()})
    plotting.save_figure(fig, figures_dir() / f"numerics_default_s{seed}.png")
