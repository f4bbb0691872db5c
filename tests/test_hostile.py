"""Hostile input: bad settings, corrupt or odd files, pipes. Every case gets its exit code, one
line on stderr naming the problem (and the file, where there is one), no traceback, no hang, and
nothing that was on disk is lost or changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import TINY, run_cli

from interp_grok import rundir

SMALL = ["--p", "5", "--epochs", "3"]


def snapshot(d) -> dict:
    return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*"))
            if p.is_file() and p.name not in (rundir.LOCK, rundir.ANALYSIS_LOCK)}


def check(capsys, code: int, expected: int, needle: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == expected, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert needle in err, err
    return err


# ---------------------------------------------------------------- settings that cannot run

IMPOSSIBLE = [
    (["--p", "100000"], "GiB of memory"),
    (["--p", "97", "--d-model", "1000000"], "GiB of memory"),
    (["--noise", "1000000000"], "GiB of memory"),
    (["--epochs", "10000000000"], "epochs must be an integer in [1, 1e+09]"),
    (["--checkpoints", "1000000"], "checkpoints must be an integer in [2, 1000]"),
    (["--device", "cuda"], "CUDA is not available"),
    (["--device", "cuda:7"], "CUDA"),
    (["--device", "meta"], "device must be auto, cpu, cuda or cuda:N"),
    (["--device", "cpu:0"], "device must be auto, cpu, cuda or cuda:N"),
    (["--seed", "-1"], "seed must be an integer in [0, 2^63)"),
    (["--data-seed", str(2**63)], "data_seed must be an integer in [0, 2^63)"),
    (["--betas", "0.9", "1.0"], "betas must be two numbers in [0, 1)"),
    (["--adam-eps", "0"], "adam_eps must be > 0"),
    (["--train-frac", "0.0001"], "train_frac must be such that"),
    (["--loss-dtype", "float16"], "loss_dtype must be one of"),
    (["--d-model", "0"], "d_model must be an integer >= 1"),
    (["--out", ""], "--out must name a directory"),
]


@pytest.mark.parametrize("flags, needle", IMPOSSIBLE)
def test_settings_that_cannot_run_are_refused_before_anything_is_written(tmp_path, capsys, monkeypatch,
                                                                          flags, needle):
    monkeypatch.chdir(tmp_path)
    code = run_cli("train", *SMALL, "--out", "r", *flags)
    check(capsys, code, 2, needle)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- config.json


def _write_config(run, text: str | bytes):
    path = run / "config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _config_with(run, **changes):
    raw = json.loads((run / "config.json").read_text())
    raw.update(changes)
    return json.dumps(raw)


CONFIGS = [
    ("not json", lambda r: _write_config(r, "{not json"), "config.json: not valid JSON"),
    ("empty", lambda r: _write_config(r, ""), "config.json: not valid JSON"),
    ("array", lambda r: _write_config(r, "[1, 2]"), "config.json: expected a JSON object"),
    ("not utf-8", lambda r: _write_config(r, b'{"p": "\xff\xfe"}'), "config.json: not UTF-8 text"),
    ("nested", lambda r: _write_config(r, "[" * 100000 + "]" * 100000), "config.json"),
    ("p string", lambda r: _write_config(r, _config_with(r, p="11")), "p must be an integer"),
    ("p bool", lambda r: _write_config(r, _config_with(r, p=True)), "p must be an integer"),
    ("betas string", lambda r: _write_config(r, _config_with(r, betas="ab")), "betas must be two numbers"),
    ("unknown key", lambda r: _write_config(r, _config_with(r, colour="red")), "unknown config keys: colour"),
    ("checkpoints not list", lambda r: _write_config(r, _config_with(r, checkpoint_epochs=5)),
     "checkpoint_epochs must be a list of integers"),
    ("provenance list", lambda r: _write_config(r, _config_with(r, provenance=[1])),
     "provenance must be a JSON object"),
    ("lr null", lambda r: _write_config(r, _config_with(r, lr=None)), "lr must be a finite number"),
    ("act number", lambda r: _write_config(r, _config_with(r, act=3)), "must be strings"),
    ("a directory", lambda r: ((r / "config.json").unlink(), (r / "config.json").mkdir()), "not a regular file"),
    ("a fifo", lambda r: ((r / "config.json").unlink(), os.mkfifo(r / "config.json")), "not a regular file"),
    ("huge", lambda r: _write_config(r, b" " * (65 << 20)), "more than the"),
]


@pytest.mark.parametrize("name, corrupt, needle", CONFIGS, ids=[c[0] for c in CONFIGS])
@pytest.mark.parametrize("command", ["analyze", "resume"])
def test_unreadable_configs(run_copy, capsys, name, corrupt, needle, command):
    corrupt(run_copy)
    before = snapshot(run_copy)
    args = ["analyze", run_copy] if command == "analyze" else ["train", "--resume", "--out", run_copy]
    check(capsys, run_cli(*args), 1, needle)
    assert snapshot(run_copy) == before


# ---------------------------------------------------------------- dataset.safetensors


def _dataset_with(run, **tensors):
    t, meta = rundir.load_tensors(run / rundir.DATASET)
    t.update(tensors)
    for k in [k for k, v in tensors.items() if v is None]:
        del t[k]
    rundir.save_tensors(run / rundir.DATASET, t, meta)


DATASETS = [
    ("truncated", lambda r: (r / rundir.DATASET).write_bytes((r / rundir.DATASET).read_bytes()[:50]),
     "not a valid safetensors file"),
    ("missing", lambda r: (r / rundir.DATASET).unlink(), "dataset.safetensors: missing"),
    ("float noise", lambda r: _dataset_with(r, noise=torch.zeros(121)), "noise must be a 1-D int64 tensor"),
    ("short noise", lambda r: _dataset_with(r, noise=torch.zeros(7, dtype=torch.int64)), "noise has 7 entries"),
    ("no split", lambda r: _dataset_with(r, train_idx=None), "missing tensor 'train_idx'"),
    ("overlap", lambda r: _dataset_with(r, test_idx=torch.arange(85)), "not a partition"),
    ("a fifo", lambda r: ((r / rundir.DATASET).unlink(), os.mkfifo(r / rundir.DATASET)), "not a regular file"),
    ("sparse 1 GB", lambda r: os.truncate(r / rundir.DATASET, 1 << 30), "more than the"),
]


@pytest.mark.parametrize("name, corrupt, needle", DATASETS, ids=[c[0] for c in DATASETS])
def test_unreadable_datasets(run_copy, capsys, name, corrupt, needle):
    refused_by_analyze_and_resume(run_copy, capsys, corrupt, needle, rundir.DATASET)


def refused_by_analyze_and_resume(run, capsys, corrupt, needle: str, filename: str) -> None:
    """After ``corrupt``, analyze and resume each refuse with one line naming ``filename``; nothing changes."""
    corrupt(run)
    before = snapshot(run)
    err = check(capsys, run_cli("analyze", run), 1, needle)
    assert filename in err
    check(capsys, run_cli("train", "--resume", "--out", run, "--epochs", "130"), 1, needle)
    assert snapshot(run) == before


# ---------------------------------------------------------------- checkpoints


def _ckpt(run, epoch=30):
    return rundir.checkpoint_path(run, epoch)


def _ckpt_with(run, meta=None, **tensors):
    t, m = rundir.load_tensors(_ckpt(run))
    t.update(tensors)
    rundir.save_tensors(_ckpt(run), t, meta if meta is not None else m)


CHECKPOINTS = [
    ("truncated", lambda r: _ckpt(r).write_bytes(_ckpt(r).read_bytes()[:100]), "not a valid safetensors file"),
    ("float16", lambda r: _ckpt_with(r, W_E=torch.zeros(11, 16, dtype=torch.float16)), "W_E is float16, not float32"),
    ("wrong shape", lambda r: _ckpt_with(r, W_U=torch.zeros(3, 3)), "W_U has shape [3, 3]"),
    ("nan", lambda r: _ckpt_with(r, b_in=torch.full((64,), float("nan"))), "b_in contains NaN or inf"),
    ("epoch mismatch", lambda r: _ckpt_with(r, meta={"epoch": "31"}), "metadata says epoch 31, its name epoch 30"),
    ("no epoch", lambda r: _ckpt_with(r, meta={}), "no integer 'epoch'"),
    ("a fifo", lambda r: (_ckpt(r).unlink(), os.mkfifo(_ckpt(r))), "not a regular file"),
    ("a directory", lambda r: (_ckpt(r).unlink(), _ckpt(r).mkdir()), "not a regular file"),
    ("sparse 1 GB", lambda r: os.truncate(_ckpt(r), 1 << 30), "more than the"),
    ("garbage header", lambda r: _ckpt(r).write_bytes(b"\xff" * 8 + b"x" * 100), "not a valid safetensors file"),
]


@pytest.mark.parametrize("name, corrupt, needle", CHECKPOINTS, ids=[c[0] for c in CHECKPOINTS])
def test_bad_checkpoints_are_named_and_the_others_analyzed(run_copy, capsys, name, corrupt, needle):
    corrupt(run_copy)
    before = snapshot(run_copy)
    err = check(capsys, run_cli("analyze", run_copy, "--no-figures"), 1, needle)
    assert str(_ckpt(run_copy)) in err
    an = rundir.load_run(run_copy)
    from interp_grok.analysis.pipeline import read_analysis

    assert read_analysis(an).epochs.tolist() == [e for e in rundir.checkpoint_epochs_on_disk(run_copy) if e != 30]
    after = snapshot(run_copy)
    assert {k: v for k, v in after.items() if k.parts[0] != "analysis"} == before


# ---------------------------------------------------------------- metrics.jsonl


def _metrics_line(run, line: str, at: int = 3):
    lines = (run / rundir.METRICS).read_text().splitlines(keepends=True)
    lines.insert(at, line + "\n")
    (run / rundir.METRICS).write_text("".join(lines))


METRICS = [
    ("not json", lambda r: _metrics_line(r, "{oops"), "line 4 is not valid JSON"),
    ("kind", lambda r: _metrics_line(r, '{"kind": "test", "epoch": 1}'), 'line 4: kind must be "train" or "eval"'),
    ("epoch string", lambda r: _metrics_line(r, '{"kind": "eval", "epoch": "1"}'), "line 4: epoch must be an integer"),
    ("negative epoch", lambda r: _metrics_line(r, '{"kind": "eval", "epoch": -1}'), "epoch must be an integer >= 0"),
    ("loss not list", lambda r: _metrics_line(r, '{"kind": "train", "epoch": 1, "train_loss": 3}'),
     "train_loss must be a list of numbers"),
    ("eval string", lambda r: _metrics_line(r, '{"kind": "eval", "epoch": 1, "test_loss": "x"}'),
     "eval values must be numbers"),
    ("array line", lambda r: _metrics_line(r, "[1, 2]"), "line 4: not a JSON object"),
    ("not utf-8", lambda r: (r / rundir.METRICS).write_bytes(b"\xff\xfe\n"), "metrics.jsonl: not UTF-8 text"),
    ("a fifo", lambda r: ((r / rundir.METRICS).unlink(), os.mkfifo(r / rundir.METRICS)), "not a regular file"),
]


@pytest.mark.parametrize("name, corrupt, needle", METRICS, ids=[c[0] for c in METRICS])
def test_bad_metrics(run_copy, capsys, name, corrupt, needle):
    refused_by_analyze_and_resume(run_copy, capsys, corrupt, needle, rundir.METRICS)


# ---------------------------------------------------------------- train state


def _state_with(run, epoch=None, **tensors):
    t, meta = rundir.load_tensors(run / rundir.TRAIN_STATE)
    t.update({k: v for k, v in tensors.items() if v is not None})
    for k in [k for k, v in tensors.items() if v is None]:
        del t[k]
    rundir.save_tensors(run / rundir.TRAIN_STATE, t, {**meta, **({"epoch": epoch} if epoch is not None else {})})


STATES = [
    ("truncated", lambda r: (r / rundir.TRAIN_STATE).write_bytes((r / rundir.TRAIN_STATE).read_bytes()[:64]),
     "not a valid safetensors file"),
    ("no epoch", lambda r: rundir.save_tensors(r / rundir.TRAIN_STATE, rundir.load_tensors(r / rundir.TRAIN_STATE)[0]),
     "no integer 'epoch'"),
    ("a fifo", lambda r: ((r / rundir.TRAIN_STATE).unlink(), os.mkfifo(r / rundir.TRAIN_STATE)), "not a regular file"),
    ("missing moment", lambda r: _state_with(r, **{"exp_avg.W_in": None}), "missing tensor(s) exp_avg.W_in"),
    ("wrong shape", lambda r: _state_with(r, **{"exp_avg.W_E": torch.zeros(2, 2)}), "exp_avg.W_E is not float32"),
    ("step shape", lambda r: _state_with(r, **{"step.W_U": torch.full((2,), 120.0)}), "step.W_U must be float32 [1]"),
    ("inf param", lambda r: _state_with(r, **{"param.W_U": torch.full((16, 11), float("inf"))}),
     "param.W_U holds NaN, inf"),
    ("sparse 1 GB", lambda r: os.truncate(r / rundir.TRAIN_STATE, 1 << 30), "more than the"),
    ("a directory", lambda r: ((r / rundir.TRAIN_STATE).unlink(), (r / rundir.TRAIN_STATE).mkdir()),
     "not a regular file"),
]


@pytest.mark.parametrize("name, corrupt, needle", STATES, ids=[c[0] for c in STATES])
def test_bad_train_states(run_copy, capsys, name, corrupt, needle):
    corrupt(run_copy)
    before = snapshot(run_copy)
    err = check(capsys, run_cli("train", "--resume", "--out", run_copy, "--epochs", "130"), 1, needle)
    assert "train_state.safetensors" in err
    assert snapshot(run_copy) == before


# ---------------------------------------------------------------- stored analyses


def test_a_corrupt_stored_analysis_is_named_and_recomputed(run_copy, capsys):
    assert run_cli("analyze", run_copy, "--no-figures") == 0
    (run_copy / "analysis" / "progress.csv").write_text("epoch,train_loss\nzero,one\n")
    capsys.readouterr()
    assert run_cli("analyze", run_copy, "--no-figures") == 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "progress.csv does not match manifest.json" in err
    from interp_grok.analysis.pipeline import read_analysis

    assert len(read_analysis(rundir.load_run(run_copy)).rows) == len(rundir.checkpoint_epochs_on_disk(run_copy))


def test_a_malformed_manifest_is_named(run_copy, capsys):
    assert run_cli("analyze", run_copy, "--no-figures") == 0
    (run_copy / "analysis" / "manifest.json").write_text('{"format": "x"}')
    from interp_grok.analysis.pipeline import read_analysis

    with pytest.raises(rundir.RunDirError, match="manifest.json: not an interp-grok analysis manifest"):
        read_analysis(rundir.load_run(run_copy))


# ---------------------------------------------------------------- training that diverges


def test_divergence_stops_training_without_nan_checkpoints(tmp_path, capsys):
    out = tmp_path / "nan"
    code = run_cli("train", *TINY, "--lr", "1e30", "--out", out)
    err = capsys.readouterr().err.strip().splitlines()  # progress lines, then the error
    assert code == 1 and [line for line in err if "error" in line] == err[-1:]
    assert "training diverged by epoch" in err[-1] and "last saved state is at epoch" in err[-1]
    for e in rundir.checkpoint_epochs_on_disk(out):
        _, params = rundir.read_checkpoint(rundir.checkpoint_path(out, e), rundir.load_run(out).shapes)
        assert all(torch.isfinite(v).all() for v in params.values())
    assert all(r["train_loss"] == r["train_loss"] for r in rundir.read_metrics(out) if r["kind"] == "eval")


# ---------------------------------------------------------------- pipes and paths


def test_analyze_into_a_closed_pipe_is_not_an_error(tiny_run, tmp_path):
    run = tmp_path / "r"
    shutil.copytree(tiny_run, run)
    proc = subprocess.run(f"{sys.executable} -m interp_grok.cli analyze {run} --no-figures | head -1",
                          shell=True, capture_output=True, text=True, executable="/bin/bash",
                          env={**os.environ, "PYTHONUNBUFFERED": "0"})
    assert proc.returncode == 0 and proc.stdout.startswith("analyzed ")
    assert "Traceback" not in proc.stderr and "Broken pipe" not in proc.stderr, proc.stderr


def test_every_error_names_its_file(tmp_path, capsys):
    out = tmp_path / "nothing"
    check(capsys, run_cli("analyze", out), 1, str(out))
    check(capsys, run_cli("train", "--resume", "--out", out), 1, str(out))
    f = tmp_path / "file"
    f.write_text("x")
    check(capsys, run_cli("train", *SMALL, "--out", f), 2, f"{f} exists and is not a directory")


# ---------------------------------------------------------------- writes that would leave the run


def test_a_wide_binomial_noise_trains_and_analyzes(tmp_path, capsys):
    """n = 2000: C(n, j) overflows a float, so the noise pmf is computed in log space (it was an
    OverflowError traceback); train and analyze both work and the noise floor is a distribution."""
    out = tmp_path / "wide"
    assert run_cli("train", *SMALL, "--noise", "2000", "--out", out) == 0
    assert run_cli("analyze", out, "--no-figures") == 0
    floor = json.loads((out / rundir.ANALYSIS_DIR / rundir.SUMMARY).read_text())["noise_floor"]
    assert 0 < floor["p_zero"] < 1 and floor["entropy"] > 0


@pytest.mark.parametrize("linked", [rundir.ANALYSIS_DIR, f"{rundir.ANALYSIS_DIR}/{rundir.FIGURES_DIR}"])
def test_a_linked_analysis_folder_is_refused_and_nothing_written_through_it(tiny_run, tmp_path, capsys, linked):
    """An analysis/ (or analysis/figures/) that is a symbolic link to a folder outside the run:
    `analyze` names the link and exits 1; the folder it points to stays as it was."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("analysis"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mine.txt").write_text("keep")
    (run / linked).parent.mkdir(parents=True, exist_ok=True)
    (run / linked).symlink_to(elsewhere, target_is_directory=True)
    before = snapshot(run)
    check(capsys, run_cli("analyze", run), 1, "is a symbolic link")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["mine.txt"]
    assert snapshot(run) == before


def test_a_linked_checkpoints_folder_is_refused_on_resume(tmp_path, capsys):
    """The same for training: a resume whose checkpoints/ became a link writes no checkpoint through it."""
    run = tmp_path / "run"
    assert run_cli("train", *SMALL, "--out", run) == 0
    elsewhere = tmp_path / "elsewhere"
    shutil.move(run / rundir.CHECKPOINT_DIR, elsewhere)
    (run / rundir.CHECKPOINT_DIR).symlink_to(elsewhere, target_is_directory=True)
    outside = snapshot(elsewhere)
    capsys.readouterr()
    check(capsys, run_cli("train", "--resume", "--epochs", "6", "--out", run), 1, "is a symbolic link")
    assert snapshot(elsewhere) == outside
