"""The `interp-grok` command line: the only module that prints.

Errors the user can fix (a setting out of range, an existing run, a directory that is not
a run, a corrupt file) are reported as one line on stderr with a non-zero exit: 2 for a
bad command line or setting, 1 for bad data on disk.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .config import Config, ConfigError, model_losses
from .rundir import RunDirError, read_config, read_json, require_run_dir

DEFAULTS = Config()


class _QuietIfClosed:
    """stderr for progress lines: if the reader went away (`2>&1 | head`), progress stops being
    printed and the work goes on (a closed pipe must never stop a training run)."""

    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except (BrokenPipeError, OSError, ValueError):
            return len(text)

    def flush(self) -> None:
        try:
            sys.stderr.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def isatty(self) -> bool:
        return sys.stderr.isatty()


_STDERR = _QuietIfClosed()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + line
        self.exit(2, f"{self.prog}: error: {message}\n")


def _fmt_duration(s: float) -> str:
    m, s = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _default_threads() -> int:
    # small matrices: more than 4 threads buys nothing; on 2 cores use both for one run
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(n, 4))


# ------------------------------------------------------------------ train

def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1", "yes", "on"):
        return True
    if t in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# (flag, Config field, type, help)
_TRAIN_FLAGS = [
    ("--p", "p", int, "modulus; tokens are 0..p-1 (>= 2)"),
    ("--noise", "noise_n", int, "n of the label noise X = Binomial(n, p_bin) - floor(n/2) (>= 0); an odd n "
     "(at p_bin 0.5) makes X = 0 and X = 1 equally likely, with a warning"),
    ("--p-bin", "p_bin", float, "success probability of the binomial noise, in [0, 1]"),
    ("--noise-frac", "noise_frac", float, "fraction of the pairs whose label gets the noise (the others keep "
     "X = 0), in [0, 1]; with --noise-kind uniform, the fraction of the training labels redrawn"),
    ("--noise-kind", "noise_kind", str, "additive (X = Binomial shift on a fraction --noise-frac of all pairs) or "
     "uniform (a fraction --noise-frac of the training labels replaced by a uniform draw from the p classes, "
     "test labels clean; --noise and --p-bin unused; Doshi et al. 2024)"),
    ("--train-frac", "train_frac", float, "fraction of the p^2 pairs used for training, in (0, 1)"),
    ("--data-seed", "data_seed", int, "seed of the noise and the train/test split"),
    ("--split", "split", str, "how the pairs are split: randperm (torch.randperm from --data-seed) or "
     "python_shuffle (Nanda et al.'s random.seed(--data-seed) + random.shuffle of the a-major pairs)"),
    ("--seed", "seed", int, "seed of the model initialization"),
    ("--model", "model", str, "model family: mlp (the seed's embedding + ReLU MLP, cross-entropy), quadratic "
     "(Doshi et al.'s one-hot MLP with x^2 activation and MSE loss; width --d-mlp, no --d-model or --act) or "
     "transformer (Nanda et al.'s one-layer transformer on (a, b, =), cross-entropy)"),
    ("--d-model", "d_model", int, "embedding width"),
    ("--d-mlp", "d_mlp", int, "hidden width (0: 4 * d_model)"),
    ("--act", "act", str, "hidden activation: relu or gelu"),
    ("--heads", "n_heads", int, "transformer: attention heads (d_head = d_model / heads)"),
    ("--eq-logit", "eq_logit", _bool, "transformer: true (an output logit for the '=' token too, p + 1 in all, "
     "Nanda et al.) or false (p logits, TransformerLens's demo)"),
    ("--biases", "biases", _bool, "transformer: true (the MLP's b_in, b_out trained, Nanda et al.) or false "
     "(frozen at zero, TransformerLens's demo)"),
    ("--init", "init", str, "initialization: normal_fan_in, or torch_default (PyTorch's nn.Embedding / "
     "nn.Linear defaults, as the seed notebook's SimpleMLP)"),
    ("--init-scale", "init_scale", float, "every initial weight multiplied by this (> 0)"),
    ("--lr", "lr", float, "AdamW learning rate"),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay"),
    ("--adam-eps", "adam_eps", float, "AdamW eps"),
    ("--warmup", "warmup_steps", int, "linear learning-rate warm-up over this many steps, lr 0 at the first "
     "(Nanda et al.: 10; 0: none)"),
    ("--loss", "loss", str, "training loss: cross_entropy (softmax) or stablemax (Prieto et al.'s StableMax "
     "cross-entropy); the quadratic model trains with mse, its default and only loss"),
    ("--loss-dtype", "loss_dtype", str, "dtype the training loss is computed in: float64 or float32"),
    ("--optimizer", "optimizer", str, "adamw, or orthoadamw (the same AdamW, with --lr, --betas, --adam-eps and "
     "--weight-decay, stepping on each weight tensor's gradient with its component along the weights removed, "
     "rescaled to the gradient's norm: Prieto et al.'s ⊥Grad)"),
    ("--epochs", "epochs", int, "full-batch optimizer steps (>= 1)"),
    ("--checkpoints", "n_checkpoints", int, "about how many log-spaced checkpoints to save (>= 2)"),
    ("--eval-every", "eval_every", int, "full-grid evaluation every this many epochs (>= 1)"),
]


def _help(text: str, name: str) -> str:
    """A train flag's help line, with its default unless the text states it (a default that depends on others)."""
    default = getattr(DEFAULTS, name)
    return text if default is None else f"{text} (default: {default})"


def _add_train_parser(sub) -> None:
    ap = sub.add_parser(
        "train", help="train a run and write its run directory",
        description="Train the noisy modular-addition MLP and write a run directory "
        "(config, dataset, metrics.jsonl, safetensors checkpoints at log-spaced epochs).",
    )
    for flag, name, typ, text in _TRAIN_FLAGS:
        ap.add_argument(flag, dest=name, type=typ, default=None,
                        help=_help(text, name))
    ap.add_argument("--betas", type=float, nargs=2, default=None, metavar=("B1", "B2"),
                    help=f"AdamW betas (default: {DEFAULTS.betas[0]} {DEFAULTS.betas[1]})")
    ap.add_argument("--out", default=None,
                    help="run directory (default: runs/n{noise} plus _{flag}{value} for every other setting "
                    "that differs from the defaults, e.g. runs/n4_p23)")
    ap.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu, cuda[:N] "
                    "(default: auto)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads; use 1 per process when running several at once "
                    f"(default: min(cores, 4) = {_default_threads()} here; with --resume, the count the run "
                    "was last trained with, which keeps it bit-identical)")
    ap.add_argument("--resume", action="store_true",
                    help="continue an existing run from its last saved state (--epochs may extend it); other "
                    "settings given must equal the stored ones; without --out, resumes the run the settings name")
    ap.add_argument("--overwrite", action="store_true", help="delete an existing run at --out first")
    ap.add_argument("positional", nargs="*", default=[], help=argparse.SUPPRESS)  # a wrong form, answered
    ap.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from .train import check_out_dir, check_resources, resolve_device, resume, train, trained_threads

    given = {name: getattr(args, name) for _, name, _, _ in _TRAIN_FLAGS if getattr(args, name) is not None}
    if args.betas is not None:
        given["betas"] = tuple(args.betas)
    if args.positional:
        raise ConfigError(f"train takes the run directory as --out DIR, not as an argument: interp-grok train --out "
                          f"{args.positional[0]} ...")
    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    if args.out is not None and not args.out.strip():
        raise ConfigError("--out must name a directory (got an empty string)")
    args.out = None if args.out is None else Path(args.out)
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"threads must be an integer >= 1 (got {args.threads})")
    threads = args.threads or _default_threads()
    resolve_device(args.device)  # fail on a bad device before anything is printed or written

    if args.resume:
        # without --out, the run these settings name (every setting, defaults included, must match)
        out = args.out if args.out is not None else default_run_dir(Config(**given).finalize())
        stored, prov = read_config(require_run_dir(out))  # names a non-run or a config it cannot read
        check_resume_settings(stored, given, strict=args.out is None)
        # CPU kernels split their work by thread count, so only the same count continues the
        # run bit for bit: default to the count it was last trained with
        last = trained_threads(prov)
        if args.threads is None and last is not None:
            threads = last
        elif last is not None and threads != last:
            print(f"interp-grok train: note: {out} was trained with {last} thread(s), resuming with {threads}: "
                  "the continuation will not be bit-identical to an uninterrupted run", file=sys.stderr)
        _warn_noise("train", stored)
        total = given.get("epochs", stored.epochs)
        progress = _Progress(total, f"resuming {out} to epoch {total}")
        result = resume(out, epochs=given.get("epochs"), device=args.device, threads=threads,
                        progress=progress)
    else:
        config = Config(**given).finalize()  # validate before anything touches the disk
        out = args.out if args.out is not None else default_run_dir(config)
        check_out_dir(out, args.overwrite)
        check_resources(config, out)
        _warn_noise("train", config)
        progress = _Progress(config.epochs, f"training {out}: p={config.p} noise_n={config.noise_n} "
                             f"epochs={config.epochs} checkpoints={len(config.checkpoint_epochs)} threads={threads}")
        result = train(config, out, device=args.device, overwrite=args.overwrite, threads=threads,
                       progress=progress)
    progress.close()
    f = result.final
    print(
        f"done {result.run_dir}: epoch {f['epoch']} | train loss {f['train_loss']:.4g} "
        f"acc {f['train_acc']:.3f} | test loss {f['test_loss']:.4g} | test acc noisy "
        f"{f['test_acc_noisy']:.3f} clean {f['test_acc_clean']:.3f} | "
        + (f"noisy train labels memorized {f['train_noisy_memorized_frac']:.3f} | "
           if f["train_noisy_memorized_frac"] == f["train_noisy_memorized_frac"] else "")  # NaN: no noisy labels
        + _fmt_duration(result.wall_s)
    )
    return 0


def _warn_noise(cmd: str, config: Config) -> None:
    """One warning line on stderr when X = 0 is not the unique mode of the label noise (e.g. odd n)."""
    from .noise import clean_label_warning

    msg = clean_label_warning(config.noise_n, config.p_bin, config.p, config.noise_frac, config.noise_kind)
    if msg is not None:
        print(f"interp-grok {cmd}: warning: {msg}", file=sys.stderr)


def _flag_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "-".join(_flag_value(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _flags() -> list[tuple[str, str]]:
    """(flag, Config field) of every setting `train` takes, --betas included."""
    return [(flag, name) for flag, name, _, _ in _TRAIN_FLAGS] + [("--betas", "betas")]


def default_run_dir(config: Config) -> Path:
    """runs/n{noise}, plus _{flag}{value} for every other setting that differs from the defaults:
    `train --p 23` writes runs/n4_p23, so it never lands in (or resumes) the default run's folder."""
    config.finalize()
    defaults = Config(noise_n=config.noise_n).finalize().to_dict() | {  # d_mlp and loss follow other settings
        "d_mlp": 4 * config.d_model, "loss": model_losses(config.model)[0]}
    defaults["betas"] = tuple(defaults["betas"])
    parts = [f"n{config.noise_n}"]
    for flag, name in _flags():
        if name != "noise_n" and getattr(config, name) != defaults[name]:
            parts.append(f"{flag[2:]}{_flag_value(getattr(config, name))}")
    return Path("runs") / "_".join(parts)


def check_resume_settings(stored: Config, given: dict, strict: bool) -> None:
    """ConfigError naming the first setting a --resume request differs on (setting, stored value,
    requested value); --epochs may differ (it extends or finishes the run). Settings equal to the
    stored ones are accepted, so the same command can be rerun. ``strict``: the run was named by
    the settings (no --out), so every setting counts, defaults included, not only the flags given."""
    base = Config().to_dict() if strict else stored.to_dict()
    if "model" in given and "loss" not in given:
        base["loss"] = None  # the loss follows the model: report a differing model, not the stored loss
    requested = Config(**{**base, **given, "checkpoint_epochs": []}).finalize()
    for flag, name in _flags():
        if name == "epochs" or (not strict and name not in given):
            continue
        a, b = getattr(stored, name), getattr(requested, name)
        if a != b:
            raise ConfigError(f"--resume: {flag} differs from the stored run (stored {_flag_value(a)}, "
                              f"requested {_flag_value(b)}); only --epochs may change. Train the new settings "
                              f"into another --out, or resume without {flag}")


class _Progress:
    """A tqdm bar on a terminal; on a pipe (CI logs) one line per ~10% of the run."""

    def __init__(self, total: int, header: str):
        self.total = total
        self.header = header  # printed with the first report, once the run directory is set up
        self.tty = sys.stderr.isatty()
        self.bar = None
        self.next_report = 0
        self.t0 = time.perf_counter()
        self.first_epoch = None

    def __call__(self, epoch: int, rec: dict) -> None:
        if self.first_epoch is None:
            self.first_epoch = epoch
            print(self.header, file=_STDERR, flush=True)
        msg = dict(train=f"{rec['train_loss']:.3g}", test=f"{rec['test_loss']:.3g}",
                   acc_clean=f"{rec['test_acc_clean']:.3f}")
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=self.total, initial=epoch, unit="epoch", dynamic_ncols=True, file=_STDERR,
                                desc="train")
            self.bar.n = min(epoch, self.bar.total)
            self.bar.set_postfix(msg, refresh=True)
        elif epoch >= self.next_report:
            done = epoch - self.first_epoch
            rate = done / max(time.perf_counter() - self.t0, 1e-9)
            print(f"epoch {epoch}/{self.total} train {msg['train']} test {msg['test']} "
                  f"test_acc_clean {msg['acc_clean']} ({rate:.0f} epochs/s)", file=_STDERR, flush=True)
            self.next_report = epoch + max(1, self.total // 10)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------ analyze


def _parse_freqs(text: str) -> list[int]:
    try:
        return [int(k) for k in text.replace(" ", "").split(",") if k]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _add_analyze_parser(sub) -> None:
    from .analysis.circuits import LOGIT_KEY_Z
    from .analysis.fourier import KEY_FREQ_THRESHOLD

    ap = sub.add_parser(
        "analyze", help="analyze every checkpoint of a run and draw the figures",
        description="Fourier spectrum of W_E, restricted/excluded loss, weight norms and memorization of noisy "
        "vs clean labels for every checkpoint of RUN_DIR; writes RUN_DIR/analysis/.",
    )
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)  # a wrong form, answered with the right one
    ap.add_argument("run_dir", nargs="?", default=None, metavar="RUN_DIR",
                    help="a run directory written by `interp-grok train`, or a sweep directory (SWEEP_DIR, with "
                    "sweep.json): then every run not analyzed yet is analyzed, and SWEEP_DIR/analysis/ gets "
                    "table.csv and phase diagrams")
    ap.add_argument("--key-freqs", type=_parse_freqs, default=None, metavar="K1,K2,...",
                    help="use these key frequencies instead of choosing them at the final checkpoint")
    ap.add_argument("--key-rule", choices=("logit_outlier", "W_E_norm"), default="logit_outlier",
                    help="how key frequencies are chosen at the final checkpoint: logit_outlier (default): the "
                    "logits' amplitude along cos/sin(w_k(a+b-c)) stands out, A_k > median + threshold * 1.4826 "
                    "MAD; W_E_norm (the rule before analysis version 2): N_k of W_E >= threshold * max N_k")
    ap.add_argument("--threshold", type=float, default=None,
                    help=f"the key rule's parameter (default: z = {LOGIT_KEY_Z} for logit_outlier, "
                    f"{KEY_FREQ_THRESHOLD} for W_E_norm)")
    ap.add_argument("--force", action="store_true", help="recompute every checkpoint, not only new ones")
    ap.add_argument("--drop-missing", action="store_true",
                    help="allow dropping stored rows of checkpoints no longer on disk (a trimmed run) when they "
                    "cannot be reused (--force or another key set)")
    ap.add_argument("--no-figures", action="store_true", help="skip the figures")
    ap.add_argument("--threads", type=int, default=None,
                    help=f"torch CPU threads (default: min(cores, 4) = {_default_threads()} here; 1 per run for a "
                    "sweep)")
    sw = ap.add_argument_group("sweeps (SWEEP_DIR)")
    sw.add_argument("--x", default=None, help="setting on the x axis of the figures (field or short name: n, wd, "
                    "tf, xi, lr, a, ...; default: the first swept setting)")
    sw.add_argument("--y", default=None, help="setting on the y axis (default: the second swept setting)")
    sw.add_argument("--facet", default=None, help="setting drawn as one panel per value (default: the third "
                    "swept setting other than seeds, if any; 'none' for no facets)")
    sw.add_argument("--workers", type=int, default=None, help="runs analyzed at once (default: the usable cores)")
    sw.add_argument("--executor", choices=("local", "slurm", "submitit-local"), default=None,
                    help="where the runs are analyzed, as for `interp-grok sweep` (default: local)")
    sw.add_argument("--slurm-partition", default=None)
    sw.add_argument("--slurm-time", type=int, default=None, metavar="MIN", help="slurm: time limit per run (min)")
    ap.set_defaults(func=_cmd_analyze)


def _cmd_analyze(args) -> int:
    import torch

    from .analysis import analyze_run_dir, x_value_columns
    from .analysis.correction import audit_path, read_audit
    from .plotting import draw_all, plot_audit, save_figure
    from .rundir import AUDIT_FIGURE

    if args.threshold is not None and args.key_rule == "W_E_norm" and not 0.0 < args.threshold <= 1.0:
        raise ConfigError(f"threshold must be in (0, 1] for --key-rule W_E_norm (got {args.threshold})")
    if args.threshold is not None and args.key_rule == "logit_outlier" and not args.threshold > 0.0:
        raise ConfigError(f"threshold (z) must be > 0 for --key-rule logit_outlier (got {args.threshold})")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"threads must be an integer >= 1 (got {args.threads})")
    if args.out is not None:
        raise ConfigError(f"analyze takes the run or sweep directory as its argument, and writes into its analysis/: "
                          f"interp-grok analyze {args.out}")
    if args.run_dir is None:
        raise ConfigError("name the run or sweep directory: interp-grok analyze RUN_DIR (or SWEEP_DIR)")
    if not args.run_dir.strip():
        raise ConfigError("RUN_DIR must name a directory (got an empty string)")
    args.run_dir = Path(args.run_dir)
    if (args.run_dir / "sweep.json").exists():
        return _analyze_sweep(args)
    if any(getattr(args, k) is not None for k in ("x", "y", "facet", "workers", "executor", "slurm_partition",
                                                    "slurm_time")):
        raise ConfigError(f"{args.run_dir} is a run, not a sweep: --x, --y, --facet, --workers, --executor and "
                          "--slurm-* apply to sweeps")
    torch.set_num_threads(args.threads or _default_threads())
    t0 = time.perf_counter()
    bar = _CheckpointBar()

    def draw(run, an, out):
        if args.no_figures:
            return []
        xs = x_value_columns(run.dataset.noise, run.config.noise_kind)
        figures = draw_all(an, an.summary["noise_floor"], xs, out / "figures", run_name=str(run.path))
        audit_png = out / "figures" / AUDIT_FIGURE
        if audit_path(run.path).exists():
            figures.append(save_figure(plot_audit(read_audit(run.path), str(run.path)), audit_png, close=True))
        else:
            audit_png.unlink(missing_ok=True)  # no noisy training labels now: no stale curves
        return figures

    try:
        run, an, out, figures = analyze_run_dir(
            args.run_dir, key_freqs=args.key_freqs, key_rule=args.key_rule, threshold=args.threshold, force=args.force,
            drop_missing=args.drop_missing, progress=bar, draw=draw,
            on_note=lambda msg: print(f"interp-grok analyze: note: {msg}", file=sys.stderr))
    finally:
        bar.close()
    _print_summary(run, an, out, figures, time.perf_counter() - t0)
    for msg in an.bad_checkpoints:
        print(f"interp-grok analyze: error: {msg}", file=sys.stderr)
    return 1 if an.bad_checkpoints else 0


def _analyze_sweep(args) -> int:
    from .plotting import draw_sweep
    from .sweep.runner import read_sweep
    from .sweep.table import (
        FIGURES,
        SWEEP_ANALYSIS_DIR,
        analyze_sweep,
        axis_name,
        default_axes,
        final,
        sweep_rows,
        write_table,
    )

    if args.key_freqs is not None or args.drop_missing:
        raise ConfigError("--key-freqs and --drop-missing apply to one run; analyze that run directly")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"workers must be an integer >= 1 (got {args.workers})")
    t0 = time.perf_counter()
    sweep = read_sweep(args.run_dir)
    order = default_axes(sweep.grid.axes)
    try:
        chosen = [axis_name(sweep, a) if a is not None and a != "none" else a for a in (args.x, args.y, args.facet)]
    except KeyError as e:
        raise ConfigError(e.args[0]) from None
    rest = [a for a in order if a not in chosen]
    x = chosen[0] or (rest.pop(0) if rest else None)
    y = chosen[1] or (rest.pop(0) if rest else None)
    facet = None if args.facet == "none" else chosen[2] or next((a for a in rest if a not in ("seed", "data_seed")),
                                                                 None)
    if x is None and (args.x or args.y or args.facet):
        raise ConfigError(f"{sweep.path} sweeps no setting with more than one value: no axes to draw")
    if len({x, y, facet} - {None}) < len([a for a in (x, y, facet) if a is not None]):
        raise ConfigError(f"--x, --y and --facet must be different settings (got {x}, {y}, {facet})")

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\ranalyze: {done}/{total} runs", end="", file=_STDERR, flush=True)

    executor = None
    if args.executor not in (None, "local"):
        from .sweep.runner import submitit_executor

        _check_executor(args.executor)

        executor = submitit_executor(sweep.path / "submitit", cluster="local" if args.executor == "submitit-local"
                                     else "slurm", slurm_partition=args.slurm_partition, timeout_min=args.slurm_time)
    results = analyze_sweep(sweep, executor=executor, workers=args.workers, threads=args.threads or 1,
                            force=args.force, progress=progress)
    if sys.stderr.isatty():
        print(file=_STDERR)
    rows = sweep_rows(sweep)  # rows of runs with bad checkpoints or unfinished are marked in their state
    table = write_table(sweep, rows)
    fig_dir = sweep.path / SWEEP_ANALYSIS_DIR / FIGURES
    figures = [] if args.no_figures or x is None else draw_sweep(rows, x, y, facet, fig_dir)
    counts: dict[str, int] = {}
    for r in results.values():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print(f"analyzed sweep {sweep.path}: {len(rows)} runs (" + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
          + f") in {_fmt_duration(time.perf_counter() - t0)}")
    phases: dict[str, int] = {}
    done = [r for r in rows if final(r)]
    for r in done:
        if r["final_phase"] is not None:
            phases[r["final_phase"]] = phases.get(r["final_phase"], 0) + 1
    others = len(rows) - len(done)
    print("final phases: " + (", ".join(f"{k} {v}" for k, v in sorted(phases.items())) or "none yet")
          + f"; {sum(1 for r in done if r['settled'] is False)} not settled"
          + (f"; {others} runs left out of the phases and figures (not finished, not analyzed to their final epoch "
             "or damaged: see the state column)" if others else ""))
    over = f"{x}" + (f" x {y}" if y else "") + (f", by {facet}" if facet else "")
    print(f"wrote {table}" + (f" and {len(figures)} figures in {fig_dir}/ ({over})" if figures else ""))
    bad = 0
    for n, r in results.items():
        if r["status"] in ("failed", "invalid"):
            bad += 1
            error = str(r["error"])
            print(f"interp-grok analyze: error: {_named(error, sweep.run_dir(n))}", file=sys.stderr)
        for msg in r.get("bad") or []:  # one line per unreadable checkpoint, as `analyze RUN_DIR` prints them
            bad += 1
            print(f"interp-grok analyze: error: {msg}", file=sys.stderr)
    return 1 if bad else 0


class _CheckpointBar:
    def __init__(self):
        self.bar = None

    def __call__(self, done: int, total: int, epoch: int) -> None:
        if not sys.stderr.isatty():
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="ckpt", desc="analyze", dynamic_ncols=True, file=_STDERR)
        self.bar.n = done
        self.bar.set_postfix(epoch=epoch, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _print_summary(run, an, out: Path, figures: list[Path], wall: float) -> None:
    s = an.summary
    f, fl, src = s["final"], s["noise_floor"], s["key_freq_source"]
    how = ("given by --key-freqs" if src["rule"] == "user"
           else f"{src['rule'].replace('threshold', str(src['threshold']))} at epoch {src['epoch']}")
    first = s["epoch_test_acc_clean_first_95"]
    n_new = s["n_checkpoints_analyzed"] - an.n_reused
    print(f"analyzed {run.path}: {s['n_checkpoints_analyzed']} checkpoints ({n_new} computed, "
          f"{an.n_reused} reused) in {_fmt_duration(wall)}")
    from .analysis.fourier import key_set_is_flat

    keys = s["key_freqs"]
    if not keys:
        print(f"key frequencies: none ({how}): no frequency stands out; Gini {f['gini_W_E']:.3f}")
    elif key_set_is_flat(keys, run.config.p // 2):
        print(f"key frequencies: {len(keys)} of {run.config.p // 2} frequencies ({how}): a flat spectrum, none "
              f"stands out at this threshold; Gini {f['gini_W_E']:.3f}")
    else:
        share = s["key_freq_share_of_nonconstant_W_E_norm2"]
        print(f"key frequencies: {keys} ({how}); they carry {100 * share:.1f}% of the non-constant part of "
              f"||W_E||^2; Gini {f['gini_W_E']:.3f}")
    from .models import family

    if run.config.noise_kind == "uniform":  # only training labels are corrupted: the test labels are clean
        loss = "MSE" if family(run.config).loss == "mse" else "loss"
        print(f"final epoch {s['final_epoch']}: train {loss} {f['train_loss']:.4g}, test {loss} {f['test_loss']:.4g}; "
              f"train acc vs the given labels {an.rows[-1]['train_acc']:.3f}, test acc (clean test labels) "
              f"{f['test_acc_clean']:.3f}")
    else:
        print(f"final epoch {s['final_epoch']}: train loss {f['train_loss']:.4g}, test loss {f['test_loss']:.4g} "
              f"(floor H(X) = {abs(fl['entropy']):.3f}); test acc vs noisy {f['test_acc_noisy']:.3f} "
              f"(best possible {fl['p_mode']:.3f}), vs clean {f['test_acc_clean']:.3f}")
    print("clean test accuracy first >= 95%: " + (f"epoch {first}" if first is not None else "never"))
    if run.dataset.is_noisy[run.dataset.train_idx].any():
        print(f"noisy training labels still memorized: {f['train_noisy_memorized_frac']:.3f} "
              f"(corrected to the clean label: {f['train_noisy_corrected_frac']:.3f}); "
              f"clean-labelled train fit: {f['train_clean_acc']:.3f}")
    else:
        print(f"no noisy training labels in this run; train fit {f['train_clean_acc']:.3f}")
    print(f"restricted loss {f['restricted_loss']:.4g} (clean labels {f['restricted_loss_clean']:.4g}), "
          f"excluded loss {f['excluded_loss']:.4g}; key terms explain {100 * f['key_fve']:.1f}% of the logit "
          f"variance")
    last = an.rows[-1]
    if "extraction_acc_test" in last:
        print(f"extraction accuracy (restricted logits vs clean labels): test {last['extraction_acc_test']:.3f} "
              f"(full logits {f['test_acc_clean']:.3f}), noisy-labelled train {last['extraction_acc_train_noisy']:.3f} "
              f"(full logits {f['train_noisy_corrected_frac']:.3f}); {int(last['extraction_diagonals'])} of "
              f"{run.config.p} anti-diagonals a + b = s right")
    _print_audit(run)
    pr = s.get("pruning")
    if pr and pr["n_silenced"]:
        c = pr["control"]["train_noisy_memorized_frac"]
        print(f"silencing the {pr['n_silenced']} of {pr['n_neurons']} neurons with IPR < {pr['ipr_threshold']}: "
              f"noisy labels memorized {pr['full']['train_noisy_memorized_frac']:.3f} -> "
              f"{pr['ipr_pruned']['train_noisy_memorized_frac']:.3f} (random control matched by size quartile "
              f"{c['mean']:.3f} +- {c['sd']:.3f}), clean test acc {pr['full']['test_acc_clean']:.3f} -> "
              f"{pr['ipr_pruned']['test_acc_clean']:.3f} (control {pr['control']['test_acc_clean']['mean']:.3f})")
    print(f"wrote {out}/" + (f" and {len(figures)} figures in {out / 'figures'}/" if figures else ""))


def _print_audit(run) -> None:
    """The audit table at two budgets: 4 % of the training set (Ashraf's) and B = n_noisy."""
    from .analysis.correction import audit_path, read_audit

    if not audit_path(run.path).exists():
        return
    rows = read_audit(run.path)
    n_train = run.dataset.train_idx.numel()
    n_noisy = int(run.dataset.is_noisy[run.dataset.train_idx].sum())
    small = min({r["budget"] for r in rows}, key=lambda b: abs(b - 0.04 * n_train))
    print(f"label audit at epoch {rows[0]['epoch']} ({audit_path(run.path)}; random precision "
          f"{rows[0]['baseline_precision']:.3f}):")
    print(f"  {'score':<20} {'P@' + str(small):>8} {'R@' + str(small):>8} {'P=R@' + str(n_noisy):>10}")
    for score in dict.fromkeys(r["score"] for r in rows):
        at = {r["budget"]: r for r in rows if r["score"] == score}
        print(f"  {score:<20} {at[small]['precision']:>8.3f} {at[small]['recall']:>8.3f} "
              f"{at[n_noisy]['precision']:>10.3f}")


# ------------------------------------------------------------------ relabel


def _parse_budget(text: str) -> tuple[str, float]:
    """'200' (examples) or '4%' (of the training set)."""
    t = text.strip()
    try:
        if t.endswith("%"):
            v = float(t[:-1])
            if not 0.0 <= v <= 100.0:
                raise ValueError
            return "frac", v / 100
        v = int(t)
        if v < 0:
            raise ValueError
        return "count", v
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of examples (>= 0) or a percentage like 4%, "
                                         f"got {text!r}") from None


def _add_relabel_parser(sub) -> None:
    from .analysis.audit import AUDIT_SCORES
    from .analysis.correction import ADAM_STATE_POLICIES, BEST

    ap = sub.add_parser(
        "relabel", help="correct-and-resume: relabel the training examples an audit flags, as a new run",
        description="Audit RUN_DIR's training labels at checkpoint --epoch, give the --budget examples ranked "
        "most suspicious by --score the circuit's label (argmax of the key-frequency restricted logits at that "
        "checkpoint), and write a new run directory --out that `interp-grok train --resume --out OUT` continues. "
        "It records its parent run and every relabelled example (docs/measurements.md, correct-and-resume).",
    )
    ap.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    ap.add_argument("--epoch", type=int, required=True, help="the checkpoint whose circuit relabels (and, "
                    "without --from-scratch, the one the new run continues from)")
    ap.add_argument("--budget", type=_parse_budget, required=True, metavar="B",
                    help="how many training examples to relabel: a count (0: none, the unchanged control) or a "
                    "percentage of the training set, e.g. 4%%")
    ap.add_argument("--score", choices=(*AUDIT_SCORES, BEST), default="loss",
                    help="the audit score that ranks the examples (default: loss, the given label's "
                    "cross-entropy); best: the score with the highest audit precision at this budget, chosen "
                    "with the true noise (an oracle choice of the score)")
    ap.add_argument("--key-freqs", type=_parse_freqs, default=None, metavar="K1,K2,...",
                    help="the restricted logits' frequencies (default: chosen at --epoch by the logit-outlier rule)")
    ap.add_argument("--from-scratch", action="store_true",
                    help="retrain from the parent's initialization on the corrected labels, instead of continuing "
                    "from the checkpoint")
    ap.add_argument("--adam-state", choices=ADAM_STATE_POLICIES, default="reset",
                    help="continuing: reset (default) starts AdamW fresh at the checkpoint; keep takes the parent's "
                    "saved moments, which exist only at the epoch of its train state (its last checkpoint). The "
                    "optimizer itself (adamw or orthoadamw) is the parent's")
    ap.add_argument("--out", type=Path, required=True, help="the new run directory (must not exist)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing run at --out")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads for the audit")
    ap.set_defaults(func=_cmd_relabel)


def _cmd_relabel(args) -> int:
    import torch

    from .analysis.correction import relabel_run
    from .rundir import load_run

    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"threads must be an integer >= 1 (got {args.threads})")
    if args.from_scratch and args.adam_state != "reset":
        raise ConfigError("--adam-state applies to continuing from the checkpoint, not to --from-scratch")
    torch.set_num_threads(args.threads or _default_threads())
    n_train = load_run(args.run_dir).dataset.train_idx.numel()
    kind, value = args.budget
    budget = round(value * n_train) if kind == "frac" else value
    if budget > n_train:
        raise ConfigError(f"--budget {budget} is more than the {n_train} training examples")
    try:
        r = relabel_run(args.run_dir, args.out, epoch=args.epoch, budget=budget, score=args.score,
                        key_freqs=args.key_freqs, mode="scratch" if args.from_scratch else "continue",
                        adam_state=args.adam_state, overwrite=args.overwrite)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    rec = r.record
    start = "epoch 0 (from scratch)" if r.mode == "scratch" else f"epoch {r.epoch} (optimizer {rec['optimizer']})"
    prec = (f"; audit precision {r.precision:.3f} (random {rec['audit_baseline_precision']:.3f})"
            if r.budget else "")
    print(f"relabelled {r.budget} of {n_train} training examples of {args.run_dir} at epoch {r.epoch} by "
          f"{r.score}{prec}: {r.n_noisy_flagged} had a noisy label, {r.n_changed} got a new label, {r.n_now_clean} "
          f"of them the clean one; key frequencies {rec['key_freqs']}")
    print(f"wrote {r.out} (starts at {start}); continue it with: interp-grok train --resume --out {args.out}")
    return 0


# ------------------------------------------------------------------ sweep


def _list_of(typ):
    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",")]
        if not text.strip() or any(not t for t in items):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        try:
            return [typ(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {typ.__name__} values, got {text!r}") from None
    return parse


def _add_sweep_parser(sub) -> None:
    ap = sub.add_parser(
        "sweep", help="train a grid of runs (one run directory per grid point) and report on it",
        description="Expand a grid (comma lists on the train flags, and/or --spec FILE) into SWEEP_DIR: a "
        "manifest sweep.json and one run directory per grid point in SWEEP_DIR/runs/. Re-running the same "
        "command skips finished runs, resumes partial ones and retries failed ones. See docs/sweeps.md.",
    )
    ap.add_argument("sweep_dir", nargs="?", default=None, metavar="SWEEP_DIR",
                    help="the sweep directory (new, or one holding sweep.json)")
    ap.add_argument("--out", default=None, metavar="SWEEP_DIR",
                    help="the same as SWEEP_DIR, as `train --out` names a run's directory")
    for flag, name, typ, text in _TRAIN_FLAGS:
        ap.add_argument(flag, dest=name, type=_list_of(typ), default=None, metavar="V1,V2,...",
                        help=_help(text, name))
    ap.add_argument("--spec", type=Path, default=None,
                    help='a JSON file {"axes": {setting: [values]}, "fixed": {setting: value}} (Config field names)')
    ap.add_argument("--extend", action="store_true", help="allow a grid that adds points to the stored one")
    ap.add_argument("--status", action="store_true", help="print each run's state and final metrics, train nothing")
    ap.add_argument("--executor", choices=("local", "slurm", "submitit-local"), default="local",
                    help="local: a process pool on this machine (default); slurm: a job array through submitit; "
                    "submitit-local: submitit's local executor (real subprocesses; for testing)")
    ap.add_argument("--workers", type=int, default=None,
                    help="local executor: parallel runs (default: the usable cores)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (default: 1)")
    ap.add_argument("--batch", type=int, default=1,
                    help="train runs of one shape (p, d_model, d_mlp, act, epochs, schedule) K at a time as one "
                    "stacked model (default: 1, each run alone)")
    ap.add_argument("--device", default="auto", help="where each run trains: auto (CUDA if available, else CPU), "
                    "cpu, cuda[:N] (default: auto)")
    ap.add_argument("--chunk", type=int, default=1, help="slurm: runs per array task, trained one after another")
    ap.add_argument("--slurm-partition", default=None)
    ap.add_argument("--slurm-time", type=int, default=None, metavar="MIN", help="slurm: time limit per task (min)")
    ap.add_argument("--slurm-gpus", type=int, default=None, help="slurm: GPUs per task")
    ap.add_argument("--slurm-cpus", type=int, default=None, help="slurm: CPUs per task")
    ap.add_argument("--slurm-parallelism", type=int, default=None, help="slurm: array tasks running at once")
    ap.set_defaults(func=_cmd_sweep)


def _grid_from_args(args):
    from .sweep.runner import Grid, SweepError

    axes, fixed = {}, {}
    if args.spec is not None:
        spec = read_json(args.spec)
        unknown = sorted(set(spec) - {"axes", "fixed"})
        if unknown or not isinstance(spec.get("axes", {}), dict) or not isinstance(spec.get("fixed", {}), dict):
            raise SweepError(f"{args.spec}: expected {{\"axes\": {{...}}, \"fixed\": {{...}}}}"
                             + (f" (unknown keys: {', '.join(unknown)})" if unknown else ""))
        axes, fixed = dict(spec.get("axes", {})), dict(spec.get("fixed", {}))
    for flag, name, _, _ in _TRAIN_FLAGS:
        values = getattr(args, name)
        if values is not None:
            if name in axes or name in fixed:
                raise SweepError(f"{flag} is given both on the command line and in {args.spec}")
            axes[name] = values
    return Grid(axes, fixed) if axes or fixed else None


def _warn_noise_grid(sweep) -> None:
    """One warning line for the whole grid if any point's label noise does not have X = 0 as its unique mode."""
    from .noise import clean_label_warning

    hits = [(name, clean_label_warning(c.noise_n, c.p_bin, c.p, c.noise_frac, c.noise_kind))
            for name, c in ((name, sweep.config(name)) for name in sweep.runs)]
    hits = [(name, msg) for name, msg in hits if msg is not None]
    if hits:
        print(f"interp-grok sweep: warning: {len(hits)} of {len(sweep.runs)} grid points (first: {hits[0][0]}): "
              f"{hits[0][1]}", file=sys.stderr)


def _sweep_dir(args) -> Path:
    """SWEEP_DIR, given as the positional (documented) or as --out (accepted): once, non-empty."""
    given = [v for v in (args.sweep_dir, args.out) if v is not None]
    if not given:
        raise ConfigError("name the sweep directory: interp-grok sweep SWEEP_DIR [grid flags]")
    if len(given) == 2 and Path(given[0]) != Path(given[1]):
        raise ConfigError(f"the sweep directory is given twice, as {given[0]!r} and as --out {given[1]!r}; give it "
                          "once: interp-grok sweep SWEEP_DIR")
    if not given[0].strip():
        raise ConfigError("SWEEP_DIR must name a directory (got an empty string)")
    return Path(given[0])


def _named(error: str, run_dir: Path) -> str:
    """An error line that names the run directory once."""
    return error if error.startswith(str(run_dir)) else f"{run_dir}: {error}"


def _check_executor(executor: str, batch: int = 1) -> None:
    """A submitit executor that cannot run here, or --batch with one: one line, before anything is written."""
    if executor == "local":
        return
    if batch > 1:
        raise ConfigError(f"--batch applies to the local executor only (got --executor {executor}); drop --batch "
                          "or use --executor local")
    import importlib.util
    import shutil

    if importlib.util.find_spec("submitit") is None:
        raise ConfigError(f"--executor {executor} needs submitit: pip install 'interp-grok[slurm]'")
    if executor == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError("--executor slurm: no SLURM here (sbatch is not on PATH); run on a cluster's login node, "
                          "or use --executor local")


def _cmd_sweep(args) -> int:
    from .sweep.runner import plan_sweep, read_sweep, run_sweep, run_sweep_submitit, submitit_executor

    args.sweep_dir = _sweep_dir(args)
    for name in ("workers", "threads", "chunk", "batch"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ConfigError(f"{name} must be an integer >= 1 (got {v})")
    if args.executor == "local":
        from .train import resolve_device

        resolve_device(args.device)  # a bad device: one line, before anything is written
    if args.status:
        if _grid_from_args(args) is not None:
            raise ConfigError("--status reads the stored sweep; give no grid with it")
        if not (args.sweep_dir / "sweep.json").exists():
            raise RunDirError(f"{args.sweep_dir}: no sweep.json here; not a sweep directory")
        _print_sweep_status(read_sweep(args.sweep_dir))
        return 0
    _check_executor(args.executor, args.batch)
    sweep = plan_sweep(args.sweep_dir, _grid_from_args(args), extend=args.extend)
    n_runs = len(sweep.runs)
    _warn_noise_grid(sweep)
    bar = _SweepBar()
    t0 = time.perf_counter()
    try:
        if args.executor == "local":
            results = run_sweep(sweep, workers=args.workers, threads=args.threads, batch=args.batch,
                                device=args.device, progress=bar)
        else:
            ex = submitit_executor(
                args.sweep_dir / "submitit", cluster="local" if args.executor == "submitit-local" else "slurm",
                slurm_partition=args.slurm_partition, timeout_min=args.slurm_time, gpus_per_node=args.slurm_gpus,
                cpus_per_task=args.slurm_cpus, slurm_array_parallelism=args.slurm_parallelism)
            results = run_sweep_submitit(sweep, ex, chunk=args.chunk, threads=args.threads, device=args.device,
                                         progress=bar)
    finally:
        bar.close()
    failed = {n: r for n, r in results.items() if r["status"] == "failed"}
    unstarted = [n for n, r in results.items() if r["status"] in ("not started", "interrupted")]
    trained = sum(r["status"] == "trained" for r in results.values())
    done = sum(r["status"] == "done" for r in results.values())
    wall = _fmt_duration(time.perf_counter() - t0)
    print(f"sweep {args.sweep_dir}: {n_runs} runs, {trained} trained now, {done} already done, {len(failed)} failed"
          + (f", {len(unstarted)} not finished" if unstarted else "") + f" ({wall})")
    for n, r in failed.items():
        print(f"interp-grok sweep: error: {_named(str(r['error']), sweep.run_dir(n))}", file=sys.stderr)
    if unstarted:
        print(f"interp-grok sweep: error: {len(unstarted)} runs were not finished because a worker died or was "
              f"interrupted (first: {unstarted[0]}); run `interp-grok sweep {args.sweep_dir}` again to train them",
              file=sys.stderr)
    return 1 if failed or unstarted else 0


class _SweepBar:
    """Model-epochs done / total across the sweep, with rate and ETA (tqdm on a terminal)."""

    def __init__(self):
        self.bar = None
        self.t0 = time.perf_counter()
        self.start = None
        self.last_line = 0.0

    def __call__(self, done: int, total: int, results: dict) -> None:
        if self.start is None:
            self.start = done
        if sys.stderr.isatty():
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=done, unit="model-epoch", unit_scale=True, desc="sweep",
                                file=_STDERR, dynamic_ncols=True)
            self.bar.n = done
            self.bar.set_postfix(runs_finished=len(results), refresh=True)
        elif time.perf_counter() - self.last_line > 30 or done == total:
            dt = time.perf_counter() - self.t0
            rate = (done - self.start) / max(dt, 1e-9)
            eta = (total - done) / rate if rate > 0 else float("inf")
            print(f"sweep: {done}/{total} model-epochs ({rate:.0f}/s, ETA "
                  f"{_fmt_duration(eta) if eta != float('inf') else '?'})", file=_STDERR, flush=True)
            self.last_line = time.perf_counter()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _print_sweep_status(sweep) -> None:
    from .sweep.runner import sweep_status

    states = sweep_status(sweep)
    width = max(len(n) for n in states)
    print(f"{'run':<{width}}  {'state':<22} {'test acc clean':>14} {'memorized':>9}")
    counts: dict[str, int] = {}
    for n, s in states.items():
        counts[s.state] = counts.get(s.state, 0) + 1
        what = {"done": "done", "pending": "pending", "partial": f"partial at epoch {s.epoch}",
                "failed": "failed", "invalid": "invalid"}[s.state]
        f = s.final or {}
        acc = f"{f['test_acc_clean']:.3f}" if f.get("test_acc_clean") is not None else "-"
        mem = f"{f['train_noisy_memorized_frac']:.3f}" if f.get("train_noisy_memorized_frac") is not None else "-"
        print(f"{n:<{width}}  {what:<22} {acc:>14} {mem:>9}" + (f"  {s.error}" if s.error else ""))
    print(f"{len(states)} runs: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))


# ------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = _Parser(prog="interp-grok", description="Grokking of noisy modular addition: train and analyze.")
    ap.add_argument("--version", action="version", version=f"interp-grok {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train_parser(sub)
    _add_analyze_parser(sub)
    _add_sweep_parser(sub)
    _add_relabel_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    from .sweep.runner import SweepError
    from .train import TrainError, TrainingDiverged

    args = build_parser().parse_args(_join_negative_values(sys.argv[1:] if argv is None else argv))
    if argv is None and os.environ.get("MPLBACKEND") is None:
        # the console script draws to files only: render headless (an explicit MPLBACKEND wins).
        # Called in-process (main([...]), tests, notebooks) the caller's backend is left alone.
        import matplotlib

        matplotlib.use("Agg")
    prog = f"interp-grok {args.command}"
    try:
        rc = args.func(args)
        sys.stdout.flush()  # inside the try: a reader that left (`| head`) is handled below
        return rc
    except TrainingDiverged as e:  # not a usage error: the run is kept up to its last good state
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except (ConfigError, TrainError, SweepError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except RunDirError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `interp-grok analyze RUN | head`: the reader left; not an error of ours
        # point stdout at /dev/null so the interpreter's final flush does not fail again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as e:  # unwritable or vanished paths: name the file, no traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"{prog}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {_continue_with(args)}", file=sys.stderr)
        return 130


def _continue_with(args) -> str:
    """What to run after a Ctrl-C, for the command that was interrupted."""
    if args.command == "sweep":
        return (f"every run is kept as it was at its last checkpoint; continue with `interp-grok sweep "
                f"{args.sweep_dir}`")
    if args.command == "analyze":
        return f"the analyses written so far are kept; continue with `interp-grok analyze {args.run_dir}`"
    return "completed files are kept; continue with `interp-grok train --resume` and the same --out or settings"


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--seed -1,2`` as ``--seed=-1,2``: argparse takes a value starting with "-" that is not a
    plain negative number for a flag, and says "expected one argument"; joined, the value reaches
    its own check, which names the setting and its range."""
    flags = {flag for flag, _, _, _ in _TRAIN_FLAGS} | {"--threshold"}
    out: list[str] = []
    for a in argv:
        if out and out[-1] in flags and len(a) > 1 and a[0] == "-" and (a[1].isdigit() or a[1] == "."):
            out[-1] = f"{out[-1]}={a}"
        else:
            out.append(a)
    return out


if __name__ == "__main__":
    sys.exit(main())

