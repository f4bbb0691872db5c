"""The run-directory format: file names, atomic writes, and checked reads.

This module is the only place that knows where things live in a run directory:

    RUN/config.json                      every setting + library versions + git commit
    RUN/dataset.safetensors              noise, train_idx, test_idx (int64)
    RUN/metrics.jsonl                    JSON lines: train-loss blocks and evals, appended
    RUN/checkpoints/epoch_000000.safetensors   W_E, W_in, b_in, W_out, W_U (float32)
    RUN/train_state.safetensors          weights + AdamW moments, for --resume
    RUN/analysis/...                     written by `interp-grok analyze`

Every file but metrics.jsonl is written to a temp file in the same directory, fsynced and
renamed into place, so a kill at any moment leaves only complete files. metrics.jsonl is
append-only; a kill can leave a partial last line, which readers skip and --resume removes.
Nothing here unpickles: safetensors and JSON only.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .config import Config, ConfigError
from .data import Dataset
from .model import COMPACT_NAMES, SimpleMLP, compact_params, param_shapes

CONFIG = "config.json"
DATASET = "dataset.safetensors"
METRICS = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
TRAIN_STATE = "train_state.safetensors"
ANALYSIS_DIR = "analysis"
FORMAT_VERSION = 1
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_CKPT_RE = re.compile(r"^epoch_(\d{6,})\.safetensors$")


class RunDirError(Exception):
    """A run directory or one of its files is missing, corrupt or inconsistent."""


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
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
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
    atomic_write_bytes(path, st_save(tensors, metadata=meta))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file fully (tensors, metadata); RunDirError names a corrupt file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RunDirError(f"{path}: cannot read ({e.strerror})") from None
    try:
        tensors = st_load(data)
        n = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
    except (SafetensorError, ValueError, OverflowError) as e:
        raise RunDirError(f"{path}: not a valid safetensors file ({e})") from None
    return tensors, meta


# ---------------------------------------------------------------- paths


def checkpoint_path(run: Path, epoch: int) -> Path:
    return Path(run) / CHECKPOINT_DIR / f"epoch_{epoch:06d}.safetensors"


def checkpoint_epochs_on_disk(run: Path) -> list[int]:
    d = Path(run) / CHECKPOINT_DIR
    if not d.is_dir():
        return []
    return sorted(int(m.group(1)) for f in d.iterdir() if (m := _CKPT_RE.match(f.name)))


def is_run_dir(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def require_run_dir(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"{path}: no such directory")
    if not path.is_dir():
        raise RunDirError(f"{path}: not a directory")
    if not is_run_dir(path):
        raise RunDirError(f"{path}: not a run directory (no {CONFIG}; create one with `interp-grok train`)")
    return path


# ---------------------------------------------------------------- config


def write_config(run: Path, config: Config, provenance: dict) -> None:
    atomic_write_json(Path(run) / CONFIG, {"format_version": FORMAT_VERSION, **config.to_dict(),
                                           "provenance": provenance})


def read_config(run: Path) -> tuple[Config, dict]:
    """(Config, provenance) of a run; RunDirError if config.json is unreadable or invalid."""
    path = Path(run) / CONFIG
    try:
        raw = json.loads(path.read_text())
    except OSError as e:
        raise RunDirError(f"{path}: cannot read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(raw, dict):
        raise RunDirError(f"{path}: expected a JSON object")
    raw.pop("format_version", None)
    provenance = raw.pop("provenance", {})
    try:
        return Config.from_dict(raw), provenance
    except (ConfigError, TypeError) as e:
        raise RunDirError(f"{path}: invalid config ({e})") from None


# ---------------------------------------------------------------- dataset


def write_dataset(run: Path, tensors: dict[str, torch.Tensor], p: int) -> None:
    save_tensors(Path(run) / DATASET, tensors, {"p": p, "format_version": FORMAT_VERSION})


def load_dataset(run: Path, p: int) -> Dataset:
    """The run's stored noise and split as a Dataset (labels derived from them)."""
    t = read_dataset(run, p)
    return Dataset(p=p, noise=t["noise"], train_idx=t["train_idx"], test_idx=t["test_idx"])


def read_dataset(run: Path, p: int) -> dict[str, torch.Tensor]:
    path = Path(run) / DATASET
    tensors, _ = load_tensors(path)
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
    return tensors


# ---------------------------------------------------------------- checkpoints


def write_checkpoint(run: Path, epoch: int, params: dict[str, torch.Tensor]) -> None:
    tensors = {k: v.detach().to(torch.float32) for k, v in params.items()}
    save_tensors(checkpoint_path(run, epoch), tensors, {"epoch": epoch, "format_version": FORMAT_VERSION})


def read_checkpoint(path: Path, shapes: dict[str, tuple[int, ...]]) -> tuple[int, dict[str, torch.Tensor]]:
    """(epoch, params) of one checkpoint file, checked against the expected shapes."""
    path = Path(path)
    tensors, meta = load_tensors(path)
    for name, shape in shapes.items():
        if name not in tensors:
            raise RunDirError(f"{path}: missing tensor {name!r}")
        if tuple(tensors[name].shape) != tuple(shape):
            raise RunDirError(
                f"{path}: {name} has shape {list(tensors[name].shape)}, config says {list(shape)}"
            )
        if not torch.isfinite(tensors[name]).all():
            raise RunDirError(f"{path}: {name} contains NaN or inf")
    try:
        epoch = int(meta["epoch"])
    except (KeyError, ValueError):
        raise RunDirError(f"{path}: no integer 'epoch' in the safetensors metadata") from None
    return epoch, {name: tensors[name] for name in shapes}


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


def read_metrics(run: Path) -> list[dict]:
    """All complete records of metrics.jsonl (a partial last line from a kill is skipped)."""
    path = Path(run) / METRICS
    if not path.exists():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # unterminated last line: a write cut short by a kill
                break
            raise RunDirError(f"{path}: line {i + 1} is not valid JSON") from None
    return records


def truncate_metrics(run: Path, epoch: int) -> None:
    """Atomically rewrite metrics.jsonl without anything measured after ``epoch``.

    Keeps eval records up to ``epoch`` and train losses of epochs before it (a train block
    that straddles ``epoch`` is cut), so a resume from the state at ``epoch`` appends exactly
    what an uninterrupted run would have written.
    """
    kept = []
    for r in read_metrics(run):
        if r["kind"] == "eval" and r["epoch"] <= epoch:
            kept.append(r)
        elif r["kind"] == "train" and r["epoch"] < epoch:
            kept.append({**r, "train_loss": r["train_loss"][: epoch - r["epoch"]]})
    epochs, _ = train_losses(kept)
    if epochs != list(range(epoch)):
        raise RunDirError(f"{Path(run) / METRICS}: train losses do not cover epochs 0..{epoch - 1} "
                          f"before the saved state; the run cannot be resumed exactly")
    atomic_write_text(Path(run) / METRICS, _jsonl(kept))


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


def write_train_state(run: Path, epoch: int, tensors: dict[str, torch.Tensor]) -> None:
    save_tensors(Path(run) / TRAIN_STATE, tensors, {"epoch": epoch, "format_version": FORMAT_VERSION})


def read_train_state(run: Path) -> tuple[int, dict[str, torch.Tensor]]:
    path = Path(run) / TRAIN_STATE
    if not path.exists():
        raise RunDirError(f"{path}: missing; this run cannot be resumed")
    tensors, meta = load_tensors(path)
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
        return param_shapes(self.config.p, self.config.d_model, self.config.d_mlp)

    @property
    def evals(self) -> list[dict]:
        """The full-grid evaluation records of metrics.jsonl, in epoch order."""
        return [r for r in self.metrics if r["kind"] == "eval"]

    def params(self, epoch: int) -> dict[str, torch.Tensor]:
        """The five weights at ``epoch`` (float32), checked against the config's shapes."""
        _, params = read_checkpoint(checkpoint_path(self.path, epoch), self.shapes)
        return params

    def model(self, epoch: int) -> SimpleMLP:
        return SimpleMLP(self.params(epoch), self.config.act)

    @property
    def compact_epochs(self) -> list[int]:
        """Epochs with a compact checkpoint on disk (RUN/compact/; see compact_params)."""
        return compact_epochs_on_disk(self.path)

    def compact(self, epoch: int) -> dict[str, torch.Tensor]:
        """The compact form (W_E, T_a, T_b, b_in, W_L; float32 in memory) at ``epoch``: from
        RUN/compact/ if stored there (float16 on disk), else computed from the full checkpoint."""
        if compact_path(self.path, epoch).exists():
            return read_compact(compact_path(self.path, epoch), self.config.p, self.config.d_model,
                                self.config.d_mlp)[1]
        return compact_params(self.params(epoch))

    def __repr__(self) -> str:  # short: the metrics alone are megabytes
        c = self.config
        evals = self.evals
        last = f", last eval epoch {evals[-1]['epoch']}" if evals else ""
        compact = self.compact_epochs
        return (f"Run({str(self.path)!r}: p={c.p} noise_n={c.noise_n} epochs={c.epochs} d_model={c.d_model} "
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

COMPACT_DIR = "compact"  # RUN/compact/epoch_NNNNNN.safetensors: W_E, T_a, T_b, b_in, W_L (float16)


def compact_path(run: Path, epoch: int) -> Path:
    return Path(run) / COMPACT_DIR / f"epoch_{epoch:06d}.safetensors"


def compact_epochs_on_disk(run: Path) -> list[int]:
    d = Path(run) / COMPACT_DIR
    if not d.is_dir():
        return []
    return sorted(int(m.group(1)) for f in d.iterdir() if (m := _CKPT_RE.match(f.name)))


def compact_shapes(p: int, d_model: int, d_mlp: int) -> dict[str, tuple[int, ...]]:
    return {"W_E": (p, d_model), "T_a": (p, d_mlp), "T_b": (p, d_mlp), "b_in": (d_mlp,), "W_L": (d_mlp, p)}


def write_compact(run: Path, epoch: int, params: dict[str, torch.Tensor], dtype: torch.dtype = torch.float16) -> None:
    """Store the compact form of one checkpoint's weights (computed in float32, stored as ``dtype``)."""
    c = compact_params({k: v.detach().to(torch.float32) for k, v in params.items()})
    save_tensors(compact_path(run, epoch), {k: c[k].to(dtype) for k in COMPACT_NAMES},
                 {"epoch": epoch, "format_version": FORMAT_VERSION, "form": "compact"})


def read_compact(path: Path, p: int, d_model: int, d_mlp: int) -> tuple[int, dict[str, torch.Tensor]]:
    """(epoch, compact params as float32) of one compact checkpoint, checked against the shapes."""
    epoch, tensors = read_checkpoint(path, compact_shapes(p, d_model, d_mlp))
    return epoch, {k: v.to(torch.float32) for k, v in tensors.items()}
