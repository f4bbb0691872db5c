"""`interp-grok analyze SWEEP_DIR`: every run analyzed, table.csv, phase diagrams, load_sweep."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli

from interp_grok import rundir
from interp_grok.analysis.phases import run_phases
from interp_grok.analysis.pipeline import read_analysis
from interp_grok.sweep import Grid, plan_sweep, train_one
from interp_grok.sweep.table import aggregate, axis_name, load_sweep, phase_shares, read_table

BASE = ["--p", "11", "--d-model", "16", "--epochs", "40", "--eval-every", "10", "--checkpoints", "8"]


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweeps") / "s"
    assert run_cli("sweep", out, *BASE, "--noise", "0,4", "--seed", "0,1", "--workers", "2") == 0
    assert run_cli("analyze", out, "--workers", "2") == 0
    return out


def test_every_run_analyzed_and_one_table_row_each(analyzed, capsys):
    rows = read_table(analyzed / "analysis" / "table.csv")
    assert [r["name"] for r in rows] == ["n0_s0", "n0_s1", "n4_s0", "n4_s1"]
    for r in rows:
        run = rundir.load_run(analyzed / "runs" / r["name"])
        an = read_analysis(run)  # the run's own analysis, complete with its manifest
        assert (r["noise_n"], r["seed"], r["state"]) == (run.config.noise_n, run.config.seed, "done")
        assert r["test_acc_clean"] == an.rows[-1]["test_acc_clean"]
        assert r["test_acc_clean_best"] == max(e["test_acc_clean"] for e in run.evals)
        assert r["final_phase"] == run_phases(an.epochs.tolist(), an.rows)["final_phase"]
        assert r["n_key_freqs"] == len(r["key_freqs"].split()) if isinstance(r["key_freqs"], str) else 1
        noisy = r["noise_n"] == 4
        assert (r["train_noisy_memorized_frac"] is not None) == noisy
        assert r["noisy_train_frac"] == (run.dataset.is_noisy[run.dataset.train_idx].double().mean().item())
    figures = sorted(p.name for p in (analyzed / "analysis" / "figures").iterdir())
    assert "phases_noise_n_seed.png" in figures and "test_acc_clean_noise_n_seed.png" in figures


def test_rerun_analyzes_nothing_and_changes_no_byte(analyzed, capsys):
    before = {p: p.read_bytes() for p in sorted(analyzed.rglob("*")) if p.is_file() and ".lock" not in p.name}
    capsys.readouterr()
    assert run_cli("analyze", analyzed, "--workers", "1") == 0
    assert "(4 current)" in capsys.readouterr().out
    after = {p: p.read_bytes() for p in sorted(analyzed.rglob("*")) if p.is_file() and ".lock" not in p.name}
    assert before == after


def test_load_sweep_rows_frame_runs_and_short_axis_names(analyzed):
    res = load_sweep(analyzed)
    assert len(res.rows) == 4 and set(res.axes) >= {"noise_n", "seed"}
    assert res.run("n4_s1").config.seed == 1
    assert res.analysis("n0_s0").epochs[-1].item() == 40
    assert axis_name(res.sweep, "n") == "noise_n" and axis_name(res.sweep, "seed") == "seed"
    with pytest.raises(KeyError, match="not an axis"):
        axis_name(res.sweep, "wd")
    frame = res.to_frame()
    assert list(frame.index) == ["n0_s0", "n0_s1", "n4_s0", "n4_s1"]
    assert "4 runs" in repr(res)


def test_aggregate_pools_seeds_into_cells():
    rows = [{"noise_n": n, "weight_decay": wd, "seed": s, "final_phase": ph}
            for n, wd, s, ph in [(0, 1, 0, "memorization"), (0, 1, 1, "generalization"), (4, 1, 0, "memorization"),
                                 (4, 1, 1, "memorization"), (4, 3, 0, None)]]
    cells = aggregate(rows, "noise_n", "weight_decay")
    assert list(cells) == [(None, 1, 0), (None, 1, 4)]  # the run without a phase is left out
    assert phase_shares(cells[(None, 1, 0)]) == {"memorization": 0.5, "generalization": 0.5}
    assert phase_shares(cells[(None, 1, 4)]) == {"memorization": 1.0}


def test_bad_axes_and_run_flags_get_one_line(analyzed, tiny_run, capsys):
    capsys.readouterr()
    assert run_cli("analyze", analyzed, "--x", "wd") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an axis" in err[0] and "noise_n (n)" in err[0]
    assert run_cli("analyze", analyzed, "--x", "n", "--y", "n") == 2
    assert "different settings" in capsys.readouterr().err
    assert run_cli("analyze", tiny_run, "--x", "n") == 2
    assert "is a run, not a sweep" in capsys.readouterr().err


def test_pending_and_broken_runs_leave_a_row_and_the_others_are_analyzed(tmp_path, capsys):
    sweep = plan_sweep(tmp_path / "s", Grid({"noise_n": [0, 2, 4]}, {"p": 11, "d_model": 16, "epochs": 20,
                                                                     "eval_every": 10, "n_checkpoints": 4}))
    for name in ("n0", "n2"):
        assert train_one(str(sweep.path), name, sweep.config(name).to_dict())["status"] == "trained"
    (sweep.run_dir("n2") / rundir.DATASET).write_bytes(b"not safetensors")
    capsys.readouterr()
    assert run_cli("analyze", sweep.path, "--workers", "1") == 1
    out, err = capsys.readouterr()
    assert "1 analyzed, 1 invalid, 1 pending" in out  # a damaged run is not analyzed as its grid point
    assert len(err.strip().splitlines()) == 1 and "n2" in err and "dataset.safetensors" in err
    rows = {r["name"]: r for r in read_table(sweep.path / "analysis" / "table.csv")}
    assert rows["n0"]["state"] == "done" and rows["n0"]["final_phase"] is not None
    assert rows["n2"]["state"] == "invalid, not analyzed" and rows["n2"]["final_phase"] is None
    assert rows["n4"]["state"] == "pending, not analyzed"
    assert (sweep.path / "analysis" / "figures" / "phases_noise_n.png").exists()  # one axis: one row of cells


def test_the_sweep_table_reads_back_its_json_types(analyzed, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(analyzed, copy)
    rows = load_sweep(copy).rows
    assert all(isinstance(r["settled"], bool) for r in rows)
    assert all(r["fit_epoch"] is None or isinstance(r["fit_epoch"], int) for r in rows)
    manifest = json.loads((copy / "sweep.json").read_text())
    assert [r["name"] for r in manifest["runs"]] == [r["name"] for r in rows]


def test_analysis_on_the_submitit_local_executor(tmp_path, capsys):
    out = tmp_path / "s"
    assert run_cli("sweep", out, *BASE, "--noise", "0,4", "--workers", "1") == 0
    capsys.readouterr()
    assert run_cli("analyze", out, "--executor", "submitit-local") == 0
    assert "(2 analyzed)" in capsys.readouterr().out
    assert all((out / "runs" / n / "analysis" / "manifest.json").exists() for n in ("n0", "n4"))
