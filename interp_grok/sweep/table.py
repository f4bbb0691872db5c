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
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import rundir
from ..analysis.phases import TRANSITIONS, doshi_phase_trajectory, run_phases
from ..analysis.pipeline import Analysis, analyze_run_dir, is_current, read_analysis
from . import runner
from .runner import (
    SHORT,
    Sweep,
    _local_pool,
    _state_epoch,
    _task,
    read_sweep,
    stop_pool,
    sweep_status,
    usable_cores,
    wait_for,
)

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
           "axis_name", "final", "load_sweep", "run_row", "stale_rows", "sweep_rows", "write_table"]


def analyze_one(run_path: str, threads: int = 1, force: bool = False) -> dict:
    """Analyze one run of a sweep (a worker's job): never raises; returns
    {"name", "status": analyzed | current | failed | interrupted, "error", "bad"}, ``bad`` the
    messages of the checkpoints that could not be read (the run's analysis leaves them out)."""
    name = Path(run_path).name
    if runner._INTERRUPTED:
        return {"name": name, "status": "interrupted", "error": None, "bad": []}
    try:
        with _task():
            torch.set_num_threads(threads)
            run = rundir.load_run(run_path)
            if not force and is_current(run):
                return {"name": name, "status": "current", "error": None, "bad": read_analysis(run).bad_checkpoints}
            _, an, _, _ = analyze_run_dir(Path(run_path), force=force)
        return {"name": name, "status": "analyzed", "error": None, "bad": list(an.bad_checkpoints)}
    except KeyboardInterrupt:
        return {"name": name, "status": "interrupted", "error": None, "bad": []}
    except Exception as e:  # noqa: BLE001 -- one bad run must not stop the others
        last = traceback.extract_tb(e.__traceback__)[-1:] if not isinstance(e, (rundir.RunDirError, OSError)) else []
        where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
        return {"name": name, "status": "failed", "error": f"{type(e).__name__}: {e}{where}", "bad": []}


ProgressFn = Callable[[int, int], None]  # (runs finished, runs to analyze)


def analyze_sweep(sweep: Sweep, *, executor=None, workers: int | None = None, threads: int = 1,
                  force: bool = False, progress: ProgressFn | None = None, poll_s: float = 0.5) -> dict[str, dict]:
    """Analyze every run of ``sweep`` that has checkpoints and no current analysis.

    ``executor``: anything with ``submit(fn, *args)`` returning futures with ``done()`` and
    ``result()`` (as interp_grok.sweep.run_sweep); None: a local process pool of ``workers``.
    Runs not trained yet are reported as "pending", a directory holding another grid point's run or a
    damaged one as "invalid" (with the reason; it is not analyzed); analyze_one's result for the others.
    """
    states = sweep_status(sweep)
    results = {n: {"name": n, "status": "pending", "error": None, "bad": []} for n, s in states.items()
               if s.state == "pending" or not (sweep.run_dir(n) / rundir.CONFIG).exists()}
    results |= {n: {"name": n, "status": "invalid", "error": s.error, "bad": []} for n, s in states.items()
                if s.state == "invalid"}  # another grid point's run, or a damaged one: never analyzed as this one
    todo = [n for n in sweep.runs if n not in results]
    own = executor is None and len(todo) > 1 and (workers or usable_cores()) > 1
    interrupted = False
    if own:
        executor = _local_pool(workers or usable_cores())
    try:
        if executor is None:  # one run, or one worker: no pool to start
            for i, n in enumerate(todo):
                results[n] = analyze_one(str(sweep.run_dir(n)), threads, force)
                if results[n]["status"] == "interrupted":  # Ctrl-C in this process: stop, as a pool would
                    raise KeyboardInterrupt
                if progress:
                    progress(i + 1, len(todo))
        else:
            futures = {executor.submit(analyze_one, str(sweep.run_dir(n)), threads, force): n for n in todo}

            def done(n: str, out: dict) -> None:
                results[n] = out

            def died(n: str, e: Exception) -> None:
                results[n] = {"name": n, "status": "failed", "error": f"worker died: {type(e).__name__}: {e}",
                              "bad": []}

            def tick() -> None:
                if progress:
                    progress(sum(n in results for n in todo), len(todo))

            wait_for(futures, done, died, tick, poll_s)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if own:
            stop_pool(executor, interrupted)
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


def _setting(v):
    """A setting's value in a row: a list (betas) as its numbers separated by spaces, as table.csv
    stores it, so rows built from the runs and rows read back agree (and can key a phase diagram)."""
    return " ".join(map(str, v)) if isinstance(v, (list, tuple)) else v


def run_row(sweep: Sweep, name: str, run: rundir.Run | None, an: Analysis | None, state: str) -> dict:
    """One table row: name, state, the swept settings, then TABLE_COLUMNS (None where unknown).

    The state is "done" only when the row's final values are the run's final ones: a run that is
    not finished, an analysis that stops before the final epoch, or checkpoints that could not be
    read add to it (e.g. "done, 1 bad checkpoint"), and ``aggregate`` leaves such rows out."""
    row: dict = {"name": name, "state": state, **{k: _setting(sweep.runs[name][k]) for k in sweep.grid.axes}}
    row |= {k: None for k in TABLE_COLUMNS}
    if run is None or an is None:
        return row
    ds, last = run.dataset, an.rows[-1]
    row["epochs_trained"] = int(an.epochs[-1])
    if state == "done" and row["epochs_trained"] != run.config.epochs:
        row["state"] = f"done, analyzed to epoch {row['epochs_trained']} of {run.config.epochs}"
    if an.bad_checkpoints:
        n = len(an.bad_checkpoints)
        row["state"] += f", {n} bad checkpoint{'s' if n > 1 else ''}"
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


def final(row: dict) -> bool:
    """Whether a table row's final values are its run's final ones (state "done"; rows built by
    hand, without a state, count as final)."""
    return row.get("state", "done") == "done"


def sweep_rows(sweep: Sweep) -> list[dict]:
    """The table, read from each run's stored analysis (runs without one get a row of blanks, and so
    do directories that hold another grid point's run or a damaged one: state "invalid")."""
    rows = []
    for name, s in sweep_status(sweep).items():
        run = an = None
        if s.state not in ("pending", "invalid"):
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


_TEXT_COLUMNS = ("name", "state", "key_freqs", "key_freq_rule", "final_phase", "doshi_phase")  # never numbers


def read_table(path: Path) -> list[dict]:
    """table.csv back as rows (numbers as int / float, true/false as bool, blanks as None; key_freqs
    stays text, "3 7" or "3", as in rows built from the runs). RunDirError naming the file for
    anything else: not UTF-8, not CSV, no name and state columns, a row with more or fewer cells."""
    path = Path(path)
    try:
        text = rundir.read_regular(path, 1 << 30).decode("utf-8")
    except UnicodeDecodeError:
        raise rundir.RunDirError(f"{path}: not UTF-8 text") from None
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        header = next(reader, None)
        if header is None or header[:2] != ["name", "state"] or len(set(header)) != len(header):
            raise rundir.RunDirError(f"{path}: not a sweep table (its header must start with name,state and name "
                                     "each column once)")
        rows = []
        for line in reader:
            if len(line) != len(header):
                raise rundir.RunDirError(f"{path}: line {reader.line_num} has {len(line)} cells, the header "
                                         f"{len(header)}")
            rows.append({k: (v if k in _TEXT_COLUMNS and v != "" else _parse(v)) for k, v in zip(header, line)})
    except csv.Error as e:
        raise rundir.RunDirError(f"{path}: not valid CSV ({e})") from None
    return rows


def stale_rows(sweep: Sweep, rows: list[dict]) -> list[str]:
    """Why table.csv no longer describes the runs (empty if it does): runs added to the sweep since,
    other settings, a run trained further or analyzed since the table was written. Reads only the
    manifest, train-state headers and which analyses exist (runs trimmed to their analysis pass)."""
    by_name = {r.get("name"): r for r in rows}
    missing = [n for n in sweep.runs if n not in by_name]
    extra = [str(n) for n in by_name if n not in sweep.runs]
    why = []
    if missing:
        why.append(f"{len(missing)} run(s) of sweep.json are not in it (first: {missing[0]})")
    if extra:
        why.append(f"it has rows for {len(extra)} run(s) that sweep.json does not list (first: {extra[0]})")
    for name, point in sweep.runs.items():
        r = by_name.get(name)
        if r is None:
            continue
        if any(k in r and _parse(_cell(_setting(v))) != r[k] for k, v in point.items()):
            why.append(f"run {name}: its settings differ from sweep.json's")
            break
        epoch = _state_epoch(sweep.run_dir(name))
        trained, state = r.get("epochs_trained"), str(r.get("state") or "")
        if epoch is not None and (state.startswith("pending") or (
                trained is not None and epoch > trained and not state.startswith("done"))):
            why.append(f"run {name} has trained to epoch {epoch} since")
            break
        if state.endswith("not analyzed") and (sweep.run_dir(name) / rundir.ANALYSIS_DIR / rundir.MANIFEST).exists():
            why.append(f"run {name} has been analyzed since")
            break
    return why


@dataclass(repr=False)
class SweepResults:
    """A sweep read back: ``rows`` (table.csv, one dict per run), ``to_frame()`` (pandas),
    ``run(name)`` / ``analysis(name)`` for any run, ``axes`` (setting -> values), ``stale`` (why the
    stored table.csv was older than the runs and not used)."""

    sweep: Sweep
    rows: list[dict]
    stale: list[str] = field(default_factory=list)  # why table.csv was not used (empty: it was, or none existed)

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
            if final(r):
                phases[str(r.get("final_phase"))] = phases.get(str(r.get("final_phase")), 0) + 1
        axes = ", ".join(f"{k} x{len(v)}" for k, v in self.axes.items())
        others = sum(not final(r) for r in self.rows)
        return (f"SweepResults({self.path}: {len(self.rows)} runs over {axes}; final phases "
                + ", ".join(f"{k} {v}" for k, v in sorted(phases.items()))
                + (f"; {others} not finished, not analyzed or damaged" if others else "") + ")")


def load_sweep(path: Path | str) -> SweepResults:
    """A sweep and its table: SWEEP/analysis/table.csv when it is there (written by `interp-grok
    analyze SWEEP_DIR`) and still describes the runs, else built from the runs' stored analyses.
    A table older than the runs is not used: ``SweepResults.stale`` says why, and a warning says so.
    A row whose state is not "done" (unfinished, damaged, not analyzed to its final epoch) holds
    no final values; ``aggregate`` leaves it out."""
    sweep = read_sweep(Path(path))
    table = sweep.path / SWEEP_ANALYSIS_DIR / TABLE
    if not (table.exists() or table.is_symlink()):
        return SweepResults(sweep, sweep_rows(sweep))
    rows = read_table(table)
    stale = stale_rows(sweep, rows)
    if stale:
        warnings.warn(f"{table} is older than the runs ({'; '.join(stale)}): the rows are built from the runs' "
                      f"own analyses instead; `interp-grok analyze {sweep.path}` rewrites the table", stacklevel=2)
        return SweepResults(sweep, sweep_rows(sweep), stale)
    return SweepResults(sweep, rows)


def aggregate(rows: list[dict], x: str, y: str | None = None, facet: str | None = None) -> dict[tuple, list[dict]]:
    """Rows grouped by (facet value, y value, x value): the runs one cell of a phase diagram shows
    (seeds and every other axis pooled; None for an axis not given). Keys are sorted; runs
    without a final phase, and rows whose values are not final (state other than "done": a run
    not finished, damaged, or not analyzed to its final epoch) are left out."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("final_phase") is None or not final(r):
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


