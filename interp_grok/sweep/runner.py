"""Sweeps: a grid of runs as one experiment, safe to re-run, on any executor.

This module owns the sweep directory:

    SWEEP/sweep.json            the manifest: axes (setting -> values, in order), fixed settings,
                                the settings that name runs, and every run's name and grid point
    SWEEP/runs/<name>/          one ordinary run directory per grid point (load_run, analyze, ...)
    SWEEP/errors/<name>.json    why the last attempt at a run failed (removed when it succeeds)

A grid point is trained by ``train_one``, which never raises: it trains a new run, resumes a
partial one, skips a finished one, and records a failure. Runs execute on any executor with
``submit(fn, *args) -> future`` (a process pool by default; submitit for SLURM; a Dask client's
``get_executor()``...); each run directory's lock keeps two processes from training one run.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import itertools
import json
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import rundir
from ..config import Config, ConfigError

SWEEP_FORMAT = "interp-grok-sweep"
SWEEP_VERSION = 1
MANIFEST = "sweep.json"
RUNS_DIR = "runs"
ERRORS_DIR = "errors"
# short names for run directories (any other setting is named by its field name)
SHORT = {"noise_n": "n", "weight_decay": "wd", "seed": "s", "data_seed": "ds", "train_frac": "tf", "lr": "lr",
         "init_scale": "a", "noise_frac": "xi", "init": "init", "p": "p", "d_model": "dm", "d_mlp": "dmlp",
         "act": "act", "epochs": "e", "p_bin": "pb", "noise_kind": "nk", "model": "m", "optimizer": "opt"}
_NOT_SWEPT = ("checkpoint_epochs",)  # derived from epochs, never given


class SweepError(ValueError):
    """A grid that cannot be run: unknown setting, empty list, a value out of range, or a sweep
    directory that holds another grid. The message names it."""


def _fmt(v) -> str:
    if isinstance(v, float):
        return repr(v).removesuffix(".0") if v == int(v) and abs(v) < 1e15 else repr(v)
    return str(v)


@dataclass
class Grid:
    """axes: setting -> list of values (the grid is their product, in this order); fixed: settings
    given once. Setting names are Config fields."""

    axes: dict[str, list]
    fixed: dict = field(default_factory=dict)

    def check(self) -> None:
        names = {f for f in Config.__dataclass_fields__ if f not in _NOT_SWEPT}
        for k in [*self.axes, *self.fixed]:
            if k not in names:
                raise SweepError(f"unknown setting {k!r} (settings: {', '.join(sorted(names))})")
        for k, values in self.axes.items():
            if not isinstance(values, list) or not values:
                raise SweepError(f"{k}: needs a non-empty list of values")
            if len(set(map(json.dumps, values))) != len(values):
                raise SweepError(f"{k}: a value is listed twice ({values})")
        both = set(self.axes) & set(self.fixed)
        if both:
            raise SweepError(f"{', '.join(sorted(both))}: given both as an axis and as a fixed setting")

    def points(self) -> list[dict]:
        keys = list(self.axes)
        return [dict(zip(keys, combo)) for combo in itertools.product(*self.axes.values())]

    def config(self, point: dict) -> Config:
        """The run's Config; SweepError naming the grid point if a value is out of range."""
        try:
            return Config(**{**self.fixed, **point}).finalize()
        except (ConfigError, TypeError) as e:
            where = ", ".join(f"{k}={_fmt(v)}" for k, v in point.items())
            raise SweepError(f"grid point {where}: {e}") from None


def run_name(point: dict, name_keys: list[str]) -> str:
    return "_".join(f"{SHORT.get(k, k)}{_fmt(point[k])}" for k in name_keys) or "run"


@dataclass
class Sweep:
    """A planned sweep: its directory, grid, and the run directory of every grid point."""

    path: Path
    grid: Grid
    name_keys: list[str]
    runs: dict[str, dict]  # name -> grid point

    def run_dir(self, name: str) -> Path:
        return self.path / RUNS_DIR / name

    def config(self, name: str) -> Config:
        return self.grid.config(self.runs[name])

    def manifest(self) -> dict:
        return {"format": SWEEP_FORMAT, "version": SWEEP_VERSION, "axes": self.grid.axes, "fixed": self.grid.fixed,
                "name_keys": self.name_keys, "runs": [{"name": n, "point": p} for n, p in self.runs.items()]}


def read_sweep(path: Path) -> Sweep:
    """The sweep in ``path`` (RunDirError naming sweep.json if it is missing or malformed)."""
    path = Path(path)
    raw = rundir.read_json(path / MANIFEST)
    if raw.get("format") != SWEEP_FORMAT or raw.get("version") != SWEEP_VERSION:
        raise rundir.RunDirError(f"{path / MANIFEST}: not an interp-grok sweep manifest of version {SWEEP_VERSION}")
    try:
        grid = Grid(dict(raw["axes"]), dict(raw["fixed"]))
        runs = {r["name"]: dict(r["point"]) for r in raw["runs"]}
        name_keys = list(raw["name_keys"])
    except (KeyError, TypeError, ValueError) as e:
        raise rundir.RunDirError(f"{path / MANIFEST}: malformed ({e})") from None
    return Sweep(path, grid, name_keys, runs)


def plan_sweep(path: Path, grid: Grid | None = None, *, extend: bool = False) -> Sweep:
    """Check ``grid`` against the sweep already in ``path`` (if any) and write its manifest.

    No grid: the stored one (re-running a sweep). A grid equal to the stored one: that sweep. One
    that only adds values to the stored axes: refused unless ``extend``. Anything else: refused.
    Every grid point is validated before anything is written; existing runs keep their names.
    """
    path = Path(path)
    old = read_sweep(path) if (path / MANIFEST).exists() else None
    if grid is None:
        if old is None:
            raise SweepError(f"{path}: no {MANIFEST} here; give the grid (e.g. --noise 0,4 --seed 0,1)")
        return old
    grid.check()
    configs = {json.dumps(p, sort_keys=True): grid.config(p) for p in grid.points()}  # validates every point
    del configs
    if old is None:
        name_keys = [k for k, v in grid.axes.items() if len(v) > 1]
        runs = {run_name(p, name_keys): p for p in grid.points()}
    else:
        _check_compatible(old, grid, extend)
        name_keys = old.name_keys + [k for k, v in grid.axes.items() if len(v) > 1 and k not in old.name_keys]
        known = {json.dumps(p, sort_keys=True): n for n, p in old.runs.items()}
        runs = dict(old.runs)
        for p in grid.points():
            if json.dumps(p, sort_keys=True) not in known:
                runs[run_name(p, name_keys)] = p
    if len(runs) != len({json.dumps(p, sort_keys=True) for p in runs.values()}):
        raise SweepError("two grid points would get the same run name")  # cannot happen with distinct values
    sweep = Sweep(path, grid, name_keys, runs)
    if old is None or old.manifest() != sweep.manifest():
        rundir.atomic_write_json(path / MANIFEST, sweep.manifest())
    return sweep


def _check_compatible(old: Sweep, grid: Grid, extend: bool) -> None:
    where = old.path / MANIFEST
    if grid.fixed != old.grid.fixed:
        raise SweepError(f"the fixed settings differ from {where} ({old.grid.fixed} there, {grid.fixed} here)")
    if list(grid.axes) != list(old.grid.axes):
        raise SweepError(f"the swept settings differ from {where} ({', '.join(old.grid.axes)} there, "
                         f"{', '.join(grid.axes)} here)")
    same = all(grid.axes[k] == v for k, v in old.grid.axes.items())
    if same:
        return
    for k, values in old.grid.axes.items():
        if not set(map(json.dumps, values)) <= set(map(json.dumps, grid.axes[k])):
            raise SweepError(f"{k} has values {values} in {where} and {grid.axes[k]} here; a sweep can only grow")
    if not extend:
        raise SweepError(f"this grid adds points to the one in {where}; pass --extend to add them")


# ------------------------------------------------------------------ one run


def _die_with_parent() -> None:
    """In a worker process: be killed when the process that started it dies (Linux), so a killed
    sweep leaves no orphan trainers behind (a re-run would find their runs locked)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _error_path(sweep_path: Path, name: str) -> Path:
    return Path(sweep_path) / ERRORS_DIR / f"{name}.json"


def train_one(sweep_path: str, name: str, config: dict, threads: int = 1, device: str = "auto") -> dict:
    """Bring one run of a sweep to its final epoch: skip it if done, resume it if partial, train it
    if new. Never raises: returns {"name", "status": done|trained|failed, "error"} and records a
    failure in SWEEP/errors/<name>.json (removed on success). Runs in worker processes."""
    import torch

    from ..train import resume, train, trained_threads

    out = Path(sweep_path) / RUNS_DIR / name
    err = _error_path(Path(sweep_path), name)
    try:
        want = Config.from_dict(config)
        state = run_state(out, want)
        if state.state == "done":
            return {"name": name, "status": "done", "error": None}
        torch.set_num_threads(threads)
        if not rundir.is_run_dir(out):
            train(want, out, device=device, threads=threads)
        else:
            stored, prov = rundir.read_config(out)
            _check_same_settings(out, stored, want)
            resume(out, epochs=want.epochs, device=device, threads=trained_threads(prov) or threads)
        err.unlink(missing_ok=True)
        return {"name": name, "status": "trained", "error": None}
    except Exception as e:  # noqa: BLE001 -- a failed run never stops the others: record it
        msg = str(e) if isinstance(e, (rundir.RunDirError, ConfigError)) or type(e).__name__ in (
            "TrainError", "TrainingDiverged") else f"{type(e).__name__}: {e}"
        with contextlib.suppress(OSError):
            rundir.atomic_write_json(err, {"error": msg.splitlines()[0] if msg else type(e).__name__,
                                           "traceback": traceback.format_exc()[-4000:],
                                           "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        return {"name": name, "status": "failed", "error": msg}


def train_batch_one(sweep_path: str, names: list[str], configs: list[dict], threads: int = 1,
                    device: str = "auto") -> list[dict]:
    """Like train_one for several runs of one shape, trained as one stacked model (`--batch`):
    new runs as one batch, partial ones as another. Never raises; a run that cannot join its
    batch (a bad directory in its way, other stored settings) is tried alone, so it fails alone."""
    import torch

    from ..train import resume_batch, train_batch

    torch.set_num_threads(threads)
    sweep_path = Path(sweep_path)
    want = {n: Config.from_dict(c) for n, c in zip(names, configs)}
    results, new, partial = {}, [], []
    for n in names:
        out = sweep_path / RUNS_DIR / n
        try:
            state = run_state(out, want[n])
            if state.state == "done":
                results[n] = {"name": n, "status": "done", "error": None}
            elif rundir.is_run_dir(out):
                _check_same_settings(out, rundir.read_config(out)[0], want[n])
                partial.append(n)
            else:
                new.append(n)
        except Exception:  # noqa: BLE001 -- decided by train_one below
            results[n] = train_one(str(sweep_path), n, configs[names.index(n)], threads, device)
    for group, run in ((new, lambda g: train_batch([want[n] for n in g], [sweep_path / RUNS_DIR / n for n in g],
                                                    device=device, threads=threads)),
                       (partial, lambda g: resume_batch([sweep_path / RUNS_DIR / n for n in g],
                                                        epochs=want[g[0]].epochs, device=device, threads=threads))):
        if not group:
            continue
        try:
            for n, r in zip(group, run(group)):
                if r.error is not None:  # this run diverged; the rest of its batch went on
                    results[n] = {"name": n, "status": "failed", "error": r.error}
                    with contextlib.suppress(OSError):
                        rundir.atomic_write_json(_error_path(sweep_path, n), {"error": r.error})
                else:
                    _error_path(sweep_path, n).unlink(missing_ok=True)
                    results[n] = {"name": n, "status": "trained", "error": None}
        except Exception:  # noqa: BLE001 -- the batch could not start: each run alone, failing alone
            for n in group:
                results[n] = train_one(str(sweep_path), n, configs[names.index(n)], threads, device)
    return [results[n] for n in names]


def _check_same_settings(out: Path, stored: Config, want: Config) -> None:
    a, b = stored.to_dict(), want.to_dict()
    for k in a:
        if k not in ("epochs", "checkpoint_epochs") and a[k] != b[k]:
            raise rundir.RunDirError(f"{out}: holds a run with {k} = {a[k]!r}, the sweep asks for {b[k]!r}")
    if want.epochs < stored.epochs:
        raise rundir.RunDirError(f"{out}: trained to {stored.epochs} epochs, the sweep asks for {want.epochs}")


# ------------------------------------------------------------------ status


@dataclass
class RunState:
    state: str  # done | partial | pending | failed
    epoch: int  # epochs trained (0 when pending)
    epochs: int  # epochs asked for
    error: str | None = None
    final: dict | None = None  # the last evaluation record (done / partial runs)


def _state_epoch(out: Path) -> int | None:
    """The train state's epoch, read from the safetensors header only (cheap enough to poll)."""
    path = out / rundir.TRAIN_STATE
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n < (1 << 20):
                return None
            return int(json.loads(f.read(n))["__metadata__"]["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _last_eval(out: Path) -> dict | None:
    """The last evaluation record of metrics.jsonl, read from the end of the file."""
    path = out / rundir.METRICS
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - (1 << 16)))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if '"eval"' in line:
            with contextlib.suppress(ValueError):
                r = json.loads(line)
                if isinstance(r, dict) and r.get("kind") == "eval":
                    return r
    return None


def run_state(out: Path, want: Config) -> RunState:
    out = Path(out)
    err_file = _error_path(out.parent.parent, out.name)
    epoch = _state_epoch(out) if (out / rundir.TRAIN_STATE).exists() else None
    if epoch is not None and epoch >= want.epochs and rundir.is_run_dir(out):
        return RunState("done", epoch, want.epochs, final=_last_eval(out))
    if err_file.exists():
        with contextlib.suppress(rundir.RunDirError):
            why = rundir.read_json(err_file).get("error", "unknown error")
            return RunState("failed", epoch or 0, want.epochs, error=str(why), final=_last_eval(out))
    if epoch is not None:
        return RunState("partial", epoch, want.epochs, final=_last_eval(out))
    return RunState("pending", 0, want.epochs)


def sweep_status(sweep: Sweep) -> dict[str, RunState]:
    """Every run's state, in grid order."""
    return {name: run_state(sweep.run_dir(name), sweep.config(name)) for name in sweep.runs}


# ------------------------------------------------------------------ running


def _local_pool(workers: int) -> concurrent.futures.Executor:
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_die_with_parent)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


ProgressFn = Callable[[int, int, dict[str, dict]], None]  # (model-epochs done, total, results so far)


def batches(sweep: Sweep, names: list[str], size: int) -> list[list[str]]:
    """``names`` grouped into batches of at most ``size`` runs that can share one stacked model."""
    from ..train import BATCH_KEYS

    groups: dict[str, list[str]] = {}
    for n in names:
        c = sweep.config(n)
        groups.setdefault(json.dumps([getattr(c, k) for k in BATCH_KEYS]), []).append(n)
    return [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)]


def _model_epochs_done(sweep: Sweep) -> int:
    """Epochs trained over all runs, read from the run directories (so it works for every executor)."""
    return sum(min(_state_epoch(sweep.run_dir(n)) or 0, sweep.config(n).epochs) for n in sweep.runs)


def wait_for(futures: dict, on_done: Callable, on_died: Callable, tick: Callable[[], None] | None = None,
             poll_s: float = 1.0) -> None:
    """Poll ``futures`` (future -> key; concurrent.futures or submitit jobs) until every one is done,
    calling on_done(key, result), or on_died(key, exception) when its worker or job failed (or
    on_done raised); ``tick()`` after every pass, e.g. to report progress."""
    pending = dict(futures)
    while pending:
        for fut, key in list(pending.items()):
            if fut.done():
                try:
                    on_done(key, fut.result())
                except Exception as e:  # noqa: BLE001 -- a worker that died (killed, out of memory)
                    on_died(key, e)
                del pending[fut]
        if tick:
            tick()
        if pending:
            time.sleep(poll_s)


def run_sweep(sweep: Sweep, *, executor=None, workers: int | None = None, threads: int = 1, batch: int = 1,
              device: str = "auto", progress: ProgressFn | None = None, poll_s: float = 1.0) -> dict[str, dict]:
    """Train every run of ``sweep`` that is not finished; return train_one's result per run.

    ``executor``: anything with ``submit(fn, *args) -> future`` (concurrent.futures-style futures
    with ``result()``; submitit jobs work too). None: a local process pool of ``workers`` processes
    (default: the usable cores), each run at ``threads`` torch threads. ``batch`` > 1: runs of one
    shape are trained ``batch`` at a time as one stacked model (train.train_batch). ``progress`` is called
    about every ``poll_s`` seconds with the model-epochs done (read from the run directories, so
    it works for every executor) and the total.
    """
    todo = {n: s for n, s in sweep_status(sweep).items() if s.state != "done"}
    results = {n: {"name": n, "status": "done", "error": None} for n in sweep.runs if n not in todo}
    total = sum(sweep.config(n).epochs for n in sweep.runs)
    if not todo:
        if progress:
            progress(total, total, results)
        return results
    own = executor is None
    if own:
        executor = _local_pool(workers or usable_cores())
    try:
        if batch > 1:
            futures = {executor.submit(train_batch_one, str(sweep.path), g, [sweep.config(n).to_dict() for n in g],
                                       threads, device): g for g in batches(sweep, list(todo), batch)}
        else:
            futures = {executor.submit(train_one, str(sweep.path), n, sweep.config(n).to_dict(), threads, device): [n]
                       for n in todo}

        def done(group: list[str], out) -> None:
            for r in out if isinstance(out, list) else [out]:
                results[r["name"]] = r

        def died(group: list[str], e: Exception) -> None:
            for n in group:
                results[n] = {"name": n, "status": "failed", "error": f"worker died: {type(e).__name__}: {e}"}
                with contextlib.suppress(OSError):
                    rundir.atomic_write_json(_error_path(sweep.path, n), {"error": results[n]["error"]})

        def tick() -> None:
            if progress:
                progress(_model_epochs_done(sweep), total, results)

        wait_for(futures, done, died, tick, poll_s)
    finally:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)
    return {n: results[n] for n in sweep.runs}


# ------------------------------------------------------------------ SLURM through submitit


class ChunkTrainer:
    """A submitit task: train a chunk of a sweep's runs one after the other. On timeout or
    preemption submitit calls ``checkpoint`` and requeues the task; its runs resume from their
    run directories, so nothing is lost but the epochs since their last checkpoint."""

    def __call__(self, sweep_path: str, chunk: list[tuple[str, dict]], threads: int, device: str = "auto"
                 ) -> list[dict]:
        return [train_one(sweep_path, name, config, threads, device) for name, config in chunk]

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def submitit_executor(folder: Path, cluster: str | None = None, **params):
    """A submitit AutoExecutor logging to ``folder`` (``cluster="local"``: real local processes,
    for testing without a cluster); ``params`` go to ``update_parameters``."""
    try:
        import submitit
    except ImportError:
        raise SweepError("the slurm executor needs submitit: pip install 'interp-grok[slurm]'") from None
    ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def run_sweep_submitit(sweep: Sweep, executor, *, chunk: int = 1, threads: int = 1, device: str = "auto",
                       progress: ProgressFn | None = None, poll_s: float = 2.0) -> dict[str, dict]:
    """Submit the unfinished runs as one job array of tasks of ``chunk`` runs each; wait for them."""
    todo = [n for n, s in sweep_status(sweep).items() if s.state != "done"]
    results = {n: {"name": n, "status": "done", "error": None} for n in sweep.runs if n not in todo}
    total = sum(sweep.config(n).epochs for n in sweep.runs)
    chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
    jobs = []
    with executor.batch():  # one job array
        for c in chunks:
            jobs.append((c, executor.submit(ChunkTrainer(), str(sweep.path),
                                            [(n, sweep.config(n).to_dict()) for n in c], threads, device)))

    def done(c: list[str], out) -> None:
        for r in out:
            results[r["name"]] = r

    def died(c: list[str], e: Exception) -> None:  # the task failed outside train_one
        for n in c:
            results.setdefault(n, {"name": n, "status": "failed", "error": f"job failed: {e}"})

    def tick() -> None:
        if progress:
            progress(_model_epochs_done(sweep), total, results)

    wait_for({job: c for c, job in jobs}, done, died, tick, poll_s)
    return {n: results[n] for n in sweep.runs}
