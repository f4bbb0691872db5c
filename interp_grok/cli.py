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

from .config import Config, ConfigError
from .rundir import RunDirError, read_config, require_run_dir

DEFAULTS = Config()


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

# (flag, Config field, type, help)
_TRAIN_FLAGS = [
    ("--p", "p", int, "modulus; tokens are 0..p-1 (>= 2)"),
    ("--noise", "noise_n", int, "n of the label noise X = Binomial(n, p_bin) - floor(n/2) (>= 0)"),
    ("--p-bin", "p_bin", float, "success probability of the binomial noise, in [0, 1]"),
    ("--train-frac", "train_frac", float, "fraction of the p^2 pairs used for training, in (0, 1)"),
    ("--data-seed", "data_seed", int, "seed of the noise and the train/test split"),
    ("--seed", "seed", int, "seed of the model initialization"),
    ("--d-model", "d_model", int, "embedding width"),
    ("--d-mlp", "d_mlp", int, "hidden width (0: 4 * d_model)"),
    ("--act", "act", str, "hidden activation: relu or gelu"),
    ("--lr", "lr", float, "AdamW learning rate"),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay"),
    ("--adam-eps", "adam_eps", float, "AdamW eps"),
    ("--loss-dtype", "loss_dtype", str, "dtype of the log-softmax: float64 or float32"),
    ("--epochs", "epochs", int, "full-batch optimizer steps (>= 1)"),
    ("--checkpoints", "n_checkpoints", int, "about how many log-spaced checkpoints to save (>= 2)"),
    ("--eval-every", "eval_every", int, "full-grid evaluation every this many epochs (>= 1)"),
]


def _add_train_parser(sub) -> None:
    ap = sub.add_parser(
        "train", help="train a run and write its run directory",
        description="Train the noisy modular-addition MLP and write a run directory "
        "(config, dataset, metrics.jsonl, safetensors checkpoints at log-spaced epochs).",
    )
    for flag, name, typ, text in _TRAIN_FLAGS:
        ap.add_argument(flag, dest=name, type=typ, default=None,
                        help=f"{text} (default: {getattr(DEFAULTS, name)})")
    ap.add_argument("--betas", type=float, nargs=2, default=None, metavar=("B1", "B2"),
                    help=f"AdamW betas (default: {DEFAULTS.betas[0]} {DEFAULTS.betas[1]})")
    ap.add_argument("--out", type=Path, default=None, help="run directory (default: runs/n{noise})")
    ap.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu, cuda[:N] "
                    "(default: auto)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads; use 1 per process when running several at once "
                    f"(default: min(cores, 4) = {_default_threads()} here)")
    ap.add_argument("--resume", action="store_true",
                    help="continue an existing run from its last saved state (--epochs may extend it)")
    ap.add_argument("--overwrite", action="store_true", help="delete an existing run at --out first")
    ap.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from .train import check_out_dir, resolve_device, resume, train

    given = {name: getattr(args, name) for _, name, _, _ in _TRAIN_FLAGS if getattr(args, name) is not None}
    if args.betas is not None:
        given["betas"] = tuple(args.betas)
    if args.resume and args.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"threads must be an integer >= 1 (got {args.threads})")
    threads = args.threads or _default_threads()
    resolve_device(args.device)  # fail on a bad device before anything is printed or written

    if args.resume:
        if args.out is None:
            raise ConfigError("--resume needs --out RUN_DIR")
        extra = sorted(set(given) - {"epochs"})
        if extra:
            flags = ", ".join(f for f, n, _, _ in _TRAIN_FLAGS if n in extra) or "--betas"
            raise ConfigError(f"--resume continues the stored config; only --epochs may change ({flags} given)")
        out = args.out
        stored, _ = read_config(require_run_dir(out))
        progress = _Progress(given.get("epochs", stored.epochs))
        print(f"resuming {out} to epoch {progress.total}", file=sys.stderr)
        result = resume(out, epochs=given.get("epochs"), device=args.device, threads=threads,
                        progress=progress)
    else:
        config = Config(**given).finalize()  # validate before anything touches the disk
        out = args.out if args.out is not None else Path("runs") / f"n{config.noise_n}"
        check_out_dir(out, args.overwrite)
        progress = _Progress(config.epochs)
        print(f"training {out}: p={config.p} noise_n={config.noise_n} epochs={config.epochs} "
              f"checkpoints={len(config.checkpoint_epochs)} threads={threads}", file=sys.stderr)
        result = train(config, out, device=args.device, overwrite=args.overwrite, threads=threads,
                       progress=progress)
    progress.close()
    f = result.final
    print(
        f"done {result.run_dir}: epoch {f['epoch']} | train loss {f['train_loss']:.4g} "
        f"acc {f['train_acc']:.3f} | test loss {f['test_loss']:.4g} | test acc noisy "
        f"{f['test_acc_noisy']:.3f} clean {f['test_acc_clean']:.3f} | noisy train labels memorized "
        f"{f['train_noisy_memorized_frac']:.3f} | {_fmt_duration(result.wall_s)}"
    )
    return 0


class _Progress:
    """A tqdm bar on a terminal; on a pipe (CI logs) one line per ~10% of the run."""

    def __init__(self, total: int):
        self.total = total
        self.tty = sys.stderr.isatty()
        self.bar = None
        self.next_report = 0
        self.t0 = time.perf_counter()
        self.first_epoch = None

    def __call__(self, epoch: int, rec: dict) -> None:
        if self.first_epoch is None:
            self.first_epoch = epoch
        msg = dict(train=f"{rec['train_loss']:.3g}", test=f"{rec['test_loss']:.3g}",
                   acc_clean=f"{rec['test_acc_clean']:.3f}")
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=self.total, initial=epoch, unit="epoch", dynamic_ncols=True,
                                desc="train")
            self.bar.n = min(epoch, self.bar.total)
            self.bar.set_postfix(msg, refresh=True)
        elif epoch >= self.next_report:
            done = epoch - self.first_epoch
            rate = done / max(time.perf_counter() - self.t0, 1e-9)
            print(f"epoch {epoch}/{self.total} train {msg['train']} test {msg['test']} "
                  f"test_acc_clean {msg['acc_clean']} ({rate:.0f} epochs/s)", file=sys.stderr, flush=True)
            self.next_report = epoch + max(1, self.total // 10)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="interp-grok", description="Grokking of noisy modular addition: train and analyze.")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    from .train import TrainError

    args = build_parser().parse_args(argv)
    prog = f"interp-grok {args.command}"
    try:
        return args.func(args)
    except (ConfigError, TrainError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except RunDirError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; completed files are kept (continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

