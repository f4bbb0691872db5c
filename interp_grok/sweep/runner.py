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
import fcntl
import itertools
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import stat
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import rundir
from ..config import Config, ConfigError
from ..models import family

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
SWEEP_LOCK = ".sweep.lock"  # held while a sweep's manifest is read, checked and written
MAX_POINTS = 100_000  # a grid larger than this is refused before it is expanded
# a run name is one path component made of what run_name generates: letters, digits, . _ + -
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
MAX_NAME = 200
# settings a run's training does not read, by the setting that makes them unused (config.py)
_TRANSFORMER_ONLY = ("n_heads", "eq_logit", "biases")
IGNORED = {("model", "mlp"): _TRANSFORMER_ONLY, ("model", "quadratic"): ("d_model", "act", *_TRANSFORMER_ONLY),
           ("noise_kind", "uniform"): ("noise_n", "p_bin")}


class SweepError(ValueError):
    """A grid that cannot be run: unknown setting, empty list, a value out of range, or a sweep
    directory that holds another grid. The message names it."""


def _fmt(v) -> str:
    if isinstance(v, (list, tuple)):  # betas: 0.9-0.98, as `train` names its run directories
        return "-".join(_fmt(x) for x in v)
    if isinstance(v, float):
        return repr(v).removesuffix(".0") if v == int(v) and abs(v) < 1e15 else repr(v)
    return str(v)


_FLOAT_FIELDS = {k for k, v in Config().to_dict().items() if isinstance(v, float)}


def canonical(name: str, value):
    """``value`` of setting ``name`` as the run sees it: an int given for a float setting is that
    float (weight_decay 1 and 1.0 are one value), a list of numbers (betas) a list of floats."""
    if isinstance(value, bool):
        return value
    if name in _FLOAT_FIELDS and isinstance(value, int):
        return float(value)
    if name == "betas" and isinstance(value, (list, tuple)):
        return [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


def _key(point: dict) -> str:
    """A grid point's identity (canonical values, sorted keys)."""
    return json.dumps({k: canonical(k, v) for k, v in point.items()}, sort_keys=True)


def _nonfinite(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_nonfinite(v) for v in value)
    return False


def check_run_name(name) -> str | None:
    """Why ``name`` cannot be a run name (None if it can): one path component of letters, digits
    and . _ + -, starting with a letter or digit, at most MAX_NAME characters."""
    if not isinstance(name, str):
        return f"run name {name!r} is not a string"
    if not _NAME_RE.fullmatch(name) or len(name) > MAX_NAME:
        return (f"run name {name!r} is not one path component of letters, digits and . _ + - (at most {MAX_NAME} "
                "characters, starting with a letter or digit)")
    return None


@dataclass
class Grid:
    """axes: setting -> list of values (the grid is their product, in this order); fixed: settings
    given once. Setting names are Config fields."""

    axes: dict[str, list]
    fixed: dict = field(default_factory=dict)

    def check(self) -> None:
        if not isinstance(self.axes, dict) or not isinstance(self.fixed, dict):
            raise SweepError("axes and fixed must be objects (setting -> values, setting -> value)")
        names = {f for f in Config.__dataclass_fields__ if f not in _NOT_SWEPT}
        for k in [*self.axes, *self.fixed]:
            if k not in names:
                raise SweepError(f"unknown setting {k!r} (settings: {', '.join(sorted(names))})")
        size = 1
        for k, values in self.axes.items():
            if not isinstance(values, list) or not values:
                raise SweepError(f"{k}: needs a non-empty list of values")
            size *= len(values)
        if size > MAX_POINTS:
            raise SweepError(f"the grid has {size} points, more than the {MAX_POINTS} one sweep takes; split it into "
                             "several sweeps")
        for k, values in [*self.axes.items(), *((k, [v]) for k, v in self.fixed.items())]:
            bad = next((v for v in values if _nonfinite(v)), None)
            if bad is not None:
                raise SweepError(f"{k}: {bad!r} is not a finite number")
            keys = [json.dumps(canonical(k, v)) for v in values]
            if len(set(keys)) != len(keys):
                twice = next(v for v, key in zip(values, keys) if keys.count(key) > 1)
                raise SweepError(f"{k}: a value is listed twice ({_fmt(canonical(k, twice))} in {values})")
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


def _where(point: dict) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in point.items())


def _effective(config: Config) -> str:
    """What a run computes: its settings without the ones its model family or noise kind ignores."""
    d = config.to_dict()
    for (setting, value), unused in IGNORED.items():
        if d[setting] == value:
            for k in unused:
                d.pop(k, None)
    return json.dumps(d, sort_keys=True)


def _check_distinct_runs(grid: Grid, points: list[dict]) -> None:
    """SweepError when two grid points would train the same run (a setting the family ignores)."""
    seen: dict[str, dict] = {}
    for p in points:
        c = grid.config(p)
        key = _effective(c)
        if key in seen:
            q = seen[key]
            differ = [k for k in p if canonical(k, p[k]) != canonical(k, q[k])]
            why = [f"{k} is unused when {s} = {v}" for (s, v), unused in IGNORED.items()
                   if getattr(c, s) == v for k in unused if k in differ]
            raise SweepError(f"grid points {_where(q)} and {_where(p)} train the same run"
                             + (f" ({'; '.join(why)})" if why else "") + "; drop the values that change nothing")
        seen[key] = p


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
    """The sweep in ``path``; RunDirError naming sweep.json if it is missing or malformed. The
    manifest is checked in full: the grid as ``plan_sweep`` checks it, every run name one safe path
    component (a manifest received from someone else never makes a sweep write outside itself),
    names and points unique, every point on the grid and every grid point a run."""
    path = Path(path)
    where = path / MANIFEST
    raw = rundir.read_json(where)
    if raw.get("format") != SWEEP_FORMAT or raw.get("version") != SWEEP_VERSION:
        raise rundir.RunDirError(f"{where}: not an interp-grok sweep manifest of version {SWEEP_VERSION}")

    def bad(why: str) -> rundir.RunDirError:
        return rundir.RunDirError(f"{where}: malformed ({why})")

    axes, fixed, name_keys, runs_raw = (raw.get(k) for k in ("axes", "fixed", "name_keys", "runs"))
    if not isinstance(axes, dict) or not isinstance(fixed, dict):
        raise bad("axes and fixed must be objects")
    grid = Grid(dict(axes), dict(fixed))
    try:
        grid.check()
    except SweepError as e:
        raise bad(str(e)) from None
    if not isinstance(name_keys, list) or not all(isinstance(k, str) and k in axes for k in name_keys):
        raise bad("name_keys must be a list of swept settings")
    if not isinstance(runs_raw, list) or not runs_raw:
        raise bad("runs must be a non-empty list")
    on_grid = {_key(p): p for p in grid.points()}
    runs: dict[str, dict] = {}
    seen: dict[str, str] = {}
    for i, r in enumerate(runs_raw):
        if not isinstance(r, dict) or set(r) != {"name", "point"} or not isinstance(r["point"], dict):
            raise bad(f"runs[{i}] must be an object {{\"name\": ..., \"point\": {{...}}}}")
        name, point = r["name"], r["point"]
        why = check_run_name(name)
        if why is not None:
            raise rundir.RunDirError(f"{where}: {why}; refusing to use it")
        if name in runs:
            raise bad(f"run name {name!r} appears twice")
        if list(point) != list(axes):
            raise bad(f"run {name}: its point must give the swept settings {', '.join(axes)}, in that order")
        key = _key(point)
        if key not in on_grid:
            raise bad(f"run {name}: its point {_where(point)} is not on the grid")
        if key in seen:
            raise bad(f"runs {seen[key]} and {name} have the same point")
        seen[key] = name
        runs[name] = dict(point)
    if len(seen) != len(on_grid):
        missing = next(p for k, p in on_grid.items() if k not in seen)
        raise bad(f"{len(on_grid) - len(seen)} grid point(s) have no run (first: {_where(missing)})")
    try:
        for point in runs.values():
            grid.config(point)
    except SweepError as e:
        raise bad(str(e)) from None
    return Sweep(path, grid, list(name_keys), runs)


@contextlib.contextmanager
def _planning(path: Path):
    """The sweep's planning lock (blocking: planning takes at most seconds), so that two commands
    planning one directory never both read "no manifest yet" or both rewrite it."""
    lock = path / SWEEP_LOCK
    try:  # O_NOFOLLOW: a lock file that is a symlink is refused, never written through
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise rundir.RunDirError(f"{lock}: cannot open the sweep's lock file ({e.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _check_resources(grid: Grid, points: list[dict], path: Path) -> None:
    """TrainError before anything is written if one run needs more memory than this machine has,
    or all runs together more disk than is free at ``path``."""
    from ..train import check_resources, disk_needed

    configs = [grid.config(p) for p in points]
    shapes = {(c.model, c.p, c.d_model, c.d_mlp, c.noise_n, c.train_frac): c for c in configs}
    for c in shapes.values():  # one run's memory (and its own disk)
        check_resources(c, path)
    need = sum(disk_needed(c) for c in configs)
    where = path.absolute()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    if need > free:
        raise SweepError(f"the {len(configs)} runs' checkpoints need about {need / 2**30:.2f} GiB, more than the "
                         f"{free / 2**30:.2f} GiB free at {where}")


def plan_sweep(path: Path, grid: Grid | None = None, *, extend: bool = False) -> Sweep:
    """Check ``grid`` against the sweep already in ``path`` (if any) and write its manifest.

    No grid: the stored one (re-running a sweep). A grid equal to the stored one, or listing the same
    values in another order: that sweep. One that only adds values to the stored axes: refused
    unless ``extend``. Anything else: refused. Every grid point is validated (settings, distinct
    runs, memory, the disk all runs need) before anything is written; the manifest is read, checked
    and written under the sweep's lock; existing runs keep their names.
    """
    path = Path(path)
    if str(path).strip() == "":
        raise SweepError("the sweep directory must be named (got an empty string)")
    if path.exists() and not path.is_dir():
        raise SweepError(f"{path} exists and is not a directory")
    if not (path / MANIFEST).exists() and (path / rundir.CONFIG).exists():
        raise SweepError(f"{path} is a run directory, not a sweep; give a new directory (or a sweep's) instead")
    if grid is None:
        if not (path / MANIFEST).exists():
            raise SweepError(f"{path}: no {MANIFEST} here; give the grid (e.g. --noise 0,4 --seed 0,1)")
        return read_sweep(path)
    grid.check()
    points = grid.points()
    _check_distinct_runs(grid, points)  # validates every point
    _check_resources(grid, points, path)
    path.mkdir(parents=True, exist_ok=True)
    with _planning(path):
        old = read_sweep(path) if (path / MANIFEST).exists() else None
        if old is None:
            name_keys = [k for k, v in grid.axes.items() if len(v) > 1]
            runs: dict[str, dict] = {}
        else:
            if _check_compatible(old, grid, extend):
                return old  # the same grid (maybe in another order): the stored sweep as it is
            name_keys = old.name_keys + [k for k, v in grid.axes.items() if len(v) > 1 and k not in old.name_keys]
            runs = dict(old.runs)
        known = {_key(p) for p in runs.values()}
        for p in points:
            if _key(p) in known:
                continue
            name = run_name(p, name_keys)
            why = check_run_name(name)
            if why is not None:
                raise SweepError(f"grid point {_where(p)}: {why}")
            if name in runs:
                raise SweepError(f"grid points {_where(runs[name])} and {_where(p)} would both be run {name}")
            runs[name] = p
        sweep = Sweep(path, grid, name_keys, runs)
        if old is None or old.manifest() != sweep.manifest():
            rundir.atomic_write_json(path / MANIFEST, sweep.manifest())
    return sweep


def _check_compatible(old: Sweep, grid: Grid, extend: bool) -> bool:
    """True if ``grid`` is the stored one (values perhaps in another order); False if it only adds
    points and ``extend``; SweepError otherwise."""
    where = old.path / MANIFEST
    canon = {k: canonical(k, v) for k, v in grid.fixed.items()}
    if canon != {k: canonical(k, v) for k, v in old.grid.fixed.items()}:
        raise SweepError(f"the fixed settings differ from {where} ({old.grid.fixed} there, {grid.fixed} here)")
    if list(grid.axes) != list(old.grid.axes):
        raise SweepError(f"the swept settings differ from {where} ({', '.join(old.grid.axes)} there, "
                         f"{', '.join(grid.axes)} here)")

    def values(axes: dict, k: str) -> set[str]:
        return {json.dumps(canonical(k, v)) for v in axes[k]}

    if all(values(grid.axes, k) == values(old.grid.axes, k) for k in old.grid.axes):
        return True
    for k, vs in old.grid.axes.items():
        if not values(old.grid.axes, k) <= values(grid.axes, k):
            raise SweepError(f"{k} has values {vs} in {where} and {grid.axes[k]} here; a sweep can only grow")
    if not extend:
        raise SweepError(f"this grid adds points to the one in {where}; pass --extend to add them")
    return False


# ------------------------------------------------------------------ one run


# In a pool worker: set by the first SIGINT (Ctrl-C reaches the whole process group, and the
# parent forwards it); the run in progress stops at once and every later task returns unstarted.
_INTERRUPTED = False
_BUSY = False  # a task is running: the first SIGINT raises KeyboardInterrupt inside it


def _on_sigint(signum, frame) -> None:
    global _INTERRUPTED
    first, _INTERRUPTED = not _INTERRUPTED, True
    if first and _BUSY:
        raise KeyboardInterrupt


def _worker_init(parent: int) -> None:
    """In a worker process: be killed when the process that started it dies (Linux), so a killed
    sweep leaves no orphan trainers behind (a re-run would find their runs locked); exit at once
    if the parent already died while this worker was starting (before the kernel could be told);
    take Ctrl-C as "finish nothing more"."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)
    signal.signal(signal.SIGINT, _on_sigint)


@contextlib.contextmanager
def _task():
    """Marks a worker task as running, for _on_sigint."""
    global _BUSY
    _BUSY = True
    try:
        yield
    finally:
        _BUSY = False


def _interrupted(name: str) -> dict:
    return {"name": name, "status": "interrupted", "error": None}


def _error_path(sweep_path: Path, name: str) -> Path:
    return Path(sweep_path) / ERRORS_DIR / f"{name}.json"


def _record_failure(sweep_path: Path, name: str, msg: str, tb: str | None = None) -> None:
    record = {"error": msg.splitlines()[0] if msg else "unknown error"}
    if tb is not None:
        record |= {"traceback": tb[-4000:], "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with contextlib.suppress(OSError):  # a blocked errors/ must not hide the run's own result
        rundir.atomic_write_json(_error_path(sweep_path, name), record)


def _clear_failure(sweep_path: Path, name: str) -> None:
    with contextlib.suppress(OSError):  # a blocked errors/ never turns a trained run into a failed one
        _error_path(sweep_path, name).unlink(missing_ok=True)


def train_one(sweep_path: str, name: str, config: dict, threads: int = 1, device: str = "auto") -> dict:
    """Bring one run of a sweep to its final epoch: skip it if done, resume it if partial, train it
    if new. Never raises: returns {"name", "status": done|trained|failed|interrupted, "error"} and
    records a failure in SWEEP/errors/<name>.json (removed on success). A directory that holds
    another grid point's run, or a damaged one, fails and is left as it is. Runs in worker processes."""
    if _INTERRUPTED:
        return _interrupted(name)
    import torch

    from ..train import resume, train, trained_threads

    out = Path(sweep_path) / RUNS_DIR / name
    try:
        with _task():
            want = Config.from_dict(config)
            state = run_state(out, want)
            if state.state == "done":
                return {"name": name, "status": "done", "error": None}
            if state.state == "invalid":
                raise rundir.RunDirError(state.error)
            torch.set_num_threads(threads)
            if not rundir.is_run_dir(out):
                if out.exists() and not (out.is_dir() and rundir.only_lock_files(out)):
                    raise rundir.RunDirError(f"{out}: exists and is not an interp-grok run directory; move it out of "
                                             "the way, then re-run the sweep")
                train(want, out, device=device, threads=threads)
            else:
                stored, prov = rundir.read_config(out)
                _check_same_settings(out, stored, want)
                resume(out, epochs=want.epochs, device=device, threads=trained_threads(prov) or threads)
        _clear_failure(Path(sweep_path), name)
        return {"name": name, "status": "trained", "error": None}
    except KeyboardInterrupt:  # Ctrl-C: the run stops where it is; its files are a resumable run
        return _interrupted(name)
    except Exception as e:  # noqa: BLE001 -- a failed run never stops the others: record it
        msg = str(e) if isinstance(e, (rundir.RunDirError, ConfigError)) or type(e).__name__ in (
            "TrainError", "TrainingDiverged") else f"{type(e).__name__}: {e}"
        _record_failure(Path(sweep_path), name, msg or type(e).__name__, traceback.format_exc())
        return {"name": name, "status": "failed", "error": msg}


def train_batch_one(sweep_path: str, names: list[str], configs: list[dict], threads: int = 1,
                    device: str = "auto") -> list[dict]:
    """Like train_one for several runs of one shape, trained as one stacked model (`--batch`):
    new runs as one batch, partial ones as another. Never raises; a run that cannot join its
    batch (a bad directory in its way, other stored settings) is tried alone, so it fails alone."""
    if _INTERRUPTED:
        return [_interrupted(n) for n in names]
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
            elif state.state == "invalid":
                results[n] = train_one(str(sweep_path), n, configs[names.index(n)], threads, device)
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
        if _INTERRUPTED:
            results |= {n: _interrupted(n) for n in group}
            continue
        try:
            with _task():
                trained = run(group)
            for n, r in zip(group, trained):
                if r.error is not None:  # this run diverged; the rest of its batch went on
                    results[n] = {"name": n, "status": "failed", "error": r.error}
                    _record_failure(sweep_path, n, r.error)
                else:
                    _clear_failure(sweep_path, n)
                    results[n] = {"name": n, "status": "trained", "error": None}
        except KeyboardInterrupt:
            results |= {n: _interrupted(n) for n in group}
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
    state: str  # done | partial | pending | failed | invalid (the directory holds another run, or a damaged one)
    epoch: int  # epochs trained (0 when pending)
    epochs: int  # epochs asked for
    error: str | None = None  # why it failed, or why it is invalid
    final: dict | None = None  # the last evaluation record (done / partial runs)


def _whole(path: Path, tensors: dict[str, tuple[int, ...]] | None = None) -> str | None:
    """Why the safetensors file ``path`` is not whole (None if it is): missing, not a regular file,
    a header that does not parse, a size other than the header says, or (``tensors``) a tensor
    missing or of another shape. Reads the header only, so a sweep's status stays cheap."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO must not hang a status
    except FileNotFoundError:
        return f"{path}: missing"
    except OSError as e:
        return f"{path}: cannot read ({e.strerror})"
    try:
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return f"{path}: not a regular file"
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n < (1 << 24):
                return f"{path}: not a valid safetensors file"
            header = json.loads(f.read(n))
            size = st.st_size
    except (OSError, ValueError, UnicodeDecodeError):
        return f"{path}: not a valid safetensors file"
    try:
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
        shapes = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (TypeError, KeyError, IndexError, ValueError, AttributeError):
        return f"{path}: not a valid safetensors file"
    if size != 8 + n + max(ends, default=0):
        return f"{path}: {size} bytes, its header says {8 + n + max(ends, default=0)} (truncated or damaged)"
    for name, shape in (tensors or {}).items():
        if shapes.get(name) != tuple(shape):
            return f"{path}: tensor {name!r} is missing or not of shape {list(shape)}"
    return None


def _not_whole(out: Path, config: Config) -> str | None:
    """Why a run that reached its final epoch is not a whole finished run (None if it is): its
    dataset, train state and final checkpoint whole, its final evaluation in metrics.jsonl."""
    shapes = family(config).param_shapes(config)
    why = (_whole(out / rundir.DATASET, {"noise": (config.p ** 2,)}) or _whole(out / rundir.TRAIN_STATE)
           or _whole(rundir.checkpoint_path(out, config.epochs), shapes))
    if why is not None:
        return why
    last = _last_eval(out)
    if last is None or last.get("epoch") != config.epochs:
        return f"{out / rundir.METRICS}: no evaluation at the final epoch {config.epochs}"
    return None


def _invalid(out: Path, want: Config) -> str | None:
    """Why ``out`` does not hold (a part of) this grid point's run, or None: a config.json that
    cannot be read, or other settings than the point's (compared as a resume compares them)."""
    if not (out / rundir.CONFIG).exists() and not (out / rundir.CONFIG).is_symlink():
        return None  # no run here yet (train decides about anything else in the way)
    try:
        stored, _ = rundir.read_config(out)
        _check_same_settings(out, stored, want)
    except rundir.RunDirError as e:
        return str(e)
    return None


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
    """The state of grid point ``want``'s run in ``out``. A run is done only when its stored config is
    the point's and its files are whole; a directory holding another run (other settings, a config
    that cannot be read, a finished run with files missing) is "invalid", with the reason."""
    out = Path(out)
    err_file = _error_path(out.parent.parent, out.name)
    why = _invalid(out, want)
    epoch = _state_epoch(out) if (out / rundir.TRAIN_STATE).exists() else None
    if why is not None:
        return RunState("invalid", epoch or 0, want.epochs, error=why)
    if epoch is not None and epoch >= want.epochs and rundir.is_run_dir(out):
        why = _not_whole(out, rundir.read_config(out)[0])
        if why is not None:
            return RunState("invalid", epoch, want.epochs, error=why)
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
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
        initargs=(os.getpid(),))


def stop_pool(executor: concurrent.futures.Executor, interrupted: bool) -> None:
    """Shut a local pool down. ``interrupted`` (Ctrl-C): cancel the queued tasks and pass the SIGINT
    on to every worker (a `kill -INT` reaches only this process), so the runs in progress stop
    where they are (resumable) and the tasks already handed to a worker return unstarted."""
    if interrupted:
        for proc in list(getattr(executor, "_processes", {}).values()):
            with contextlib.suppress(OSError, AttributeError):
                os.kill(proc.pid, signal.SIGINT)
    executor.shutdown(wait=True, cancel_futures=True)


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
    """Train every run of ``sweep`` that is not finished; return train_one's result per run
    ("not started" for a run whose task a dying worker took down with it).

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
    own, interrupted = executor is None, False
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
                if not sweep.run_dir(n).exists():  # a broken pool also fails the tasks it never started
                    results[n] = {"name": n, "status": "not started", "error": f"a worker died: {type(e).__name__}"}
                    continue
                results[n] = {"name": n, "status": "failed", "error": f"worker died: {type(e).__name__}: {e}"}
                _record_failure(sweep.path, n, results[n]["error"])

        def tick() -> None:
            if progress:
                progress(_model_epochs_done(sweep), total, results)

        wait_for(futures, done, died, tick, poll_s)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if own:
            stop_pool(executor, interrupted)
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
    if not chunks:  # nothing to submit (submitit warns about an empty batch)
        if progress:
            progress(total, total, results)
        return results
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
