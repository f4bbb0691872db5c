"""Correct-and-resume end to end on a tiny run: relabel, resume, and the controls that must be exact."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY, run_cli
from safetensors.torch import load_file

from interp_grok import rundir
from interp_grok.analysis.audit import AUDIT_SCORES
from interp_grok.analysis.correction import audit_checkpoint, best_score, relabel_run
from interp_grok.analysis.pipeline import analyze_run
from interp_grok.train import TrainError, resume

SHORT = [a if a != "120" else "60" for a in TINY]


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    out = tmp_path_factory.mktemp("relabel") / "parent"
    assert run_cli("train", *SHORT, "--noise", "2", "--out", out) == 0
    return out


def _mid(run) -> int:
    return run.checkpoint_epochs[len(run.checkpoint_epochs) // 2]


def test_audit_checkpoint_tabulates_every_score(parent):
    run = rundir.load_run(parent)
    E = _mid(run)
    a = audit_checkpoint(run, E)
    n = run.dataset.train_idx.numel()
    assert tuple(a.scores) == AUDIT_SCORES and all(s.shape == (n,) for s in a.scores.values())
    assert a.key_freq_source == f"logit_outlier at epoch {E}"
    assert len(a.rows) == len(AUDIT_SCORES) * a.budgets.numel()
    full = [r for r in a.rows if r["budget"] == n]
    assert all(r["recall"] == pytest.approx(1.0) for r in full)  # flagging everything finds every noisy label
    assert a.is_noisy.any() and not a.is_noisy.all()
    assert best_score(a, 5) in AUDIT_SCORES
    with pytest.raises(rundir.RunDirError, match="no checkpoint at epoch"):
        audit_checkpoint(run, E + 1 if E + 1 not in run.checkpoint_epochs else 10**6)


def test_relabel_continue_records_its_parent_and_resumes(parent, tmp_path):
    run = rundir.load_run(parent)
    E = _mid(run)
    out = tmp_path / "child"
    r = relabel_run(parent, out, epoch=E, budget=6, score="loss")
    child = rundir.load_run(out)
    rel = child.dataset.relabel
    # exactly the flagged pairs changed, to the recorded labels, and the record says so
    assert torch.equal(rel["relabel_idx"], r.pairs.sort().values) and rel["relabel_idx"].numel() == 6
    assert torch.equal(child.dataset.noisy_labels[rel["relabel_idx"]], rel["relabel_new"])
    assert torch.equal(run.dataset.noisy_labels[rel["relabel_idx"]], rel["relabel_old"])
    other = torch.ones(11 * 11, dtype=torch.bool)
    other[rel["relabel_idx"]] = False
    assert torch.equal(child.dataset.noisy_labels[other], run.dataset.noisy_labels[other])
    assert torch.equal(child.dataset.train_idx, run.dataset.train_idx)
    assert r.n_changed == int((rel["relabel_old"] != rel["relabel_new"]).sum())
    rec = child.provenance[rundir.PARENT]
    assert rec["run"] == str(parent.resolve()) and rec["epoch"] == E and rec["budget"] == 6
    assert rec["start_epoch"] == E and rec["adam_step_origin"] == E and rec["optimizer"] == "reset"
    assert rec["checkpoint_sha256"] == rundir.file_sha256(rundir.checkpoint_path(parent, E))
    assert child.checkpoint_epochs == [E] and [e["epoch"] for e in child.evals] == [E]
    assert child.config == run.config
    # the new run's checkpoint at E is the parent's weights
    for k, v in run.params(E).items():
        assert torch.equal(child.params(E)[k], v)
    res = resume(out, threads=1)
    assert res.start_epoch == E and res.final["epoch"] == run.config.epochs
    child = rundir.load_run(out)
    assert child.checkpoint_epochs == [e for e in run.config.checkpoint_epochs if e >= E]
    epochs, _ = rundir.train_losses(child.metrics)
    assert epochs == list(range(E, run.config.epochs))
    assert resume(out, threads=1).final["epoch"] == run.config.epochs  # finished: a second resume is a no-op
    an = analyze_run(child)
    assert an.epochs.tolist() == child.checkpoint_epochs


def test_budget_zero_with_the_parents_optimizer_is_the_parent_continued_bit_for_bit(parent, tmp_path):
    run = rundir.load_run(parent)
    final = run.config.epochs
    child = tmp_path / "unchanged"
    r = relabel_run(parent, child, epoch=final, budget=0, adam_state="keep")
    assert r.n_changed == 0 and r.pairs.numel() == 0
    twin = tmp_path / "twin"
    import shutil

    shutil.copytree(parent, twin)
    resume(twin, epochs=final + 20, threads=1)
    resume(child, epochs=final + 20, threads=1)
    a = load_file(rundir.checkpoint_path(twin, final + 20))
    b = load_file(rundir.checkpoint_path(child, final + 20))
    assert all(torch.equal(a[k], b[k]) for k in a)
    a, b = load_file(twin / rundir.TRAIN_STATE), load_file(child / rundir.TRAIN_STATE)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_from_scratch_at_budget_zero_retrains_the_parent_exactly(parent, tmp_path):
    run = rundir.load_run(parent)
    out = tmp_path / "scratch0"
    relabel_run(parent, out, epoch=_mid(run), budget=0, mode="scratch")
    assert rundir.load_run(out).checkpoint_epochs == []
    resume(out, threads=1)
    for e in run.checkpoint_epochs:
        a, b = load_file(rundir.checkpoint_path(parent, e)), load_file(rundir.checkpoint_path(out, e))
        assert all(torch.equal(a[k], b[k]) for k in a), e
    rec = rundir.load_run(out).provenance[rundir.PARENT]
    assert rec["start_epoch"] == 0 and rec["optimizer"] == "init"


def test_a_reset_optimizer_continues_like_a_fresh_adam(parent, tmp_path):
    """Continuing with --adam-state reset is a fresh AdamW on the parent's weights and the new labels:
    a plain loop from there reaches the next checkpoint's weights."""
    from interp_grok.models import family
    from interp_grok.optim import make_optimizer

    run = rundir.load_run(parent)
    E = _mid(run)
    out = tmp_path / "reset"
    relabel_run(parent, out, epoch=E, budget=5)
    state = load_file(out / rundir.TRAIN_STATE)
    assert set(state) == {f"param.{k}" for k in run.shapes}  # no moments: AdamW starts at step 0
    resume(out, threads=1)
    child = rundir.load_run(out)
    e1 = child.checkpoint_epochs[1]
    fam, c, ds = family(run.config), run.config, child.dataset
    leaves = {k: torch.nn.Parameter(v.clone()) for k, v in run.params(E).items()}
    opt = make_optimizer([leaves], [c])
    tr = ds.train_idx
    a, b, y = tr[None] // c.p, tr[None] % c.p, ds.noisy_labels[tr][None]
    for _ in range(e1 - E):
        loss = fam.batched_loss({k: v.unsqueeze(0) for k, v in leaves.items()}, a, b, y, torch.tensor([tr.numel()]), c)
        loss.sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    for k, v in child.params(e1).items():
        assert torch.allclose(leaves[k].detach(), v, rtol=0, atol=1e-6), k
        assert not torch.equal(v, run.params(e1)[k])  # not the parent's own continuation
    later = load_file(out / rundir.TRAIN_STATE)
    n = next(iter(later[k] for k in later if k.startswith("step."))).item()
    assert n == run.config.epochs - E


def test_relabel_refuses_bad_requests(parent, tmp_path):
    run = rundir.load_run(parent)
    E = _mid(run)
    with pytest.raises(TrainError, match="optimizer state at epoch"):
        relabel_run(parent, tmp_path / "x", epoch=E, budget=1, adam_state="keep")
    with pytest.raises(TrainError, match="another directory"):
        relabel_run(parent, parent, epoch=E, budget=1)
    with pytest.raises(ValueError, match="budget must be in"):
        relabel_run(parent, tmp_path / "y", epoch=E, budget=10**6)
    with pytest.raises(ValueError, match="score must be"):
        relabel_run(parent, tmp_path / "y", epoch=E, budget=1, score="vibes")
    relabel_run(parent, tmp_path / "z", epoch=E, budget=1)
    with pytest.raises(TrainError, match="already exists"):
        relabel_run(parent, tmp_path / "z", epoch=E, budget=1)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_tampered_relabel_record_is_refused(parent, tmp_path):
    out = tmp_path / "t"
    relabel_run(parent, out, epoch=_mid(rundir.load_run(parent)), budget=4)
    t = load_file(out / rundir.DATASET)
    t["relabel_new"] = (t["relabel_new"] + 1) % 11
    rundir.save_tensors(out / rundir.DATASET, t, {"p": 11})
    with pytest.raises(rundir.RunDirError, match="relabel_new differs"):
        rundir.load_run(out)


def test_cli_relabel_then_resume(parent, tmp_path, capsys):
    run = rundir.load_run(parent)
    E = _mid(run)
    out = tmp_path / "cli"
    assert run_cli("relabel", parent, "--epoch", E, "--budget", "10%", "--score", "best", "--out", out) == 0
    text = capsys.readouterr().out
    n_train = run.dataset.train_idx.numel()
    assert f"relabelled {round(0.1 * n_train)} of {n_train} training examples" in text
    assert f"interp-grok train --resume --out {out}" in text
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["provenance"][rundir.PARENT]["score_requested"] == "best"
    assert run_cli("train", "--resume", "--out", out) == 0
    assert rundir.load_run(out).checkpoint_epochs[-1] == run.config.epochs
    assert run_cli("relabel", parent, "--epoch", E, "--budget", "lots", "--out", tmp_path / "b") == 2
    assert "expected a number of examples" in capsys.readouterr().err
    assert run_cli("relabel", parent, "--epoch", E + 10**6, "--budget", "1", "--out", tmp_path / "c") == 1
    assert "no checkpoint at epoch" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    # the flags of the two modes: --from-scratch from the CLI, and --adam-state keep refused with it
    assert run_cli("relabel", parent, "--epoch", E, "--budget", "1", "--from-scratch", "--out", tmp_path / "d") == 0
    cfg = json.loads((tmp_path / "d" / "config.json").read_text())
    assert cfg["provenance"][rundir.PARENT]["mode"] == "scratch"
    assert run_cli("relabel", parent, "--epoch", E, "--budget", "1", "--from-scratch", "--adam-state", "keep",
                   "--out", tmp_path / "e") != 0
    assert "--adam-state applies to continuing" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_analyze_writes_the_audit_table_and_its_figure(parent, tmp_path, capsys):
    import shutil

    from interp_grok import plotting
    from interp_grok.analysis.correction import AUDIT_CSV_COLUMNS, read_audit
    from interp_grok.analysis.pipeline import read_analysis

    run_dir = tmp_path / "analyzed"
    shutil.copytree(parent, run_dir)
    assert run_cli("analyze", run_dir) == 0
    text = capsys.readouterr().out
    assert "label audit at epoch" in text and "extraction accuracy (restricted logits vs clean labels)" in text
    path = run_dir / "analysis" / rundir.AUDIT_CSV
    assert path.read_text().splitlines()[0] == ",".join(AUDIT_CSV_COLUMNS)
    rows = read_audit(run_dir)
    run = rundir.load_run(run_dir)
    an = read_analysis(run)
    final = run.checkpoint_epochs[-1]
    # the table is audit_checkpoint's at the final checkpoint, with the analysis' keys and first fits
    direct = audit_checkpoint(run, final, key_freqs=an.key_freqs, first_fit=an.first_fit_epoch)
    assert len(rows) == len(direct.rows) and {r["epoch"] for r in rows} == {final}
    for got, want in zip(rows, direct.rows):
        assert got["score"] == want["score"] and got["budget"] == want["budget"]
        assert got["precision"] == pytest.approx(want["precision"], rel=1e-12)
    # progress.csv's R-precision at the final checkpoint is the table's at B = n_noisy
    n_noisy = int(direct.is_noisy.sum())
    for score in ("loss", "margin", "restricted_disagree", "restricted_nll"):
        at = next(r for r in rows if r["score"] == score and r["budget"] == n_noisy)
        assert an.column(f"audit_rprec_{score}")[-1].item() == pytest.approx(at["precision"], rel=1e-12)
    assert (run_dir / "analysis" / "figures" / "audit.png").read_bytes()[:4] == b"\x89PNG"
    fig = plotting.plot_audit(rows, "r")
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == len(AUDIT_SCORES) + 1  # + the random baseline
    # a run's own files: `train --overwrite` may clear it
    assert rundir.foreign_entries(run_dir) == []


@pytest.mark.parametrize(("mode", "remove"), [("continue", rundir.TRAIN_STATE), ("continue", rundir.DATASET),
                                              ("scratch", rundir.DATASET)])
def test_a_relabel_killed_before_it_finished_is_not_resumed_as_something_else(parent, tmp_path, mode, remove):
    """A creation cut short would otherwise resume as a plain retrain (state missing: epoch 0;
    dataset missing: the parent's labels redrawn from the config)."""
    out = tmp_path / "cut"
    relabel_run(parent, out, epoch=_mid(rundir.load_run(parent)), budget=3, mode=mode)
    (out / remove).unlink()
    if remove == rundir.TRAIN_STATE:
        rundir.checkpoint_path(out, _mid(rundir.load_run(parent))).unlink()  # killed before the checkpoint too
    with pytest.raises(rundir.RunDirError, match="creation did not finish"):
        resume(out, threads=1)
    relabel_run(parent, out, epoch=_mid(rundir.load_run(parent)), budget=3, mode=mode, overwrite=True)
    assert resume(out, threads=1).final["epoch"] == rundir.load_run(parent).config.epochs


def test_relabel_of_a_uniform_noise_quadratic_run(tmp_path):
    """Doshi et al.'s family and noise kind: relabelling every training example at initialization
    gives clean (uncorrupted) pairs labels off their clean one, which the dataset check allows for
    relabelled pairs only; the new run resumes."""
    parent = tmp_path / "q"
    args = [a if a != "120" else "20" for a in TINY]
    assert run_cli("train", *args, "--model", "quadratic", "--noise-kind", "uniform", "--noise-frac", "0.3",
                   "--d-mlp", "32", "--out", parent) == 0
    run = rundir.load_run(parent)
    n = run.dataset.train_idx.numel()
    out = tmp_path / "q_fix"
    r = relabel_run(parent, out, epoch=0, budget=n, score="restricted_nll")
    ds = rundir.load_run(out).dataset
    off = (ds.noisy_labels != ds.clean_labels) & ~ds.corrupted
    assert off.any()  # the premise: some uncorrupted pair now has a shifted label ...
    assert torch.isin(torch.nonzero(off).flatten(), r.pairs).all()  # ... and only relabelled ones
    assert resume(out, threads=1).final["epoch"] == run.config.epochs


def test_a_malformed_lineage_record_is_one_line(parent, tmp_path, capsys):
    out = tmp_path / "bad"
    relabel_run(parent, out, epoch=_mid(rundir.load_run(parent)), budget=2)
    cfg = json.loads((out / "config.json").read_text())
    cfg["provenance"][rundir.PARENT]["start_epoch"] = "soon"
    (out / "config.json").write_text(json.dumps(cfg))
    assert run_cli("train", "--resume", "--out", out) == 1
    assert "start_epoch must be an integer >= 0" in capsys.readouterr().err


def test_first_fit_comes_from_the_stored_analysis_on_a_trimmed_run(parent, tmp_path):
    import shutil

    from interp_grok.analysis.correction import first_fit_upto, train_fit_history
    from interp_grok.analysis.memorization import first_fit_epoch
    from interp_grok.analysis.pipeline import write_analysis

    run_dir = tmp_path / "trim"
    shutil.copytree(parent, run_dir)
    run = rundir.load_run(run_dir)
    E = _mid(run)
    full = first_fit_epoch(*reversed(train_fit_history(run, E)))  # every checkpoint up to E on disk
    ff, src = first_fit_upto(run, E)
    assert src.startswith("checkpoints on disk") and torch.equal(ff, full)
    write_analysis(run, analyze_run(run))
    ff, src = first_fit_upto(rundir.load_run(run_dir), E)
    assert src.startswith("analysis") and torch.equal(ff, full)
    for e in run.checkpoint_epochs:
        if 0 < e < E:
            rundir.checkpoint_path(run_dir, e).unlink()  # trimmed: the analysis keeps those rows
    trimmed = rundir.load_run(run_dir)
    ff, src = first_fit_upto(trimmed, E)
    assert src.startswith("analysis") and torch.equal(ff, full)
    r = relabel_run(run_dir, tmp_path / "fix", epoch=E, budget=3, score="first_fit_early")
    assert r.record["first_fit_from"].startswith("analysis")
