"""Figures of an analysis: each function takes an Analysis (and the noise floor) and returns a
matplotlib Figure; ``save_figure`` writes it byte-for-byte reproducibly; ``draw_all`` makes the
standard set that `interp-grok analyze` writes to RUN/analysis/figures/.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .analyze import Analysis, x_column  # noqa: E402
from .model import PARAM_NAMES  # noqa: E402
from .rundir import atomic_write_bytes  # noqa: E402

STYLE = {"figure.dpi": 110, "font.size": 10, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 8,
         "axes.spines.top": False, "axes.spines.right": False}


def _epoch_axis(ax) -> None:
    ax.set_xscale("symlog", linthresh=1, linscale=0.3)
    ax.set_xlabel("epoch (optimizer steps; symlog axis)")
    ax.set_xlim(left=0)


def _floor_lines(ax, floor: dict, labels: bool = True) -> None:
    ax.axhline(floor["entropy"], color="0.3", ls=":", lw=1,
               label=f"H(X) = {floor['entropy']:.3f}: best test loss vs noisy labels" if labels else None)
    if floor["nll_clean"] > 0:
        ax.axhline(floor["nll_clean"], color="0.6", ls="-.", lw=1,
                   label=f"-log P(X=0) = {floor['nll_clean']:.3f}: Bayes loss vs clean labels" if labels else None)


def _lines(ax, an: Analysis, specs: list[tuple[str, str, str, str]]) -> None:
    """One line per (progress column, label, color, linestyle) against the checkpoint epochs."""
    for col, label, color, ls in specs:
        ax.plot(an.epochs.numpy(), an.column(col).numpy(), color=color, ls=ls, label=label)


def _freqs(keys, limit: int = 10) -> str:
    keys = [int(k) for k in keys]
    return str(keys) if len(keys) <= limit else f"[{', '.join(map(str, keys[:limit]))}, ... ({len(keys)} in all)]"


def _title(fig: Figure, run_name: str, what: str) -> None:
    fig.suptitle(f"{what} — {run_name}", fontsize=11)


def plot_losses(an: Analysis, floor: dict, run_name: str = "") -> Figure:
    """Train and test loss against the noisy and the clean labels, with the noise floor."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
        _lines(ax, an, [
            ("train_loss", "train, noisy labels", "C0", "-"), ("train_loss_clean", "train, clean labels", "C0", "--"),
            ("test_loss", "test, noisy labels", "C3", "-"), ("test_loss_clean", "test, clean labels", "C3", "--"),
        ])
        _floor_lines(ax, floor)
        ax.set_yscale("log")
        ax.set_ylabel("cross-entropy (nats, float64)")
        _epoch_axis(ax)
        ax.legend(loc="best")
        _title(fig, run_name, "Loss")
    return fig


def plot_spectrum_heatmap(an: Analysis, run_name: str = "") -> Figure:
    """N_k of W_E for every frequency k over training (log-epoch axis)."""
    with plt.rc_context(STYLE | {"axes.grid": False}):
        fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
        e = an.epochs.numpy().astype(float)
        K = an.norms.shape[1]
        mid = np.sqrt(np.maximum(e[:-1], 0.5) * e[1:])  # geometric midpoints between checkpoints
        edges = np.concatenate([[0.0], mid, [e[-1] * 1.05 + 1]])
        mesh = ax.pcolormesh(edges, np.arange(K + 1) + 0.5, an.norms.numpy().T, cmap="viridis", shading="flat")
        fig.colorbar(mesh, ax=ax, label="N_k = ||(F W_E)[cos k, sin k]||")
        _epoch_axis(ax)
        ax.set_ylabel("frequency k")
        marked = an.key_freqs.numel() <= 12  # a flat "key" set would only clutter the axis
        for k in an.key_freqs.tolist() if marked else []:
            ax.annotate(f"{k}", xy=(1.0, k), xycoords=("axes fraction", "data"), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=7, color="C3")
        _title(fig, run_name, "W_E Fourier spectrum over training"
               + (" (key frequencies marked right)" if marked else f" ({an.key_freqs.numel()} key frequencies: flat)"))
    return fig


def plot_spectrum_final(an: Analysis, run_name: str = "") -> Figure:
    """N_k of W_E at the last analyzed checkpoint, key frequencies highlighted."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
        norms = an.norms[-1].numpy()
        k = np.arange(1, len(norms) + 1)
        is_key = np.isin(k, an.key_freqs.numpy())
        ax.bar(k[~is_key], norms[~is_key], color="0.6", label="other frequencies")
        ax.bar(k[is_key], norms[is_key], color="C3", label=f"key frequencies {_freqs(an.key_freqs)}")
        src = an.key_freq_source
        if src.get("rule") != "user":
            ax.axhline(src["threshold"] * norms.max(), color="C3", ls=":", lw=1,
                       label=f"threshold {src['threshold']} x max")
        ax.set_xlabel("frequency k")
        ax.set_ylabel("N_k")
        ax.legend(loc="best")
        _title(fig, run_name, f"W_E spectrum at epoch {int(an.epochs[-1])} (Gini {an.rows[-1]['gini_W_E']:.2f})")
    return fig


def plot_restricted_excluded(an: Analysis, floor: dict, run_name: str = "") -> Figure:
    """Restricted, excluded and full loss over training (science.md §3)."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
        _lines(ax, an, [
            ("train_loss", "train loss (noisy labels)", "C0", "-"),
            ("test_loss", "test loss (noisy labels)", "C3", "-"),
            ("restricted_loss", "restricted loss, all pairs, noisy labels", "C2", "-"),
            ("restricted_loss_clean", "restricted loss, all pairs, clean labels", "C2", "--"),
            ("excluded_loss", "excluded loss, train, noisy labels", "C1", "-"),
        ])
        _floor_lines(ax, floor, labels=False)
        ax.set_yscale("log")
        ax.set_ylabel("cross-entropy (nats)")
        _epoch_axis(ax)
        ax.legend(loc="best")
        _title(fig, run_name, f"Restricted / excluded loss, key frequencies {_freqs(an.key_freqs)}")
    return fig


def plot_weight_norms(an: Analysis, run_name: str = "") -> Figure:
    """Sum of squared weights, per-matrix norms and the Gini coefficient of W_E's spectrum."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), layout="constrained")
        e = an.epochs.numpy()
        axes[0].plot(e, an.column("sum_sq_weights").numpy(), color="k")
        axes[0].set_ylabel("sum of squared weights")
        for i, name in enumerate(PARAM_NAMES):
            axes[1].plot(e, an.column(f"norm_{name}").numpy(), color=f"C{i}", label=name)
        axes[1].set_ylabel("Frobenius norm")
        axes[1].legend(loc="best")
        axes[2].plot(e, an.column("gini_W_E").numpy(), color="C4")
        axes[2].set_ylabel("Gini of N_k (W_E)")
        axes[2].set_ylim(0, 1)
        for ax in axes:
            _epoch_axis(ax)
        _title(fig, run_name, "Weight norms and spectral sparsity")
    return fig


def plot_memorization(an: Analysis, floor: dict, xs: list[int], run_name: str = "") -> Figure:
    """Noisy vs clean training labels over training, and the memorized fraction per noise value X."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
        e = an.epochs.numpy()
        ax = axes[0]
        _lines(ax, an, [
            ("train_clean_acc", "clean-labelled train: fit", "C0", "-"),
            ("train_noisy_memorized_frac", "noisy-labelled train: memorized (pred = noisy label)", "C3", "-"),
            ("train_noisy_corrected_frac", "noisy-labelled train: corrected (pred = clean label)", "C2", "-"),
            ("test_acc_clean", "test accuracy vs clean labels", "k", "--"),
            ("test_acc_noisy", "test accuracy vs noisy labels", "0.5", "--"),
        ])
        ax.axhline(floor["p_mode"], color="0.5", ls=":", lw=1,
                   label=f"P(X = mode) = {floor['p_mode']:.3f}: best test acc vs noisy labels")
        ax.set_ylabel("fraction")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(loc="upper left")  # curves start low at the left: keep the legend there
        _epoch_axis(ax)
        ax = axes[1]
        for i, x in enumerate(xs):
            col = x_column(x)
            if col in an.rows[0]:
                ax.plot(e, an.column(col).numpy(), color=plt.cm.coolwarm(i / max(len(xs) - 1, 1)), label=f"X = {x:+d}")
        ax.set_ylabel("memorized fraction of noisy train labels")
        ax.set_ylim(-0.02, 1.02)
        if xs:
            ax.legend(loc="upper left", title="label noise")
        else:
            ax.text(0.5, 0.5, "no noisy labels in this run", transform=ax.transAxes, ha="center")
        _epoch_axis(ax)
        _title(fig, run_name, "Memorization of noisy vs clean training labels")
    return fig


# ------------------------------------------------------------------ several runs


def plot_compare(analyses: dict[str, Analysis], columns: list[tuple[str, str]], title: str,
                 logy: bool = False, floors: dict[str, float] | None = None) -> Figure:
    """One panel per (column, y label), one line per run (label -> Analysis), shared epoch axis.

    ``floors`` (label -> value) draws each run's reference level as a dotted line in its color.
    """
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns) + 1, 3.8), layout="constrained",
                                 squeeze=False)
        for ax, (col, ylabel) in zip(axes[0], columns):
            for i, (label, an) in enumerate(analyses.items()):
                ax.plot(an.epochs.numpy(), an.column(col).numpy(), color=f"C{i}", label=label)
                if floors and label in floors:
                    ax.axhline(floors[label], color=f"C{i}", ls=":", lw=1)
            if logy:
                ax.set_yscale("log")
            ax.set_ylabel(ylabel)
            _epoch_axis(ax)
        axes[0][0].legend(loc="best")
        fig.suptitle(title, fontsize=11)
    return fig


def plot_final_spectra(analyses: dict[str, Analysis], p: int, noise: dict[str, int]) -> Figure:
    """Final N_k / max_k N_k of W_E per run, key frequencies as dots, and the label-noise damping
    cos(pi k / p)^n of frequency k in the targets (science.md section 6) as a dashed line."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
        for i, (label, an) in enumerate(analyses.items()):
            norms = an.norms[-1].numpy()
            k = np.arange(1, len(norms) + 1)
            ax.plot(k, norms / norms.max(), color=f"C{i}", lw=1.2, label=f"{label}: key {_freqs(an.key_freqs)}")
            keys = an.key_freqs.numpy()
            if len(keys) <= 12:  # a flat spectrum's "key" set would only hide the line
                ax.plot(keys, norms[keys - 1] / norms.max(), "o", color=f"C{i}", ms=5)
            if noise.get(label):
                ax.plot(k, np.abs(np.cos(np.pi * k / p)) ** noise[label], color=f"C{i}", ls="--", lw=0.8)
        ax.set_xlabel("frequency k")
        ax.set_ylabel("N_k / max N_k at the final checkpoint")
        ax.legend(loc="upper right")
        fig.suptitle("Final W_E spectra (dots: key frequencies when sparse; dashed: |cos(pi k/p)|^n label damping)",
                     fontsize=11)
    return fig


def plot_fit_epochs(first_fit: dict[str, torch.Tensor], title: str) -> Figure:
    """Histograms (log-spaced bins) of the epoch at which each group of examples is first fit."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
        fitted = [v[v >= 0].numpy() for v in first_fit.values()]
        hi = max((f.max() for f in fitted if f.size), default=1)
        bins = np.concatenate([[0, 1], np.geomspace(1, hi + 1, 30)[1:]])
        for i, (label, f) in enumerate(zip(first_fit, fitted)):
            never = int((first_fit[label] < 0).sum())
            ax.hist(f, bins=bins, histtype="step", lw=1.5, color=f"C{i}", density=False,
                    label=f"{label} (n = {len(first_fit[label])}, never fit: {never})")
        ax.set_xscale("symlog", linthresh=1, linscale=0.3)
        ax.set_xlabel("first checkpoint epoch at which pred = noisy label")
        ax.set_ylabel("training examples")
        ax.legend(loc="upper left")
        fig.suptitle(title, fontsize=11)
    return fig


def plot_ipr_histograms(iprs: dict[str, torch.Tensor], title: str) -> Figure:
    """Histogram of per-neuron IPR (one line per run), log-spaced bins from 1/p to 1."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
        bins = np.geomspace(0.01, 1.0, 41)
        for i, (label, v) in enumerate(iprs.items()):
            ax.hist(v.clamp(0.01, 1.0).numpy(), bins=bins, histtype="step", lw=1.5, color=f"C{i}", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("IPR of the neuron's input curves (mean of a and b; 1 = one frequency)")
        ax.set_ylabel("neurons")
        ax.legend(loc="upper center")
        fig.suptitle(title, fontsize=11)
    return fig


def save_figure(fig: Figure, path: Path) -> None:
    """Save as PNG without the metadata that changes between runs or versions."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())


def draw_all(an: Analysis, floor: dict, xs: list[int], out_dir: Path, run_name: str = "") -> list[Path]:
    """The standard figures of one run, written to out_dir; returns their paths."""
    figs = {
        "losses": plot_losses(an, floor, run_name),
        "spectrum_heatmap": plot_spectrum_heatmap(an, run_name),
        "spectrum_final": plot_spectrum_final(an, run_name),
        "restricted_excluded": plot_restricted_excluded(an, floor, run_name),
        "weight_norms": plot_weight_norms(an, run_name),
        "memorization": plot_memorization(an, floor, xs, run_name),
    }
    paths = []
    for name, fig in figs.items():
        path = Path(out_dir) / f"{name}.png"
        save_figure(fig, path)
        paths.append(path)
    return paths
