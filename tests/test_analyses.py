"""The notebooks in analyses/ run as plain Python on the committed reference runs, and the
figures they write are byte-for-byte reproducible."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "analyses").glob("[0-9][0-9]_*.py"))


def _run(notebook: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "INTERP_GROK_FIGURES": str(out), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(notebook)], env=env, capture_output=True, text=True, timeout=300,
                          cwd=ROOT)


def test_there_are_eleven_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_writes_figures(notebook, tmp_path):
    res = _run(notebook, tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    pngs = list(tmp_path.glob("*.png"))
    assert pngs and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    assert res.stdout.strip()  # each prints the numbers behind its figures


def test_figures_are_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert _run(NOTEBOOKS[3], out).returncode == 0
    names = sorted(p.name for p in a.glob("*.png"))
    assert names == sorted(p.name for p in b.glob("*.png"))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
