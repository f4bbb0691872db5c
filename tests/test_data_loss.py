"""The five ways a run directory lost data before it had an identity, locks, a validated resume
state and an analysis manifest (issue 7). Each test failed on the code before that change."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import TINY, run_cli

from interp_grok import rundir
from interp_grok.analysis.pipeline import analyze_run, read_analysis, write_analysis

SMALL = [a if a != "120" else "20" for a in TINY]


def snapshot(d) -> dict:
    """Every file under d and its bytes, lock files aside (their content names the last holder)."""
    return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file() and p.name not in (rundir.LOCK, rundir.ANALYSIS_LOCK)}


def one_line(capsys, needle: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert needle in err, err
    return err


# ---------------------------------------------------------------- 1. --overwrite of a non-run


@pytest.mark.parametrize("config_text", ['{"name": "app"}', "{not json", "[]", ""])
def test_overwrite_never_deletes_a_directory_with_someone_elses_config(tmp_path, capsys, config_text):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "config.json").write_text(config_text)
    (proj / "main.py").write_text("x")
    before = snapshot(proj)
    assert run_cli("train", *SMALL, "--out", proj, "--overwrite") == 2
    one_line(capsys, "not an interp-grok run directory")
    assert snapshot(proj) == before and sorted(os.listdir(proj)) == ["config.json", "main.py"]


def test_overwrite_refuses_a_run_holding_foreign_files(tmp_path, capsys):
    out = tmp_path / "r"
    assert run_cli("train", *SMALL, "--out", out) == 0
    (out / "notes.txt").write_text("my notes")
    (out / "analysis").mkdir()
    (out / "analysis" / "my_plot.svg").write_text("<svg/>")
    capsys.readouterr()
    before = snapshot(out)
    assert run_cli("train", *SMALL, "--seed", "3", "--out", out, "--overwrite") == 2
    err = one_line(capsys, "holds files interp-grok does not write")
    assert "analysis/my_plot.svg" in err and "notes.txt" in err
    assert snapshot(out) == before


def test_overwrite_of_a_real_run_replaces_only_its_files(tmp_path, capsys):
    out = tmp_path / "r"
    assert run_cli("train", *SMALL, "--out", out) == 0
    assert run_cli("analyze", out) == 0
    assert run_cli("train", *SMALL, "--seed", "3", "--out", out, "--overwrite") == 0
    assert json.loads((out / "config.json").read_text())["seed"] == 3
    assert not (out / "analysis").exists()  # the old analysis went with the old run
    assert rundir.checkpoint_epochs_on_disk(out) == json.loads((out / "config.json").read_text())["checkpoint_epochs"]


def test_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text('{"name": "app"}')
    (tmp_path / "main.py").write_text("x")
    before = snapshot(tmp_path)
    assert run_cli("train", *SMALL, "--out", "", "--overwrite") == 2
    one_line(capsys, "--out must name a directory")
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- 2. a corrupt state rewrites history


def _restate(out, epoch=None, edit=None):
    state, meta = rundir.load_tensors(out / rundir.TRAIN_STATE)
    if edit:
        edit(state)
    rundir.save_tensors(out / rundir.TRAIN_STATE, state, {**meta, **({"epoch": epoch} if epoch is not None else {})})


def _scale(key, by):
    def edit(state):
        state[key] = state[key] * by
    return edit


@pytest.mark.parametrize("epoch, edit, needle", [
    (-5, None, "epoch -5 is not a checkpoint epoch"),
    (7, None, "epoch 7 is not a checkpoint epoch"),
    (500, None, "epoch 500 is not a checkpoint epoch"),
    (None, _scale("param.W_E", 1.5), "its weights differ from"),
    (None, _scale("step.W_E", 2.0), "step.W_E must be float32 [1] equal to the epoch"),
    (None, _scale("exp_avg_sq.W_U", -1.0), "exp_avg_sq.W_U holds NaN, inf or (second moment) negative"),
    (None, _scale("exp_avg.b_in", float("nan")), "exp_avg.b_in holds NaN"),
    (None, lambda s: s.update({"extra": torch.zeros(1)}), "unexpected tensor(s) extra"),
    (None, lambda s: s.update({"param.W_in": s["param.W_in"].double()}), "param.W_in is not float32"),
])
def test_a_corrupt_state_is_refused_before_anything_is_written(run_copy, capsys, epoch, edit, needle):
    _restate(run_copy, epoch, edit)
    before = snapshot(run_copy)
    assert run_cli("train", "--resume", "--out", run_copy, "--epochs", "150") == 1
    one_line(capsys, needle)
    assert snapshot(run_copy) == before


def test_an_old_state_behind_newer_checkpoints_is_refused(tmp_path, capsys):
    out = tmp_path / "r"
    assert run_cli("train", *SMALL, "--out", out) == 0
    state_at_3 = tmp_path / "state3"
    # a state from an earlier moment of the same run, put back (say, from a backup)
    assert run_cli("train", *[a if a != "20" else "3" for a in SMALL], "--out", tmp_path / "r3") == 0
    shutil.copy(tmp_path / "r3" / rundir.TRAIN_STATE, state_at_3)
    shutil.copy(state_at_3, out / rundir.TRAIN_STATE)
    capsys.readouterr()
    before = snapshot(out)
    assert run_cli("train", "--resume", "--out", out) == 1
    one_line(capsys, "checkpoints up to epoch 20 exist")
    assert snapshot(out) == before


# ---------------------------------------------------------------- 3. analyses that mix two analyses


def test_analysis_files_of_two_analyses_are_refused_and_recomputed(run_copy, capsys):
    run = rundir.load_run(run_copy)
    a = analyze_run(run, key_freqs=[1, 2])
    write_analysis(run, a)
    a_csv = (run_copy / "analysis" / "progress.csv").read_bytes()
    write_analysis(run, analyze_run(run, key_freqs=[3]))
    # a kill between two renames of a second write: progress.csv of one, the rest of the other
    (run_copy / "analysis" / "progress.csv").write_bytes(a_csv)
    with pytest.raises(rundir.RunDirError, match="progress.csv does not match manifest.json"):
        read_analysis(run)
    # without the manifest (the kill came before it was rewritten) the files are refused as well
    (run_copy / "analysis" / "manifest.json").unlink()
    with pytest.raises(rundir.RunDirError, match="files of this version but no manifest.json"):
        read_analysis(run)
    # `analyze` says why it reuses nothing, recomputes, and leaves one consistent set
    assert run_cli("analyze", run_copy, "--key-freqs", "1,2", "--no-figures", "--threads", "1") == 0
    err = capsys.readouterr().err
    assert "not reused" in err and "manifest.json" in err
    again = read_analysis(rundir.load_run(run_copy))
    assert again.key_freqs.tolist() == [1, 2] and again.rows == a.rows


def test_rows_are_not_reused_from_a_checkpoint_whose_bytes_changed(run_copy, capsys):
    assert run_cli("analyze", run_copy, "--no-figures") == 0
    keys = read_analysis(rundir.load_run(run_copy)).key_freqs.tolist()
    path = rundir.checkpoint_path(run_copy, 30)
    t, meta = rundir.load_tensors(path)
    t["W_U"] = t["W_U"] * 2
    rundir.save_tensors(path, t, meta)
    capsys.readouterr()
    assert run_cli("analyze", run_copy, "--no-figures", "--key-freqs", ",".join(map(str, keys))) == 0
    assert "(1 computed," in capsys.readouterr().out
    run = rundir.load_run(run_copy)
    fresh = analyze_run(run, key_freqs=keys)
    assert read_analysis(run).rows == fresh.rows


# ---------------------------------------------------------------- 4. one writer per run


def test_a_second_writer_is_refused_and_names_the_holder(run_copy, capsys):
    before = snapshot(run_copy)
    with rundir.locked(run_copy) as lock:
        lock.announce("interp-grok train --out elsewhere")
        for args in (["train", "--resume", "--out", run_copy, "--epochs", "150"],
                     ["train", *SMALL, "--out", run_copy, "--overwrite"]):
            assert run_cli(*args) == 1
            err = one_line(capsys, f"being written by pid {os.getpid()}")
            assert "interp-grok train --out elsewhere" in err
    assert snapshot(run_copy) == before
    with rundir.locked(run_copy, rundir.ANALYSIS_LOCK) as lock:
        lock.announce("interp-grok analyze")
        assert run_cli("analyze", run_copy) == 1
        one_line(capsys, "being analyzed by pid")
        # --overwrite would delete the analysis being written: refused as well
        assert run_cli("train", *SMALL, "--out", run_copy, "--overwrite") == 1
        one_line(capsys, "being analyzed by pid")
    assert snapshot(run_copy) == before


def test_a_killed_holder_leaves_no_stale_lock(run_copy, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from interp_grok import rundir\n"
         "with rundir.locked(sys.argv[1]) as l:\n l.announce('holder'); print('held', flush=True); time.sleep(60)",
         str(run_copy)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    assert run_cli("train", "--resume", "--out", run_copy, "--epochs", "130") == 1
    one_line(capsys, "being written by pid")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert run_cli("train", "--resume", "--out", run_copy, "--epochs", "130") == 0


def test_concurrent_resumes_leave_one_consistent_run(run_copy, tiny_run):
    """Two `--resume`s started together: one trains, the other is refused; the result equals an
    uninterrupted run and metrics.jsonl holds every epoch once, in order."""
    short = run_copy.parent / "short"
    assert run_cli("train", *[a if a != "120" else "60" for a in TINY], "--out", short) == 0
    cmd = [sys.executable, "-m", "interp_grok.cli", "train", "--resume", "--out", str(short), "--epochs", "120"]
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) for _ in range(2)]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes in ([0, 0], [0, 1]), results  # the second either found the run finished or was refused
    if codes == [0, 1]:
        assert "being written by pid" in next(err for rc, err in results if rc == 1)
    epochs, _ = rundir.train_losses(rundir.read_metrics(short))
    assert epochs == list(range(120))
    a = rundir.load_tensors(short / rundir.TRAIN_STATE)[0]
    b = rundir.load_tensors(tiny_run / rundir.TRAIN_STATE)[0]
    assert all(torch.equal(a[k], b[k]) for k in b)


# ---------------------------------------------------------------- 5. configs that cannot be read faithfully


def _edit_config(run, edit):
    raw = json.loads((run / "config.json").read_text())
    edit(raw)
    (run / "config.json").write_text(json.dumps(raw))


@pytest.mark.parametrize("edit, needle", [
    (lambda c: c.pop("act"), "missing config keys act"),
    (lambda c: c.pop("checkpoint_epochs"), "missing config keys checkpoint_epochs"),
    (lambda c: c.update(format_version=99), "format_version 99 is not one this version of interp-grok reads"),
    (lambda c: c.update(format="something-else"), "not an interp-grok run config"),
    (lambda c: c.pop("format"), "not an interp-grok run config"),
])
def test_a_config_that_cannot_be_read_faithfully_is_refused(run_copy, capsys, edit, needle):
    _edit_config(run_copy, edit)
    before = snapshot(run_copy)
    for args in (["analyze", run_copy], ["train", "--resume", "--out", run_copy, "--epochs", "150"]):
        assert run_cli(*args) == 1
        one_line(capsys, needle)
    with pytest.raises(rundir.RunDirError, match="config.json"):
        rundir.load_run(run_copy)
    assert snapshot(run_copy) == before


def test_version_1_runs_are_still_read(run_copy):
    """Runs written before the format marker (version 1: every key, no marker) stay readable."""
    _edit_config(run_copy, lambda c: (c.pop("format"), c.update(format_version=1)))
    assert rundir.is_run_dir(run_copy)
    assert rundir.load_run(run_copy).config.p == 11


# ---------------------------------------------------------------- creation killed early


def test_a_creation_killed_before_its_first_state_is_resumable(tmp_path, tiny_run):
    """config.json is written first; a run killed before its first train state resumes from 0."""
    out = tmp_path / "early"
    assert run_cli("train", *TINY, "--out", out) == 0
    for name in (rundir.TRAIN_STATE, rundir.DATASET, rundir.METRICS):
        (out / name).unlink()
    shutil.rmtree(out / "checkpoints")
    assert run_cli("train", "--resume", "--out", out) == 0
    a, b = rundir.load_tensors(out / rundir.TRAIN_STATE)[0], rundir.load_tensors(tiny_run / rundir.TRAIN_STATE)[0]
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert (out / rundir.DATASET).read_bytes() == (tiny_run / rundir.DATASET).read_bytes()


def test_a_directory_holding_only_a_lock_counts_as_empty(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / rundir.LOCK).write_text("")
    (out / ".config.json.abcd1234.tmp").write_text("{")  # a kill mid-write of the first file
    assert run_cli("train", *SMALL, "--out", out) == 0


def test_sigkill_during_creation_then_resume(tmp_path):
    """A real SIGKILL moments after start (whatever it hit) leaves a directory that either
    `train` (nothing written yet) or `train --resume` completes."""
    out = tmp_path / "k"
    proc = subprocess.Popen([sys.executable, "-m", "interp_grok.cli", "train", *SMALL, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not out.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if rundir.is_run_dir(out):
        assert run_cli("train", "--resume", "--out", out) == 0
    else:
        assert run_cli("train", *SMALL, "--out", out) == 0
    assert rundir.read_train_state(out)[0] == 20


# ---------------------------------------------------------------- found by review


def test_an_unreadable_analysis_of_a_trimmed_run_is_never_dropped_silently(run_copy, capsys):
    """A kill inside `analyze` leaves files that do not match (or lack) their manifest; the next
    `analyze` must not recompute only what is on disk and lose the rows of trimmed checkpoints."""
    assert run_cli("analyze", run_copy, "--no-figures") == 0
    for e in rundir.checkpoint_epochs_on_disk(run_copy):
        if e not in (0, 30, 120):
            rundir.checkpoint_path(run_copy, e).unlink()
    (run_copy / "analysis" / "manifest.json").unlink()  # what a kill mid-write leaves
    capsys.readouterr()
    before = snapshot(run_copy)
    assert run_cli("analyze", run_copy, "--no-figures") == 1
    one_line(capsys, "no longer on disk, which cannot be recomputed")
    assert snapshot(run_copy) == before
    assert run_cli("analyze", run_copy, "--no-figures", "--drop-missing") == 0
    assert read_analysis(rundir.load_run(run_copy)).epochs.tolist() == [0, 30, 120]


def test_overwrite_keeps_files_that_only_look_like_a_runs(tmp_path, capsys):
    out = tmp_path / "r"
    assert run_cli("train", *SMALL, "--out", out) == 0
    assert run_cli("analyze", out) == 0
    (out / "analysis" / "figures" / "my_annotated_plot.png").write_text("mine")
    (out / ".my-notes.tmp").write_text("mine")
    capsys.readouterr()
    before = snapshot(out)
    assert run_cli("train", *SMALL, "--out", out, "--overwrite") == 2
    err = one_line(capsys, "holds files interp-grok does not write")
    assert "my_annotated_plot.png" in err and ".my-notes.tmp" in err
    assert snapshot(out) == before


def test_a_lock_file_that_is_a_symlink_is_never_written_through(run_copy, tmp_path, capsys):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    (run_copy / rundir.LOCK).unlink(missing_ok=True)
    (run_copy / rundir.LOCK).symlink_to(precious)
    assert run_cli("train", "--resume", "--out", run_copy, "--epochs", "130") == 1
    one_line(capsys, "cannot open the lock file")
    assert precious.read_text() == "keep me"


def test_a_closed_stderr_does_not_stop_training(tmp_path):
    out = tmp_path / "bp"
    cmd = f"set -o pipefail; {sys.executable} -m interp_grok.cli train {' '.join(TINY)} --out {out} 2>&1 | head -1"
    proc = subprocess.run(cmd, shell=True, executable="/bin/bash", capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert rundir.read_train_state(out)[0] == 120


def test_overwrite_with_a_relative_out_from_inside_the_run(tmp_path, monkeypatch):
    out = tmp_path / "r"
    assert run_cli("train", *SMALL, "--out", out) == 0
    monkeypatch.chdir(out / "checkpoints")
    assert run_cli("train", *SMALL, "--seed", "5", "--out", "..", "--overwrite") == 0
    assert rundir.load_run(out).config.seed == 5 and rundir.read_train_state(out)[0] == 20


def test_a_state_written_for_another_dataset_is_refused(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("train", *TINY, "--out", a) == 0
    assert run_cli("train", *TINY, "--data-seed", "7", "--out", b) == 0
    # b's state and the checkpoint of its epoch put into a: shapes and schedule agree, the data does not
    shutil.copy(b / rundir.TRAIN_STATE, a / rundir.TRAIN_STATE)
    shutil.copy(rundir.checkpoint_path(b, 120), rundir.checkpoint_path(a, 120))
    capsys.readouterr()
    before = snapshot(a)
    assert run_cli("train", "--resume", "--out", a, "--epochs", "130") == 1
    one_line(capsys, "was written for another dataset")
    assert snapshot(a) == before


def test_repeated_evaluations_are_refused(run_copy, capsys):
    lines = (run_copy / rundir.METRICS).read_text().splitlines(keepends=True)
    evals = [i for i, line in enumerate(lines) if '"eval"' in line]
    lines.insert(evals[3], lines[evals[3]])
    (run_copy / rundir.METRICS).write_text("".join(lines))
    before = snapshot(run_copy)
    assert run_cli("train", "--resume", "--out", run_copy, "--epochs", "130") == 1
    one_line(capsys, "evaluation records repeated or out of order")
    assert snapshot(run_copy) == before
