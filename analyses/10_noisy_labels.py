# %% [markdown]
# # What the circuit knows of the clean labels: extraction, the audit, correct-and-resume
#
# Jupytext percent format; or run as `python analyses/10_noisy_labels.py`. The readout of
# docs/noisy-labels.md, fixed before its runs were analyzed, on committed data: the two parents
# (the default n = 4 run, model seeds 0 and 1: the float64 cross-entropy n = 4 runs of
# `checkpoints/sweeps/numerics-default`) and their correct-and-resume children
# (`checkpoints/correct-resume`, analysis-only copies with each child's provenance). Asserted by
# tests/test_noisy_labels.py.

# %%
import csv
import json

import interp_grok as ig
from interp_grok import plotting, rundir
from interp_grok.reference import figures_dir, reference_dir

PARENTS = reference_dir() / "sweeps" / "numerics-default"
CHILDREN = reference_dir() / "correct-resume"
SEEDS = (0, 1)
ARMS = ("control", "b4", "b62", "b62_scratch")


def progress(run) -> list[dict]:
    with open(run / "analysis" / "progress.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def summary(run) -> dict:
    return json.loads((run / "analysis" / "summary.json").read_text())


def parent_dir(seed: int):
    res = ig.load_sweep(PARENTS)
    [name] = [r["name"] for r in res.rows if r["noise_n"] == 4 and r["seed"] == seed and r["loss_dtype"] == "float64"]
    return PARENTS / "runs" / name


def child_dir(seed: int, arm: str):
    return CHILDREN / f"s{seed}_{arm}"


def at_epoch(rows: list[dict], epoch: int) -> dict:
    [row] = [r for r in rows if int(r["epoch"]) == epoch]
    return row


# %% [markdown]
# ## 1. Extraction: the key-frequency part of the logits against the clean labels, with its control

# %%
E = {s: rundir.read_config(child_dir(s, "control"))[1]["relabelled_from"]["epoch"] for s in SEEDS}
extraction = {}
for s in SEEDS:
    run = parent_dir(s)
    cfg, _ = rundir.read_config(run)
    ds = ig.make_dataset(cfg)
    keys = summary(run)["key_freqs"]
    noisy_tr = ds.train_idx[ds.noise[ds.train_idx] != 0]
    control = {split: ig.lookup_extraction_control(cfg.p, ds.train_idx, ds.noisy_labels, keys, ds.clean_labels, idx)
               for split, idx in (("test", ds.test_idx), ("train_noisy", noisy_tr))}
    rows = progress(run)
    for label, row in (("E", at_epoch(rows, E[s])), ("final", rows[-1])):
        o = extraction[(s, label)] = {
            "epoch": int(row["epoch"]), "G": row["test_acc_clean"], "M": row["train_noisy_memorized_frac"],
            "extr_test": row["extraction_acc_test"], "extr_noisy": row["extraction_acc_train_noisy"],
            "ctl_test": control["test"], "ctl_noisy": control["train_noisy"], "keys": keys}
        print(f"seed {s}, {label} (epoch {o['epoch']}): G {o['G']:.3f}, M {o['M']:.3f}; extraction test "
              f"{o['extr_test']:.3f} (control {o['ctl_test']:.3f}), noisy-labelled train {o['extr_noisy']:.3f} "
              f"(control {o['ctl_noisy']:.3f}); keys {keys}")
for label in ("E", "final"):
    for split in ("test", "noisy"):
        edge = [extraction[(s, label)][f"extr_{split}"] - extraction[(s, label)][f"ctl_{split}"] for s in SEEDS]
        print(f"{label}, {split}: extraction minus control {', '.join(f'{e:+.3f}' for e in edge)} -> "
              f"{'knows more than the table' if min(edge) > 0.02 else 'not more than 0.02 above it in both seeds'}")

# %% [markdown]
# ## 2. The label audit at the final checkpoint (audit.csv)

# %%
audits = {}
for s in SEEDS:
    with open(parent_dir(s) / "analysis" / "audit.csv") as f:
        rows = list(csv.DictReader(f))
    full = [r for r in rows if float(r["budget_frac"]) == 1.0][0]
    n_train, n_noisy = int(full["budget"]), round(float(full["hits"]))
    b4 = min({int(r["budget"]) for r in rows}, key=lambda b: abs(b - 0.04 * n_train))
    base = float(rows[0]["baseline_precision"])
    audits[s] = {"n_train": n_train, "n_noisy": n_noisy, "b4": b4, "baseline": base, "epoch": int(rows[0]["epoch"]),
                 "scores": {}}
    print(f"seed {s} (epoch {audits[s]['epoch']}): {n_train} training examples, {n_noisy} noisy; random precision "
          f"{base:.3f}")
    for score in dict.fromkeys(r["score"] for r in rows):
        at = {int(r["budget"]): float(r["precision"]) for r in rows if r["score"] == score}
        audits[s]["scores"][score] = {"p4": at[b4], "rprec": at[n_noisy]}
        print(f"  {score:<20} precision at B = {b4} (4 %) {at[b4]:.3f}; at B = n_noisy {at[n_noisy]:.3f}")
    best = max(audits[s]["scores"], key=lambda k: audits[s]["scores"][k]["rprec"])
    print(f"  best score by R-precision: {best}")

# %% [markdown]
# ## 3. Correct-and-resume

# %%
children = {}
for s in SEEDS:
    for arm in ARMS:
        run = child_dir(s, arm)
        rel = rundir.read_config(run)[1]["relabelled_from"]
        rows = progress(run)
        ph = ig.run_phases([int(r["epoch"]) for r in rows], rows)
        o = children[(s, arm)] = {
            "budget": rel["budget"], "noisy_flagged": rel["n_noisy_flagged"], "changed": rel["n_changed"],
            "now_clean": rel["n_now_clean"], "precision": rel["audit_precision"],
            "grok_epoch": summary(run)["epoch_test_acc_clean_first_95"], "phase": ph["final_phase"],
            "settled": ph["settled"], "G": rows[-1]["test_acc_clean"], "epoch": int(rows[-1]["epoch"]),
            "mode": rel["mode"]}
        audit = (f"audit precision at E {o['precision']:.3f} (random {rel['audit_baseline_precision']:.3f}); "
                 f"{o['now_clean'] / o['changed']:.3f} of the changed now clean; " if o["budget"] else "")
        print(f"seed {s} {arm:<12} {o['mode']:<8} budget {o['budget']:>5}: flagged noisy {o['noisy_flagged']:>5}, "
              f"changed {o['changed']:>5}, now clean {o['now_clean']:>5}; {audit}grok epoch {o['grok_epoch']}, "
              f"final {o['phase']} (settled {o['settled']}), G {o['G']:.3f} at {o['epoch']}")
# %% [markdown]
# What the relabelling did to the training labels (the children's dataset.safetensors): each changed
# example went wrong -> clean, clean -> wrong or wrong -> wrong; the noisy-label count before and after.

# %%
changes = {}
for s in SEEDS:
    for arm in ("b4", "b62"):
        run = child_dir(s, arm)
        ds = rundir.load_dataset(run, rundir.read_config(run)[0].p)
        changed = ds.relabel["relabel_old"] != ds.relabel["relabel_new"]
        old, new = ds.relabel["relabel_old"][changed], ds.relabel["relabel_new"][changed]
        clean = ds.clean_labels[ds.relabel["relabel_idx"][changed]]
        c = changes[(s, arm)] = {
            "to_clean": int(((old != clean) & (new == clean)).sum()), "clean_to_wrong": int((old == clean).sum()),
            "wrong_to_wrong": int(((old != clean) & (new != clean)).sum()), "changed": int(changed.sum()),
            "noisy_after": int(ds.is_noisy[ds.train_idx].sum())}
        print(f"seed {s} {arm}: {c['changed']} changed: wrong -> clean {c['to_clean']}, clean -> wrong "
              f"{c['clean_to_wrong']}, wrong -> wrong {c['wrong_to_wrong']}; noisy training labels "
              f"{audits[s]['n_noisy']} -> {c['noisy_after']}")
print("relabelling keys (chosen at E):", {s: rundir.read_config(child_dir(s, "b4"))[1]["relabelled_from"]["key_freqs"]
                                           for s in SEEDS})

# %%
for arm in ("b4", "b62", "b62_scratch"):
    restores = [children[(s, arm)]["grok_epoch"] is not None and children[(s, "control")]["grok_epoch"] is None
                for s in SEEDS]
    print(f"{arm}: restores grokking in {sum(restores)} of {len(SEEDS)} seeds")
for s in SEEDS:
    a, b = children[(s, "b62")]["grok_epoch"], children[(s, "b62_scratch")]["grok_epoch"]
    if a is not None and b is not None:
        print(f"seed {s}: continued groks at {a}, from scratch at {b}: {b - a} epochs sooner continued")

# %%
curves, styles = {}, {}
for s in SEEDS:
    ls = "-" if s == 0 else "--"
    curves[f"s{s} parent"], styles[f"s{s} parent"] = progress(parent_dir(s)), ("k", ls)
    for arm, color in zip(ARMS, ("0.5", "C0", "C2", "C3")):
        curves[f"s{s} {arm}"], styles[f"s{s} {arm}"] = progress(child_dir(s, arm)), (color, ls)
fig = plotting.plot_compare(curves, [("test_acc_clean", "clean test accuracy"),
                                     ("train_noisy_memorized_frac", "noisy labels memorized")],
                            "Correct-and-resume on the default n = 4 run (seed 0 solid, seed 1 dashed)", styles=styles)
plotting.save_figure(fig, figures_dir() / "correct_and_resume.png")
