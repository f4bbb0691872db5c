"""The run-directory format: file names, atomic writes, and checked reads.

This module is the only place that knows where things live in a run directory:

    RUN/config.json                      every setting + library versions + git commit
    RUN/dataset.safetensors              noise, train_idx, test_idx (int64); corrupted (bool,
                                         uniform noise only); relabel_idx, relabel_old,
                                         relabel_new (int64, a relabelled run only)
    RUN/metrics.jsonl                    JSON lines: train-loss blocks and evals, appended
    RUN/checkpoints/epoch_000000.safetensors   the model family's weights (float32): mlp W_E,
                                         W_in, b_in, W_out, W_U; quadratic U, V, W
    RUN/train_state.safetensors          weights + AdamW moments, for --resume
    RUN/analysis/...                     written by `interp-grok analyze` (manifest.json last)
    RUN/.lock, RUN/.analysis.lock        advisory locks: one trainer, one analyzer at a time

Every file but metrics.jsonl is written to a temp file in the same directory, fsynced and
renamed into place, so a kill at any moment leaves only complete files. metrics.jsonl is
append-only; a kill can leave a partial last line, which readers skip and --resume removes.
Every read checks what it reads (regular file, size, format marker, dtypes, shapes, values)
and names the file in a RunDirError. Nothing here unpickles: safetensors and JSON only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import re
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .config import Config, ConfigError
from .data import Dataset
from .models import family
from .models.mlp import COMPACT_NAMES, compact_params

CONFIG = "config.json"
DATASET = "dataset.safetensors"
METRICS = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
TRAIN_STATE = "train_state.safetensors"
ANALYSIS_DIR = "analysis"
COMPACT_DIR = "compact"  # RUN/compact/epoch_NNNNNN.safetensors: W_E, T_a, T_b, b_in, W_L (float16)
LOCK = ".lock"  # held by the one process training into the run
ANALYSIS_LOCK = ".analysis.lock"  # held by the one process writing analysis/
# analysis/ (its contents are computed by interp_grok.analysis.pipeline; their names live here)
PROGRESS_CSV = "progress.csv"
EMBED_FOURIER = "embed_fourier.safetensors"
MEMORIZATION = "memorization.safetensors"
SUMMARY = "summary.json"
MANIFEST = "manifest.json"  # written last: ties the other four together (see analyze)
AUDIT_CSV = "audit.csv"  # the label audit at the final checkpoint (derived, like the figures: not in the manifest)
FIGURES_DIR = "figures"
ANALYSIS_FILES = (PROGRESS_CSV, EMBED_FOURIER, MEMORIZATION, SUMMARY, MANIFEST, AUDIT_CSV)

RUN_FORMAT = "interp-grok-run"  # the marker in config.json that makes a directory a run
# 2 added the marker, 3 the settings init_scale and noise_frac, 4 noise_kind and model, 5 the transformer's
# settings (split, n_heads, eq_logit, biases) and warmup_steps, 6 loss and optimizer
FORMAT_VERSION = 6
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6)
# settings added after version 1: (version that added them, the value every older run has; loss None: the
# model's own, which Config fills in: cross_entropy for a classifier, mse for quadratic)
ADDED_SETTINGS = {"init_scale": (3, 1.0), "noise_frac": (3, 1.0), "noise_kind": (4, "additive"), "model": (4, "mlp"),
                  "split": (5, "randperm"), "n_heads": (5, 4), "eq_logit": (5, True), "biases": (5, True),
                  "warmup_steps": (5, 0), "loss": (6, None), "optimizer": (6, "adamw")}
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_CKPT_RE = re.compile(r"^epoch_(\d{6,})\.safetensors$")
_TMP_RE = re.compile(r"^\.(.+)\.[A-Za-z0-9_]{8}\.tmp$")  # atomic_write_bytes' temp files: .<name>.<random>.tmp
# the figures `interp-grok analyze` draws (interp_grok.plotting.draw_all); nothing else there is ours
FIGURE_FILES = tuple(f"{n}.png" for n in ("losses", "spectrum_heatmap", "spectrum_final", "restricted_excluded",
                                          "weight_norms", "memorization", "audit"))
AUDIT_FIGURE = "audit.png"  # the audit's curves (plotting.plot_audit), drawn when audit.csv exists
_MAX_JSON_BYTES = 64 << 20  # config.json / summary.json / manifest.json are kilobytes


class RunDirError(Exception):
    """A run directory or one of its files is missing, corrupt or inconsistent."""


class RunLockedError(RunDirError):
    """Another live process holds the run's (or its analysis') lock."""


# ---------------------------------------------------------------- atomic writes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # a full disk: name the file it was writing
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def jsonable(obj):
    """obj with NaN and infinities replaced by None, so the JSON is strict (readable anywhere)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def atomic_write_json(path: Path, obj) -> None:
    text = json.dumps(jsonable(obj), indent=2, allow_nan=False)
    # lists of numbers on one line: config.json stays readable with 100 checkpoint epochs
    text = re.sub(r"\[\s*([-+.\deE,\s]+?)\s*\]",
                  lambda m: "[" + ", ".join(m.group(1).replace(",", " ").split()) + "]", text)
    atomic_write_text(path, text + "\n")


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """Atomically write a safetensors file; metadata values are stored as strings."""
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(path, _sorted_metadata(st_save(tensors, metadata=meta)))


def _sorted_metadata(data: bytes) -> bytes:
    """The same safetensors bytes with the metadata keys in sorted order.

    safetensors writes metadata from a Rust HashMap, whose order changes from process to process,
    so without this the same tensors and metadata give different bytes (and hashes) each run.
    """
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)  # safetensors pads the header to 8-byte alignment
    return len(text).to_bytes(8, "little") + text + data[8 + n :]


def read_regular(path: Path, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file; RunDirError (naming it) for a missing file, a directory,
    a FIFO or device (which would hang or never end), or a file larger than ``max_bytes``."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: opening a FIFO must not hang
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing") from None
    except OSError as e:
        raise RunDirError(f"{path}: cannot read ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RunDirError(f"{path}: not a regular file")
        if max_bytes is not None and st.st_size > max_bytes:
            raise RunDirError(f"{path}: {st.st_size} bytes, more than the {max_bytes} this file can hold")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError as e:
        raise RunDirError(f"{path}: cannot read ({e.strerror})") from None
    finally:
        os.close(fd)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    return sha256(read_regular(path))


def load_tensors(path: Path, max_bytes: int | None = None, *, digest: bool = False
                 ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file fully (tensors, metadata); RunDirError names a corrupt file.

    With ``digest``, the metadata dict gets ``"__sha256__"``: the hash of exactly the bytes read.
    """
    path = Path(path)
    data = read_regular(path, max_bytes)
    try:
        tensors = st_load(data)
        n = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
        if not isinstance(meta, dict):
            raise ValueError("metadata is not an object")
    except (SafetensorError, ValueError, OverflowError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path}: not a valid safetensors file ({e})") from None
    if digest:
        meta = {**meta, "__sha256__": sha256(data)}
    return tensors, meta


def read_json(path: Path) -> dict:
    """A JSON object from a regular file; RunDirError naming the file for anything else."""
    path = Path(path)
    data = read_regular(path, _MAX_JSON_BYTES)
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise RunDirError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise RunDirError(f"{path}: JSON nested too deeply") from None
    if not isinstance(raw, dict):
        raise RunDirError(f"{path}: expected a JSON object")
    return raw


# ---------------------------------------------------------------- paths


def checkpoint_path(run: Path, epoch: int, folder: str = CHECKPOINT_DIR) -> Path:
    return Path(run) / folder / f"epoch_{epoch:06d}.safetensors"


def checkpoint_epochs_on_disk(run: Path, folder: str = CHECKPOINT_DIR) -> list[int]:
    """Epochs with a file in RUN/checkpoints/ (or RUN/compact/ with ``folder=COMPACT_DIR``)."""
    d = Path(run) / folder
    if not d.is_dir():
        return []
    return sorted(int(m.group(1)) for f in d.iterdir() if (m := _CKPT_RE.match(f.name)))


def _settings_of(version: int) -> set[str]:
    """The config keys a run of format ``version`` has."""
    return {f.name for f in dataclasses.fields(Config)
            if f.name not in ADDED_SETTINGS or ADDED_SETTINGS[f.name][0] <= version}


def _config_format(raw: dict) -> int | None:
    """The format version of a parsed config.json if it is this project's run config, else None
    (the version may still be one this code cannot read: see read_config)."""
    version = raw.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        return None
    if raw.get("format") == RUN_FORMAT:
        return version
    # version 1 had no marker: recognized by its version and every setting it had being present
    if version == 1 and "format" not in raw and _settings_of(1) <= set(raw):
        return 1
    return None


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` holds a config.json that is this project's run config (marker + version).

    A directory with some other config.json (another tool's, or garbage) is not a run.
    """
    try:
        return _config_format(read_json(Path(path) / CONFIG)) is not None
    except RunDirError:
        return False


def require_run_dir(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"{path}: no such directory")
    if not path.is_dir():
        raise RunDirError(f"{path}: not a directory")
    if not (path / CONFIG).exists():
        raise RunDirError(f"{path}: not a run directory (no {CONFIG}; create one with `interp-grok train`)")
    read_config(path)  # a config.json that is not ours, or that we cannot read faithfully, is named
    return path


def own_subdir(run: Path, *parts: str, create: bool = True) -> Path:
    """run/parts..., created where missing (unless not ``create``); RunDirError if any part already
    there is a symlink or not a directory. Everything a run writes lies below its directory: a subdirectory that is a
    link (say analysis/ -> elsewhere) would carry the writes out of it, so it is refused, not followed."""
    path = Path(run)
    for part in parts:
        path = path / part
        if path.is_symlink():
            raise RunDirError(f"{path}: is a symbolic link (to {os.readlink(path)}); interp-grok writes only inside "
                              f"the run directory: remove the link, or copy the run")
        if path.exists() and not path.is_dir():
            raise RunDirError(f"{path}: not a directory (interp-grok writes a folder here); move it away")
        if create:
            path.mkdir(exist_ok=True)
    return path


_TOP_FILES = (CONFIG, DATASET, METRICS, TRAIN_STATE, LOCK, ANALYSIS_LOCK)
# what a run writes, as (is this file name ours?, {subdirectory: its own layout})
_Layout = tuple[Callable[[str], bool], dict]
_FIGURES: _Layout = (lambda n: n in FIGURE_FILES, {})
_LAYOUT: _Layout = (lambda n: n in _TOP_FILES, {
    CHECKPOINT_DIR: (lambda n: bool(_CKPT_RE.match(n)), {}),
    COMPACT_DIR: (lambda n: bool(_CKPT_RE.match(n)), {}),
    ANALYSIS_DIR: (lambda n: n in ANALYSIS_FILES, {FIGURES_DIR: _FIGURES}),
})


def _is_tmp_of(name: str, ok_file: Callable[[str], bool]) -> bool:
    """Whether ``name`` is an atomic write's temp file of a file this layout holds."""
    m = _TMP_RE.match(name)
    return bool(m) and ok_file(m.group(1))


def _walk(d: Path, layout: _Layout, rel: str = "") -> Iterator[tuple[str, os.DirEntry, bool]]:
    """(relative name, entry, ours?) for every entry under ``d``, children before their directory."""
    ok_file, subdirs = layout
    for e in sorted(os.scandir(d), key=lambda e: e.name):
        is_dir = e.is_dir(follow_symlinks=False)
        if is_dir and e.name in subdirs:
            yield from _walk(Path(e.path), subdirs[e.name], f"{rel}{e.name}/")
            yield f"{rel}{e.name}/", e, True
        else:
            ours = e.is_file(follow_symlinks=False) and (ok_file(e.name) or _is_tmp_of(e.name, ok_file))
            yield f"{rel}{e.name}" + ("/" if is_dir else ""), e, ours


def foreign_entries(path: Path) -> list[str]:
    """Entries under ``path`` (relative names) that `interp-grok train` / `analyze` never write.

    Empty means everything in the directory is a run's own, so replacing it loses nothing else.
    """
    return [name for name, _, ours in _walk(Path(path), _LAYOUT) if not ours]


def only_lock_files(path: Path) -> bool:
    """True for an empty directory, or one holding only lock and temp files: what a creation
    killed before its config.json was written leaves. Such a directory counts as empty."""
    return all(e.is_file(follow_symlinks=False)
               and (e.name in (LOCK, ANALYSIS_LOCK) or _is_tmp_of(e.name, lambda n: n in _TOP_FILES))
               for e in os.scandir(path))


def clear_run(path: Path) -> None:
    """Delete a run's own files entry by entry (never a blanket rmtree), keeping the two locks,
    which the caller holds, and config.json until last: a kill part-way leaves a run that
    --overwrite can clear again. Anything foreign is left in place, and its directory with it."""
    for name, e, ours in _walk(Path(path), _LAYOUT):
        if not ours or name in (LOCK, ANALYSIS_LOCK, CONFIG):
            continue
        if name.endswith("/"):
            with contextlib.suppress(OSError):  # not empty: it holds something foreign
                os.rmdir(e.path)
        else:
            os.unlink(e.path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(Path(path) / CONFIG)


# ---------------------------------------------------------------- locks


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return (f"pid {info['pid']} on {info['host']} ({info['command']}, since {info['since']})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


class Lock:
    """A held lock (see ``locked``); ``announce`` records who holds it, for a second writer's error."""

    def __init__(self, fd: int):
        self._fd = fd

    def announce(self, what: str) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": what,
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (json.dumps(info) + "\n").encode(), 0)


@contextlib.contextmanager
def locked(run: Path, name: str = LOCK) -> Iterator[Lock]:
    """Hold the run's advisory lock (flock) for the body; RunLockedError names the live holder.

    The kernel releases a flock when its holder exits, however it exits, so a killed process
    never leaves a run locked; the lock file itself stays. Holders that go on to write call
    ``announce`` (a check that ends in a refusal, or a no-op, leaves the lock file untouched).
    """
    path = Path(run) / name
    try:  # O_NOFOLLOW: a lock file that is a symlink is refused, never written through
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666 & ~_UMASK)
    except OSError as e:
        raise RunDirError(f"{path}: cannot open the lock file ({e.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunDirError(f"{path}: the lock file is not a regular file")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        kind = "analyzed" if name == ANALYSIS_LOCK else "written"
        raise RunLockedError(f"{run}: being {kind} by {_holder(path)}; wait for it to finish or stop it") from None
    try:
        yield Lock(fd)
    finally:
        os.close(fd)  # releases the flock


def command_line() -> str:
    return " ".join(["interp-grok", *sys.argv[1:]]) if sys.argv else "interp-grok"


# ---------------------------------------------------------------- config


def write_config(run: Path, config: Config, provenance: dict) -> None:
    atomic_write_json(Path(run) / CONFIG, {"format": RUN_FORMAT, "format_version": FORMAT_VERSION,
                                           **config.to_dict(), "provenance": provenance})


def read_config(run: Path) -> tuple[Config, dict]:
    """(Config, provenance) of a run; RunDirError unless config.json is this project's run config
    of a readable version with every setting present (nothing is defaulted: a missing key would
    silently change what the run is)."""
    path = Path(run) / CONFIG
    raw = read_json(path)
    version = _config_format(raw)
    if version is None and raw.get("format") == RUN_FORMAT:
        raise RunDirError(f"{path}: format_version {raw.get('format_version')!r} is not one this version "
                          f"of interp-grok reads ({', '.join(map(str, READABLE_VERSIONS))}); upgrade interp-grok")
    if version is None:
        raise RunDirError(f"{path}: not an interp-grok run config (no \"format\": \"{RUN_FORMAT}\")")
    if version not in READABLE_VERSIONS:
        raise RunDirError(f"{path}: format_version {version} is not one this version of interp-grok reads "
                          f"({', '.join(map(str, READABLE_VERSIONS))}); upgrade interp-grok")
    raw = {k: v for k, v in raw.items() if k not in ("format", "format_version")}
    provenance = raw.pop("provenance", {})
    if not isinstance(provenance, dict):
        raise RunDirError(f"{path}: provenance must be a JSON object")
    missing = [f.name for f in dataclasses.fields(Config) if f.name in _settings_of(version) and f.name not in raw]
    # a setting added after this run's version: the run has the one value that version could have
    raw |= {k: v for k, (since, v) in ADDED_SETTINGS.items() if since > version and k not in raw}
    if missing:
        raise RunDirError(f"{path}: missing config keys {', '.join(missing)}; refusing to guess them")
    try:
        return Config.from_dict(raw), provenance
    except (ConfigError, TypeError, ValueError) as e:
        raise RunDirError(f"{path}: invalid config ({e})") from None


# ---------------------------------------------------------------- lineage

PARENT = "relabelled_from"  # the provenance key of a run made from another's checkpoint (analysis.correction)


def _lineage_epoch(provenance: dict, key: str) -> int:
    parent = provenance.get(PARENT) or {}
    v = parent.get(key, 0) if isinstance(parent, dict) else None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise RunDirError(f"{CONFIG}: provenance.{PARENT}.{key} must be an integer >= 0 (got {v!r})")
    return v


def history_start(provenance: dict) -> int:
    """The epoch a run's own history (metrics, checkpoints) begins at: 0, or for a run continued
    from another run's checkpoint, that checkpoint's epoch."""
    return _lineage_epoch(provenance, "start_epoch")


def adam_step_origin(provenance: dict) -> int:
    """The epoch at which the run's AdamW step count was 0 (its moments zero): 0, or the start
    epoch of a run continued from another's checkpoint with a fresh optimizer. A train state at
    epoch e holds step e - adam_step_origin."""
    return _lineage_epoch(provenance, "adam_step_origin")


# ---------------------------------------------------------------- dataset


def write_dataset(run: Path, tensors: dict[str, torch.Tensor], p: int) -> None:
    save_tensors(Path(run) / DATASET, tensors, {"p": p, "format_version": FORMAT_VERSION})


def load_dataset(run: Path, p: int) -> Dataset:
    """The run's stored noise and split as a Dataset (labels derived from them)."""
    t = read_dataset(run, p)
    relabel = {k: t[k] for k in RELABEL_KEYS} if RELABEL_KEYS[0] in t else None
    return Dataset(p=p, noise=t["noise"], train_idx=t["train_idx"], test_idx=t["test_idx"],
                   corrupted=t.get("corrupted"), relabel=relabel)


RELABEL_KEYS = ("relabel_idx", "relabel_old", "relabel_new")  # a relabelled run's record (analysis.correction)


def read_dataset(run: Path, p: int) -> dict[str, torch.Tensor]:
    path = Path(run) / DATASET
    # noise, the split, corrupted (bool), and a relabelled run's three int64 [n_relabelled] tensors
    tensors, _ = load_tensors(path, max_bytes=6 * 8 * p * p + p * p + (1 << 16))
    for k in ("noise", "train_idx", "test_idx"):
        if k not in tensors:
            raise RunDirError(f"{path}: missing tensor {k!r}")
        if tensors[k].dtype != torch.int64 or tensors[k].ndim != 1:
            raise RunDirError(f"{path}: {k} must be a 1-D int64 tensor")
    if tensors["noise"].numel() != p * p:
        raise RunDirError(f"{path}: noise has {tensors['noise'].numel()} entries, expected p^2 = {p * p}")
    idx = torch.cat([tensors["train_idx"], tensors["test_idx"]]).sort().values
    if not torch.equal(idx, torch.arange(p * p)):
        raise RunDirError(f"{path}: train_idx and test_idx are not a partition of the {p * p} pairs")
    if tensors["train_idx"].numel() == 0 or tensors["test_idx"].numel() == 0:
        raise RunDirError(f"{path}: train_idx and test_idx must both be non-empty")
    if "corrupted" in tensors:  # uniform label noise: which pairs had their label redrawn
        c = tensors["corrupted"]
        if c.dtype != torch.bool or c.shape != (p * p,):
            raise RunDirError(f"{path}: corrupted must be a bool tensor of p^2 = {p * p} entries")
        free = ~c
        if RELABEL_KEYS[0] in tensors and tensors[RELABEL_KEYS[0]].dtype == torch.int64:
            free[tensors[RELABEL_KEYS[0]].clamp(0, p * p - 1)] = False  # a relabelled pair may have any shift
        if (tensors["noise"][free] != 0).any():
            raise RunDirError(f"{path}: a pair not marked corrupted has a nonzero label shift")
    _check_relabel(path, tensors, p)
    return tensors


def _check_relabel(path: Path, tensors: dict[str, torch.Tensor], p: int) -> None:
    """A relabelled run's record: all three tensors or none, int64 [m], distinct training pairs,
    labels in 0..p-1, the new labels the ones the stored noise gives."""
    present = [k for k in RELABEL_KEYS if k in tensors]
    if not present:
        return
    if len(present) != len(RELABEL_KEYS):
        raise RunDirError(f"{path}: has {', '.join(present)} but not all of {', '.join(RELABEL_KEYS)}")
    idx, old, new = (tensors[k] for k in RELABEL_KEYS)
    if any(t.dtype != torch.int64 or t.ndim != 1 or t.shape != idx.shape for t in (idx, old, new)):
        raise RunDirError(f"{path}: {', '.join(RELABEL_KEYS)} must be 1-D int64 tensors of one length")
    if idx.unique().numel() != idx.numel() or not torch.isin(idx, tensors["train_idx"]).all():
        raise RunDirError(f"{path}: relabel_idx must name distinct training pairs")
    if ((old < 0) | (old >= p) | (new < 0) | (new >= p)).any():
        raise RunDirError(f"{path}: relabel_old and relabel_new must be labels in 0..{p - 1}")
    given = (idx // p + idx % p + tensors["noise"][idx]).remainder(p)
    if not torch.equal(given, new):
        raise RunDirError(f"{path}: relabel_new differs from the labels its noise gives")


# ---------------------------------------------------------------- checkpoints


def write_checkpoint(run: Path, epoch: int, params: dict[str, torch.Tensor]) -> None:
    own_subdir(run, CHECKPOINT_DIR)
    tensors = {k: v.detach().to(torch.float32) for k, v in params.items()}
    save_tensors(checkpoint_path(run, epoch), tensors, {"epoch": epoch, "format_version": FORMAT_VERSION})


def _params_max_bytes(shapes: dict[str, tuple[int, ...]], copies: int = 1) -> int:
    return copies * 4 * sum(math.prod(s) for s in shapes.values()) + (1 << 16)  # + header


def read_checkpoint(path: Path, shapes: dict[str, tuple[int, ...]], *, digest: bool = False,
                    dtypes: tuple[torch.dtype, ...] = (torch.float32,)
                    ) -> tuple[int, dict[str, torch.Tensor]] | tuple[int, dict[str, torch.Tensor], str]:
    """(epoch, params) of one checkpoint file, checked against the expected names, shapes and
    dtype (float32), finite, and its metadata epoch against its file name; with ``digest``
    also the sha256 of the bytes read."""
    path = Path(path)
    tensors, meta = load_tensors(path, _params_max_bytes(shapes), digest=digest)
    for name, shape in shapes.items():
        if name not in tensors:
            raise RunDirError(f"{path}: missing tensor {name!r}")
        if tuple(tensors[name].shape) != tuple(shape):
            raise RunDirError(
                f"{path}: {name} has shape {list(tensors[name].shape)}, config says {list(shape)}"
            )
        if tensors[name].dtype not in dtypes:
            want = " or ".join(str(d).removeprefix("torch.") for d in dtypes)
            raise RunDirError(f"{path}: {name} is {str(tensors[name].dtype).removeprefix('torch.')}, not {want}")
        if not torch.isfinite(tensors[name]).all():
            raise RunDirError(f"{path}: {name} contains NaN or inf")
    try:
        epoch = int(meta["epoch"])
    except (KeyError, ValueError):
        raise RunDirError(f"{path}: no integer 'epoch' in the safetensors metadata") from None
    m = _CKPT_RE.match(path.name)
    if m and int(m.group(1)) != epoch:
        raise RunDirError(f"{path}: its metadata says epoch {epoch}, its name epoch {int(m.group(1))}")
    params = {name: tensors[name] for name in shapes}
    return (epoch, params, meta["__sha256__"]) if digest else (epoch, params)


# ---------------------------------------------------------------- metrics


def _jsonl(records: Iterable[dict]) -> str:
    return "".join(json.dumps(jsonable(r), allow_nan=False) + "\n" for r in records)


class MetricsWriter:
    """Append-only JSONL writer; each write is flushed so a reader sees complete lines."""

    def __init__(self, run: Path):
        self._f = open(Path(run) / METRICS, "a", encoding="utf-8")

    def write(self, records: Iterable[dict]) -> None:
        self._f.write(_jsonl(records))
        self._f.flush()

    def sync(self) -> None:
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def _number(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _check_record(r, path: Path, line: int) -> str | None:
    """Why a parsed metrics line is not a record this project writes (None if it is)."""
    if not isinstance(r, dict):
        return "not a JSON object"
    if r.get("kind") not in ("train", "eval"):
        return "kind must be \"train\" or \"eval\""
    e = r.get("epoch")
    if isinstance(e, bool) or not isinstance(e, int) or e < 0:
        return "epoch must be an integer >= 0"
    if r["kind"] == "train":
        losses = r.get("train_loss")
        if not isinstance(losses, list) or not all(_number(v) for v in losses):
            return "train_loss must be a list of numbers"
    elif not all(_number(v) for k, v in r.items() if k not in ("kind", "epoch")):
        return "eval values must be numbers"
    return None


def read_metrics(run: Path) -> list[dict]:
    """All complete records of metrics.jsonl (a partial last line from a kill is skipped);
    RunDirError naming the file and line for anything this project does not write."""
    path = Path(run) / METRICS
    if not path.exists() and not path.is_symlink():
        return []
    try:
        lines = read_regular(path).decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise RunDirError(f"{path}: not UTF-8 text") from None
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if i == len(lines) - 1:  # unterminated last line: a write cut short by a kill
                break
            raise RunDirError(f"{path}: line {i + 1} is not valid JSON") from None
        why = _check_record(r, path, i + 1)
        if why is not None:
            raise RunDirError(f"{path}: line {i + 1}: {why}")
        records.append(r)
    return records


def metrics_up_to(run: Path, records: list[dict], epoch: int, first: int = 0) -> list[dict]:
    """The records a resume from the state at ``epoch`` keeps: evaluations up to ``epoch`` and
    train losses of the epochs before it (a block that straddles ``epoch`` is cut), so that what
    the resume appends is exactly what an uninterrupted run would have written. RunDirError
    unless those losses cover epochs first..epoch-1, once each, in order (``first``: the epoch
    the run's own history begins at, history_start; 0 but for a run continued from another's
    checkpoint)."""
    kept = []
    for r in records:
        if r["kind"] == "eval" and r["epoch"] <= epoch:
            kept.append(r)
        elif r["kind"] == "train" and r["epoch"] < epoch:
            kept.append({**r, "train_loss": r["train_loss"][: epoch - r["epoch"]]})
    epochs, _ = train_losses(kept)
    evals = [r["epoch"] for r in kept if r["kind"] == "eval"]
    if evals != sorted(set(evals)):
        raise RunDirError(f"{Path(run) / METRICS}: evaluation records repeated or out of order before the saved "
                          f"state; the run cannot be resumed exactly")
    if epochs != list(range(first, epoch)):
        raise RunDirError(f"{Path(run) / METRICS}: train losses do not cover epochs {first}..{epoch - 1} "
                          f"once each before the saved state; the run cannot be resumed exactly")
    return kept


def write_metrics(run: Path, records: list[dict]) -> None:
    """Atomically replace metrics.jsonl with ``records``."""
    atomic_write_text(Path(run) / METRICS, _jsonl(records))


def truncate_metrics(run: Path, epoch: int) -> None:
    """Atomically rewrite metrics.jsonl without anything measured after ``epoch`` (see metrics_up_to)."""
    write_metrics(run, metrics_up_to(run, read_metrics(run), epoch))


def train_losses(records: list[dict]) -> tuple[list[int], list[float]]:
    """(epochs, losses) from the train blocks of metrics records; the loss at epoch e is that
    of the weights after e optimizer steps (the forward pass of step e + 1)."""
    epochs, losses = [], []
    for r in records:
        if r["kind"] == "train":
            epochs.extend(range(r["epoch"], r["epoch"] + len(r["train_loss"])))
            losses.extend(r["train_loss"])
    return epochs, losses


# ---------------------------------------------------------------- resume state


def write_train_state(run: Path, epoch: int, tensors: dict[str, torch.Tensor], dataset_sha256: str | None = None
                      ) -> None:
    """The resume state; ``dataset_sha256`` ties it to the run's dataset (checked on resume)."""
    meta = {"epoch": epoch, "format_version": FORMAT_VERSION}
    if dataset_sha256 is not None:
        meta["dataset_sha256"] = dataset_sha256
    save_tensors(Path(run) / TRAIN_STATE, tensors, meta)


def train_state_dataset(run: Path) -> str | None:
    """The dataset sha256 the train state was written with (None for states from before it was kept)."""
    return load_tensors(Path(run) / TRAIN_STATE)[1].get("dataset_sha256")


def read_train_state(run: Path, shapes: dict[str, tuple[int, ...]] | None = None
                     ) -> tuple[int, dict[str, torch.Tensor]]:
    """(epoch, tensors) of the resume state; what the tensors must be is checked by the trainer
    (``shapes``, when given, bounds the file's size before it is read)."""
    path = Path(run) / TRAIN_STATE
    if not path.exists():
        raise RunDirError(f"{path}: missing; this run cannot be resumed")
    limit = None if shapes is None else _params_max_bytes(shapes, copies=3) + 64 * len(shapes)
    tensors, meta = load_tensors(path, limit)
    try:
        return int(meta["epoch"]), tensors
    except (KeyError, ValueError):
        raise RunDirError(f"{path}: no integer 'epoch' in the safetensors metadata") from None


# ---------------------------------------------------------------- the loaded run


@dataclass
class Run:
    """A run directory, read: config, dataset and metrics eagerly; checkpoints on demand."""

    path: Path
    config: Config
    provenance: dict
    dataset: Dataset
    metrics: list[dict]
    checkpoint_epochs: list[int]  # the checkpoints on disk (a trimmed run keeps only some)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return family(self.config).param_shapes(self.config)

    @property
    def evals(self) -> list[dict]:
        """The full-grid evaluation records of metrics.jsonl, in epoch order."""
        return [r for r in self.metrics if r["kind"] == "eval"]

    def params(self, epoch: int) -> dict[str, torch.Tensor]:
        """The model family's weights at ``epoch`` (float32; the MLP's five), checked against the
        config's shapes."""
        _, params = read_checkpoint(checkpoint_path(self.path, epoch), self.shapes)
        return params

    def model(self, epoch: int) -> torch.nn.Module:
        """The weights at ``epoch`` as the family's nn.Module (the MLP's: SimpleMLP)."""
        return family(self.config).module(self.params(epoch), self.config)

    @property
    def compact_epochs(self) -> list[int]:
        """Epochs with a compact checkpoint on disk (RUN/compact/; see compact_params)."""
        return compact_epochs_on_disk(self.path)

    def compact(self, epoch: int) -> dict[str, torch.Tensor]:
        """The compact form (W_E, T_a, T_b, b_in, W_L; float32 in memory) at ``epoch``: from
        RUN/compact/ if stored there (float16 on disk), else computed from the full checkpoint.
        The compact form is the MLP family's (models.mlp.compact_params)."""
        if compact_path(self.path, epoch).exists():
            return read_compact(compact_path(self.path, epoch), self.config.p, self.config.d_model,
                                self.config.d_mlp)[1]
        return compact_params(self.params(epoch))

    def __repr__(self) -> str:  # short: the metrics alone are megabytes
        c = self.config
        evals = self.evals
        last = f", last eval epoch {evals[-1]['epoch']}" if evals else ""
        compact = self.compact_epochs
        model = f"model={c.model} " if c.model != "mlp" else ""
        noise = f"noise=uniform xi={c.noise_frac:g}" if c.noise_kind == "uniform" else f"noise_n={c.noise_n}"
        return (f"Run({str(self.path)!r}: {model}p={c.p} {noise} epochs={c.epochs} d_model={c.d_model} "
                f"d_mlp={c.d_mlp} act={c.act} seed={c.seed} data_seed={c.data_seed}; "
                f"{len(self.checkpoint_epochs)} checkpoints on disk"
                + (f", {len(compact)} compact" if compact else "")
                + f", {len(self.metrics)} metrics records{last})")


def load_run(path: str | Path) -> Run:
    """Read a run directory written by `interp-grok train` (safetensors and JSON only)."""
    path = require_run_dir(Path(path))
    config, provenance = read_config(path)
    return Run(path, config, provenance, load_dataset(path, config.p), read_metrics(path),
               checkpoint_epochs_on_disk(path))


# ---------------------------------------------------------------- compact checkpoints



def compact_path(run: Path, epoch: int) -> Path:
    return checkpoint_path(run, epoch, COMPACT_DIR)


def compact_epochs_on_disk(run: Path) -> list[int]:
    return checkpoint_epochs_on_disk(run, COMPACT_DIR)


def compact_shapes(p: int, d_model: int, d_mlp: int) -> dict[str, tuple[int, ...]]:
    return {"W_E": (p, d_model), "T_a": (p, d_mlp), "T_b": (p, d_mlp), "b_in": (d_mlp,), "W_L": (d_mlp, p)}


def write_compact(run: Path, epoch: int, params: dict[str, torch.Tensor], dtype: torch.dtype = torch.float16) -> None:
    """Store the compact form of one checkpoint's weights (computed in float32, stored as ``dtype``)."""
    c = compact_params({k: v.detach().to(torch.float32) for k, v in params.items()})
    save_tensors(compact_path(run, epoch), {k: c[k].to(dtype) for k in COMPACT_NAMES},
                 {"epoch": epoch, "format_version": FORMAT_VERSION, "form": "compact"})


def read_compact(path: Path, p: int, d_model: int, d_mlp: int) -> tuple[int, dict[str, torch.Tensor]]:
    """(epoch, compact params as float32) of one compact checkpoint, checked against the shapes."""
    epoch, tensors = read_checkpoint(path, compact_shapes(p, d_model, d_mlp), dtypes=(torch.float16, torch.float32))
    return epoch, {k: v.to(torch.float32) for k, v in tensors.items()}
