"""Hostile input: bad settings, corrupt or odd files, pipes. Every case gets its exit code, one
line on stderr naming the problem (and the file, where there is one), no traceback, no hang, and
nothing that was on disk is lost or changed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
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


# ================================================================ sweeps (issue 20: sweeps that cannot lie)
# A sweep counts a run as done only when it is its grid point's run, writes nothing outside SWEEP_DIR,
# and answers every damaged input with one line naming it. Tiny runs, trained in-process.

from interp_grok.sweep import Grid, plan_sweep, read_sweep, run_sweep, sweep_status, train_one  # noqa: E402
from interp_grok.sweep.table import aggregate, load_sweep, read_table, sweep_rows  # noqa: E402

SWEEP_FIXED = {"p": 7, "d_model": 8, "epochs": 20, "eval_every": 10, "n_checkpoints": 5, "max_checkpoint_gap": 0.5}
SWEEP_FLAGS = ["--p", "7", "--d-model", "8", "--epochs", "20", "--eval-every", "10", "--checkpoints", "5"]


def train_all(sweep) -> None:
    for n in sweep.runs:
        assert train_one(str(sweep.path), n, sweep.config(n).to_dict())["status"] == "trained"


@pytest.fixture(scope="module")
def trained_sweep(tmp_path_factory):
    """Two finished tiny runs, n0 and n4, analyzed (SWEEP/analysis/table.csv written)."""
    sweep = plan_sweep(tmp_path_factory.mktemp("sweeps") / "s", Grid({"noise_n": [0, 4]}, dict(SWEEP_FIXED)))
    train_all(sweep)
    assert run_cli("analyze", sweep.path, "--workers", "1", "--no-figures") == 0
    return sweep.path


@pytest.fixture()
def sweep_copy(trained_sweep, tmp_path):
    out = tmp_path / "s"
    shutil.copytree(trained_sweep, out)
    return out


def lines(capsys) -> tuple[str, list[str]]:
    """stdout, and the lines of stderr that are not progress reports."""
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return out, [line for line in err.strip().splitlines() if not line.startswith("sweep: ")]


# ---------------------------------------------------------------- 1. "done" only for the grid point's own, whole run


def _replace_with_other_run(s):
    shutil.rmtree(s / "runs" / "n0")
    shutil.copytree(s / "runs" / "n4", s / "runs" / "n0")  # a finished run of another grid point


def _marker_only(s):
    (s / "runs" / "n0" / "config.json").write_text('{"format": "interp-grok-run", "format_version": 4}')


def _no_checkpoints(s):
    shutil.rmtree(s / "runs" / "n0" / "checkpoints")


def _final_checkpoint_truncated(s):
    path = rundir.checkpoint_path(s / "runs" / "n0", 20)
    path.write_bytes(path.read_bytes()[:200])


def _no_dataset(s):
    (s / "runs" / "n0" / rundir.DATASET).unlink()


NOT_THE_RUN = [
    ("another grid point's run", _replace_with_other_run, "noise_n = 4, the sweep asks for 0"),
    ("config holding only the marker", _marker_only, "missing config keys"),
    ("no checkpoints", _no_checkpoints, "epoch_000020.safetensors: missing"),
    ("final checkpoint truncated", _final_checkpoint_truncated, "epoch_000020.safetensors"),
    ("no dataset", _no_dataset, "dataset.safetensors: missing"),
]


@pytest.mark.parametrize("name, damage, needle", NOT_THE_RUN, ids=[c[0] for c in NOT_THE_RUN])
def test_a_run_is_done_only_when_it_is_its_grid_points_whole_run(sweep_copy, capsys, name, damage, needle):
    damage(sweep_copy)
    before = snapshot(sweep_copy / "runs")
    capsys.readouterr()
    assert run_cli("sweep", sweep_copy) == 1  # reported, never accepted as done, never overwritten
    out, err = lines(capsys)
    assert "1 already done, 1 failed" in out
    assert len(err) == 1 and "runs/n0" in err[0] and needle in err[0], err
    assert snapshot(sweep_copy / "runs") == before
    state = sweep_status(read_sweep(sweep_copy))["n0"]
    assert state.state == "invalid" and needle in state.error
    row = {r["name"]: r for r in sweep_rows(read_sweep(sweep_copy))}["n0"]
    assert row["state"] == "invalid, not analyzed" and row["test_acc_clean"] is None  # no numbers under its name
    assert run_cli("analyze", sweep_copy, "--workers", "1", "--no-figures") == 1
    _, err = lines(capsys)
    assert len(err) == 1 and needle in err[0]


def test_a_lost_manifest_replanned_with_other_settings_does_not_adopt_the_runs(sweep_copy, capsys):
    (sweep_copy / "sweep.json").unlink()
    before = snapshot(sweep_copy / "runs")
    assert run_cli("sweep", sweep_copy, *SWEEP_FLAGS, "--noise", "0,4", "--weight-decay", "3") == 1
    out, err = lines(capsys)
    assert "0 already done, 2 failed" in out
    assert len(err) == 2 and all("weight_decay = 1.0, the sweep asks for 3.0" in e for e in err), err
    assert snapshot(sweep_copy / "runs") == before


# ---------------------------------------------------------------- 2. planning under the sweep's lock


def test_two_plans_of_one_new_directory_never_both_succeed(tmp_path):
    import threading

    axes = {"seed": list(range(1000)), "noise_n": [0, 4]}

    def plan(out, wd: float, barrier, outcomes: list) -> None:
        barrier.wait()
        try:
            plan_sweep(out, Grid(dict(axes), {**SWEEP_FIXED, "weight_decay": wd}))
            outcomes.append("planned")
        except Exception as e:  # noqa: BLE001 -- the loser's error is the outcome
            outcomes.append(str(e))

    for attempt in range(3):
        barrier, outcomes = threading.Barrier(2), []
        threads = [threading.Thread(target=plan, args=(tmp_path / f"race{attempt}", wd, barrier, outcomes))
                   for wd in (1.0, 3.0)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert outcomes.count("planned") == 1, outcomes
        assert any("the fixed settings differ" in o for o in outcomes), outcomes


# ---------------------------------------------------------------- 3. a bad checkpoint in a sweep is named and marked


def test_analyze_sweep_names_a_bad_checkpoint_and_marks_the_row(sweep_copy, capsys):
    bad = rundir.checkpoint_path(sweep_copy / "runs" / "n4", 10)
    bad.write_bytes(bad.read_bytes()[:100])
    capsys.readouterr()
    assert run_cli("analyze", sweep_copy, "--workers", "1", "--no-figures", "--force") == 1
    out, err = lines(capsys)
    assert len(err) == 1 and str(bad) in err[0] and "not a valid safetensors file" in err[0], err
    rows = {r["name"]: r for r in read_table(sweep_copy / "analysis" / "table.csv")}
    assert rows["n4"]["state"] == "done, 1 bad checkpoint" and rows["n0"]["state"] == "done"
    assert [k for k in aggregate(list(rows.values()), "noise_n")] == [(None, None, 0)]  # left out of the diagrams
    assert "1 runs left out of the phases and figures" in out


# ---------------------------------------------------------------- 4. stale tables, unfinished runs


def test_a_table_older_than_the_runs_is_not_returned_as_current(sweep_copy):
    plan_sweep(sweep_copy, Grid({"noise_n": [0, 4, 8]}, dict(SWEEP_FIXED)), extend=True)  # a third run, not trained
    with pytest.warns(UserWarning, match="table.csv is older than the runs"):
        res = load_sweep(sweep_copy)
    assert [r["name"] for r in res.rows] == ["n0", "n4", "n8"] and res.stale
    assert res.rows[2]["state"] == "pending, not analyzed"


def test_an_unfinished_run_is_marked_and_left_out_of_final_values(tmp_path, capsys):
    sweep = plan_sweep(tmp_path / "s", Grid({"noise_n": [0, 4]}, {**SWEEP_FIXED, "epochs": 40}))
    train_one(str(sweep.path), "n0", sweep.config("n0").to_dict())
    from interp_grok import train

    short = sweep.config("n4")
    short.epochs, short.checkpoint_epochs = 20, []
    train(short.finalize(), sweep.run_dir("n4"), threads=1)  # the same run, stopped at epoch 20 of 40
    assert sweep_status(sweep)["n4"].state == "partial"
    capsys.readouterr()
    assert run_cli("analyze", sweep.path, "--workers", "1", "--no-figures") == 0
    out, _ = lines(capsys)
    rows = load_sweep(sweep.path).rows
    assert rows[1]["state"] == "partial" and rows[1]["epochs_trained"] == 20
    assert list(aggregate(rows, "noise_n")) == [(None, None, 0)]
    assert "1 runs left out of the phases and figures" in out
    assert "not finished" in repr(load_sweep(sweep.path))


# ---------------------------------------------------------------- 5. duplicates that would collapse into one run


@pytest.mark.parametrize("spec, needle", [
    ({"axes": {"weight_decay": [1, 1.0]}}, "weight_decay: a value is listed twice"),
    ({"axes": {"d_model": [8, 16]}, "fixed": {"model": "quadratic", "d_mlp": 8}}, "d_model is unused when model"),
    ({"axes": {"noise_n": [0, 4]}, "fixed": {"noise_kind": "uniform", "noise_frac": 0.3}},
     "noise_n is unused when noise_kind = uniform"),
    ({"axes": {"d_mlp": [0, 32]}, "fixed": {"d_model": 8}}, "train the same run"),  # 0 means 4 * d_model
    ({"axes": {"n_heads": [1, 2]}, "fixed": {"d_model": 8}}, "n_heads is unused when model = mlp"),
])
def test_grid_points_that_train_the_same_run_are_refused(tmp_path, capsys, spec, needle):
    path = tmp_path / "spec.json"
    spec = {"axes": spec["axes"], "fixed": {"p": 7, "epochs": 5, **spec.get("fixed", {})}}
    path.write_text(json.dumps(spec))
    assert run_cli("sweep", tmp_path / "s", "--spec", path) == 2
    _, err = lines(capsys)
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "s").exists()


def test_an_int_and_its_float_are_one_value_when_a_sweep_grows(tmp_path):
    plan_sweep(tmp_path / "s", Grid({"weight_decay": [1, 3]}, {"p": 7, "epochs": 5}))
    sweep = plan_sweep(tmp_path / "s", Grid({"weight_decay": [1.0, 3.0, 10.0]}, {"p": 7, "epochs": 5}), extend=True)
    assert list(sweep.runs) == ["wd1", "wd3", "wd10"]
    assert [p["weight_decay"] for p in sweep.runs.values()] == [1, 3, 10.0]


# ---------------------------------------------------------------- 6. run names are one safe path component


def _manifest_with(s, **changes):
    m = json.loads((s / "sweep.json").read_text())
    m.update(changes)
    (s / "sweep.json").write_text(json.dumps(m))


@pytest.mark.parametrize("name", ["..", "../../outside", "/tmp/elsewhere", "", "a\x00b", "x/y", ".hidden", "a b"])
def test_a_manifest_cannot_name_a_run_outside_the_sweep(sweep_copy, tmp_path, capsys, name):
    outside = tmp_path / "outside"
    shutil.copytree(sweep_copy / "runs" / "n0", outside)  # a finished run the manifest points at
    m = json.loads((sweep_copy / "sweep.json").read_text())
    m["runs"][0]["name"] = name
    m["fixed"]["epochs"] = 40  # "train it further": must never reach it
    (sweep_copy / "sweep.json").write_text(json.dumps(m))
    before, before_sweep = snapshot(outside), snapshot(sweep_copy)
    for args in (["sweep", sweep_copy], ["sweep", sweep_copy, "--status"], ["analyze", sweep_copy]):
        assert run_cli(*args) == 1
        _, err = lines(capsys)
        assert len(err) == 1 and "sweep.json" in err[0] and "run name" in err[0], err
    with pytest.raises(rundir.RunDirError, match="run name"):
        load_sweep(sweep_copy)
    assert snapshot(outside) == before and snapshot(sweep_copy) == before_sweep


# ---------------------------------------------------------------- 9-14. one line, not a traceback


@pytest.mark.parametrize("flags, needle", [
    (["--weight-decay", "nan,1"], "weight_decay: nan is not a finite number"),
    (["--lr", "inf"], "lr: inf is not a finite number"),
    (["--lr", "1e400"], "lr: inf is not a finite number"),
    (["--seed", "-1,2"], "seed must be an integer in [0, 2^63)"),
    (["--noise", "0,4", "--executor", "slurm"], "no SLURM here"),
    (["--noise", "0,4", "--executor", "submitit-local", "--batch", "2"], "--batch applies to the local executor"),
])
def test_bad_sweep_values_and_executors_get_one_line_before_anything_is_written(tmp_path, capsys, monkeypatch,
                                                                                flags, needle):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no sbatch
    assert run_cli("sweep", tmp_path / "s", *SWEEP_FLAGS, *flags) == 2
    _, err = lines(capsys)
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("spec, needle", [
    ('{"axes": {"weight_decay": [NaN, 1]}}', "weight_decay: nan is not a finite number"),
    ('{"axes": {"lr": [1e400]}}', "lr: inf is not a finite number"),
    ('{"fixed": {"init_scale": Infinity}}', "init_scale: inf is not a finite number"),
    ('{"axes": {"seed": {"0": 1}}}', "seed: needs a non-empty list of values"),
])
def test_bad_spec_values_get_one_line(tmp_path, capsys, spec, needle):
    (tmp_path / "spec.json").write_text(spec)
    assert run_cli("sweep", tmp_path / "s", "--spec", tmp_path / "spec.json") == 2
    _, err = lines(capsys)
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "s").exists()


def test_a_huge_grid_is_refused_before_it_is_expanded(tmp_path, capsys):
    spec = {"axes": {"seed": list(range(1000)), "data_seed": list(range(1000))}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert run_cli("sweep", tmp_path / "s", "--spec", tmp_path / "spec.json") == 2
    _, err = lines(capsys)
    assert len(err) == 1 and "1000000 points, more than the 100000 one sweep takes" in err[0]
    assert not (tmp_path / "s").exists()


def _runs_with(s, f):
    m = json.loads((s / "sweep.json").read_text())
    f(m)
    (s / "sweep.json").write_text(json.dumps(m))


MANIFESTS = [
    ("axis not a list", lambda m: m["axes"].update(noise_n=4), "noise_n: needs a non-empty list"),
    ("point missing an axis", lambda m: m["runs"][0]["point"].pop("noise_n"), "its point must give the swept settings"),
    ("no runs", lambda m: m.update(runs=[]), "runs must be a non-empty list"),
    ("nul in a name", lambda m: m["runs"][0].update(name="n\x000"), "run name"),
    ("name twice", lambda m: m["runs"][1].update(name="n0"), "appears twice"),
    ("point off the grid", lambda m: m["runs"][0]["point"].update(noise_n=2), "is not on the grid"),
    ("grid point without a run", lambda m: m["runs"].pop(), "have no run"),
    ("value out of range", lambda m: (m["axes"].update(noise_n=[0, -4]), m["runs"][1]["point"].update(noise_n=-4)),
     "noise_n must be an integer >= 0"),
    ("runs not objects", lambda m: m.update(runs=[1, 2]), "runs[0] must be an object"),
]


@pytest.mark.parametrize("name, change, needle", MANIFESTS, ids=[c[0] for c in MANIFESTS])
def test_a_malformed_manifest_is_refused_on_read(sweep_copy, capsys, name, change, needle):
    _runs_with(sweep_copy, change)
    before = snapshot(sweep_copy)
    for args in (["sweep", sweep_copy], ["sweep", sweep_copy, "--status"], ["analyze", sweep_copy]):
        assert run_cli(*args) == 1
        _, err = lines(capsys)
        assert len(err) == 1 and "sweep.json" in err[0] and needle in err[0], err
    with pytest.raises(rundir.RunDirError, match="sweep.json"):
        load_sweep(sweep_copy)
    assert snapshot(sweep_copy) == before


TABLES = [
    ("binary", b"\xff\xfe\x00garbage", "not UTF-8 text"),
    ("wrong columns", b"a,b,c\n1,2,3\n", "not a sweep table"),
    ("extra cells", None, "cells, the header"),
    ("a directory", "dir", "not a regular file"),
    ("empty", b"", "not a sweep table"),
]


@pytest.mark.parametrize("name, data, needle", TABLES, ids=[c[0] for c in TABLES])
def test_a_damaged_table_is_named(sweep_copy, name, data, needle):
    table = sweep_copy / "analysis" / "table.csv"
    if data is None:
        table.write_text(table.read_text().replace("\nn4,", "\nn4,extra,", 1))
    elif data == "dir":
        table.unlink()
        table.mkdir()
    else:
        table.write_bytes(data)
    with pytest.raises(rundir.RunDirError, match=f"table.csv: .*{needle}"):
        load_sweep(sweep_copy)


def test_a_betas_axis_is_swept_and_analyzed(tmp_path, capsys):
    spec = {"axes": {"betas": [[0.9, 0.98], [0.8, 0.99]]}, "fixed": SWEEP_FIXED}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    sweep = plan_sweep(tmp_path / "s", Grid(spec["axes"], spec["fixed"]))
    assert list(sweep.runs) == ["betas0.9-0.98", "betas0.8-0.99"]
    train_all(sweep)
    capsys.readouterr()
    assert run_cli("analyze", sweep.path, "--workers", "1") == 0
    rows = load_sweep(sweep.path).rows
    assert [r["betas"] for r in rows] == ["0.9 0.98", "0.8 0.99"]
    assert [r["betas"] for r in sweep_rows(sweep)] == ["0.9 0.98", "0.8 0.99"]
    assert (sweep.path / "analysis" / "figures" / "phases_betas.png").exists()


def test_table_rows_and_rows_built_from_the_runs_agree_on_types(sweep_copy):
    stored, built = read_table(sweep_copy / "analysis" / "table.csv"), sweep_rows(read_sweep(sweep_copy))
    for a, b in zip(stored, built):
        for k in a:
            same = type(a[k]) is type(b[k]) or {type(a[k]), type(b[k])} <= {int, float}
            assert a[k] is None or b[k] is None or same, (k, a[k], b[k])
    assert [a["key_freqs"] or "" for a in stored] == [b["key_freqs"] for b in built]
    table = sweep_copy / "analysis" / "table.csv"  # one key frequency stays text, as in rows built from runs
    text = table.read_text().splitlines()
    col = text[0].split(",").index("key_freqs")
    text[1:] = [",".join(c if i != col else "3" for i, c in enumerate(line.split(","))) for line in text[1:]]
    table.write_text("\n".join(text) + "\n")
    assert [r["key_freqs"] for r in read_table(table)] == ["3", "3"]


# ---------------------------------------------------------------- messages a user can act on


def test_one_cli_grammar_for_directories(sweep_copy, tiny_run, tmp_path, capsys):
    assert run_cli("sweep", "--out", sweep_copy) == 0  # --out is accepted for sweep, as for train
    assert run_cli("sweep", sweep_copy, "--out", sweep_copy, "--status") == 0  # both, the same
    capsys.readouterr()
    cases = [
        (["sweep", sweep_copy, "--out", tmp_path / "other"], "give it once: interp-grok sweep SWEEP_DIR"),
        (["sweep", "--noise", "0,4"], "name the sweep directory: interp-grok sweep SWEEP_DIR"),
        (["sweep", ""], "SWEEP_DIR must name a directory"),
        (["analyze", ""], "RUN_DIR must name a directory"),
        (["analyze", "--out", sweep_copy], f"interp-grok analyze {sweep_copy}"),
        (["train", tmp_path / "r", "--p", "5"], f"interp-grok train --out {tmp_path / 'r'}"),
        (["sweep", tiny_run, "--noise", "0,4"], "is a run directory, not a sweep"),
    ]
    for args, needle in cases:
        assert run_cli(*args) == 2, args
        _, err = lines(capsys)
        assert len(err) == 1 and needle in err[0], (args, err)
    assert not (tmp_path / "r").exists() and not (tiny_run / "sweep.json").exists()


def test_the_same_values_in_another_order_are_the_same_sweep(sweep_copy, capsys):
    before = snapshot(sweep_copy)
    (sweep_copy.parent / "spec.json").write_text(json.dumps({"axes": {"noise_n": [4, 0]}, "fixed": SWEEP_FIXED}))
    assert run_cli("sweep", sweep_copy, "--spec", sweep_copy.parent / "spec.json") == 0
    assert "2 already done" in capsys.readouterr().out
    assert snapshot(sweep_copy) == before


def test_a_blocked_errors_path_does_not_fail_a_trained_run(tmp_path):
    sweep = plan_sweep(tmp_path / "s", Grid({"noise_n": [0, 4]}, dict(SWEEP_FIXED)))
    (sweep.path / "errors").write_text("a file where errors/ goes")
    assert train_one(str(sweep.path), "n0", sweep.config("n0").to_dict())["status"] == "trained"


def test_a_dead_pool_does_not_fail_the_runs_it_never_started(tmp_path):
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    class Broken:  # every task fails as a pool whose worker died does
        def submit(self, fn, *args):
            f = Future()
            f.set_exception(BrokenProcessPool("a child process terminated abruptly"))
            return f

    sweep = plan_sweep(tmp_path / "s", Grid({"noise_n": [0, 4]}, dict(SWEEP_FIXED)))
    sweep.run_dir("n0").mkdir(parents=True)  # n0 had started
    results = run_sweep(sweep, executor=Broken(), poll_s=0.01)
    assert results["n0"]["status"] == "failed" and results["n4"]["status"] == "not started"
    assert (sweep.path / "errors" / "n0.json").exists() and not (sweep.path / "errors" / "n4.json").exists()


def test_a_full_disk_names_the_file(sweep_copy, capsys, monkeypatch):
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    run = sweep_copy / "runs" / "n4"
    capsys.readouterr()
    monkeypatch.setattr(rundir.os, "fsync", full)
    assert run_cli("analyze", run, "--no-figures", "--force") == 1
    _, err = lines(capsys)
    assert len(err) == 1 and str(run / "analysis") in err[0] and "No space left on device" in err[0], err


def test_divergence_from_the_initial_weights_says_so(tmp_path, capsys):
    assert run_cli("train", *SMALL, "--init-scale", "1e30", "--out", tmp_path / "r") == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "initial weights already give a non-finite loss" in err and "--init-scale" in err
    assert "last saved state" not in err and not (tmp_path / "r" / rundir.TRAIN_STATE).exists()


# ---------------------------------------------------------------- 7, 8. no process outlives the command


def _session(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                fields = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(d))
    return pids


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def _sweep_process(out, *flags):
    import time

    cmd = [sys.executable, "-m", "interp_grok.cli", "sweep", str(out), "--p", "7", "--d-model", "8", *flags]
    # SIGINT at its default, as in a terminal: a shell starts a background job (`make test &`) with
    # SIGINT ignored, which the sweep would inherit and the Ctrl-C test would then not exercise
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)), time


def test_a_sweep_killed_while_its_workers_start_leaves_no_process(tmp_path):
    proc, time = _sweep_process(tmp_path / "s", "--epochs", "20000", "--noise", "0,2,4", "--workers", "2")
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(_children(proc.pid)) < 2:  # a worker spawned (and the tracker)
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)  # the workers are still importing torch
        proc.wait()
        deadline = time.time() + 40
        while time.time() < deadline and _session(proc.pid):
            time.sleep(0.1)
        assert not _session(proc.pid), "pool workers outlived their killed sweep"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_ctrl_c_stops_a_sweep_at_once_and_leaves_every_run_resumable(tmp_path):
    from interp_grok.train import _prepare_resume

    out = tmp_path / "s"
    proc, time = _sweep_process(out, "--epochs", "20000", "--eval-every", "500", "--noise", "0,2,4", "--workers", "1")
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (out / "runs" / "n0" / rundir.TRAIN_STATE).exists():
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        rc = proc.wait(timeout=120)
        err = proc.stderr.read()
        assert rc == 130 and "Traceback" not in err, err
        assert f"continue with `interp-grok sweep {out}`" in err and "--resume" not in err, err
        assert not (out / "runs" / "n2").exists() and not (out / "runs" / "n4").exists()  # nothing started after
        assert sweep_status(read_sweep(out))["n0"].state == "partial"
        assert not _prepare_resume(out / "runs" / "n0", None).finished  # checks every file, writes nothing
        deadline = time.time() + 20  # multiprocessing's resource tracker exits once its pipe closes
        while time.time() < deadline and _session(proc.pid):
            time.sleep(0.1)
        assert not _session(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
