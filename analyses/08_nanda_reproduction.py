# %% [markdown]
# # Nanda et al.'s one-layer transformer: the reproduction, and the transformer under noise
#
# Jupytext percent format; or run as `python analyses/08_nanda_reproduction.py`. Reads two
# committed sweeps (analysis files plus each run's final weights; docs/reproductions.md gives the
# commands):
#
# - `checkpoints/sweeps/nanda-repro`: their mainline setting (p = 113, their split, their model,
#   init, optimizer and warm-up), model seeds 0, 1, 2, 25 000 epochs;
# - `checkpoints/sweeps/transformer-noise`: the same with additive noise n ∈ {2, 4} at noised
#   fraction ξ ∈ {1, 0.1}, model seeds 0, 1, 15 000 epochs.
#
# It prints the readout fixed in docs/reproductions.md before the runs were analyzed, beside their
# published values, then the noisy runs beside the MLP's nearest committed runs. Asserted by
# tests/test_nanda_reproduction.py on the same data.

# %%
import csv
import json
import math

import torch

import interp_grok as ig
from interp_grok import (
    CLEANUP_DROP,
    load_run,
    make_dataset,
    nanda_key_frequencies,
    nanda_phase_epochs,
    plotting,
    run_phases,
    rundir,
)
from interp_grok import transformer_grid_pre as grid_pre
from interp_grok.reference import figures_dir, reference_dir

REPRO = reference_dir() / "sweeps" / "nanda-repro"
NOISY = reference_dir() / "sweeps" / "transformer-noise"
# theirs (science.md §10; their paper, mainline run): what the readout compares with
PUBLISHED = {"key_freqs": [14, 35, 41, 42, 52], "memorization_end": 1400, "cleanup_start": 9400,
             "cleanup_end": 13300, "fve_per_key": (0.93, 0.98), "rank_W_L": 10}


def progress(sweep, name: str) -> list[dict]:
    with open(sweep / "runs" / name / "analysis" / "progress.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def summary(sweep, name: str) -> dict:
    return json.loads((sweep / "runs" / name / "analysis" / "summary.json").read_text())


def first_drop(epochs: list[int], values: list[float], start: int | None) -> int | None:
    """The readout's half-of-maximum rule on any column: the first checkpoint after ``start`` at or
    below CLEANUP_DROP x the column's largest value since ``start``."""
    if start is None:
        return None
    i0 = epochs.index(start)
    peak = values[i0]
    for e, v in zip(epochs[i0 + 1:], values[i0 + 1:]):
        peak = max(peak, v)
        if v <= CLEANUP_DROP * peak:
            return e
    return None


def final_neuron_keys(sweep, name: str) -> list[int]:
    """Their key rule (calculate_key_freqs) on the run's final weights: the MLP activations at "="."""
    run = load_run(sweep / "runs" / name)
    P = run.params(run.checkpoint_epochs[-1])
    return nanda_key_frequencies(torch.relu(grid_pre(P, run.config.biases).double())).tolist()


def readout(sweep, name: str) -> dict:
    rows = progress(sweep, name)
    e = [int(r["epoch"]) for r in rows]
    col = {k: [r[k] for r in rows] for k in rows[0]}
    marks = nanda_phase_epochs(e, col["train_acc"], col["test_loss"], col["excluded_loss"], col["sum_sq_weights"])
    at = {ep: r for ep, r in zip(e, rows)}
    m, c = marks["memorization_end"], marks["cleanup_start"]
    s = summary(sweep, name)
    last = rows[-1]
    return {
        **marks,
        "restricted_drop": first_drop(e, col["restricted_loss"], m),
        "excluded_rise": at[c]["excluded_loss"] / at[m]["excluded_loss"] if c is not None else math.nan,
        "first_95": s["epoch_test_acc_clean_first_95"],
        "keys": s["key_freqs"], "key_share": s["key_freq_share_of_nonconstant_W_E_norm2"],
        "keys_theirs": final_neuron_keys(sweep, name),
        **{k: last[k] for k in ("key_fve", "rank_W_L", "neuron_clusters", "neuron_clustered_frac",
                                "neuron_freq_share", "n_keys_nanda_rule", "test_acc_clean", "test_loss",
                                "train_loss", "attn_to_a", "attn_to_b")},
        "epochs": e[-1],
    }


repro = {name: readout(REPRO, name) for name in ("s0", "s1", "s2")}

# %% [markdown]
# ## The reproduction table: theirs beside ours, per seed
#
# Phase epochs by `phases.nanda_phase_epochs` (its rule and constants are in docs/reproductions.md,
# fixed before these runs were analyzed); their resolution is the checkpoint spacing (at most 625
# epochs). "restricted loss falls first" compares the epoch at which the restricted loss has fallen
# to half its maximum since memorization ended with cleanup's start (the same rule on the test loss).

# %%
print(f"{'':<44} {'theirs':<22} " + " ".join(f"{'seed ' + n[1:]:<22}" for n in repro))


def line(label: str, theirs, key, fmt="{}"):
    print(f"{label:<44} {str(theirs):<22} " + " ".join(f"{fmt.format(o[key]):<22}" for o in repro.values()))


line("key frequencies (our rule: logit outliers)", PUBLISHED["key_freqs"], "keys")
line("key frequencies (their rule, final weights)", "(5 in the paper)", "keys_theirs",
     "{}")
line("  number by their rule", 5, "n_keys_nanda_rule", "{:.0f}")
line("keys' share of W_E's non-constant energy", "-", "key_share", "{:.3f}")
line("memorization ends (epoch)", "~1.4k", "memorization_end")
line("cleanup starts (circuit formation ends)", "~9.4k", "cleanup_start")
line("cleanup ends", "~13.3k", "cleanup_end")
line("first eval with clean test acc >= 0.95", "-", "first_95")
line("restricted loss halves (epoch)", "before test loss", "restricted_drop")
line("excluded loss, cleanup start / mem. end", "> 1 (rises)", "excluded_rise", "{:.3g}")
line("key_fve at the end", "0.93-0.98 per key", "key_fve", "{:.3f}")
line("rank of W_L (99 % energy) at the end", "~10 (2 per key)", "rank_W_L", "{:.0f}")
line("neuron frequency clusters (share >= 0.5)", "one per key", "neuron_clusters", "{:.0f}")
line("fraction of live neurons clustered", "-", "neuron_clustered_frac", "{:.3f}")
line("mean explained share of a neuron", "-", "neuron_freq_share", "{:.3f}")
line("clean test accuracy at the end", "1.0", "test_acc_clean", "{:.4f}")
line("attention from '=' on a / on b", "-", "attn_to_a", "{:.3f}")

restricted_first = {n: o["restricted_drop"] is not None and o["cleanup_start"] is not None
                    and o["restricted_drop"] < o["cleanup_start"] for n, o in repro.items()}
excluded_rises = {n: o["excluded_rise"] > 1 for n, o in repro.items()}
print(f"\nrestricted loss falls before test loss: {restricted_first}")
print(f"excluded loss rises during circuit formation: {excluded_rises}")
print(f"key frequencies shared by all three seeds (our rule): "
      f"{sorted(set.intersection(*(set(o['keys']) for o in repro.values())))}")
print(f"their five keys among ours (our rule), per seed: "
      f"{ {n: sorted(set(o['keys']) & set(PUBLISHED['key_freqs'])) for n, o in repro.items()} }")
print(f"their five keys among ours (their rule), per seed: "
      f"{ {n: sorted(set(o['keys_theirs']) & set(PUBLISHED['key_freqs'])) for n, o in repro.items()} }")
for name in repro:  # each key's own share of the logits' centered variance (circuits.key_fve of one frequency)
    run = load_run(REPRO / "runs" / name)
    L = ig.family(run.config).grid_logits(run.params(run.checkpoint_epochs[-1]), run.config)
    keys = repro[name]["keys_theirs"]
    print(f"{name}: key_fve per key (their rule) " + ", ".join(
        f"{k}: {ig.key_fve(L, torch.tensor([k])):.3f}" for k in keys)
        + f"; all together {ig.key_fve(L, torch.tensor(keys)):.3f}")
print("rank of W_L against twice the number of keys by their rule: "
      + ", ".join(f"{n}: {o['rank_W_L']:.0f} vs {2 * len(o['keys_theirs'])}" for n, o in repro.items()))

# %% [markdown]
# The same checks with the key frequencies of their own rule (4–5 per run) instead of ours
# (15–18): `checkpoints/nanda_their_keys.py` recomputed the restricted and excluded loss at every
# checkpoint of the full runs with each run's keys by their rule (`their_keys.csv`).

# %%
with open(REPRO / "their_keys.csv") as f:
    their_rows = list(csv.DictReader(f))
their = {}
for name in repro:
    rows = progress(REPRO, name)
    tk = [r for r in their_rows if r["run"] == name]
    e = [int(r["epoch"]) for r in rows]
    assert e == [int(r["epoch"]) for r in tk]
    excl, restr = [float(r["excluded_loss"]) for r in tk], [float(r["restricted_loss"]) for r in tk]
    marks = nanda_phase_epochs(e, [r["train_acc"] for r in rows], [r["test_loss"] for r in rows], excl,
                               [r["sum_sq_weights"] for r in rows])
    at = dict(zip(e, excl))
    their[name] = {**marks, "keys": tk[0]["keys"], "restricted_drop": first_drop(e, restr, marks["memorization_end"]),
                   "excluded_rise": at[marks["cleanup_start"]] / at[marks["memorization_end"]]}
    print(f"{name}, their keys [{their[name]['keys']}]: memorization ends {marks['memorization_end']}, cleanup "
          f"{marks['cleanup_start']}-{marks['cleanup_end']}; restricted loss halves at "
          f"{their[name]['restricted_drop']} "
          f"(before cleanup: {their[name]['restricted_drop'] < marks['cleanup_start']}); excluded loss rises "
          f"x{their[name]['excluded_rise']:.3g}")
for n, o in repro.items():
    rows = progress(REPRO, n)
    ph = run_phases([int(r["epoch"]) for r in rows], rows)
    print(f"{n}: final train loss {o['train_loss']:.3g}, final phase {ph['final_phase']}, settled {ph['settled']}")

# %%
fig = plotting.plot_nanda_phases({f"seed {n[1:]}": progress(REPRO, n) for n in repro},
                                 {f"seed {n[1:]}": repro[n] for n in repro},
                                 "Nanda et al.'s setting, three seeds: progress measures and the phases "
                                 "(nanda_phase_epochs)")
plotting.save_figure(fig, figures_dir() / "nanda_phases.png")

# %% [markdown]
# The paper's views of seed 0 over training: attention from "=", each head's frequency, the neuron
# clusters and the rank of W_L (`plotting.plot_transformer_views`, what `interp-grok analyze` draws
# for a transformer run).

# %%
plotting.save_figure(plotting.plot_transformer_views(progress(REPRO, "s0"), "Nanda et al.'s setting, seed 0"),
                     figures_dir() / "nanda_views_s0.png")

# %% [markdown]
# ## TransformerLens on a committed checkpoint
#
# `ig.to_hooked_transformer(run, epoch)` (optional extra `lens`) gives the run's final weights as a
# TransformerLens model: hooks, `run_with_cache`, activation patching. Its last-position logits
# equal ours on the full grid; its attention pattern gives the `attn_to_a` column back.

# %%
try:
    import transformer_lens  # noqa: F401
except ImportError:
    print("TransformerLens is not installed (pip install -e '.[lens]'): this cell does nothing")
else:
    run = load_run(REPRO / "runs" / "s0")
    final = run.checkpoint_epochs[-1]
    model = ig.to_hooked_transformer(run, final)
    p = run.config.p
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    tokens = torch.stack([a.flatten(), b.flatten(), torch.full((p * p,), p)], 1)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
    ours = ig.family(run.config).grid_logits(run.params(final), run.config).reshape(p * p, -1)
    gap = (logits[:, -1, :p] - ours).abs().max().item()
    pattern = cache["blocks.0.attn.hook_pattern"][:, :, -1, :]  # [pairs, heads, key position] from "="
    print(f"TransformerLens vs ours, seed 0, epoch {final}: largest logit difference {gap:.2e} "
          f"(largest logit {ours.abs().max().item():.1f}); attention from '=' on a {pattern[..., 0].mean():.3f}, "
          f"on b {pattern[..., 1].mean():.3f} (attn_to_a column: {repro['s0']['attn_to_a']:.3f})")

# %% [markdown]
# ## The transformer under noise, beside the MLP
#
# Per run at its end (15 000 epochs): the final phase (rule v2) and whether it settled, F, M, C, G
# (clean-labelled training fit, noisy labels memorized, noisy labels predicted as their clean label,
# clean test accuracy), the key frequencies (our rule) and the extraction accuracy (the restricted
# logits against the clean labels) on the noisy-labelled training pairs (`extr`) and on the test
# pairs (`extr_t`), each beside its lookup-table control (`ctl`, `ctl_t`): a pure memorizer of the
# same noisy labels projected on the same key frequencies. Projection alone recovers clean labels
# from memorized noisy ones (each anti-diagonal's noisy labels vote most often for the clean one),
# so only extraction above the control is evidence that the circuit knows more than the table.

# %%
FMCG = ("train_clean_acc", "train_noisy_memorized_frac", "train_noisy_corrected_frac", "test_acc_clean")


def lookup_control(run_dir, keys: list[int]) -> dict[str, float]:
    """The lookup-table control for extraction accuracy (ig.lookup_extraction_control) on the test
    pairs and on the noisy-labelled training pairs. The dataset is regenerated from config.json
    (make_dataset is deterministic)."""
    cfg, _ = rundir.read_config(run_dir)
    ds = make_dataset(cfg)
    noisy_tr = ds.train_idx[ds.noise[ds.train_idx] != 0]
    return {split: ig.lookup_extraction_control(cfg.p, ds.train_idx, ds.noisy_labels, keys, ds.clean_labels, idx)
            for split, idx in (("ctl_test", ds.test_idx), ("ctl_noisy", noisy_tr))}


def noisy_readout(sweep, name: str, at: int | None = None) -> dict:
    rows = progress(sweep, name)
    e = [int(r["epoch"]) for r in rows]
    if at is not None:  # read at the last checkpoint at or before epoch ``at``
        rows = [r for r in rows if r["epoch"] <= at]
        e = e[:len(rows)]
    ph = run_phases(e, rows)
    last = rows[-1]
    keys = summary(sweep, name)["key_freqs"]
    return {"phase": ph["final_phase"], "settled": ph["settled"], "epoch": e[-1],
            **{k: last[k] for k in FMCG}, "keys": keys, **lookup_control(sweep / "runs" / name, keys),
            # transformer runs only (NaN for the MLP): their key rule's count, W_L's rank, clustered neurons
            **{k: last.get(k, math.nan) for k in ("n_keys_nanda_rule", "rank_W_L", "neuron_clustered_frac")},
            # NaN where the analysis predates the extraction columns (the committed MLP sweeps)
            "extr_noisy": last.get("extraction_acc_train_noisy", math.nan),
            "extr_test": last.get("extraction_acc_test", math.nan)}


noisy = {name: noisy_readout(NOISY, name) for name in sorted(p.name for p in (NOISY / "runs").iterdir())}
HEAD = (f"{'phase':<18} {'settled':<7} {'F':>5} {'M':>5} {'C':>5} {'G':>5} {'extr':>5} {'ctl':>5} {'extr_t':>6} "
        f"{'ctl_t':>5} {'theirs':>6} {'rank':>4} {'clust':>5}  keys (ours)")


def show(name: str, o: dict, width: int = 14) -> None:
    print(f"{name:<{width}} {o['phase']:<18} {str(o['settled']):<7} " + " ".join(f"{o[k]:>5.3f}" for k in FMCG)
          + f" {o['extr_noisy']:>5.3f} {o['ctl_noisy']:>5.3f} {o['extr_test']:>6.3f} {o['ctl_test']:>5.3f}"
          + f" {o['n_keys_nanda_rule']:>6.0f} {o['rank_W_L']:>4.0f} {o['neuron_clustered_frac']:>5.3f}  {o['keys']}")


print(f"{'run':<14} " + HEAD)
for name, o in noisy.items():
    show(name, o)
G = [o["test_acc_clean"] for o in noisy.values()]
print(f"noisy transformers: clean test accuracy {min(G):.3f}-{max(G):.3f}; noisy labels memorized "
      f"{min(o['train_noisy_memorized_frac'] for o in noisy.values()):.3f}-"
      f"{max(o['train_noisy_memorized_frac'] for o in noisy.values()):.3f}; final phases "
      f"{sorted({o['phase'] for o in noisy.values()})}, settled "
      f"{sum(o['settled'] for o in noisy.values())} of {len(noisy)}")
print("extraction above its lookup-table control (noisy train / test): " + "; ".join(
    f"{n} {o['extr_noisy'] - o['ctl_noisy']:+.3f} / {o['extr_test'] - o['ctl_test']:+.3f}" for n, o in noisy.items()))
for name in noisy:  # still moving? the change over the last quarter (phases.last_quarter_change)
    rows = progress(NOISY, name)
    e = [int(r["epoch"]) for r in rows]
    dG = ig.last_quarter_change(e, [r["test_acc_clean"] for r in rows])
    dX = ig.last_quarter_change(e, [r["extraction_acc_train_noisy"] for r in rows])
    cfg, _ = rundir.read_config(NOISY / "runs" / name)
    ds = make_dataset(cfg)
    noisy_share = (ds.noise[ds.train_idx] != 0).double().mean().item()
    print(f"{name}: last quarter: clean test accuracy {dG['delta']:+.3f} (stationary {dG['stationary']}), "
          f"extraction on noisy training pairs {dX['delta']:+.3f}; noisy training labels {noisy_share:.3f}")
print("our keys' share of W_E's non-constant energy: " + ", ".join(
    f"{n} {summary(NOISY, n)['key_freq_share_of_nonconstant_W_E_norm2']:.3f}" for n in noisy))
print("largest key frequency (our rule): " + ", ".join(f"{n} {max(o['keys'], default=0)}" for n, o in noisy.items()))
clean15 = {n: noisy_readout(REPRO, n, at=15000) for n in repro}
print("noise-free transformer at epoch 15 000: " + "; ".join(
    f"seed {n[1:]}: {o['phase']}, G {o['test_acc_clean']:.3f}" for n, o in clean15.items()))

# %% [markdown]
# The MLP at its nearest committed settings (same noise, noised fraction, training fraction 0.3,
# lr 1e-3, weight decay 1; p = 97 and its own split): the reference runs n2 and n4 (ξ 1, 40 000
# epochs; read at 15 000 and at the end), `noise-tf` (ξ 1, two seeds, 10 000 epochs) and
# `n4-xi-wd-lr` (ξ 0.1, n 4, one seed, 3 000 epochs). No committed MLP run has n 2 at ξ 0.1. The
# committed sweeps were analyzed before the extraction columns existed (nan there).

# %%
SWEEPS = reference_dir() / "sweeps"
mlp = {}
for n in (2, 4):
    ref = reference_dir() / f"n{n}"
    with open(ref / "analysis" / "progress.csv") as f:  # a reference run, not in a sweep
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    for at in (15000, 40000):
        sub = [r for r in rows if r["epoch"] <= at]
        ph = run_phases([int(r["epoch"]) for r in sub], sub)
        keys = json.loads((ref / "analysis" / "summary.json").read_text())["key_freqs"]
        mlp[f"ref n{n} @{at}"] = {"phase": ph["final_phase"], "settled": ph["settled"],
                                  **{k: sub[-1][k] for k in FMCG},
                                  "extr_noisy": sub[-1]["extraction_acc_train_noisy"],
                                  "extr_test": sub[-1]["extraction_acc_test"], "keys": keys,
                                  **dict.fromkeys(("n_keys_nanda_rule", "rank_W_L", "neuron_clustered_frac"), math.nan),
                                  **lookup_control(ref, keys)}
for n in (2, 4):
    for s in (0, 1):
        name = f"n{n}_tf0.3_s{s}"
        if (SWEEPS / "noise-tf" / "runs" / name).exists():
            mlp[f"noise-tf {name}"] = noisy_readout(SWEEPS / "noise-tf", name)
mlp["n4-xi-wd-lr xi0.1_lr0.001_wd1"] = noisy_readout(SWEEPS / "n4-xi-wd-lr", "xi0.1_lr0.001_wd1")
print(f"{'MLP run':<32} " + HEAD)
for name, o in mlp.items():
    show(name, o, 32)
