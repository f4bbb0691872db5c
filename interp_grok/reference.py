"""The reference runs committed in checkpoints/, and where the notebooks in analyses/ write figures.

Found relative to the working tree, not to the installed package: from the current directory
upwards, the first folder holding ``checkpoints/n0`` (a checkout of this repository; Jupyter
starts notebooks in analyses/, scripts usually run from the root). Both locations can be set
with environment variables:

    INTERP_GROK_REFERENCE   a folder of run directories named n0, n2, n4, n8
    INTERP_GROK_FIGURES     where the notebooks write their figures (default: the first
                            docs/figures/ from the current directory upwards)
"""

from __future__ import annotations

import os
from pathlib import Path

from .analysis.pipeline import Analysis, read_analysis
from .rundir import Run, RunDirError, load_run

REFERENCE_NOISE = (0, 2, 4, 8)
REFERENCE_ENV = "INTERP_GROK_REFERENCE"
FIGURES_ENV = "INTERP_GROK_FIGURES"


class ReferenceNotFound(RunDirError):
    """No reference runs where they were looked for; the message says where, and what to set."""


def _candidates(start: Path) -> list[Path]:
    start = start.resolve()
    return [d / "checkpoints" for d in (start, *start.parents)]


def reference_dir(start: Path | None = None) -> Path:
    """$INTERP_GROK_REFERENCE, else the first ``checkpoints/`` holding ``n0`` from ``start`` (default:
    the current directory) upwards; ReferenceNotFound (one line: where it looked) otherwise."""
    env = os.environ.get(REFERENCE_ENV)
    if env:
        if not Path(env).is_dir():
            raise ReferenceNotFound(f"{REFERENCE_ENV}={env}: no such directory")
        return Path(env)
    tried = _candidates(start or Path.cwd())
    for d in tried:
        if (d / "n0" / "config.json").is_file():
            return d
    raise ReferenceNotFound(
        f"no reference runs found: looked for checkpoints/n0/config.json in {tried[0].parent} and its "
        f"{len(tried) - 1} parent folders; run from a checkout of interp-grok or set {REFERENCE_ENV} "
        f"to the folder holding n0, n2, n4, n8 (and {FIGURES_ENV} for the figures)")


def figures_dir(start: Path | None = None) -> Path:
    """$INTERP_GROK_FIGURES (created), else the first ``docs/figures/`` from ``start`` (default: the
    current directory) upwards; ReferenceNotFound (one line: where it looked) otherwise."""
    env = os.environ.get(FIGURES_ENV)
    if env:
        Path(env).mkdir(parents=True, exist_ok=True)
        return Path(env)
    start = (start or Path.cwd()).resolve()
    for d in (start, *start.parents):
        if (d / "docs" / "figures").is_dir():
            return d / "docs" / "figures"
    raise ReferenceNotFound(f"no docs/figures/ found in {start} or its {len(start.parents)} parent folders; "
                            f"run from a checkout of interp-grok or set {FIGURES_ENV} to the output folder")


def load_reference(noise: int) -> tuple[Run, Analysis]:
    """The reference run with noise n and its stored analysis."""
    run = load_run(reference_dir() / f"n{noise}")
    return run, read_analysis(run)


def load_reference_runs() -> dict[int, tuple[Run, Analysis]]:
    """All reference runs present, keyed by noise n (ReferenceNotFound when there are none)."""
    root = reference_dir()
    runs = {n: load_reference(n) for n in REFERENCE_NOISE if (root / f"n{n}").is_dir()}
    if not runs:
        raise ReferenceNotFound(f"{root}: none of the reference runs {', '.join(f'n{n}' for n in REFERENCE_NOISE)}")
    return runs
