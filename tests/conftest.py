"""Shared fixtures: tiny runs (small p, few epochs) trained once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from interp_grok.cli import main

torch.set_num_threads(1)

TINY = ["--p", "11", "--d-model", "16", "--epochs", "120", "--eval-every", "10", "--checkpoints", "30",
        "--threads", "1"]


def run_cli(*args) -> int:
    """Run the CLI in-process and return its exit code (argparse errors included)."""
    try:
        return main([str(a) for a in args])
    except SystemExit as e:
        return e.code


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert run_cli("train", *TINY, "--out", out) == 0
    return out


@pytest.fixture()
def run_copy(tiny_run, tmp_path) -> Path:
    """A copy of the tiny run without its analysis, for tests that change or break it."""
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out, ignore=shutil.ignore_patterns("analysis"))
    return out
