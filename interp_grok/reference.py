"""The reference runs committed in checkpoints/, and where the notebooks in analyses/ write figures.

Both locations can be moved with environment variables: INTERP_GROK_REFERENCE (a folder of
run directories named n0, n2, ...) and INTERP_GROK_FIGURES (the output folder).
"""

from __future__ import annotations

import os
from pathlib import Path

from .analyze import Analysis, read_analysis
from .rundir import Run, load_run

REFERENCE_NOISE = (0, 2, 4, 8)
_REPO = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    return Path(os.environ.get("INTERP_GROK_REFERENCE", _REPO / "checkpoints"))


def figures_dir() -> Path:
    path = Path(os.environ.get("INTERP_GROK_FIGURES", _REPO / "docs" / "figures"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_reference(noise: int) -> tuple[Run, Analysis]:
    """The reference run with noise n and its stored analysis."""
    run = load_run(reference_dir() / f"n{noise}")
    return run, read_analysis(run)


def load_reference_runs() -> dict[int, tuple[Run, Analysis]]:
    """All reference runs present, keyed by noise n."""
    return {n: load_reference(n) for n in REFERENCE_NOISE if (reference_dir() / f"n{n}").is_dir()}
