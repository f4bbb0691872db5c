"""Sweeps: a grid of runs as one experiment, and its analysis as one table.

This subpackage owns a sweep directory (SWEEP/):

- ``runner``: the grid and SWEEP/sweep.json, SWEEP/runs/<name>/ and SWEEP/errors/; training every
  grid point on any executor (``Grid``, ``plan_sweep``, ``read_sweep``, ``run_sweep``,
  ``run_sweep_submitit``, ``sweep_status``, ``wait_for``, ...);
- ``table``: SWEEP/analysis/: every run analyzed (as `interp-grok analyze RUN_DIR` would), one
  table row per run, read back and aggregated over seeds (``analyze_sweep``, ``write_table``,
  ``read_table``, ``load_sweep`` -> ``SweepResults``, ``aggregate``, ``phase_shares``, ...).

It sits above training (interp_grok.train) and the analysis (interp_grok.analysis), and below
plotting and the CLI; nothing here imports those (tests/test_layout.py checks it).
Pool and submitit workers run ``runner.train_one``, ``runner.train_batch_one``,
``runner.ChunkTrainer`` and ``table.analyze_one``, pickled by their module path.
"""

from .runner import (
    ChunkTrainer,
    Grid,
    RunState,
    Sweep,
    SweepError,
    batches,
    plan_sweep,
    read_sweep,
    run_name,
    run_state,
    run_sweep,
    run_sweep_submitit,
    submitit_executor,
    sweep_status,
    train_batch_one,
    train_one,
    usable_cores,
    wait_for,
)
from .table import (
    SweepResults,
    aggregate,
    analyze_one,
    analyze_sweep,
    axis_name,
    default_axes,
    load_sweep,
    phase_shares,
    read_table,
    run_row,
    sweep_rows,
    write_table,
)

__all__ = [
    # runner
    "SweepError", "Grid", "Sweep", "RunState", "ChunkTrainer", "run_name", "read_sweep", "plan_sweep", "train_one",
    "train_batch_one", "run_state", "sweep_status", "usable_cores", "batches", "wait_for", "run_sweep",
    "submitit_executor", "run_sweep_submitit",
    # table
    "SweepResults", "analyze_one", "analyze_sweep", "axis_name", "run_row", "sweep_rows", "write_table",
    "read_table", "load_sweep", "aggregate", "phase_shares", "default_axes",
]
