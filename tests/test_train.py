"""End-to-end training through the CLI on tiny runs: files, resume, kill, refusal, bad input."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import TINY, run_cli
from safetensors.torch import load_file

from interp_grok import rundir
from interp_grok.models.mlp import PARAM_NAMES


def test_run_directory_contents(tiny_run):
    cfg = json.loads((tiny_run / "config.json").read_text())
    for key in ("p", "noise_n", "p_bin", "train_frac", "d_model", "d_mlp", "act", "lr", "weight_decay",
                "betas", "adam_eps", "epochs", "seed", "data_seed", "loss_dtype", "checkpoint_epochs"):
        assert key in cfg, key
    for key in ("interp_grok", "torch", "numpy", "python", "git_commit"):
        assert key in cfg["provenance"]
    assert cfg["p"] == 11 and cfg["epochs"] == 120

    ds = load_file(tiny_run / "dataset.safetensors")
    assert ds["noise"].dtype == torch.int64 and ds["noise"].shape == (121,)
    assert ds["train_idx"].numel() == 36 and ds["test_idx"].numel() == 85

    epochs = rundir.checkpoint_epochs_on_disk(tiny_run)
    assert epochs == cfg["checkpoint_epochs"]
    assert epochs[0] == 0 and epochs[-1] == 120 and max(b - a for a, b in zip(epochs, epochs[1:])) <= 3
    gaps = [b - a for a, b in zip(epochs, epochs[1:])]
    assert gaps[0] == 1 and max(gaps) > 1  # dense early, sparse late: log-spaced
    for e in (0, 120):
        t = load_file(rundir.checkpoint_path(tiny_run, e))
        assert set(t) == set(PARAM_NAMES) and all(v.dtype == torch.float32 for v in t.values())
        _, meta = rundir.load_tensors(rundir.checkpoint_path(tiny_run, e))
        assert meta["epoch"] == str(e)
    assert not list(tiny_run.rglob("*.tmp"))


def test_metrics_cover_every_epoch(tiny_run):
    recs = rundir.read_metrics(tiny_run)
    train, _ = rundir.train_losses(recs)
    evals = [r for r in recs if r["kind"] == "eval"]
    assert train == list(range(120))
    assert [r["epoch"] for r in evals][:3] == [0, 1, 2] and evals[-1]["epoch"] == 120
    last = evals[-1]
    for key in ("train_loss", "test_loss", "test_acc_noisy", "test_acc_clean", "train_clean_acc",
                "train_noisy_memorized_frac", "train_noisy_corrected_frac", "sum_sq_weights"):
        assert key in last
    assert last["train_loss"] < evals[0]["train_loss"]  # it learned something
    # the eval record's train loss at epoch e is the loss the next train step starts from
    e10 = next(r for r in evals if r["epoch"] == 10)
    assert e10["train_loss"] == pytest.approx(rundir.train_losses(recs)[1][10], rel=1e-6)


def _final_state(run):
    return rundir.load_tensors(run / rundir.TRAIN_STATE)[0]


def test_resume_extends_bit_identically(tmp_path, tiny_run):
    half = tmp_path / "half"
    args = [a if a != "120" else "60" for a in TINY]
    assert run_cli("train", *args, "--out", half) == 0
    assert run_cli("train", "--resume", "--out", half, "--epochs", "120") == 0
    resumes = json.loads((half / "config.json").read_text())["provenance"]["resumes"]
    assert [(r["from_epoch"], r["to_epoch"]) for r in resumes] == [(60, 120)]
    a, b = _final_state(half), _final_state(tiny_run)
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert torch.equal(load_file(rundir.checkpoint_path(half, 120))["W_E"],
                       load_file(rundir.checkpoint_path(tiny_run, 120))["W_E"])
    assert rundir.train_losses(rundir.read_metrics(half)) == rundir.train_losses(rundir.read_metrics(tiny_run))


def test_kill_and_resume(tmp_path, tiny_run):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "interp_grok.cli", "train", *TINY, "--out", str(out)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until some state past epoch 10 exists, then kill hard
        state = out / rundir.TRAIN_STATE
        if state.exists():
            try:
                epoch, _ = rundir.read_train_state(out)
            except rundir.RunDirError:
                epoch = 0
            if epoch >= 10:
                break
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed, not finished
    killed_at, _ = rundir.read_train_state(out)
    assert 10 <= killed_at < 120
    assert run_cli("train", "--resume", "--out", out) == 0
    a, b = _final_state(out), _final_state(tiny_run)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert rundir.train_losses(rundir.read_metrics(out)) == rundir.train_losses(rundir.read_metrics(tiny_run))


def test_existing_run_is_refused(tiny_run, capsys):
    before = {p: p.read_bytes() for p in tiny_run.rglob("*") if p.is_file()}
    assert run_cli("train", *TINY, "--out", tiny_run) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "already exists" in err and "--overwrite" in err
    assert {p: p.read_bytes() for p in tiny_run.rglob("*") if p.is_file()} == before


def test_overwrite_replaces_a_run_but_never_a_non_run(tmp_path, capsys):
    out = tmp_path / "r"
    small = [a if a != "120" else "5" for a in TINY]
    assert run_cli("train", *small, "--out", out) == 0
    assert run_cli("train", *small, "--seed", "3", "--out", out, "--overwrite") == 0
    assert json.loads((out / "config.json").read_text())["seed"] == 3
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert run_cli("train", *small, "--out", precious, "--overwrite") == 2
    assert (precious / "notes.txt").read_text() == "keep me"
    assert "not an interp-grok run directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, needle",
    [(["--p", "1"], "p must be"), (["--train-frac", "1.5"], "train_frac"), (["--train-frac", "0"], "train_frac"),
     (["--noise", "-2"], "noise_n"), (["--p-bin", "2"], "p_bin"), (["--epochs", "0"], "epochs"),
     (["--act", "tanh"], "act"), (["--checkpoints", "1"], "checkpoints"), (["--eval-every", "0"], "eval_every"),
     (["--lr", "-1"], "lr"), (["--lr", "inf"], "lr"), (["--weight-decay", "nan"], "weight_decay"),
     (["--threads", "0"], "threads"), (["--epochs", "ten"], "--epochs"),
     (["--device", "mps"], "mps")],
)
def test_bad_settings_one_line_exit_2_nothing_written(tmp_path, capsys, flags, needle):
    out = tmp_path / "bad"
    assert run_cli("train", "--p", "5", "--epochs", "3", *flags, "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert "Traceback" not in err
    assert not out.exists()


def test_resume_of_a_non_run_and_conflicting_flags(tmp_path, tiny_run, capsys):
    assert run_cli("train", "--resume", "--out", tmp_path) == 1
    assert "not a run directory" in capsys.readouterr().err
    assert run_cli("train", "--resume", "--out", tiny_run, "--noise", "8") == 2
    assert "only --epochs may change" in capsys.readouterr().err


def test_noise_free_run_writes_strict_json(tmp_path, capsys):
    out = tmp_path / "n0"
    small = [a if a != "120" else "10" for a in TINY]
    assert run_cli("train", *small, "--noise", "0", "--out", out) == 0
    assert "memorized" not in capsys.readouterr().out  # no noisy labels: nothing to report

    def no_nan(token):
        raise AssertionError(f"non-standard JSON constant {token}")

    for line in (out / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line, parse_constant=no_nan)
    assert rec["kind"] == "eval" and rec["train_noisy_memorized_frac"] is None
    assert run_cli("analyze", out, "--no-figures") == 0
    json.loads((out / "analysis" / "summary.json").read_text(), parse_constant=no_nan)


def test_truncate_metrics_cuts_blocks_and_partial_lines(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    lines = [{"kind": "eval", "epoch": 0, "x": 1.0}, {"kind": "train", "epoch": 0, "train_loss": [5.0, 4.0, 3.0]},
             {"kind": "eval", "epoch": 3, "x": 2.0}, {"kind": "train", "epoch": 3, "train_loss": [2.0, 1.0, 0.5]},
             {"kind": "eval", "epoch": 6, "x": 3.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"kind": "tra')
    assert len(rundir.read_metrics(run)) == 5  # the partial last line is skipped
    rundir.truncate_metrics(run, 5)
    kept = rundir.read_metrics(run)
    assert rundir.train_losses(kept) == ([0, 1, 2, 3, 4], [5.0, 4.0, 3.0, 2.0, 1.0])
    assert [r["epoch"] for r in kept if r["kind"] == "eval"] == [0, 3]
    # a gap in the train losses before the resume point is refused, not silently kept
    (run / "metrics.jsonl").write_text(json.dumps(lines[0]) + "\n" + json.dumps(lines[3]) + "\n")
    with pytest.raises(rundir.RunDirError, match="do not cover"):
        rundir.truncate_metrics(run, 5)


def test_resume_of_a_finished_run_changes_nothing(tmp_path, tiny_run, capsys):
    import shutil

    out = tmp_path / "done"
    shutil.copytree(tiny_run, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert run_cli("train", "--resume", "--out", out) == 0
    assert "epoch 120" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_corrupt_train_state_is_refused_before_anything_changes(tmp_path, tiny_run, capsys):
    import shutil

    out = tmp_path / "bad_state"
    shutil.copytree(tiny_run, out)
    state, meta = rundir.load_tensors(out / rundir.TRAIN_STATE)
    del state["exp_avg.W_in"]
    rundir.save_tensors(out / rundir.TRAIN_STATE, state, {"epoch": 120})
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert run_cli("train", "--resume", "--out", out, "--epochs", "150") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "exp_avg.W_in" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_unwritable_out_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run_cli("train", "--p", "5", "--epochs", "3", "--out", blocker / "run") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and str(blocker) in err


def test_provenance_names_the_commit_this_process_imported(tiny_run, monkeypatch):
    """A sweep's pool worker runs the code it imported: the commit is read at import, never at a
    run's start (when the checkout may have moved on)."""
    train_mod = importlib.import_module("interp_grok.train")  # the package re-exports the function `train`

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(train_mod.__file__),
                          capture_output=True, text=True).stdout.strip() or None
    assert train_mod.GIT_COMMIT == head
    assert train_mod.GIT_DIRTY in (True, False, None)

    def no_git(*args, **kwargs):
        raise AssertionError("provenance ran git at run time")

    monkeypatch.setattr(subprocess, "run", no_git)
    prov = train_mod.provenance(torch.device("cpu"), 1)
    assert (prov["git_commit"], prov["git_dirty"]) == (train_mod.GIT_COMMIT, train_mod.GIT_DIRTY)
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["provenance"]["git_commit"] == train_mod.GIT_COMMIT


def test_flushing_denormals_changes_no_weight(tmp_path, monkeypatch):
    """Training flushes denormals to zero (train._denormals_flushed, for speed): a run that meets
    denormals (wrong-class softmax probabilities below float32's smallest normal number, from logit
    gaps above ~87) ends with the same weights, bit for bit, as the same run without flushing."""
    import contextlib

    from interp_grok import Config, family, load_run, train

    trainer = sys.modules["interp_grok.train"]
    c = dict(p=11, d_model=8, noise_n=0, epochs=1500, n_checkpoints=3, lr=0.03, weight_decay=0.0)
    train(Config(**c).finalize(), tmp_path / "flushed", device="cpu", threads=1)
    monkeypatch.setattr(trainer, "_denormals_flushed", contextlib.nullcontext)
    train(Config(**c).finalize(), tmp_path / "kept", device="cpu", threads=1)
    run = load_run(tmp_path / "kept")
    z = family(run.config).grid_logits(run.params(1500), run.config).reshape(-1, 11)
    probs = torch.softmax(z.double(), -1).float()
    assert ((probs > 0) & (probs < torch.finfo(torch.float32).tiny)).sum() > 0  # the run did meet denormals
    for e in (0, 1500):
        a = load_file(rundir.checkpoint_path(tmp_path / "flushed", e))
        b = load_file(rundir.checkpoint_path(tmp_path / "kept", e))
        assert all(torch.equal(a[k], b[k]) for k in a), e


def test_provenance_names_the_cpu(tiny_run):
    """The CPU and torch's vector-kernel level are recorded: the same settings round differently on
    another CPU (docs/findings.md §2). Here: /proc/cpuinfo's model name where there is one."""
    train_mod = importlib.import_module("interp_grok.train")
    prov = json.loads((tiny_run / "config.json").read_text())["provenance"]
    assert prov["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    names = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")] \
        if os.path.exists("/proc/cpuinfo") else []
    assert prov["cpu"] == train_mod.cpu_name() and (not names or prov["cpu"] == names[0]) and prov["cpu"]
