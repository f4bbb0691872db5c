"""`interp-grok sweep`: a grid as one experiment; re-runs, kills, bad grids, executors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from interp_grok import rundir
from interp_grok.sweep import Grid, plan_sweep, read_sweep, run_sweep, sweep_status

BASE = ["--p", "11", "--d-model", "16", "--epochs", "40", "--eval-every", "10", "--checkpoints", "8"]
GRID = ["--noise", "0,4", "--weight-decay", "1,3"]


def snapshot(d: Path) -> dict:
    return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def final_states(sweep_dir: Path) -> dict:
    return {r.name: rundir.load_tensors(r / rundir.TRAIN_STATE)[0] for r in sorted((sweep_dir / "runs").iterdir())}


@pytest.fixture(scope="module")
def done_sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweeps") / "s"
    assert run_cli("sweep", out, *BASE, *GRID, "--workers", "2") == 0
    return out


def test_a_sweep_is_a_manifest_and_one_ordinary_run_per_point(done_sweep):
    manifest = json.loads((done_sweep / "sweep.json").read_text())
    assert manifest["axes"] == {"p": [11], "d_model": [16], "epochs": [40], "eval_every": [10],
                                "n_checkpoints": [8], "noise_n": [0, 4], "weight_decay": [1.0, 3.0]}
    assert manifest["name_keys"] == ["noise_n", "weight_decay"]
    names = sorted(p.name for p in (done_sweep / "runs").iterdir())
    assert names == ["n0_wd1", "n0_wd3", "n4_wd1", "n4_wd3"]
    run = rundir.load_run(done_sweep / "runs" / "n4_wd3")
    assert (run.config.noise_n, run.config.weight_decay, run.config.epochs) == (4, 3.0, 40)
    assert rundir.read_train_state(run.path)[0] == 40
    assert run_cli("analyze", run.path, "--no-figures") == 0  # an ordinary run directory


def test_each_run_equals_the_same_run_trained_alone(done_sweep, tmp_path):
    solo = tmp_path / "solo"
    assert run_cli("train", *BASE, "--noise", "4", "--weight-decay", "3", "--threads", "1", "--out", solo) == 0
    a = rundir.load_tensors(solo / rundir.TRAIN_STATE)[0]
    b = rundir.load_tensors(done_sweep / "runs" / "n4_wd3" / rundir.TRAIN_STATE)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)  # one thread each, same settings: bit for bit


def test_rerunning_a_finished_sweep_changes_no_byte(done_sweep, capsys):
    before = snapshot(done_sweep)
    assert run_cli("sweep", done_sweep, *BASE, *GRID) == 0
    assert "0 trained now, 4 already done" in capsys.readouterr().out
    assert run_cli("sweep", done_sweep) == 0  # no grid: the stored one
    assert snapshot(done_sweep) == before


def test_status_table(done_sweep, capsys):
    assert run_cli("sweep", done_sweep, "--status") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["run", "state", "test", "acc", "clean", "memorized"]
    rows = {line.split()[0]: line.split() for line in out[1:-1]}
    assert set(rows) == {"n0_wd1", "n0_wd3", "n4_wd1", "n4_wd3"} and all(r[1] == "done" for r in rows.values())
    final = [r for r in rundir.read_metrics(done_sweep / "runs" / "n4_wd1") if r["kind"] == "eval"][-1]
    assert rows["n4_wd1"][2] == f"{final['test_acc_clean']:.3f}"
    assert rows["n4_wd1"][3] == f"{final['train_noisy_memorized_frac']:.3f}"
    assert rows["n0_wd1"][3] == "-"  # no noisy labels
    assert out[-1] == "4 runs: 4 done"


@pytest.mark.parametrize("flags, needle", [
    (["--noise", "0,8", "--weight-decay", "1,3"], "noise_n has values [0, 4]"),
    (["--noise", "0,4", "--weight-decay", "1,3,10"], "pass --extend"),
    (["--noise", "0,4"], "the swept settings differ"),
])
def test_a_different_grid_is_refused_and_nothing_written(done_sweep, capsys, flags, needle):
    before = snapshot(done_sweep)
    assert run_cli("sweep", done_sweep, *BASE, *flags) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    assert snapshot(done_sweep) == before


@pytest.mark.parametrize("flags, needle", [
    (["--noise", "0,x"], "expected int values"),
    (["--noise", ""], "expected a comma-separated list"),
    (["--noise", "0,,4"], "expected a comma-separated list"),
    (["--noise", "0,0"], "a value is listed twice"),
    (["--train-frac", "0.3,1.5"], "train_frac=1.5, d_model=16"),
    (["--train-frac", "0.3,1.5"], ": train_frac must be in (0, 1) (got 1.5)"),
    (["--workers", "0", "--noise", "0"], "workers must be an integer >= 1"),
    (["--device", "mps", "--noise", "0"], "device mps does not support float64"),
])
def test_bad_grids_get_one_line_and_nothing_written(tmp_path, capsys, flags, needle):
    out = tmp_path / "bad"
    assert run_cli("sweep", out, *BASE, *flags) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert not out.exists()


def test_a_spec_file_with_an_unknown_setting(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"axes": {"noise_n": [0, 4], "colour": ["red"]}}))
    assert run_cli("sweep", tmp_path / "s", "--spec", spec) == 2
    assert "unknown setting 'colour'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_extend_adds_points_and_keeps_existing_runs(done_sweep, tmp_path, capsys):
    import shutil

    out = tmp_path / "ext"
    shutil.copytree(done_sweep, out)
    before = snapshot(out / "runs")
    assert run_cli("sweep", out, *BASE, "--noise", "0,4", "--weight-decay", "1,3,10", "--extend") == 0
    assert "2 trained now, 4 already done" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["n0_wd1", "n0_wd10", "n0_wd3", "n4_wd1", "n4_wd10",
                                                                "n4_wd3"]
    after = snapshot(out / "runs")
    assert {k: v for k, v in after.items() if k in before} == before  # nothing finished was rewritten


def test_a_failed_run_does_not_stop_the_others_and_is_retried(tmp_path, capsys):
    out = tmp_path / "f"
    sweep = plan_sweep(out, Grid({"noise_n": [0, 4], "p": [11], "d_model": [16], "epochs": [20],
                                  "n_checkpoints": [5]}))
    blocker = sweep.run_dir("n4")
    blocker.mkdir(parents=True)
    (blocker / "notes.txt").write_text("not a run")  # a directory train refuses to write into
    assert run_cli("sweep", out) == 1
    err = capsys.readouterr().err
    assert "n4" in err and "not an interp-grok run directory" in err and "--out" not in err  # sweep takes no --out
    states = sweep_status(read_sweep(out))
    assert states["n0"].state == "done" and states["n4"].state == "failed"
    assert "not an interp-grok run directory" in states["n4"].error
    assert run_cli("sweep", out, "--status") == 0
    assert "failed" in capsys.readouterr().out
    (blocker / "notes.txt").unlink()
    assert run_cli("sweep", out) == 0  # retried
    assert sweep_status(read_sweep(out))["n4"].state == "done"
    assert not (out / "errors" / "n4.json").exists()


def test_sigkilled_sweep_completes_on_rerun(done_sweep, tmp_path):
    out = tmp_path / "k"
    cmd = [sys.executable, "-m", "interp_grok.cli", "sweep", str(out), *BASE[:5], "200", *BASE[6:], *GRID,
           "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # kill once some run is partway
        states = list((out / "runs").glob("*/train_state.safetensors")) if (out / "runs").exists() else []
        if any(rundir.read_train_state(s.parent)[0] >= 20 for s in states if s.stat().st_size > 0):
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any(s.state != "done" for s in sweep_status(read_sweep(out)).values())
    time.sleep(0.5)  # the pool's workers die with their parent (PR_SET_PDEATHSIG)
    assert run_cli("sweep", out) == 0
    assert all(s.state == "done" for s in sweep_status(read_sweep(out)).values())
    # each run equals an uninterrupted one of the same settings
    ref = tmp_path / "ref"
    assert run_cli("sweep", ref, *BASE[:5], "200", *BASE[6:], *GRID, "--workers", "2") == 0
    a, b = final_states(out), final_states(ref)
    assert a.keys() == b.keys()
    for name in a:
        assert all(torch.equal(a[name][k], b[name][k]) for k in a[name]), name


def test_any_executor_with_submit(tmp_path):
    """The Python API takes any executor with submit(fn, *args) -> future (here a thread pool)."""
    sweep = plan_sweep(tmp_path / "t", Grid({"noise_n": [0, 4], "p": [11], "d_model": [16], "epochs": [20],
                                             "n_checkpoints": [5]}))
    seen = []
    with ThreadPoolExecutor(2) as ex:
        results = run_sweep(sweep, executor=ex, progress=lambda done, total, res: seen.append((done, total)))
    assert {r["status"] for r in results.values()} == {"trained"}
    assert seen[-1] == (40, 40)


def test_submitit_local_executor_gives_the_same_runs(done_sweep, tmp_path, capsys):
    out = tmp_path / "slurm"
    assert run_cli("sweep", out, *BASE, *GRID, "--executor", "submitit-local", "--chunk", "2") == 0
    assert "4 trained now" in capsys.readouterr().out
    a, b = final_states(out), final_states(done_sweep)
    for name in b:
        assert all(torch.equal(a[name][k], b[name][k]) for k in b[name]), name
    assert run_cli("sweep", out, "--executor", "submitit-local") == 0
    assert "0 trained now, 4 already done" in capsys.readouterr().out
