"""The training core: full-batch AdamW (or ⊥AdamW, interp_grok.optim) on the noisy modular-addition task, checkpointed.

The architecture is the config's model family (interp_grok.models): its parameters, its
initialization and its batched loss are all the loop needs of it.

``train`` owns the loop and its bookkeeping (what is evaluated when, what is saved when);
the file formats belong to ``rundir``. The loop never syncs with the host between
evaluations: per-epoch train losses accumulate in a device buffer and are written in blocks.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import optim, rundir
from .config import Config
from .data import Dataset, make_dataset
from .evaluation import evaluate
from .models import family

ProgressFn = Callable[[int, dict], None]


class TrainError(Exception):
    """Training cannot start or continue (existing run, bad device, inconsistent resume)."""


@dataclass
class TrainResult:
    run_dir: Path
    final: dict  # the last full-grid evaluation record
    wall_s: float
    start_epoch: int  # 0 for a fresh run, the resumed epoch otherwise
    error: str | None = None  # a run of a batch that diverged (the others went on)


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
    n_params = sum(math.prod(s) for s in family(config).param_shapes(config).values())
    noise = 8 * p * p * config.noise_n
    step = n_train * (4 * config.d_mlp * 3 + 8 * p * 3) + 2 * p * config.d_mlp * 4 * 3
    grid = p * p * (4 * config.d_mlp + 8 * p * 3)
    return 4 * n_params * 6 + max(noise, step, grid)


def disk_needed(config: Config) -> int:
    """Bytes a finished run of ``config`` takes on disk, roughly: its checkpoints, train state and dataset."""
    n_params = sum(math.prod(s) for s in family(config).param_shapes(config).values())
    return 4 * n_params * (len(config.checkpoint_epochs) + 3) + 8 * config.p**2 * 3


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
    disk = disk_needed(config)
    where = Path(out).absolute()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    if disk > free:
        raise TrainError(f"this run's {len(config.checkpoint_epochs)} checkpoints need about "
                         f"{disk / 2**30:.2f} GiB, more than the {free / 2**30:.2f} GiB free at {where}")


def _git_state() -> tuple[str | None, bool | None]:
    """(HEAD commit, whether the package's tracked files differ from it) of the checkout this
    module was imported from; (None, None) outside a git checkout."""
    here = Path(__file__).parent

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    commit = git("rev-parse", "HEAD") or None
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".") if commit else None
    return commit, (bool(status) if status is not None else None)


# Read once, when this module is imported: a long-lived process (a sweep's pool worker) runs the
# code it imported, so the commit of the checkout at a later run's start would misname that code.
GIT_COMMIT, GIT_DIRTY = _git_state()


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows of it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: torch.device, threads: int) -> dict:
    def version(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "interp_grok": version("interp-grok"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": version("safetensors"),
        "python": platform.python_version(),
        "git_commit": GIT_COMMIT,  # of the code this process imported (see GIT_COMMIT)
        "git_dirty": GIT_DIRTY,  # the imported package's tracked files differed from that commit
        "device": str(device),
        "torch_threads": threads,
        # the same code and settings round differently on another CPU (vector width, kernels), and a
        # run at lr 1e-2 can amplify that to a different trajectory (docs/findings.md §2)
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def trained_threads(prov: dict) -> int | None:
    """The torch thread count a run was last trained with, from its provenance (None if unknown)."""
    last = (prov.get("resumes") or [prov])[-1]
    n = last.get("torch_threads") if isinstance(last, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 1 else None


def warmup_lr(config: Config, epoch: int) -> float:
    """The learning rate of the step taken at ``epoch`` (0-based) under a linear warm-up:
    lr * min(epoch / warmup_steps, 1), so the first step has lr 0. This is Nanda et al.'s
    LambdaLR(lambda step: min(step / 10, 1)), stepped after every optimizer step
    (progress-measures-paper transformers.py:471, 507-508), computed the same way (base lr times
    the factor). A function of the epoch alone, so a resume needs no scheduler state."""
    return config.lr * min(epoch / config.warmup_steps, 1)


def _state_tensors(params: dict[str, torch.Tensor], opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for name, param in params.items():
        st = opt.state.get(param, {})
        out[f"param.{name}"] = param
        if st:
            out[f"exp_avg.{name}"] = st["exp_avg"]
            out[f"exp_avg_sq.{name}"] = st["exp_avg_sq"]
            out[f"step.{name}"] = st["step"].reshape(1)
    return out


def _load_state(params: dict[str, torch.Tensor], opt: torch.optim.Optimizer, tensors: dict, device) -> None:
    with torch.no_grad():
        for name, param in params.items():
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
        prep = _prepare_resume(out, epochs)
        if prep.finished:  # already finished: touch nothing, report the final evaluation
            return _run(prep.config, out, prep.dataset, dev, prep.start, prep.state, progress, t_start, write=False)
        lock.announce(rundir.command_line())
        prep.commit(provenance(dev, torch.get_num_threads()))
        return _run(prep.config, out, prep.dataset, dev, prep.start, prep.state, progress, t_start)


@dataclass
class _Resume:
    """A run checked and ready to resume: what it continues from, and the writes that start it."""

    out: Path
    config: Config
    dataset: Dataset
    start: int
    state: dict[str, torch.Tensor] | None
    kept: list[dict]  # the metrics records a resume from ``start`` keeps
    prov: dict
    write_dataset: bool

    @property
    def finished(self) -> bool:
        return self.start == self.config.epochs

    def commit(self, prov: dict) -> None:
        """The run's rewrite before training: dataset (if it was never written), the checkpoint
        written after the state, the metrics after it, and config.json with this resume."""
        out = self.out
        if self.write_dataset:
            rundir.write_dataset(out, self.dataset.to_tensors(), self.config.p)
        for e in rundir.checkpoint_epochs_on_disk(out):  # written after the state by the killed process
            if e > self.start:
                rundir.checkpoint_path(out, e).unlink()
        rundir.write_metrics(out, self.kept)  # metrics after the saved state are recomputed
        resumes = [*self.prov.get("resumes", []), {"from_epoch": self.start, "to_epoch": self.config.epochs, **prov}]
        rundir.write_config(out, self.config, {**self.prov, "resumes": resumes})


def _prepare_resume(out: Path, epochs: int | None) -> _Resume:
    """Check everything on disk against each other (the caller holds the run's lock); write nothing."""
    stored, prov = rundir.read_config(out)
    rundir.own_subdir(out, rundir.CHECKPOINT_DIR, create=False)  # a linked checkpoints/ would write elsewhere
    shapes = family(stored).param_shapes(stored)
    if (out / rundir.TRAIN_STATE).exists() or (out / rundir.TRAIN_STATE).is_symlink():
        start, state = rundir.read_train_state(out, shapes)
    else:
        start, state = 0, None  # a creation killed before its first state: start over
    if rundir.PARENT in prov:
        # a run made from another's checkpoint: starting over would silently drop what it was made
        # from (the parent's weights, or the relabelled dataset, which make_dataset cannot redraw)
        has_dataset = (out / rundir.DATASET).exists() or (out / rundir.DATASET).is_symlink()
        if (state is None and rundir.history_start(prov) > 0) or not has_dataset:
            raise rundir.RunDirError(f"{out}: made by `interp-grok relabel` but its creation did not finish (no "
                                     f"{rundir.TRAIN_STATE if has_dataset else rundir.DATASET}); rerun the relabel "
                                     "command with --overwrite")
    records = rundir.read_metrics(out)
    kept = check_state(out, stored, start, state, records, history_start=rundir.history_start(prov),
                       adam_step_origin=rundir.adam_step_origin(prov))
    if epochs is not None and epochs < start:
        raise TrainError(f"--epochs {epochs} is before the saved state at epoch {start}")
    config = _extend(stored, epochs, start) if epochs is not None else stored
    has_dataset = (out / rundir.DATASET).exists() or (out / rundir.DATASET).is_symlink()
    if state is None and not has_dataset:  # killed before the dataset was written
        dataset = make_dataset(config)
    else:
        dataset = rundir.load_dataset(out, config.p)
    prep = _Resume(out, config, dataset, start, state, kept, prov, not has_dataset)
    if prep.finished:
        return prep
    check_resources(config, out)
    if state is not None and has_dataset:
        written_for = rundir.train_state_dataset(out)
        if written_for is not None and written_for != rundir.file_sha256(out / rundir.DATASET):
            raise rundir.RunDirError(f"{out / rundir.TRAIN_STATE}: was written for another dataset than "
                                     f"{out / rundir.DATASET}; refusing to resume")
    return prep


# ------------------------------------------------------------------ batches

# what the runs of one batch must share: the shape of the stacked model and the schedule
# (the optimizer may differ: it is per param group, one group per run)
BATCH_KEYS = ("model", "p", "d_model", "d_mlp", "act", "n_heads", "eq_logit", "biases", "epochs", "eval_every",
              "loss", "loss_dtype", "checkpoint_epochs")


def check_batchable(configs: list[Config]) -> None:
    """TrainError naming the first setting on which the runs of a batch differ."""
    c0 = configs[0]
    for c in configs[1:]:
        for k in BATCH_KEYS:
            if getattr(c, k) != getattr(c0, k):
                raise TrainError(f"runs of one batch must share {', '.join(BATCH_KEYS)}; they differ on {k}")


def train_batch(configs: list[Config], outs: list[Path], *, device: str = "auto", overwrite: bool = False,
                threads: int | None = None, progress: list[ProgressFn | None] | None = None) -> list[TrainResult]:
    """Train K fresh runs of one shape as one stacked model, each into its own run directory.

    Each run has its own data, seeds, initialization and optimizer settings, and its run directory
    is an ordinary one (its provenance names the batch). At one thread, and when the runs' training
    sets have the same size, each run is bit-identical to the same run trained alone; otherwise
    (padding) it agrees to float tolerance. A run that diverges stops writing; the others go on
    (its TrainResult.error says so).
    """
    t_start = time.perf_counter()
    configs = [c.finalize() for c in configs]
    check_batchable(configs)
    dev = _setup(device, threads)
    outs = [Path(os.path.abspath(o)) for o in outs]
    if len(set(outs)) != len(outs):
        raise TrainError("two runs of the batch have the same directory")
    for c, o in zip(configs, outs):
        check_resources(c, o)
        check_out_dir(o, overwrite)
    batch = {"batch": {"size": len(outs), "runs": [str(o) for o in outs]}}
    with contextlib.ExitStack() as stack:
        datasets = []
        for c, o in zip(configs, outs):
            o.mkdir(parents=True, exist_ok=True)
            lock = stack.enter_context(rundir.locked(o))
            replace = check_out_dir(o, overwrite)
            lock.announce(rundir.command_line())
            if replace:
                with rundir.locked(o, rundir.ANALYSIS_LOCK):
                    rundir.clear_run(o)
            rundir.write_config(o, c, provenance(dev, torch.get_num_threads()) | batch)
            datasets.append(make_dataset(c))
            rundir.write_dataset(o, datasets[-1].to_tensors(), c.p)
        return _run_batch(configs, outs, datasets, dev, 0, [None] * len(outs), progress or [None] * len(outs),
                          t_start)


def resume_batch(outs: list[Path], *, epochs: int | None = None, device: str = "auto", threads: int | None = None,
                 progress: list[ProgressFn | None] | None = None) -> list[TrainResult]:
    """Continue K runs of one shape as a batch, each from its own last state, to ``epochs`` if given.

    Runs killed between the train-state writes of one checkpoint sit at different epochs: the
    ones behind are first brought to the next one's epoch as a smaller batch, then all go on
    together (bit-identical to an uninterrupted batch when the training sets have equal sizes).
    """
    t_start = time.perf_counter()
    dev = _setup(device, threads)
    outs = [rundir.require_run_dir(Path(os.path.abspath(o))) for o in outs]
    progress = progress or [None] * len(outs)
    with contextlib.ExitStack() as stack:
        locks = [stack.enter_context(rundir.locked(o)) for o in outs]
        preps = [_prepare_resume(o, epochs) for o in outs]
        check_batchable([p.config for p in preps])
        results: dict[int, TrainResult] = {}
        todo = [i for i, p in enumerate(preps) if not p.finished]
        for i, p in enumerate(preps):
            if p.finished:
                results[i] = _run(p.config, p.out, p.dataset, dev, p.start, p.state, progress[i], t_start, write=False)
        batch = {"batch": {"size": len(todo), "runs": [str(outs[i]) for i in todo]}}
        for i in todo:
            locks[i].announce(rundir.command_line())
            preps[i].commit(provenance(dev, torch.get_num_threads()) | batch)
        starts = sorted({preps[i].start for i in todo})
        for s0, s1 in zip(starts, [*starts[1:], None]):
            group = [i for i in todo if preps[i].start <= s0]
            for i, r in zip(group, _run_batch(
                    [preps[i].config for i in group], [outs[i] for i in group], [preps[i].dataset for i in group],
                    dev, s0, [preps[i].state for i in group], [progress[i] for i in group], t_start, stop=s1)):
                results[i] = r
            if s1 is not None:  # the group now stands at s1: continue from the states it wrote
                for i in group:
                    preps[i].start, preps[i].state = s1, rundir.read_train_state(outs[i])[1]
        return [results[i] for i in range(len(outs))]


def check_state(out: Path, config: Config, start: int, state: dict[str, torch.Tensor] | None,
                records: list[dict], *, history_start: int = 0, adam_step_origin: int = 0) -> list[dict]:
    """Check the resume state against the config, the checkpoints and the metrics on disk;
    return the metrics records a resume from ``start`` keeps. RunDirError names what is wrong.

    The state must sit at a scheduled checkpoint, hold exactly the tensors the trainer writes
    (float32, the config's shapes, finite, AdamW's step equal to the epoch), equal the
    checkpoint of its epoch bit for bit, be followed by at most the next scheduled checkpoint
    (one written just before a kill), and be preceded by train losses for every epoch before it.
    A run continued from another run's checkpoint (rundir.history_start, rundir.adam_step_origin)
    has losses from its start epoch on, and, with a fresh optimizer, step = epoch - origin (no
    moments at all at the origin itself, like a fresh run's epoch-0 state).
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
    shapes = family(config).param_shapes(config)
    steps = start - adam_step_origin
    if steps < 0:
        raise rundir.RunDirError(f"{path}: epoch {start} is before the run's optimizer origin {adam_step_origin}")
    prefixes = ("param", "exp_avg", "exp_avg_sq") if steps > 0 else ("param",)
    expected = {f"{pre}.{n}" for n in shapes for pre in prefixes} | (
        {f"step.{n}" for n in shapes} if steps > 0 else set())
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
        if steps > 0:
            step = state[f"step.{name}"]
            if step.shape != (1,) or step.dtype != torch.float32 or step.item() != steps:
                what = f"the epoch {start}" if adam_step_origin == 0 else (
                    f"{steps}, the epochs since its fresh optimizer at epoch {adam_step_origin}")
                raise rundir.RunDirError(f"{path}: step.{name} must be float32 [1] equal to {what}")
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
    return rundir.metrics_up_to(out, records, start, first=history_start)


def _setup(device: str, threads: int | None) -> torch.device:
    dev = resolve_device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    return dev


def _run(config: Config, out: Path, dataset: Dataset, dev: torch.device, start: int,
         state: dict[str, torch.Tensor] | None, progress: ProgressFn | None, t_start: float,
         write: bool = True) -> TrainResult:
    """One run: a batch of one (the same step, the same bits as before batches existed)."""
    result = _run_batch([config], [out], [dataset], dev, start, [state], [progress], t_start, write)[0]
    if result.error is not None:
        raise TrainingDiverged(result.error)
    return result


class _Book:
    """One run's bookkeeping in a (batched) training loop: its evaluations, metrics blocks,
    checkpoints and train states, written into its own run directory."""

    def __init__(self, config: Config, out: Path, dataset: Dataset, dev: torch.device, start: int,
                 progress: ProgressFn | None, write: bool):
        self.config, self.out, self.progress = config, out, progress
        self.noisy, self.clean = dataset.noisy_labels.to(dev), dataset.clean_labels.to(dev)
        self.train_idx, self.test_idx = dataset.train_idx.to(dev), dataset.test_idx.to(dev)
        self.ckpt_epochs = set(config.checkpoint_epochs)
        self.last_state = start
        self.final: dict = {}
        self.error: str | None = None
        self.writer = rundir.MetricsWriter(out) if write else None
        self.dataset_sha = rundir.file_sha256(out / rundir.DATASET) if write else None

    def evaluate(self, params: dict[str, torch.Tensor]) -> dict:
        return evaluate(params, self.config, self.noisy, self.clean, self.train_idx, self.test_idx)

    def at_epoch(self, epoch: int, flushed: int, block: list[float], is_eval: bool,
                 params: dict[str, torch.Tensor], opt: torch.optim.Optimizer) -> None:
        if self.error is not None:
            return  # diverged: nothing more is written for this run
        recs = [{"kind": "train", "epoch": flushed, "train_loss": block}] if block else []
        if is_eval:
            rec = self.evaluate(params)
            if not (math.isfinite(rec["train_loss"]) and math.isfinite(rec["sum_sq_weights"])):
                what = (f"train loss {rec['train_loss']:.4g}, sum of squared weights {rec['sum_sq_weights']:.4g}")
                if epoch == 0:  # the initial weights themselves: nothing was trained, no state was saved
                    self.error = (f"{self.out}: the initial weights already give a non-finite loss ({what}); nothing "
                                  "was trained and no train state was saved; try a smaller --init-scale")
                else:
                    saved = (f"the last saved state is at epoch {self.last_state}"
                             if (self.out / rundir.TRAIN_STATE).exists() else "no train state was saved")
                    self.error = (f"{self.out}: training diverged by epoch {epoch} ({what}); nothing after epoch "
                                  f"{flushed} was written and {saved}; try a smaller --lr or --init-scale")
                return
            recs.append({"kind": "eval", "epoch": epoch, **rec})
            self.final = {"epoch": epoch, **rec}
        self.writer.write(recs)
        if is_eval and self.progress is not None:
            self.progress(epoch, self.final)
        if epoch in self.ckpt_epochs:
            rundir.write_checkpoint(self.out, epoch, params)
            self.writer.sync()  # the metrics on disk never lag behind the state a resume starts from
            rundir.write_train_state(self.out, epoch, _state_tensors(params, opt), self.dataset_sha)
            self.last_state = epoch

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _padded(values: list[torch.Tensor], dev: torch.device) -> torch.Tensor:
    """[K, max n] int64, each row padded with 0 (a valid token; padded examples carry no loss)."""
    out = torch.zeros(len(values), max(len(v) for v in values), dtype=torch.int64)
    for k, v in enumerate(values):
        out[k, : len(v)] = v
    return out.to(dev)


@contextlib.contextmanager
def _denormals_flushed() -> Iterator[None]:
    """Flush float32/float64 denormals to zero on the CPU (FTZ/DAZ) while training, then restore
    torch's default. Why: once a classifier fits its training set, most wrong-class softmax
    probabilities, their float32 logit gradients and their squares in Adam's second moment fall
    below 1.2e-38, and x86 CPUs take a microcode assist on every denormal operand: a p = 113
    transformer step ran 5.8x slower at epoch 4 875 (docs/performance.md). Flushing changes no
    weight in practice: a denormal reaches a weight only through Adam's m / (sqrt(v) + eps), eps =
    1e-8, as an update below 1e-30, under the float32 ulp of any weight above ~1e-23
    (tests/test_train.py checks a run bit for bit with and without it)."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _run_batch(configs: list[Config], outs: list[Path], datasets: list[Dataset], dev: torch.device, start: int,
               states: list[dict[str, torch.Tensor] | None], progresses: list[ProgressFn | None], t_start: float,
               write: bool = True, stop: int | None = None) -> list[TrainResult]:
    """``_train_batch`` with denormals flushed to zero (``_denormals_flushed``)."""
    with _denormals_flushed():
        return _train_batch(configs, outs, datasets, dev, start, states, progresses, t_start, write, stop)


def _train_batch(configs: list[Config], outs: list[Path], datasets: list[Dataset], dev: torch.device, start: int,
                 states: list[dict[str, torch.Tensor] | None], progresses: list[ProgressFn | None], t_start: float,
                 write: bool = True, stop: int | None = None) -> list[TrainResult]:
    """Train K runs of the same shape, schedule and length as one stacked model, from ``start``.

    Model k has its own data, initialization, optimizer hyperparameters and run directory; the
    step is one call of the family's batched loss (forward and loss over the leading model axis; the
    MLP's is mlp.batched_logits + losses.batched_loss) and its backward, then AdamW per model (optim.step:
    ⊥Grad first for the runs whose optimizer is orthoadamw).
    """
    c0 = configs[0]
    fam = family(c0)
    leaves = [{k: nn.Parameter(v.to(dev)) for k, v in fam.init_params(c, torch.Generator().manual_seed(c.seed)).items()}
              for c in configs]
    opt = optim.make_optimizer(leaves, configs)
    for lv, state in zip(leaves, states):
        if state is not None:
            _load_state(lv, opt, state, dev)
    books = [_Book(c, o, d, dev, start, pr, write) for c, o, d, pr in zip(configs, outs, datasets, progresses)]
    if not write:
        results = []
        for book, lv in zip(books, leaves):
            final = {"epoch": start, **book.evaluate(lv)}
            results.append(TrainResult(book.out, final, time.perf_counter() - t_start, start))
        return results

    K = len(configs)
    a = _padded([b.train_idx.cpu() // c0.p for b in books], dev)
    b_ = _padded([b.train_idx.cpu() % c0.p for b in books], dev)
    y = _padded([b.noisy.cpu()[b.train_idx.cpu()] for b in books], dev)
    n_k = torch.tensor([len(b.train_idx) for b in books], device=dev)
    # per-epoch losses stay on the device until an evaluation (or a full buffer) writes them
    end = c0.epochs if stop is None else stop
    losses = torch.empty(K, max(1, min(c0.eval_every, 1 << 16, end - start)), dtype=torch.float64, device=dev)
    ckpt_epochs = set(c0.checkpoint_epochs)
    flushed = start  # train losses for epochs < flushed are on disk
    warm = [(g, c) for g, c in zip(opt.param_groups, configs) if c.warmup_steps > 0]  # none: lr never touched

    def stacked() -> dict[str, torch.Tensor]:
        if K == 1:
            return {k: v.unsqueeze(0) for k, v in leaves[0].items()}
        return {k: torch.stack([lv[k] for lv in leaves]) for k in fam.param_names}

    def at_epoch(epoch: int) -> None:
        nonlocal flushed
        is_eval = epoch in ckpt_epochs or epoch % c0.eval_every == 0 or epoch == c0.epochs
        if not is_eval and epoch - flushed < losses.shape[1]:
            return
        blocks = losses[:, : epoch - flushed].tolist()  # the one host sync per block
        for book, lv, block in zip(books, leaves, blocks):
            book.at_epoch(epoch, flushed, block, is_eval, lv, opt)
        flushed = epoch

    try:
        for book, lv, s in zip(books, leaves, states):
            if s is None:  # a fresh run (or one killed before its first state): its epoch-0 records
                book.at_epoch(0, 0, [], True, lv, opt)
        for epoch in range(start, c0.epochs if stop is None else stop):
            if all(book.error is not None for book in books):
                break
            loss_k = fam.batched_loss(stacked(), a, b_, y, n_k, c0)
            losses[:, epoch - flushed] = loss_k.detach()
            loss_k.sum().backward()
            for group, c in warm:  # linear warm-up, as Nanda et al.'s LambdaLR (see warmup_lr)
                group["lr"] = warmup_lr(c, epoch)
            optim.step(opt)
            opt.zero_grad(set_to_none=True)
            at_epoch(epoch + 1)
    finally:
        for book in books:
            book.close()
    wall = time.perf_counter() - t_start
    return [TrainResult(book.out, book.final, wall, start, book.error) for book in books]


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

