"""The training core: full-batch AdamW on the noisy modular-addition task, checkpointed.

``train`` owns the loop and its bookkeeping (what is evaluated when, what is saved when);
the file formats belong to ``rundir``. The loop never syncs with the host between
evaluations: per-epoch train losses accumulate in a device buffer and are written in blocks.
"""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import rundir
from .config import Config
from .data import Dataset, make_dataset
from .evaluation import grid_metrics
from .model import PARAM_NAMES, SimpleMLP, cross_entropy, param_shapes

ProgressFn = Callable[[int, dict], None]


class TrainError(Exception):
    """Training cannot start or continue (existing run, bad device, inconsistent resume)."""


@dataclass
class TrainResult:
    run_dir: Path
    final: dict  # the last full-grid evaluation record
    wall_s: float
    start_epoch: int  # 0 for a fresh run, the resumed epoch otherwise


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "mps":
        raise TrainError("device mps does not support float64, which the loss needs; use --device cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError(f"device {device} requested but CUDA is not available; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise TrainError(f"device must be auto, cpu or cuda[:N] (got {device!r})") from None


def provenance(device: torch.device, threads: int) -> dict:
    def version(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
            text=True, timeout=5,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "interp_grok": version("interp-grok"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": version("safetensors"),
        "python": platform.python_version(),
        "git_commit": commit,
        "device": str(device),
        "torch_threads": threads,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _make_optimizer(model: SimpleMLP, config: Config) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.betas, eps=config.adam_eps,
        weight_decay=config.weight_decay, foreach=False, fused=True,  # one kernel for all params
    )


def _state_tensors(model: SimpleMLP, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for name, param in model.params().items():
        st = opt.state.get(param, {})
        out[f"param.{name}"] = param
        if st:
            out[f"exp_avg.{name}"] = st["exp_avg"]
            out[f"exp_avg_sq.{name}"] = st["exp_avg_sq"]
            out[f"step.{name}"] = st["step"].reshape(1)
    return out


def _load_state(model: SimpleMLP, opt: torch.optim.Optimizer, tensors: dict, device) -> None:
    with torch.no_grad():
        for name, param in model.params().items():
            param.copy_(tensors[f"param.{name}"].to(device))
            if f"exp_avg.{name}" in tensors:
                opt.state[param] = {
                    "step": tensors[f"step.{name}"].reshape(()).to(device),
                    "exp_avg": tensors[f"exp_avg.{name}"].to(device),
                    "exp_avg_sq": tensors[f"exp_avg_sq.{name}"].to(device),
                }


def check_out_dir(out: Path, overwrite: bool) -> bool:
    """Whether ``out`` holds a run to replace; TrainError if it may not be written at all."""
    out = Path(out)
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return False
    if not overwrite:
        raise TrainError(f"{out} already exists; pass --resume to continue it or --overwrite to replace it")
    if not rundir.is_run_dir(out):
        raise TrainError(f"{out} exists and is not a run directory; refusing to delete it")
    return True


def prepare_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse an existing non-empty directory unless overwrite; never delete a non-run."""
    if check_out_dir(out, overwrite):
        shutil.rmtree(out)


def train(
    config: Config,
    out: Path,
    *,
    device: str = "auto",
    overwrite: bool = False,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train a fresh run into ``out``; return the final evaluation.

    ``progress(epoch, record)`` is called after every full-grid evaluation. An existing,
    non-empty ``out`` is refused unless ``overwrite`` (and a non-run is never deleted).
    """
    t_start = time.perf_counter()
    config.finalize()
    dev = _setup(device, threads)
    out = Path(out)
    prepare_out_dir(out, overwrite)
    dataset = make_dataset(config)
    out.mkdir(parents=True, exist_ok=True)
    rundir.write_dataset(out, dataset.to_tensors(), config.p)
    rundir.write_config(out, config, provenance(dev, torch.get_num_threads()))
    (out / rundir.METRICS).unlink(missing_ok=True)
    return _run(config, out, dataset, dev, 0, None, progress, t_start)


def resume(
    out: Path,
    *,
    epochs: int | None = None,
    device: str = "auto",
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Continue the run in ``out`` from its last saved state, to ``epochs`` if given.

    On the same device and thread count the result is bit-identical to an uninterrupted
    run: the state holds the float32 weights and the AdamW moments and step exactly.
    """
    t_start = time.perf_counter()
    out = Path(out)
    if not rundir.is_run_dir(out):
        raise TrainError(f"{out}: not a run directory, nothing to resume")
    dev = _setup(device, threads)
    stored, prov = rundir.read_config(out)
    start, state = rundir.read_train_state(out)
    _check_state(out, state, stored)
    if epochs is not None and epochs < start:
        raise TrainError(f"--epochs {epochs} is before the saved state at epoch {start}")
    config = _extend(stored, epochs, start) if epochs is not None else stored
    dataset = rundir.load_dataset(out, config.p)
    if start == config.epochs:  # already finished: touch nothing, report the final evaluation
        return _run(config, out, dataset, dev, start, state, progress, t_start, write=False)
    # metrics after the saved state are recomputed; drop them (and any partial line)
    rundir.truncate_metrics(out, start)
    resumes = [*prov.get("resumes", []), {"from_epoch": start, "to_epoch": config.epochs,
                                          **provenance(dev, torch.get_num_threads())}]
    rundir.write_config(out, config, {**prov, "resumes": resumes})
    return _run(config, out, dataset, dev, start, state, progress, t_start)


def _check_state(out: Path, state: dict[str, torch.Tensor], config: Config) -> None:
    """RunDirError unless the train state holds every tensor resume needs, with the right shapes
    (checked before anything in the run is rewritten)."""
    shapes = param_shapes(config.p, config.d_model, config.d_mlp)
    path = Path(out) / rundir.TRAIN_STATE
    has_moments = f"exp_avg.{PARAM_NAMES[0]}" in state
    for name, shape in shapes.items():
        for prefix in ("param", "exp_avg", "exp_avg_sq") if has_moments else ("param",):
            t = state.get(f"{prefix}.{name}")
            if t is None or tuple(t.shape) != shape or t.dtype != torch.float32:
                raise rundir.RunDirError(f"{path}: {prefix}.{name} missing or not float32 {list(shape)}")
        if has_moments and f"step.{name}" not in state:
            raise rundir.RunDirError(f"{path}: step.{name} missing")


def _setup(device: str, threads: int | None) -> torch.device:
    dev = resolve_device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    return dev


def _run(config: Config, out: Path, dataset: Dataset, dev: torch.device, start: int,
         state: dict[str, torch.Tensor] | None, progress: ProgressFn | None, t_start: float,
         write: bool = True) -> TrainResult:
    model = SimpleMLP.from_config(config).to(dev)
    opt = _make_optimizer(model, config)
    if state is not None:
        _load_state(model, opt, state, dev)

    noisy = dataset.noisy_labels.to(dev)
    clean = dataset.clean_labels.to(dev)
    train_idx, test_idx = dataset.train_idx.to(dev), dataset.test_idx.to(dev)
    a_train, b_train = train_idx // config.p, train_idx % config.p
    y_train = noisy[train_idx]
    loss_dtype = getattr(torch, config.loss_dtype)

    if not write:
        final = grid_metrics(model.params(), config.act, noisy, clean, train_idx, test_idx)
        return TrainResult(out, {"epoch": start, **final}, time.perf_counter() - t_start, start)
    ckpt_epochs = set(config.checkpoint_epochs)
    eval_epochs = ckpt_epochs | set(range(0, config.epochs + 1, config.eval_every)) | {config.epochs}
    writer = rundir.MetricsWriter(out)
    losses = torch.empty(config.epochs - start, dtype=torch.float64, device=dev)
    flushed = start  # train losses for epochs < flushed are on disk
    final: dict = {}

    def at_epoch(epoch: int) -> None:
        nonlocal flushed, final
        if epoch in eval_epochs:
            rec = grid_metrics(model.params(), config.act, noisy, clean, train_idx, test_idx)
            block = losses[flushed - start : epoch - start].tolist()  # the one host sync per block
            writer.write(
                ([{"kind": "train", "epoch": flushed, "train_loss": block}] if block else [])
                + [{"kind": "eval", "epoch": epoch, **rec}]
            )
            flushed = epoch
            final = {"epoch": epoch, **rec}
            if progress is not None:
                progress(epoch, final)
        if epoch in ckpt_epochs:
            rundir.write_checkpoint(out, epoch, model.params())
            writer.sync()  # the metrics on disk never lag behind the state a resume starts from
            rundir.write_train_state(out, epoch, _state_tensors(model, opt))

    try:
        if state is None:
            at_epoch(0)
        model.train()
        for epoch in range(start, config.epochs):
            loss = cross_entropy(model(a_train, b_train), y_train, loss_dtype)
            losses[epoch - start] = loss.detach()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            at_epoch(epoch + 1)
    finally:
        writer.close()
    return TrainResult(out, final, time.perf_counter() - t_start, start)


def _extend(stored: Config, epochs: int, start: int) -> Config:
    """The stored config with its run set to ``epochs``, the checkpoints before ``start`` kept."""
    if epochs == stored.epochs:
        return stored
    new = Config(**{**stored.to_dict(), "epochs": epochs, "checkpoint_epochs": []}).finalize()
    # keep the checkpoints already due before the resume point; schedule the rest anew
    new.checkpoint_epochs = sorted(
        {e for e in stored.checkpoint_epochs if e <= start}
        | {e for e in new.checkpoint_epochs if e > start}
    )
    return new

