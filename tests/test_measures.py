"""The per-checkpoint measures (interp_grok.analysis.measures): the registry's column order is the
committed files', each measure on a network whose answers are known, and adding a measure is one
registered function (its column is appended, stored rows lacking it are recomputed)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from known_models import fourier_mlp

from interp_grok import rundir
from interp_grok.analysis import measures
from interp_grok.analysis.circuits import excluded_loss, restricted_loss
from interp_grok.analysis.fourier import frequency_norms, gini
from interp_grok.analysis.measures import Checkpoint, measure, measure_row
from interp_grok.analysis.pipeline import analyze_run, read_analysis, write_analysis
from interp_grok.config import Config
from interp_grok.data import make_dataset

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "checkpoints" / "sweeps"
NEWER = ("softmax_collapse", "gradient_alignment")  # registered after the committed analyses were written


def _header(path: Path) -> list[str]:
    with path.open() as f:
        return next(csv.reader(f))


@pytest.mark.parametrize("run_dir", [SWEEPS / "noise-tf" / "runs" / "n4_tf0.3_s0",  # MLP, additive noise
                                     SWEEPS / "n4-xi-wd-lr" / "runs" / "xi0.1_lr0.001_wd1",  # noise on 10 %
                                     SWEEPS / "doshi-grid" / "runs" / "xi0.1_tf0.1_wd0"])  # quadratic, uniform
def test_columns_are_the_committed_files(run_dir):
    """progress.csv's columns, from the registered measures, are those of the committed analyses
    (written before the measures were split into functions): the split changed no file. The
    measures registered since (extraction, label_audit; the Numerics groups, NEWER, for classifier
    families only) append their columns after them."""
    config, _ = rundir.read_config(run_dir)
    run = SimpleNamespace(config=config, dataset=make_dataset(config))
    committed = _header(run_dir / "analysis" / "progress.csv")
    since = [*measures.EXTRACTION_COLUMNS, *(measures.audit_column(s) for s in measures.AUDIT_RPREC_SCORES)]
    newer = [c for m in measures.MEASURES if m.name in NEWER for c in m.columns(run)]
    assert measures.columns(run) == committed + since + newer
    assert bool(newer) == (config.model == "mlp")


def _fourier_run(p: int = 23, freqs: tuple[int, ...] = (3, 7)):
    params = {k: v.to(torch.float32) for k, v in fourier_mlp(p, list(freqs)).items()}
    d_model, d_mlp = params["W_in"].shape
    config = Config(p=p, noise_n=0, d_model=d_model, d_mlp=d_mlp, train_frac=0.5)
    return params, SimpleNamespace(config=config, dataset=make_dataset(config))


def test_measures_on_a_known_fourier_network():
    """known_models.fourier_mlp computes (a + b) mod p exactly through two frequencies, one per
    neuron: every accuracy is 1, every neuron is a pure sinusoid (IPR 1), and N_k is two equal
    values among floor(p/2), whose Gini is (N - 2) / N."""
    params, run = _fourier_run()
    keys = torch.tensor([3, 7])
    row = measure_row(Checkpoint(params, run, keys))
    assert set(row) == set(measures.columns(run)) - {"epoch"}
    for col in ("test_acc_clean", "test_acc_noisy", "train_acc", "train_clean_acc"):
        assert row[col] == 1.0
    assert math.isnan(row["train_noisy_memorized_frac"])  # no noisy label: the group is empty
    n_neurons = params["W_out"].shape[0]
    assert row["ipr_mean"] == pytest.approx(1.0, abs=1e-6) and row["n_periodic"] == n_neurons
    N = 23 // 2
    assert row["gini_W_E"] == pytest.approx((N - 2) / N, abs=1e-6)
    # the composed values are the pure functions' (each tested in closed form in its own file)
    ds, logits = run.dataset, Checkpoint(params, run, keys).logits
    assert row["restricted_loss"] == pytest.approx(restricted_loss(logits, keys, ds.noisy_labels).item(), rel=1e-12)
    assert row["excluded_loss"] == pytest.approx(
        excluded_loss(logits, keys, ds.noisy_labels, ds.train_idx).item(), rel=1e-12)
    assert row["gini_W_E"] == gini(frequency_norms(params["W_E"])).item()
    assert row["sum_sq_weights"] == pytest.approx(sum(v.double().pow(2).sum().item() for v in params.values()))


def test_a_measure_is_computed_once_per_checkpoint_and_shares_intermediates():
    params, run = _fourier_run()
    c = Checkpoint(params, run, torch.tensor([3, 7]))
    assert c.logits is c.logits and c.restricted_nll is c.restricted_nll  # cached


def test_a_family_view_with_no_columns_is_not_computed():
    params, run = _fourier_run()
    calls = []

    @measure(extra=lambda run: [])
    def _never(c):
        calls.append(1)
        return {}

    try:
        measure_row(Checkpoint(params, run, torch.tensor([3])))
        assert calls == []
    finally:
        measures.MEASURES.pop()


def test_adding_a_measure_is_one_function(tiny_run, tmp_path):
    """A measure registered after the others: its column comes last in progress.csv, a stored
    analysis without it is recomputed for the checkpoints on disk, and a measure that returns other
    columns than it declares is an error."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir, ignore=shutil.ignore_patterns("analysis"))
    run = rundir.load_run(run_dir)
    before = write_analysis(run, analyze_run(run))
    old_header = _header(before / "progress.csv")

    @measure(extra=("W_E_max_abs",))
    def W_E_max_abs(c):
        return {"W_E_max_abs": c.params["W_E"].abs().max().item()}

    try:
        an = analyze_run(run, previous=read_analysis(run))
        assert an.n_reused == 0  # the stored rows lack the new column: recomputed
        write_analysis(run, an)
        assert _header(before / "progress.csv") == [*old_header, "W_E_max_abs"]
        final = run.params(run.checkpoint_epochs[-1])["W_E"].abs().max().item()
        assert an.column("W_E_max_abs")[-1].item() == final
        assert analyze_run(run, previous=read_analysis(run)).n_reused == len(run.checkpoint_epochs)
    finally:
        measures.MEASURES.pop()

    @measure(extra=("declared",))
    def wrong(c):
        return {"other": 0.0}

    try:
        with pytest.raises(ValueError, match="wrong returned"):
            measure_row(Checkpoint(run.params(run.checkpoint_epochs[-1]), run, torch.tensor([1])))
    finally:
        measures.MEASURES.pop()
    with pytest.raises(ValueError, match="already registered"):
        measure()(measures.spectra)
