"""A sweep's analysis: every run analyzed, one table row per run, aggregated over seeds.

This module owns SWEEP/analysis/ (beside the sweep's sweep.json and runs/, see interp_grok.sweep.runner):

    table.csv       one row per run: its name and state, every setting that varies in the sweep,
                    then TABLE_COLUMNS (final and best clean test accuracy, memorized / corrected /
                    clean-fit fractions, final phase and whether it settled, transition epochs,
                    weight norm, Gini, key frequencies, ...); empty cells where a run has no value
    figures/*.png   phase diagrams, clean test accuracy and transition epochs over two axes
                    (drawn by interp_grok.plotting from the table)

``analyze_sweep`` analyzes the runs whose analysis is missing or stale, on any executor with
``submit`` (a local process pool by default), each run exactly as `interp-grok analyze RUN_DIR`
would, under the run's analysis lock. ``load_sweep`` reads a sweep back: the table as rows, as a
pandas DataFrame (optional extra), and each run and its analysis. Nothing here prints.
"""

from __future__ import annotations

import csv
import io
import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import rundir
from ..analysis.phases import TRANSITIONS, doshi_phase_trajectory, run_phases
from ..analysis.pipeline import Analysis, analyze_run_dir, is_current, read_analysis
from .runner import SHORT, Sweep, _local_pool, read_sweep, sweep_status, usable_cores, wait_for

SWEEP_ANALYSIS_DIR = "analysis"
TABLE = "table.csv"
FIGURES = "figures"
# the final-checkpoint progress.csv columns copied into the table when a run's analysis has them
FINAL_COLUMNS = (
    "test_acc_clean", "test_acc_noisy", "train_acc", "train_clean_acc", "train_noisy_memorized_frac",
    "train_noisy_corrected_frac", "train_loss", "test_loss", "sum_sq_weights", "gini_W_E", "gini_W_L",
    "key_fve", "ipr_mean", "n_periodic", "shift_kl", "shift_within1", "restricted_loss", "excluded_loss",
)
TABLE_COLUMNS = (
    "epochs_trained", "noisy_train_frac", "p_zero", "test_acc_clean_best", *FINAL_COLUMNS,
    "final_phase", "settled", *TRANSITIONS, "doshi_phase", "n_key_freqs", "key_freqs", "key_freq_rule",
)
SEED_AXES = ("seed", "data_seed")  # aggregated over in figures

__all__ = ["FINAL_COLUMNS", "SweepResults", "TABLE_COLUMNS", "aggregate", "analyze_one", "analyze_sweep",
           "axis_name", "load_sweep", "run_row", "sweep_rows", "write_table"]


def analyze_one(run_path: str, threads: int = 1, force: bool = False) -> dict:
    """Analyze one run of a sweep (a worker's job): never raises; returns
    {"name", "status": analyzed | current | failed, "error"}."""
    name = Path(run_path).name
    try:
        torch.set_num_threads(threads)
        if not force and is_current(rundir.load_run(run_path)):
            return {"name": name, "status": "current", "error": None}
        analyze_run_dir(Path(run_path), force=force)
        return {"name": name, "status": "analyzed", "error": None}
    except Exception as e:  # noqa: BLE001 -- one bad run must not stop the others
        last = traceback.extract_tb(e.__traceback__)[-1:] if not isinstance(e, rundir.RunDirError) else []
        where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
        return {"name": name, "status": "failed", "error": f"{type(e).__name__}: {e}{where}"}


ProgressFn = Callable[[int, int], None]  # (runs finished, runs to analyze)


def analyze_sweep(sweep: Sweep, *, executor=None, workers: int | None = None, threads: int = 1,
                  force: bool = False, progress: ProgressFn | None = None, poll_s: float = 0.5) -> dict[str, dict]:
    """Analyze every run of ``sweep`` that has checkpoints and no current analysis.

    ``executor``: anything with ``submit(fn, *args)`` returning futures with ``done()`` and
    ``result()`` (as interp_grok.sweep.run_sweep); None: a local process pool of ``workers``.
    Runs not trained yet are reported as "pending"; analyze_one's result for the others.
    """
    states = sweep_status(sweep)
    results = {n: {"name": n, "status": "pending", "error": None} for n, s in states.items()
               if s.state == "pending" or not (sweep.run_dir(n) / rundir.CONFIG).exists()}
    todo = [n for n in sweep.runs if n not in results]
    own = executor is None and len(todo) > 1 and (workers or usable_cores()) > 1
    if own:
        executor = _local_pool(workers or usable_cores())
    try:
        if executor is None:  # one run, or one worker: no pool to start
            for i, n in enumerate(todo):
                results[n] = analyze_one(str(sweep.run_dir(n)), threads, force)
                if progress:
                    progress(i + 1, len(todo))
        else:
            futures = {executor.submit(analyze_one, str(sweep.run_dir(n)), threads, force): n for n in todo}

            def done(n: str, out: dict) -> None:
                results[n] = out

            def died(n: str, e: Exception) -> None:
                results[n] = {"name": n, "status": "failed", "error": f"worker died: {type(e).__name__}: {e}"}

            def tick() -> None:
                if progress:
                    progress(sum(n in results for n in todo), len(todo))

            wait_for(futures, done, died, tick, poll_s)
    finally:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)
    return {n: results[n] for n in sweep.runs}


def axis_name(sweep_or_axes, name: str) -> str:
    """A Config field name from a field name or its run-name short form (n, wd, tf, xi, a, s, ...)."""
    axes = sweep_or_axes.grid.axes if isinstance(sweep_or_axes, Sweep) else sweep_or_axes
    if name in axes:
        return name
    full = {v: k for k, v in SHORT.items()}.get(name)
    if full in axes:
        return full
    shown = ", ".join(f"{a} ({SHORT[a]})" if a in SHORT else a for a in axes)
    raise KeyError(f"{name!r} is not an axis of this sweep; its axes: {shown}")


def run_row(sweep: Sweep, name: str, run: rundir.Run | None, an: Analysis | None, state: str) -> dict:
    """One table row: name, state, the swept settings, then TABLE_COLUMNS (None where unknown)."""
    row: dict = {"name": name, "state": state, **{k: sweep.runs[name][k] for k in sweep.grid.axes}}
    row |= {k: None for k in TABLE_COLUMNS}
    if run is None or an is None:
        return row
    ds, last = run.dataset, an.rows[-1]
    row["epochs_trained"] = int(an.epochs[-1])
    row["noisy_train_frac"] = ds.is_noisy[ds.train_idx].double().mean().item()
    row["p_zero"] = an.summary.get("noise_floor", {}).get("p_zero")
    evals = [r["test_acc_clean"] for r in run.evals] or [r["test_acc_clean"] for r in an.rows]
    row["test_acc_clean_best"] = max(evals)
    for k in FINAL_COLUMNS:
        v = last.get(k)
        row[k] = None if v is None or (isinstance(v, float) and math.isnan(v)) else v
    ph = run_phases(an.epochs.tolist(), an.rows)
    row |= {"final_phase": ph["final_phase"], "settled": ph["settled"], **{k: ph[k] for k in TRANSITIONS}}
    if run.config.noise_kind == "uniform":  # Doshi et al.'s own rule is for their corruption only
        row["doshi_phase"] = doshi_phase_trajectory([r["train_acc"] for r in an.rows],
                                                    [r["test_acc_clean"] for r in an.rows], run.config.noise_frac)[-1]
    keys = an.key_freqs.tolist()
    row |= {"n_key_freqs": len(keys), "key_freqs": " ".join(map(str, keys)),
            "key_freq_rule": an.key_freq_source.get("rule")}
    return row


def sweep_rows(sweep: Sweep) -> list[dict]:
    """The table, read from each run's stored analysis (runs without one get a row of blanks)."""
    rows = []
    for name, s in sweep_status(sweep).items():
        run = an = None
        if s.state != "pending":
            try:
                run = rundir.load_run(sweep.run_dir(name))
                an = read_analysis(run)
            except rundir.RunDirError:
                run = an = None
        rows.append(run_row(sweep, name, run, an, s.state if an is not None else f"{s.state}, not analyzed"))
    return rows


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    return repr(v) if isinstance(v, float) else str(v)


def write_table(sweep: Sweep, rows: list[dict]) -> Path:
    """SWEEP/analysis/table.csv, written atomically."""
    out = sweep.path / SWEEP_ANALYSIS_DIR
    out.mkdir(exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["name"], lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _cell(v) for k, v in r.items()})
    rundir.atomic_write_text(out / TABLE, buf.getvalue())
    return out / TABLE


def _parse(v: str):
    if v == "":
        return None
    if v in ("true", "false"):
        return v == "true"
    for typ in (int, float):
        try:
            return typ(v)
        except ValueError:
            pass
    return v


def read_table(path: Path) -> list[dict]:
    """table.csv back as rows (numbers as int / float, true/false as bool, blanks as None)."""
    text = rundir.read_regular(Path(path)).decode("utf-8")
    return [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(io.StringIO(text))]


@dataclass(repr=False)
class SweepResults:
    """A sweep read back: ``rows`` (table.csv, one dict per run), ``to_frame()`` (pandas),
    ``run(name)`` / ``analysis(name)`` for any run, ``axes`` (setting -> values)."""

    sweep: Sweep
    rows: list[dict]

    @property
    def axes(self) -> dict[str, list]:
        return self.sweep.grid.axes

    @property
    def path(self) -> Path:
        return self.sweep.path

    def run(self, name: str) -> rundir.Run:
        return rundir.load_run(self.sweep.run_dir(name))

    def analysis(self, name: str) -> Analysis:
        return read_analysis(self.run(name))

    def to_frame(self):
        """The table as a pandas DataFrame indexed by run name (pip install 'interp-grok[pandas]')."""
        from ..analysis.frames import _pandas

        return _pandas().DataFrame(self.rows).set_index("name")

    def __repr__(self) -> str:
        phases: dict[str, int] = {}
        for r in self.rows:
            phases[str(r.get("final_phase"))] = phases.get(str(r.get("final_phase")), 0) + 1
        axes = ", ".join(f"{k} x{len(v)}" for k, v in self.axes.items())
        return (f"SweepResults({self.path}: {len(self.rows)} runs over {axes}; final phases "
                + ", ".join(f"{k} {v}" for k, v in sorted(phases.items())) + ")")


def load_sweep(path: Path | str) -> SweepResults:
    """A sweep and its table: SWEEP/analysis/table.csv when it is there (written by `interp-grok
    analyze SWEEP_DIR`), else built from the runs' stored analyses."""
    sweep = read_sweep(Path(path))
    table = sweep.path / SWEEP_ANALYSIS_DIR / TABLE
    rows = read_table(table) if table.exists() else sweep_rows(sweep)
    return SweepResults(sweep, rows)


def aggregate(rows: list[dict], x: str, y: str | None = None, facet: str | None = None) -> dict[tuple, list[dict]]:
    """Rows grouped by (facet value, y value, x value): the runs one cell of a phase diagram shows
    (seeds and every other axis pooled; None for an axis not given). Keys are sorted; runs
    without a final phase are left out."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("final_phase") is None:
            continue
        cells.setdefault((r.get(facet) if facet else None, r[y] if y else None, r[x]), []).append(r)
    return dict(sorted(cells.items(), key=lambda kv: tuple((v is None, v) for v in kv[0])))


def phase_shares(cell: list[dict]) -> dict[str, float]:
    """The share of a cell's runs in each final phase, largest first."""
    counts: dict[str, int] = {}
    for r in cell:
        counts[r["final_phase"]] = counts.get(r["final_phase"], 0) + 1
    return {k: v / len(cell) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}


def default_axes(axes: dict[str, list]) -> list[str]:
    """The swept settings in grid order, seeds last: the default x, y and facet."""
    varying = [k for k, v in axes.items() if len(v) > 1]
    return [k for k in varying if k not in SEED_AXES] + [k for k in varying if k in SEED_AXES]


