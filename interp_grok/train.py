"""The training core: full-batch AdamW on the noisy modular-addition task, checkpointed.

``train`` owns the loop and its bookkeeping (what is evaluated when, what is saved when);
the file formats belong to ``rundir``. The loop never syncs with the host between
evaluations: per-epoch train losses accumulate in a device buffer and are written in blocks.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import re
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
from .model import SimpleMLP, cross_entropy, param_shapes

ProgressFn = Callable[[int, dict], None]


class TrainError(Exception):
    """Training cannot start or continue (existing run, bad device, inconsistent resume)."""


@dataclass
class TrainResult:
    run_dir: Path
    final: dict  # the last full-grid evaluation record
    wall_s: float
    start_epoch: int  # 0 for a fresh run, the resumed epoch otherwise


class TrainingDiverged(TrainError):
    """The loss or the weights became NaN or inf; nothing from that evaluation on was written."""


def resolve_device(device: str) -> torch.device:
    """auto, cpu, cuda or cuda:N, checked against what this machine has (float64 must work)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "mps":
        raise TrainError("device mps does not support float64, which the loss needs; use --device cpu")
    if device == "cpu":
        return torch.device("cpu")
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if m is None:
        raise TrainError(f"device must be auto, cpu, cuda or cuda:N (got {device!r})")
    if not torch.cuda.is_available():
        raise TrainError(f"device {device} requested but CUDA is not available; use --device cpu")
    if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
        raise TrainError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(device)


def memory_needed(config: Config) -> int:
    """Bytes a run of ``config`` needs at its peak, roughly (the largest of: drawing the noise,
    a training step, a full-grid evaluation), so that impossible sizes are refused up front."""
    p, n_train = config.p, math.floor(config.train_frac * config.p**2)
    n_params = sum(math.prod(s) for s in param_shapes(p, config.d_model, config.d_mlp).values())
    noise = 8 * p * p * config.noise_n
    step = n_train * (4 * config.d_mlp * 3 + 8 * p * 3) + 2 * p * config.d_mlp * 4 * 3
    grid = p * p * (4 * config.d_mlp + 8 * p * 3)
    return 4 * n_params * 6 + max(noise, step, grid)


def check_resources(config: Config, out: Path) -> None:
    """TrainError, before anything is written, if the run cannot fit this machine's memory or
    its checkpoints the free disk at ``out``."""
    need = memory_needed(config)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    if total and need > 0.8 * total:
        raise TrainError(f"this run needs about {need / 2**30:.1f} GiB of memory, more than 80 % of this "
                         f"machine's {total / 2**30:.1f} GiB (p={config.p}, d_model={config.d_model}, "
                         f"d_mlp={config.d_mlp}, noise_n={config.noise_n})")
    n_params = sum(math.prod(s) for s in param_shapes(config.p, config.d_model, config.d_mlp).values())
    disk = 4 * n_params * (len(config.checkpoint_epochs) + 3) + 8 * config.p**2 * 3
    where = Path(out).absolute()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    if disk > free:
        raise TrainError(f"this run's {len(config.checkpoint_epochs)} checkpoints need about "
                         f"{disk / 2**30:.2f} GiB, more than the {free / 2**30:.2f} GiB free at {where}")


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


def trained_threads(prov: dict) -> int | None:
    """The torch thread count a run was last trained with, from its provenance (None if unknown)."""
    last = (prov.get("resumes") or [prov])[-1]
    n = last.get("torch_threads") if isinstance(last, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else None


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
    """Whether ``out`` holds a run to replace; TrainError if it may not be written at all.

    Missing, empty, or holding only lock files (a creation killed before its config): write.
    A run: refused unless ``overwrite``, and even then only if it holds nothing but a run's own
    files. Anything else (another tool's directory, a config.json that is not ours): refused,
    whatever the flags.
    """
    out = Path(out)
    if not out.exists():
        return False
    if not out.is_dir():
        raise TrainError(f"{out} exists and is not a directory")
    if rundir.only_lock_files(out):
        return False
    if not rundir.is_run_dir(out):
        raise TrainError(f"{out} exists and is not an interp-grok run directory; refusing to write into it "
                         "(choose another --out)")
    if not overwrite:
        raise TrainError(f"{out} already exists; pass --resume to continue it or --overwrite to replace it")
    foreign = rundir.foreign_entries(out)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise TrainError(f"{out} holds files interp-grok does not write ({shown}); refusing to replace it")
    return True


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
    non-empty ``out`` is refused unless ``overwrite`` and it is a run holding only a run's own
    files (which are then deleted file by file). The run's lock is held throughout; config.json
    is written first, so a kill at any later moment leaves a run that ``resume`` finishes.
    """
    t_start = time.perf_counter()
    config.finalize()
    dev = _setup(device, threads)
    out = Path(os.path.abspath(out))  # absolute: clearing may remove the working directory itself
    check_resources(config, out)
    check_out_dir(out, overwrite)  # refuse before creating anything (not even a lock file)
    out.mkdir(parents=True, exist_ok=True)
    with rundir.locked(out) as lock:
        replace = check_out_dir(out, overwrite)  # again, under the lock: another process may have won
        lock.announce(rundir.command_line())
        if replace:
            with rundir.locked(out, rundir.ANALYSIS_LOCK):
                rundir.clear_run(out)
        rundir.write_config(out, config, provenance(dev, torch.get_num_threads()))
        dataset = make_dataset(config)
        rundir.write_dataset(out, dataset.to_tensors(), config.p)
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

    Everything on disk (config, state, dataset, checkpoints, metrics) is checked against each
    other before anything is written. A run whose creation was killed before its first state
    starts from epoch 0. With one thread the result is bit-identical to an uninterrupted run
    (the state holds the float32 weights and the AdamW moments and step exactly); see
    docs/run-format.md for what holds at more threads.
    """
    t_start = time.perf_counter()
    out = rundir.require_run_dir(Path(os.path.abspath(out)))
    dev = _setup(device, threads)
    with rundir.locked(out) as lock:
        stored, prov = rundir.read_config(out)
        shapes = param_shapes(stored.p, stored.d_model, stored.d_mlp)
        if (out / rundir.TRAIN_STATE).exists() or (out / rundir.TRAIN_STATE).is_symlink():
            start, state = rundir.read_train_state(out, shapes)
        else:
            start, state = 0, None  # a creation killed before its first state: start over
        records = rundir.read_metrics(out)
        kept = check_state(out, stored, start, state, records)
        if epochs is not None and epochs < start:
            raise TrainError(f"--epochs {epochs} is before the saved state at epoch {start}")
        config = _extend(stored, epochs, start) if epochs is not None else stored
        has_dataset = (out / rundir.DATASET).exists() or (out / rundir.DATASET).is_symlink()
        if state is None and not has_dataset:  # killed before the dataset was written
            dataset = make_dataset(config)
        else:
            dataset = rundir.load_dataset(out, config.p)
        if start == config.epochs:  # already finished: touch nothing, report the final evaluation
            return _run(config, out, dataset, dev, start, state, progress, t_start, write=False)
        check_resources(config, out)
        if state is not None and has_dataset:
            written_for = rundir.train_state_dataset(out)
            if written_for is not None and written_for != rundir.file_sha256(out / rundir.DATASET):
                raise rundir.RunDirError(f"{out / rundir.TRAIN_STATE}: was written for another dataset than "
                                         f"{out / rundir.DATASET}; refusing to resume")
        # ---- everything checked; from here on the run is rewritten
        lock.announce(rundir.command_line())
        if not has_dataset:
            rundir.write_dataset(out, dataset.to_tensors(), config.p)
        for e in rundir.checkpoint_epochs_on_disk(out):  # written after the state by the killed process
            if e > start:
                rundir.checkpoint_path(out, e).unlink()
        rundir.write_metrics(out, kept)  # metrics after the saved state are recomputed
        resumes = [*prov.get("resumes", []), {"from_epoch": start, "to_epoch": config.epochs,
                                              **provenance(dev, torch.get_num_threads())}]
        rundir.write_config(out, config, {**prov, "resumes": resumes})
        return _run(config, out, dataset, dev, start, state, progress, t_start)


def check_state(out: Path, config: Config, start: int, state: dict[str, torch.Tensor] | None,
                records: list[dict]) -> list[dict]:
    """Check the resume state against the config, the checkpoints and the metrics on disk;
    return the metrics records a resume from ``start`` keeps. RunDirError names what is wrong.

    The state must sit at a scheduled checkpoint, hold exactly the tensors the trainer writes
    (float32, the config's shapes, finite, AdamW's step equal to the epoch), equal the
    checkpoint of its epoch bit for bit, be followed by at most the next scheduled checkpoint
    (one written just before a kill), and be preceded by train losses for every epoch before it.
    """
    path = Path(out) / rundir.TRAIN_STATE
    schedule = config.checkpoint_epochs
    on_disk = rundir.checkpoint_epochs_on_disk(out)
    if state is None:
        if any(e > 0 for e in on_disk):
            raise rundir.RunDirError(f"{path}: missing, but checkpoints up to epoch {max(on_disk)} exist; "
                                     "this run cannot be resumed")
        return []
    if start not in schedule:
        raise rundir.RunDirError(f"{path}: epoch {start} is not a checkpoint epoch of this run "
                                 f"(0..{config.epochs}); refusing to resume from it")
    shapes = param_shapes(config.p, config.d_model, config.d_mlp)
    prefixes = ("param", "exp_avg", "exp_avg_sq") if start > 0 else ("param",)
    expected = {f"{pre}.{n}" for n in shapes for pre in prefixes} | (
        {f"step.{n}" for n in shapes} if start > 0 else set())
    if set(state) != expected:
        odd = sorted(expected - set(state)) or sorted(set(state) - expected)
        what = "missing" if expected - set(state) else "unexpected"
        raise rundir.RunDirError(f"{path}: {what} tensor(s) {', '.join(odd[:4])}")
    for name, shape in shapes.items():
        for pre in prefixes:
            t = state[f"{pre}.{name}"]
            if tuple(t.shape) != shape or t.dtype != torch.float32:
                raise rundir.RunDirError(f"{path}: {pre}.{name} is not float32 {list(shape)}")
            if not torch.isfinite(t).all() or (pre == "exp_avg_sq" and (t < 0).any()):
                raise rundir.RunDirError(f"{path}: {pre}.{name} holds NaN, inf or (second moment) negative values")
        if start > 0:
            step = state[f"step.{name}"]
            if step.shape != (1,) or step.dtype != torch.float32 or step.item() != start:
                raise rundir.RunDirError(f"{path}: step.{name} must be float32 [1] equal to the epoch {start}")
    if start not in on_disk:
        raise rundir.RunDirError(f"{path}: no checkpoint of its epoch {start} to check it against; "
                                 "this run cannot be resumed")
    _, params = rundir.read_checkpoint(rundir.checkpoint_path(out, start), shapes)
    for name in shapes:
        if not torch.equal(params[name], state[f"param.{name}"]):
            raise rundir.RunDirError(f"{path}: its weights differ from {rundir.checkpoint_path(out, start)}; "
                                     "refusing to resume from an inconsistent state")
    after = [e for e in on_disk if e > start]
    allowed = [e for e in schedule if e > start][:1]
    if any(e not in allowed for e in after):
        raise rundir.RunDirError(f"{path}: at epoch {start}, but checkpoints up to epoch {max(after)} exist; "
                                 "refusing to resume from an old state (it would rewrite them)")
    if not any(r["kind"] == "eval" and r["epoch"] == start for r in records):
        raise rundir.RunDirError(f"{Path(out) / rundir.METRICS}: no evaluation at the state's epoch {start}; "
                                 "the metrics do not belong to this state")
    return rundir.metrics_up_to(out, records, start)


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
    dataset_sha = rundir.file_sha256(out / rundir.DATASET)
    writer = rundir.MetricsWriter(out)
    # per-epoch losses stay on the device until an evaluation (or a full buffer) writes them
    losses = torch.empty(max(1, min(config.eval_every, 1 << 16, config.epochs - start)), dtype=torch.float64,
                         device=dev)
    flushed = start  # train losses for epochs < flushed are on disk
    last_state = start
    final: dict = {}

    def at_epoch(epoch: int) -> None:
        nonlocal flushed, final, last_state
        is_eval = epoch in ckpt_epochs or epoch % config.eval_every == 0 or epoch == config.epochs
        if not is_eval and epoch - flushed < len(losses):
            return
        block = losses[: epoch - flushed].tolist()  # the one host sync per block
        recs = [{"kind": "train", "epoch": flushed, "train_loss": block}] if block else []
        if is_eval:
            rec = grid_metrics(model.params(), config.act, noisy, clean, train_idx, test_idx)
            if not (math.isfinite(rec["train_loss"]) and math.isfinite(rec["sum_sq_weights"])):
                raise TrainingDiverged(
                    f"training diverged by epoch {epoch} (train loss {rec['train_loss']:.4g}, sum of squared "
                    f"weights {rec['sum_sq_weights']:.4g}); nothing after epoch {flushed} was written and the "
                    f"last saved state is at epoch {last_state}; try a smaller --lr")
            recs.append({"kind": "eval", "epoch": epoch, **rec})
            final = {"epoch": epoch, **rec}
        writer.write(recs)
        flushed = epoch
        if is_eval and progress is not None:
            progress(epoch, final)
        if epoch in ckpt_epochs:
            rundir.write_checkpoint(out, epoch, model.params())
            writer.sync()  # the metrics on disk never lag behind the state a resume starts from
            rundir.write_train_state(out, epoch, _state_tensors(model, opt), dataset_sha)
            last_state = epoch

    try:
        if state is None:
            at_epoch(0)
        model.train()
        for epoch in range(start, config.epochs):
            loss = cross_entropy(model(a_train, b_train), y_train, loss_dtype)
            losses[epoch - flushed] = loss.detach()
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

