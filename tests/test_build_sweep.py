"""checkpoints/build_sweep.py: the analysis-only copy of a sweep, and --keep-committed (a sweep
trained in two parts on two machines, merged into one committed copy)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli

from interp_grok.sweep.table import read_table

ROOT = Path(__file__).resolve().parents[1]
BASE = ["--p", "11", "--d-model", "16", "--epochs", "40", "--eval-every", "10", "--checkpoints", "8"]


def _build_sweep():
    spec = importlib.util.spec_from_file_location("build_sweep", ROOT / "checkpoints" / "build_sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sweeps") / "s"
    assert run_cli("sweep", out, *BASE, "--noise", "4", "--seed", "0,1", "--workers", "2") == 0
    assert run_cli("analyze", out, "--workers", "2") == 0
    return out


def _part(whole: Path, where: Path, drop: str) -> Path:
    """A copy of the sweep in which run ``drop`` was never trained, analyzed as such."""
    shutil.copytree(whole, where)
    shutil.rmtree(where / "runs" / drop)
    shutil.rmtree(where / "analysis")
    assert run_cli("analyze", where, "--workers", "1") == 0
    return where


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_parts_kept_committed_equal_the_whole(whole, tmp_path):
    bs = _build_sweep()
    bs.build(whole, tmp_path / "whole")
    a, b = _part(whole, tmp_path / "a", "s1"), _part(whole, tmp_path / "b", "s0")
    dest = tmp_path / "merged"
    bs.build(a, dest)
    assert [r["state"] for r in read_table(dest / "analysis" / "table.csv")] == ["done", "pending, not analyzed"]
    bs.build(b, dest, keep_committed=True)
    merged, expected = _files(dest), _files(tmp_path / "whole")
    assert read_table(dest / "analysis" / "table.csv") == read_table(tmp_path / "whole" / "analysis" / "table.csv")
    assert [r["state"] for r in read_table(dest / "analysis" / "table.csv")] == ["done", "done"]
    for name in expected:  # every run file byte for byte; the table and checksums as values above
        if name.startswith("runs/"):
            assert merged[name] == expected[name], name
    assert set(merged) == set(expected)


def test_keep_committed_refuses_another_sweep(whole, tmp_path):
    bs = _build_sweep()
    bs.build(whole, tmp_path / "dest")
    other = tmp_path / "other"
    shutil.copytree(whole, other)
    m = json.loads((other / "sweep.json").read_text())
    m["axes"]["seed"] = [0, 1, 2]
    m["runs"].append({"name": "s2", "point": m["runs"][-1]["point"] | {"seed": 2}})
    (other / "sweep.json").write_text(json.dumps(m))
    with pytest.raises(SystemExit, match="not a second copy"):
        bs.build(other, tmp_path / "dest", keep_committed=True)
    assert read_table(tmp_path / "dest" / "analysis" / "table.csv")  # the committed copy is untouched


def test_keep_committed_with_no_spectra_drops_the_kept_runs_spectra(whole, tmp_path):
    bs = _build_sweep()
    a, b = _part(whole, tmp_path / "a", "s1"), _part(whole, tmp_path / "b", "s0")
    dest = tmp_path / "merged"
    bs.build(a, dest)  # s0 committed with its spectrum
    assert (dest / "runs" / "s0" / "analysis" / "embed_fourier.safetensors").exists()
    no_spectra = tuple(f for f in bs.ANALYSIS_FILES if f != "embed_fourier.safetensors")
    bs.build(b, dest, no_spectra, keep_committed=True)
    assert not list(dest.rglob("embed_fourier.safetensors"))
    assert (dest / "runs" / "s0" / "analysis" / "progress.csv").exists()
    assert [r["state"] for r in read_table(dest / "analysis" / "table.csv")] == ["done", "done"]
