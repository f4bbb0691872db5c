"""`interp-grok analyze` end to end on a tiny trained run, and on broken runs."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file

from interp_grok import rundir
from interp_grok.analysis.circuits import (
    LOGIT_KEY_RULE,
    excluded_loss,
    excluded_loss_by_frequency,
    key_fve,
    logit_frequency_power,
    logit_key_frequencies,
    restricted_loss,
)
from interp_grok.analysis.fourier import frequency_norms, gini, key_frequencies
from interp_grok.analysis.memorization import shift_distribution, shift_kl, shift_within
from interp_grok.analysis.neurons import neuron_ipr
from interp_grok.analysis.pipeline import PROGRESS_COLUMNS, analyze_run, read_analysis
from interp_grok.models.mlp import grid_logits, neuron_curves
from interp_grok.noise import noise_pmf


@pytest.fixture(scope="session")
def analyzed(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("analyzed") / "run"
    shutil.copytree(tiny_run, out)
    assert run_cli("analyze", out) == 0
    return out


def test_outputs(analyzed):
    a = analyzed / "analysis"
    with open(a / "progress.csv") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames[: len(PROGRESS_COLUMNS)] == PROGRESS_COLUMNS
    epochs = rundir.checkpoint_epochs_on_disk(analyzed)
    assert [int(r["epoch"]) for r in rows] == epochs
    ef = load_file(a / "embed_fourier.safetensors")
    assert ef["norms"].shape == (len(epochs), 5)  # p = 11: k = 1..5
    final_W_E = load_file(rundir.checkpoint_path(analyzed, 120))["W_E"]
    torch.testing.assert_close(ef["norms"][-1], frequency_norms(final_W_E))
    assert ef["key_freqs"].dtype == torch.int64
    mem = load_file(a / "memorization.safetensors")
    n_train = 36
    for k in ("pred", "margin", "nll_noisy", "nll_clean"):
        assert mem[k].shape == (len(epochs), n_train)
    assert mem["first_fit_epoch"].shape == (n_train,) and mem["forgetting_events"].shape == (n_train,)
    summary = json.loads((a / "summary.json").read_text())
    assert summary["key_freqs"] == ef["key_freqs"].tolist()
    assert summary["key_freq_source"] == {"rule": LOGIT_KEY_RULE, "name": "logit_outlier", "threshold": 5.0,
                                          "epoch": 120}
    # the default rule read off the final checkpoint's logit spectrum (this 120-epoch run has no circuit:
    # no frequency stands out, where the old W_E rule takes some)
    final_logits = grid_logits(rundir.load_run(analyzed).params(120), "relu")
    assert ef["key_freqs"].tolist() == logit_key_frequencies(logit_frequency_power(final_logits)).tolist()
    torch.testing.assert_close(ef["logit_power"][-1], logit_frequency_power(final_logits))
    assert ef["logit_power"].shape == (len(epochs), 5)
    assert ef["excluded_loss_by_key"].shape == (len(epochs), ef["key_freqs"].numel())
    pr = summary["pruning"]
    assert pr["epoch"] == 120 and pr["n_neurons"] == 64 and len(pr["control_draws"]["test_acc_clean"]) == pr["n_draws"]
    # the trainer's metrics and the analysis agree on the final checkpoint
    last_eval = rundir.read_metrics(analyzed)[-1]
    for k in ("train_loss", "test_loss", "test_acc_clean", "train_noisy_memorized_frac"):
        assert float(rows[-1][k]) == pytest.approx(last_eval[k], rel=1e-5, abs=1e-9)
    # the pipeline's one-projection shortcut equals the public functions
    run = rundir.load_run(analyzed)
    logits = grid_logits(run.params(120), "relu")
    keys, ds = ef["key_freqs"], run.dataset
    assert float(rows[-1]["restricted_loss"]) == pytest.approx(restricted_loss(logits, keys, ds.noisy_labels).item())
    assert float(rows[-1]["restricted_loss_clean"]) == pytest.approx(
        restricted_loss(logits, keys, ds.clean_labels).item())
    assert float(rows[-1]["excluded_loss"]) == pytest.approx(
        excluded_loss(logits, keys, ds.noisy_labels, ds.train_idx).item())
    figs = sorted(p.name for p in (a / "figures").glob("*.png"))
    assert figs == ["audit.png", "losses.png", "memorization.png", "restricted_excluded.png", "spectrum_final.png",
                    "spectrum_heatmap.png", "weight_norms.png"]
    assert all((a / "figures" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figs)


def test_rerun_reuses_and_force_recomputes(analyzed, capsys):
    before = (analyzed / "analysis" / "progress.csv").read_text()
    assert run_cli("analyze", analyzed, "--no-figures") == 0
    out = capsys.readouterr().out
    assert "(0 computed," in out
    assert (analyzed / "analysis" / "progress.csv").read_text() == before
    assert run_cli("analyze", analyzed, "--no-figures", "--force") == 0
    assert "0 reused" in capsys.readouterr().out
    assert (analyzed / "analysis" / "progress.csv").read_text() == before  # deterministic


def test_new_checkpoints_only_are_computed(run_copy, capsys):
    run = rundir.load_run(run_copy)
    first = analyze_run(run)
    # drop the last three rows as if they had not been analyzed yet
    partial = type(first)(first.epochs[:-3], first.rows[:-3], first.norms[:-3], first.key_freqs,
                          first.key_freq_source, {k: v[:-3] for k, v in first.memo.items()},
                          checkpoint_sha256=first.checkpoint_sha256, dataset_sha256=first.dataset_sha256)
    again = analyze_run(run, previous=partial)
    assert again.n_reused == len(first.rows) - 3
    assert again.summary == first.summary  # the summary does not depend on how it was computed
    assert again.rows == first.rows
    for k in first.memo:
        assert torch.equal(again.memo[k], first.memo[k])


def test_explicit_key_freqs(run_copy, capsys):
    assert run_cli("analyze", run_copy, "--key-freqs", "1,3", "--no-figures") == 0
    an = read_analysis(rundir.load_run(run_copy))
    assert an.key_freqs.tolist() == [1, 3] and an.key_freq_source["rule"] == "user"
    assert run_cli("analyze", run_copy, "--key-freqs", "9") == 2
    assert "key frequencies must be in 1..5" in capsys.readouterr().err


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err


def test_not_a_run_dir(tmp_path, capsys):
    assert run_cli("analyze", tmp_path) == 1
    err = _one_line_error(capsys)
    assert len(err.splitlines()) == 1 and "not a run directory" in err
    assert run_cli("analyze", tmp_path / "nope") == 1
    assert "no such directory" in _one_line_error(capsys)


def test_run_without_checkpoints(run_copy, capsys):
    shutil.rmtree(run_copy / "checkpoints")
    assert run_cli("analyze", run_copy) == 1
    err = _one_line_error(capsys)
    assert len(err.splitlines()) == 1 and "no checkpoints" in err


def test_corrupt_checkpoints_are_listed_and_others_analyzed(run_copy, capsys):
    truncated = rundir.checkpoint_path(run_copy, 4)
    truncated.write_bytes(truncated.read_bytes()[:100])
    wrong_shape = rundir.checkpoint_path(run_copy, 9)
    t = load_file(wrong_shape)
    t["W_E"] = torch.zeros(7, 16)
    rundir.save_tensors(wrong_shape, t, {"epoch": 9})
    assert run_cli("analyze", run_copy, "--no-figures") == 1
    err = _one_line_error(capsys).splitlines()
    assert len(err) == 2
    assert str(truncated) in err[0] and "not a valid safetensors file" in err[0]
    assert str(wrong_shape) in err[1] and "W_E has shape [7, 16], config says [11, 16]" in err[1]
    an = read_analysis(rundir.load_run(run_copy))
    assert 4 not in an.epochs.tolist() and 9 not in an.epochs.tolist()
    assert len(an.rows) == len(rundir.checkpoint_epochs_on_disk(run_copy)) - 2
    assert len(an.summary["bad_checkpoints"]) == 2


def test_corrupt_config(run_copy, capsys):
    (run_copy / "config.json").write_text("{not json")
    assert run_cli("analyze", run_copy) == 1
    assert "config.json: not valid JSON" in _one_line_error(capsys)


def test_trimmed_run_keeps_its_full_analysis(run_copy, capsys):
    assert run_cli("analyze", run_copy, "--no-figures") == 0
    full = read_analysis(rundir.load_run(run_copy))
    for e in rundir.checkpoint_epochs_on_disk(run_copy):
        if e not in (0, 30, 120):
            rundir.checkpoint_path(run_copy, e).unlink()
    run = rundir.load_run(run_copy)
    assert run.checkpoint_epochs == [0, 30, 120]
    assert run.params(30)["W_in"].shape == (32, 64)
    assert run_cli("analyze", run_copy, "--no-figures") == 0
    kept = read_analysis(rundir.load_run(run_copy))
    assert kept.rows == full.rows and torch.equal(kept.norms, full.norms)
    # --force or another key set cannot recompute the missing rows: refused, nothing lost
    assert run_cli("analyze", run_copy, "--no-figures", "--force") == 1
    # (the stored key set is empty here, the W_E rule always takes at least the largest frequency)
    assert run_cli("analyze", run_copy, "--no-figures", "--key-rule", "W_E_norm", "--threshold", "0.9") == 1
    err = capsys.readouterr().err
    assert "rows for checkpoints no longer on disk" in err and "--drop-missing" in err
    assert read_analysis(rundir.load_run(run_copy)).rows == full.rows
    # with --drop-missing, --force recomputes from what is on disk and agrees with the full analysis
    assert run_cli("analyze", run_copy, "--no-figures", "--force", "--drop-missing") == 0
    forced = read_analysis(rundir.load_run(run_copy))
    assert forced.epochs.tolist() == [0, 30, 120]
    assert forced.rows == [r for r in full.rows if r["epoch"] in (0, 30, 120)]


def test_new_columns_equal_the_public_functions_under_the_old_key_rule(run_copy):
    """--key-rule W_E_norm keeps the rule of analysis version 1; every new column at the final
    checkpoint equals the pure function it is documented as."""
    assert run_cli("analyze", run_copy, "--key-rule", "W_E_norm", "--no-figures") == 0
    run = rundir.load_run(run_copy)
    an = read_analysis(run)
    params = run.params(120)
    keys = key_frequencies(frequency_norms(params["W_E"]), 0.25)
    assert an.key_freqs.tolist() == keys.tolist() and keys.numel() >= 1
    assert an.key_freq_source["name"] == "W_E_norm" and an.key_freq_source["threshold"] == 0.25
    ds, p = run.dataset, run.config.p
    logits = grid_logits(params, "relu")
    row = an.rows[-1]
    assert row["key_fve"] == pytest.approx(key_fve(logits, keys), rel=1e-9)
    assert row["gini_W_L"] == pytest.approx(gini(frequency_norms(neuron_curves(params)["out"].T)).item())
    ipr = neuron_ipr(params)
    assert row["ipr_mean"] == pytest.approx(ipr.mean().item()) and row["n_periodic"] == int((ipr >= 0.5).sum())
    q = shift_distribution(logits.reshape(p * p, p)[ds.test_idx].argmax(-1), ds.a[ds.test_idx], ds.b[ds.test_idx], p)
    pmf = noise_pmf(run.config.noise_n, run.config.p_bin, p, run.config.noise_frac)
    assert row["shift_kl"] == pytest.approx(shift_kl(q, pmf)) and row["shift_within1"] == pytest.approx(shift_within(q))
    torch.testing.assert_close(an.excluded_by_key[-1], excluded_loss_by_frequency(logits, keys, ds.noisy_labels,
                                                                                  ds.train_idx))
    tr = ds.train_idx
    noisy_tr, clean_tr = tr[ds.is_noisy[tr]], tr[~ds.is_noisy[tr]]
    for col, idx, labels, fn in (
        ("restricted_loss_train_clean", clean_tr, ds.noisy_labels, restricted_loss),
        ("restricted_loss_train_noisy", noisy_tr, ds.noisy_labels, restricted_loss),
        ("restricted_loss_train_noisy_vs_clean", noisy_tr, ds.clean_labels, restricted_loss),
        ("excluded_loss_train_clean", clean_tr, ds.noisy_labels, excluded_loss),
        ("excluded_loss_train_noisy", noisy_tr, ds.noisy_labels, excluded_loss),
        ("excluded_loss_train_noisy_vs_clean", noisy_tr, ds.clean_labels, excluded_loss),
    ):
        assert row[col] == pytest.approx(fn(logits, keys, labels, idx).item(), rel=1e-9), col
    for x in sorted(set(ds.noise[noisy_tr].tolist())):
        sel = noisy_tr[ds.noise[noisy_tr] == x]
        assert row[f"excluded_loss_train_noisy_x{x:+d}"] == pytest.approx(
            excluded_loss(logits, keys, ds.noisy_labels, sel).item(), rel=1e-9)


def test_key_rule_and_threshold_are_checked(run_copy, capsys):
    assert run_cli("analyze", run_copy, "--key-rule", "W_E_norm", "--threshold", "2") == 2
    assert run_cli("analyze", run_copy, "--threshold", "-1") == 2
    assert run_cli("analyze", run_copy, "--key-rule", "nope") == 2
    with pytest.raises(ValueError):
        analyze_run(rundir.load_run(run_copy), key_rule="nope")


def test_a_legacy_reference_analysis_still_reads_and_its_kept_rows_get_nan(tmp_path):
    """A trimmed run (one checkpoint) with a pre-manifest (version-1) analysis, as the reference runs
    had before checkpoints/reanalyze.py: made here from the committed n2 by writing its analysis
    back in the version-1 form (the version-1 columns, no spectra, no manifest, no version). It
    still reads; re-analyzed with the same key set, its rows of checkpoints no longer on disk are
    kept, the columns they never had are NaN, and the new files are version 2."""
    import csv
    import io
    import math
    from pathlib import Path

    from interp_grok.analysis.pipeline import ANALYSIS_VERSION, write_analysis

    src = Path(__file__).resolve().parents[1] / "checkpoints" / "n2"
    out = tmp_path / "n2"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("compact"))
    a = out / "analysis"
    (a / "manifest.json").unlink()
    v1 = [c for c in csv.DictReader(io.StringIO((a / "progress.csv").read_text())).fieldnames
          if c.startswith(("norm_", "train_noisy_memorized_frac")) or c in (
              "epoch", "train_loss", "test_loss", "test_acc_noisy", "test_acc_clean", "train_clean_acc",
              "train_noisy_corrected_frac", "restricted_loss", "restricted_loss_clean", "excluded_loss",
              "sum_sq_weights", "gini_W_E", "train_acc", "train_loss_clean", "test_loss_clean",
              "excluded_loss_clean")]
    rows = list(csv.DictReader(io.StringIO((a / "progress.csv").read_text())))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=v1, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    (a / "progress.csv").write_text(buf.getvalue())
    for name, keep in (("embed_fourier.safetensors", ("epochs", "norms", "key_freqs")),
                       ("memorization.safetensors", None)):
        t, meta = rundir.load_tensors(a / name)
        rundir.save_tensors(a / name, {k: v for k, v in t.items() if keep is None or k in keep},
                            {"key_freq_source": meta["key_freq_source"]})
    summary = json.loads((a / "summary.json").read_text())
    summary.pop("analysis_version")
    (a / "summary.json").write_text(json.dumps(summary))
    legacy = read_analysis(rundir.load_run(out))
    assert not legacy.verified and legacy.logit_power is None and legacy.excluded_by_key is None
    assert "key_fve" not in legacy.rows[0]
    run = rundir.load_run(out)
    an = analyze_run(run, key_freqs=legacy.key_freqs.tolist(), previous=read_analysis(run))
    assert len(an.rows) == len(legacy.rows) and an.n_reused == len(legacy.rows) - 1
    assert math.isnan(an.rows[0]["key_fve"]) and not math.isnan(an.rows[-1]["key_fve"])
    assert an.logit_power[0].isnan().all() and not an.logit_power[-1].isnan().any()
    write_analysis(run, an)
    again = read_analysis(run)
    assert again.verified and json.loads((out / "analysis" / "manifest.json").read_text())[
        "analysis_version"] == ANALYSIS_VERSION == 2
    assert math.isnan(again.rows[0]["key_fve"]) and again.rows[-1]["key_fve"] == an.rows[-1]["key_fve"]


def test_rows_of_analysis_version_1_are_recomputed(run_copy, capsys):
    assert run_cli("analyze", run_copy, "--no-figures") == 0
    manifest = run_copy / "analysis" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["analysis_version"] = 1
    manifest.write_text(json.dumps(m))
    capsys.readouterr()
    assert run_cli("analyze", run_copy, "--no-figures") == 0
    captured = capsys.readouterr()
    assert "analysis_version 1 is not 2" in captured.err and "0 reused" in captured.out
    assert json.loads(manifest.read_text())["analysis_version"] == 2
