"""Figures of an analysis: each function takes an Analysis (and the noise floor) and returns a
matplotlib Figure; ``save_figure`` writes it byte-for-byte reproducibly; ``draw_all`` makes the
standard set that `interp-grok analyze` writes to RUN/analysis/figures/.

Importing this module leaves matplotlib's backend alone: in Jupyter the figures display inline
(at the end of the cell, like any pyplot figure), in a terminal ``MPLBACKEND`` is respected, and
headless use (the CLI, scripts on a server) needs nothing, since PNGs are rendered by Agg anyway.

Composing panels: single-panel functions take ``ax=`` (draw into that Axes; the title goes on
the Axes), multi-panel ones take ``fig=`` (a Figure or SubFigure to fill); every function
returns the (root) Figure. Without them each function makes its own figure, as drawn in docs/.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from .analysis.fourier import KEY_FREQ_RULE, key_set_is_flat
from .analysis.measures import x_column
from .analysis.pipeline import Analysis
from .models.mlp import PARAM_NAMES
from .rundir import atomic_write_bytes

STYLE = {"figure.dpi": 110, "font.size": 10, "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 8,
         "axes.spines.top": False, "axes.spines.right": False}


@contextmanager
def _style(extra: dict | None = None) -> Iterator[None]:
    """The house style, as an rc_context that keeps interactive mode as the block left it.

    The first pyplot figure of a session loads the backend; in Jupyter that hooks up the inline
    display and turns interactive mode on. A plain rc_context would restore interactive = False
    on exit, and later figures would no longer display inline."""
    with plt.rc_context(STYLE | (extra or {})):
        yield
        interactive = matplotlib.is_interactive()
    if matplotlib.is_interactive() != interactive:
        matplotlib.interactive(interactive)


def _root(obj: Axes | Figure | SubFigure) -> Figure:
    """The top-level Figure an Axes or SubFigure belongs to."""
    fig = obj if isinstance(obj, Figure) else obj.figure
    while not isinstance(fig, Figure):
        fig = fig.figure
    return fig


def _single(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Axes, bool]:
    """(axes to draw into, whether this call made its own figure)."""
    if ax is not None:
        return ax, False
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax, True


def _panels(fig: Figure | SubFigure | None, n: int, figsize: tuple[float, float], ncols: int | None = None
            ) -> tuple[Figure | SubFigure, list]:
    """n panels, in rows of ``ncols`` (default: one row); unused slots of the last row are hidden."""
    ncols = n if ncols is None else max(1, min(ncols, n))
    nrows = -(-n // ncols)
    if fig is None:
        fig, axes = plt.subplots(nrows, ncols, figsize=figsize, layout="constrained", squeeze=False)
    else:
        axes = fig.subplots(nrows, ncols, squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _heading(ax: Axes, own: bool, text: str) -> Figure:
    """Title on the figure when it is ours, on the Axes when drawing into someone else's."""
    if own:
        ax.figure.suptitle(text, fontsize=11)
    else:
        ax.set_title(text, fontsize=9)
    return _root(ax)


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


def _xy(an: Analysis, col: str) -> tuple[np.ndarray, np.ndarray]:
    """A progress column against the epochs, without its NaN rows: a column measured at fewer
    checkpoints (e.g. a trimmed run's key-dependent columns, only where weights are kept) is drawn
    as a line through the checkpoints that have it, not as isolated invisible segments."""
    return _row_xy(an.rows, col)


def _row_xy(rows: list[dict], col: str) -> tuple[np.ndarray, np.ndarray]:
    """_xy on progress.csv rows as dicts (each with its "epoch")."""
    e = np.array([r["epoch"] for r in rows], dtype=float)
    v = np.array([r[col] for r in rows], dtype=float)
    keep = ~np.isnan(v)
    return e[keep], v[keep]


def _lines(ax, an: Analysis, specs: list[tuple[str, str, str, str]]) -> None:
    """One line per (progress column, label, color, linestyle) against the checkpoint epochs."""
    for col, label, color, ls in specs:
        ax.plot(*_xy(an, col), color=color, ls=ls, label=label)


def _freqs(keys, limit: int = 10) -> str:
    keys = [int(k) for k in keys]
    return str(keys) if len(keys) <= limit else f"[{', '.join(map(str, keys[:limit]))}, ... ({len(keys)} in all)]"


def _title(run_name: str, what: str) -> str:
    return f"{what} — {run_name}"


def _keys_text(an: Analysis) -> str:
    keys = an.key_freqs
    if key_set_is_flat(keys, an.norms.shape[1]):
        return f"{keys.numel()} of {an.norms.shape[1]} frequencies (flat)"
    return _freqs(keys)


def plot_losses(an: Analysis, floor: dict, run_name: str = "", *, ax: Axes | None = None) -> Figure:
    """Train and test loss against the noisy and the clean labels, with the noise floor.

    ``floor`` is ``noise_floor(n, p_bin, p)`` (also ``an.summary["noise_floor"]``)."""
    with _style():
        ax, own = _single(ax, (7, 4.2))
        _lines(ax, an, [
            ("train_loss", "train, noisy labels", "C0", "-"), ("train_loss_clean", "train, clean labels", "C0", "--"),
            ("test_loss", "test, noisy labels", "C3", "-"), ("test_loss_clean", "test, clean labels", "C3", "--"),
        ])
        _floor_lines(ax, floor)
        ax.set_yscale("log")
        ax.set_ylabel("cross-entropy (nats, float64)")
        _epoch_axis(ax)
        ax.legend(loc="best")
        return _heading(ax, own, _title(run_name, "Loss"))


def plot_spectrum_heatmap(an: Analysis, run_name: str = "", *, ax: Axes | None = None) -> Figure:
    """N_k of W_E for every frequency k over training (log-epoch axis); ``an.norms[:, k - 1]`` is
    frequency k. Key frequencies are marked unless the key set is flat (fourier.key_set_is_flat)."""
    with _style({"axes.grid": False}):
        ax, own = _single(ax, (7, 4.2))
        e = an.epochs.numpy().astype(float)
        K = an.norms.shape[1]
        mid = np.sqrt(np.maximum(e[:-1], 0.5) * e[1:])  # geometric midpoints between checkpoints
        edges = np.concatenate([[0.0], mid, [e[-1] * 1.05 + 1]])
        mesh = ax.pcolormesh(edges, np.arange(K + 1) + 0.5, an.norms.numpy().T, cmap="viridis", shading="flat")
        ax.figure.colorbar(mesh, ax=ax, label="N_k = ||(F W_E)[cos k, sin k]||")
        _epoch_axis(ax)
        ax.set_ylabel("frequency k")
        marked = not key_set_is_flat(an.key_freqs, K)  # a flat "key" set would only clutter the axis
        for k in an.key_freqs.tolist() if marked else []:
            ax.annotate(f"{k}", xy=(1.0, k), xycoords=("axes fraction", "data"), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=7, color="C3")
        return _heading(ax, own, _title(run_name, "W_E Fourier spectrum over training" + (
            " (key frequencies marked right)" if marked else f" ({an.key_freqs.numel()} key frequencies: flat)")))


def plot_spectrum_final(an: Analysis, run_name: str = "", *, ax: Axes | None = None) -> Figure:
    """N_k of W_E at the last analyzed checkpoint, key frequencies highlighted (legend outside)."""
    with _style():
        ax, own = _single(ax, (8.5, 3.6))
        norms = an.norms[-1].numpy()
        k = np.arange(1, len(norms) + 1)
        is_key = np.isin(k, an.key_freqs.numpy())
        if (~is_key).any():
            ax.bar(k[~is_key], norms[~is_key], color="0.6", label="other frequencies")
        ax.bar(k[is_key], norms[is_key], color="C3", label=f"key frequencies:\n{_keys_text(an)}")
        src = an.key_freq_source
        if src.get("rule") == KEY_FREQ_RULE:  # a threshold on these bars; the logit rule's is on another spectrum
            ax.axhline(src["threshold"] * norms.max(), color="C3", ls=":", lw=1,
                       label=f"threshold {src['threshold']} x max")
        elif src.get("rule") != "user":
            ax.plot([], [], " ", label=f"key rule: {src.get('name', src.get('rule'))}\n(z = {src['threshold']})")
        ax.set_xlabel("frequency k")
        ax.set_ylabel("N_k")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # never over the bars
        return _heading(ax, own, _title(run_name, f"W_E spectrum at epoch {int(an.epochs[-1])} "
                                                  f"(Gini {an.rows[-1]['gini_W_E']:.2f})"))


def plot_restricted_excluded(an: Analysis, floor: dict, run_name: str = "", *, ax: Axes | None = None) -> Figure:
    """Restricted, excluded and full loss over training (science.md §3), with the noise floor."""
    with _style():
        ax, own = _single(ax, (8.5, 4.2))
        _lines(ax, an, [
            ("train_loss", "train loss (noisy labels)", "C0", "-"),
            ("test_loss", "test loss (noisy labels)", "C3", "-"),
            ("restricted_loss", "restricted loss, all pairs, noisy labels", "C2", "-"),
            ("restricted_loss_clean", "restricted loss, all pairs, clean labels", "C2", "--"),
            ("excluded_loss", "excluded loss, train, noisy labels", "C1", "-"),
        ])
        _floor_lines(ax, floor)
        ax.set_yscale("log")
        ax.set_ylabel("cross-entropy (nats)")
        _epoch_axis(ax)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        return _heading(ax, own, f"Restricted / excluded loss — {run_name}\nkey frequencies {_keys_text(an)}"
                        if run_name else f"Restricted / excluded loss, key frequencies {_keys_text(an)}")


def plot_weight_norms(an: Analysis, run_name: str = "", *, fig: Figure | SubFigure | None = None) -> Figure:
    """Sum of squared weights, per-matrix norms and the Gini coefficient of W_E's spectrum (3 panels)."""
    with _style():
        fig, axes = _panels(fig, 3, (11, 3.6))
        e = an.epochs.numpy()
        axes[0].plot(e, an.column("sum_sq_weights").numpy(), color="k")
        axes[0].set_ylabel("sum of squared weights")
        names = [k.removeprefix("norm_") for k in an.rows[0] if k.startswith("norm_")] if an.rows else PARAM_NAMES
        for i, name in enumerate(names):  # the model family's weights (the MLP's five)
            axes[1].plot(e, an.column(f"norm_{name}").numpy(), color=f"C{i}", label=name)
        axes[1].set_ylabel("Frobenius norm")
        axes[1].legend(loc="best")
        axes[2].plot(e, an.column("gini_W_E").numpy(), color="C4")
        axes[2].set_ylabel("Gini of N_k (W_E)")
        axes[2].set_ylim(0, 1)
        for ax in axes:
            _epoch_axis(ax)
        fig.suptitle(_title(run_name, "Weight norms and spectral sparsity"), fontsize=11)
    return _root(fig)


def plot_memorization(an: Analysis, floor: dict, xs: list[int], run_name: str = "", *,
                      sizes: dict[int, int] | None = None, fig: Figure | SubFigure | None = None) -> Figure:
    """Noisy vs clean training labels over training, and the memorized fraction per noise value X
    (2 panels). ``xs``: the X values to draw (``x_value_columns(run.dataset.noise)``); ``sizes``:
    how many noisy training examples have each X, shown in the legend (default: counted from
    ``an.train_noise`` when the analysis has it). Small groups move in big steps (1/size)."""
    if sizes is None and an.train_noise is not None:
        sizes = {x: int((an.train_noise == x).sum()) for x in xs}
    with _style():
        fig, axes = _panels(fig, 2, (11, 4))
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
                size = f" ({sizes[x]} examples)" if sizes and x in sizes else ""
                ax.plot(e, an.column(col).numpy(), color=plt.cm.coolwarm(i / max(len(xs) - 1, 1)),
                        label=f"X = {x:+d}{size}")
        ax.set_ylabel("memorized fraction of noisy train labels")
        ax.set_ylim(-0.02, 1.02)
        if xs:
            ax.legend(loc="center right", title="label noise")  # the curves are low at left, high at right
        else:
            ax.text(0.5, 0.5, "no noisy labels in this run", transform=ax.transAxes, ha="center")
        _epoch_axis(ax)
        fig.suptitle(_title(run_name, "Memorization of noisy vs clean training labels"), fontsize=11)
    return _root(fig)


# ------------------------------------------------------------------ several runs


def plot_compare(analyses: dict[str, Analysis | list[dict]], columns: list[tuple[str, str]], title: str,
                 logy: bool = False, floors: dict[str, float] | None = None, *,
                 styles: dict[str, tuple[str, str]] | None = None, fig: Figure | SubFigure | None = None) -> Figure:
    """One panel per (column, y label), one line per run (label -> Analysis, or progress.csv rows as
    dicts), shared epoch axis. ``styles[label]`` = (color, linestyle); default one color per run.

    ``floors`` (label -> value) draws each run's reference level as a dotted line in its color.
    """
    styles = styles or {label: (f"C{i % 10}", "-") for i, label in enumerate(analyses)}
    with _style():
        fig, axes = _panels(fig, len(columns), (4.2 * len(columns) + 1, 3.8))
        for ax, (col, ylabel) in zip(axes, columns):
            for label, an in analyses.items():
                color, ls = styles[label]
                ax.plot(*_row_xy(an.rows if isinstance(an, Analysis) else an, col), color=color, ls=ls, label=label)
                if floors and label in floors:
                    ax.axhline(floors[label], color=color, ls=":", lw=1)
            if logy:
                ax.set_yscale("log")
            ax.set_ylabel(ylabel)
            _epoch_axis(ax)
        axes[0].legend(loc="best")
        fig.suptitle(title, fontsize=11)
    return _root(fig)


def plot_compare_grid(groups: dict[str, dict[str, list[dict]]], columns: list[tuple[str, str]], title: str = "", *,
                      styles: dict[str, tuple[str, str]] | None = None) -> Figure:
    """``plot_compare`` once per group, stacked: one row of panels per group (heading -> label ->
    progress.csv rows), one panel per (column, y label), shared styles (label -> (color, linestyle))."""
    with _style():
        fig = plt.figure(figsize=(4.2 * len(columns) + 1, 3.4 * len(groups)), layout="constrained")
        subs = fig.subfigures(len(groups), 1, squeeze=False)[:, 0]
        for sub, (heading, runs) in zip(subs, groups.items()):
            plot_compare(runs, columns, heading, styles={k: v for k, v in (styles or {}).items() if k in runs} or None,
                         fig=sub)
        fig.suptitle(title, fontsize=12)
    return fig


def plot_final_spectra(analyses: dict[str, Analysis], p: int, noise: dict[str, int], *,
                       ax: Axes | None = None) -> Figure:
    """Final N_k / max_k N_k of W_E per run, key frequencies as dots (unless the key set is flat),
    and the label-noise damping cos(pi k / p)^n of frequency k in the targets (science.md section 6)
    as a dashed line. The legend sits outside the axes, so no peak is hidden."""
    with _style():
        ax, own = _single(ax, (10, 4))
        for i, (label, an) in enumerate(analyses.items()):
            norms = an.norms[-1].numpy()
            k = np.arange(1, len(norms) + 1)
            ax.plot(k, norms / norms.max(), color=f"C{i}", lw=1.2, label=f"{label}: key {_keys_text(an)}")
            keys = an.key_freqs.numpy()
            if not key_set_is_flat(an.key_freqs, len(norms)):  # a flat "key" set would only hide the line
                ax.plot(keys, norms[keys - 1] / norms.max(), "o", color=f"C{i}", ms=5)
            if noise.get(label):
                ax.plot(k, np.abs(np.cos(np.pi * k / p)) ** noise[label], color=f"C{i}", ls="--", lw=0.8)
        ax.set_xlabel("frequency k")
        ax.set_ylabel("N_k / max N_k at the final checkpoint")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        return _heading(ax, own, "Final W_E spectra (dots: key frequencies when sparse; dashed: |cos(pi k/p)|^n "
                        "label damping)")


def plot_fit_epochs(first_fit: dict[str, torch.Tensor], title: str, *, ax: Axes | None = None) -> Figure:
    """Histograms (log-spaced bins) of the epoch at which each group of examples is first fit
    (``first_fit``: label -> int64 epochs, -1 for never, e.g. ``an.first_fit_epoch[mask]``)."""
    with _style():
        ax, own = _single(ax, (7, 3.8))
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
        return _heading(ax, own, title)


def plot_ipr_histograms(iprs: dict[str, torch.Tensor], title: str, *, ax: Axes | None = None) -> Figure:
    """Histogram of per-neuron IPR (one line per run; each value float [d_mlp]), log bins 0.01 to 1."""
    with _style():
        ax, own = _single(ax, (7, 3.8))
        bins = np.geomspace(0.01, 1.0, 41)
        for i, (label, v) in enumerate(iprs.items()):
            ax.hist(v.clamp(0.01, 1.0).numpy(), bins=bins, histtype="step", lw=1.5, color=f"C{i}", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("IPR of the neuron's input curves (mean of a and b; 1 = one frequency)")
        ax.set_ylabel("neurons")
        ax.legend(loc="upper center")
        return _heading(ax, own, title)


# ------------------------------------------------------------------ sweeps (rows of SWEEP/analysis/table.csv)

PHASE_COLORS = {"confusion": "#bdbdbd", "forgetting": "#636363", "memorization": "#d95f02",
                "generalization": "#1b9e77", "coexistence": "#7570b3", "partial_inversion": "#a6d854",
                "full_inversion": "#1f78b4"}
PHASE_SHORT = {"confusion": "conf", "forgetting": "forget", "memorization": "mem", "generalization": "gen",
               "coexistence": "coex", "partial_inversion": "part inv", "full_inversion": "full inv"}


def _sweep_grid(rows: list[dict], x: str, y: str | None, facet: str | None):
    """(facet values, y values, x values, cells) of a sweep table; cells from sweep.table.aggregate."""
    from .sweep.table import aggregate

    cells = aggregate(rows, x, y, facet)
    facets = sorted({k[0] for k in cells}, key=lambda v: (v is None, v))
    ys = sorted({k[1] for k in cells}, key=lambda v: (v is None, v))
    xs = sorted({k[2] for k in cells})
    return facets, ys, xs, cells


def _label_axes(ax, x: str, y: str | None, xs: list, ys: list, facet: str | None, fv) -> None:
    ax.set_xticks(range(len(xs)), [f"{v:g}" if isinstance(v, float) else str(v) for v in xs])
    ax.set_yticks(range(len(ys)), ["" if v is None else f"{v:g}" if isinstance(v, float) else str(v) for v in ys])
    ax.set_xlim(-0.5, len(xs) - 0.5)
    ax.set_ylim(-0.5, len(ys) - 0.5)
    ax.set_xlabel(x)
    ax.set_ylabel(y or "")
    ax.grid(False)
    if facet is not None:
        ax.set_title(f"{facet} = {fv}", fontsize=9)


def plot_phase_diagram(rows: list[dict], x: str, y: str | None, facet: str | None = None, title: str = "", *,
                       fig: Figure | SubFigure | None = None, ncols: int | None = None) -> Figure:
    """Final phase of every run over two swept settings (a third as facets, in rows of ``ncols``
    panels; default one row): each cell split in proportion to the share of its runs (seeds and
    any other axis pooled) in each phase, labelled with the commonest phase, its count, and a
    dagger when some run had not settled."""
    from .sweep.table import phase_shares

    with _style():
        facets, ys, xs, cells = _sweep_grid(rows, x, y, facet)
        cols = len(facets) if ncols is None else max(1, min(ncols, len(facets)))
        rows_ = -(-len(facets) // cols)
        size = ((1.1 * len(xs) + 1.2) * cols + 1.5, (0.75 * len(ys) + 1.0) * rows_ + 0.6)
        fig, axes = _panels(fig, len(facets), size, cols)
        for ax, fv in zip(axes, facets):
            for (f, yv, xv), cell in cells.items():
                if f != fv:
                    continue
                i, j = xs.index(xv), ys.index(yv)
                left = i - 0.46
                for ph, share in phase_shares(cell).items():
                    ax.add_patch(matplotlib.patches.Rectangle((left, j - 0.46), 0.92 * share, 0.92,
                                                              color=PHASE_COLORS.get(ph, "white"), lw=0))
                    left += 0.92 * share
                top, share = next(iter(phase_shares(cell).items()))
                dagger = "" if all(r.get("settled") for r in cell) else " \u2020"
                ax.text(i, j, f"{PHASE_SHORT.get(top, top)}\n{round(share * len(cell))}/{len(cell)}{dagger}",
                        ha="center", va="center", fontsize=7, color="black")
            _label_axes(ax, x, y, xs, ys, facet, fv)
        handles = [matplotlib.patches.Patch(color=c, label=ph.replace("_", " ")) for ph, c in PHASE_COLORS.items()]
        fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=7)
        over = x + (f" x {y}" if y else "")
        fig.suptitle(title or f"Final phase over {over}\n(\u2020: a run had not settled)", fontsize=10)
    return _root(fig)


def plot_sweep_values(rows: list[dict], x: str, y: str | None, column: str = "test_acc_clean", facet: str | None = None,
                      title: str = "", log: bool = False, *, fig: Figure | SubFigure | None = None) -> Figure:
    """A table column over two swept settings: the cell's color is the mean over its runs (seeds
    pooled), its text mean and spread (sample sd; n runs with a value / runs). ``log`` for epochs."""
    with _style():
        facets, ys, xs, cells = _sweep_grid(rows, x, y, facet)
        fig, axes = _panels(fig, len(facets), ((1.1 * len(xs) + 1.2) * len(facets) + 1.5, 0.75 * len(ys) + 1.6))
        values = [r[column] for c in cells.values() for r in c if r.get(column) is not None]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        if column.startswith(("test_acc", "train_")) and not log:
            lo, hi = 0.0, 1.0
        norm = (matplotlib.colors.LogNorm(max(lo, 1), max(hi, 2)) if log
                else matplotlib.colors.Normalize(lo, hi if hi > lo else lo + 1))
        cmap = plt.get_cmap("viridis")
        for ax, fv in zip(axes, facets):
            for (f, yv, xv), cell in cells.items():
                if f != fv:
                    continue
                i, j = xs.index(xv), ys.index(yv)
                v = np.array([r[column] for r in cell if r.get(column) is not None], dtype=float)
                if v.size:
                    mean = v.mean()
                    ax.add_patch(matplotlib.patches.Rectangle((i - 0.46, j - 0.46), 0.92, 0.92,
                                                              color=cmap(norm(mean)), lw=0))
                    sd = f"\n\u00b1{v.std(ddof=1):.2g}" if v.size > 1 else ""
                    text = (f"{mean:.0f}" if log else f"{mean:.2f}") + sd + f"\n{v.size}/{len(cell)}"
                    ax.text(i, j, text, ha="center", va="center", fontsize=6.5,
                            color="white" if norm(mean) < 0.5 else "black")
                else:
                    ax.text(i, j, f"\u2013\n0/{len(cell)}", ha="center", va="center", fontsize=7)
            _label_axes(ax, x, y, xs, ys, facet, fv)
        fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, label=column, shrink=0.8)
        over = x + (f" x {y}" if y else "")
        fig.suptitle(title or f"{column} over {over}\n(mean, \u00b1sd, runs with a value / runs)", fontsize=10)
    return _root(fig)


def draw_sweep(rows: list[dict], x: str, y: str | None, facet: str | None, out_dir: Path) -> list[Path]:
    """The standard figures of a sweep (what `interp-grok analyze SWEEP_DIR` draws), closed."""
    from .analysis.phases import TRANSITIONS

    stem = x + (f"_{y}" if y else "") + (f"_by_{facet}" if facet else "")
    out = [save_figure(plot_phase_diagram(rows, x, y, facet), Path(out_dir) / f"phases_{stem}.png", close=True),
           save_figure(plot_sweep_values(rows, x, y, "test_acc_clean", facet), Path(out_dir) /
                       f"test_acc_clean_{stem}.png", close=True)]
    for col in TRANSITIONS:
        if any(r.get(col) is not None for r in rows):
            out.append(save_figure(plot_sweep_values(rows, x, y, col, facet, log=True),
                                   Path(out_dir) / f"{col}_{stem}.png", close=True))
    return out


def plot_published_vs_ours(curves: dict[str, dict[str, list[dict]]], published: dict[str, list[tuple]],
                           columns: tuple[str, str] = ("train_acc", "test_acc_clean"), title: str = "", *,
                           fig: Figure | SubFigure | None = None) -> Figure:
    """One panel per setting (``curves``: panel label -> {run label: progress rows}); each run's two
    ``columns`` over the epochs (solid: the first, dashed: the second), and a paper's published
    values as black markers (``published``: panel label -> [(epoch, first, second), ...]; circle:
    the first column, cross: the second)."""
    with _style():
        fig, axes = _panels(fig, len(curves), (3.6 * len(curves) + 1, 3.6))
        for ax, (panel, runs) in zip(axes, curves.items()):
            for i, (label, rows) in enumerate(runs.items()):
                e = [r["epoch"] for r in rows]
                ax.plot(e, [r[columns[0]] for r in rows], color=f"C{i}", label=f"{label}: {columns[0]}")
                ax.plot(e, [r[columns[1]] for r in rows], color=f"C{i}", ls="--", label=f"{label}: {columns[1]}")
            for j, (epoch, a, b) in enumerate(published.get(panel, [])):
                ax.plot([epoch], [a], "ko", ms=6, mfc="none", label="published: " + columns[0] if j == 0 else None)
                ax.plot([epoch], [b], "kx", ms=6, label="published: " + columns[1] if j == 0 else None)
            ax.set_title(panel, fontsize=9)
            ax.set_ylim(-0.02, 1.02)
            _epoch_axis(ax)
        axes[0].set_ylabel("accuracy")
        axes[-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=7)
        fig.suptitle(title, fontsize=10)
    return _root(fig)


def save_figure(fig: Figure, path: Path | str, close: bool = False) -> Path:
    """Save as PNG without the metadata that changes between runs or versions (same bytes every
    time), atomically. The figure stays open (so Jupyter still shows it) unless ``close``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    if close:
        plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


AUDIT_STYLE = {"loss": ("C0", "-"), "margin": ("C1", "-"), "first_fit_late": ("C2", "--"),
               "first_fit_early": ("C2", ":"), "restricted_disagree": ("C3", "--"), "restricted_nll": ("C3", "-")}


def plot_audit(rows: list[dict], run_name: str = "", *, fig: Figure | SubFigure | None = None) -> Figure:
    """The label audit's curves: precision and recall of each score against the budget (as a
    fraction of the training set), with the random baseline; ``rows`` as audit.audit_table gives
    them (or analysis.correction.read_audit reads from RUN/analysis/audit.csv). Ties counted in
    expectation (audit.expected_hits)."""
    with _style():
        fig, (ax_p, ax_r) = _panels(fig, 2, (10, 4))
        scores = list(dict.fromkeys(r["score"] for r in rows))
        for name in scores:
            rs = sorted((r for r in rows if r["score"] == name), key=lambda r: r["budget"])
            color, ls = AUDIT_STYLE.get(name, (None, "-"))
            x = [r["budget_frac"] for r in rs]
            ax_p.plot(x, [r["precision"] for r in rs], color=color, ls=ls, marker=".", label=name)
            ax_r.plot(x, [r["recall"] for r in rs], color=color, ls=ls, marker=".", label=name)
        if rows:
            rs = sorted((r for r in rows if r["score"] == scores[0]), key=lambda r: r["budget"])
            x = [r["budget_frac"] for r in rs]
            ax_p.plot(x, [r["baseline_precision"] for r in rs], color="0.4", ls=":", label="random (noisy fraction)")
            ax_r.plot(x, [r["baseline_recall"] for r in rs], color="0.4", ls=":", label="random (B / n)")
        for ax, what in ((ax_p, "precision (flagged that are noisy)"), (ax_r, "recall (noisy that are flagged)")):
            ax.set_xscale("log")
            ax.set_xlabel("budget B / n_train (log axis)")
            ax.set_ylabel(what)
            ax.set_ylim(-0.02, 1.02)
        ax_p.legend(loc="best")
        epoch = f" at epoch {rows[0]['epoch']}" if rows and "epoch" in rows[0] else ""
        fig.suptitle(_title(run_name, f"label audit{epoch}: the top-B training examples by each score"),
                     fontsize=11)
    return _root(fig)


def plot_transformer_views(an: Analysis | list[dict], run_name: str = "", *, fig: Figure | SubFigure | None = None
                           ) -> Figure:
    """Nanda et al.'s views of a transformer run over training (4 panels; the transformer_views
    columns of ``an``, an Analysis or progress.csv rows as dicts): the "=" position's attention on
    a, b and itself; each head's dominant-frequency share of its score on token a (its frequency at
    the end in the legend); the fraction of live neurons in a frequency cluster and their mean
    explained share; the effective rank of W_L."""
    rows = an.rows if isinstance(an, Analysis) else an
    with _style():
        fig, axes = _panels(fig, 4, (11, 6.4), ncols=2)
        for col, label, color, ls in (("attn_to_a", "on a", "C0", "-"), ("attn_to_b", "on b", "C1", "-"),
                                      ("attn_to_eq", 'on "="', "0.5", "--")):
            axes[0].plot(*_row_xy(rows, col), color=color, ls=ls, label=label)
        axes[0].set_ylabel('mean attention from "="')
        axes[0].set_ylim(-0.02, 1.02)
        heads = sorted(int(k[4:].removesuffix("_freq")) for k in rows[0] if k.startswith("head")
                       and k.endswith("_freq")) if rows else []
        for h in heads:
            k_end = int(rows[-1][f"head{h}_freq"])
            axes[1].plot(*_row_xy(rows, f"head{h}_freq_share"), color=f"C{h}",
                         label=f"head {h} (k = {k_end} at the end)")
        axes[1].set_ylabel("dominant frequency's share\nof the score on a")
        axes[1].set_ylim(-0.02, 1.02)
        for col, label, color, ls in (("neuron_clustered_frac", "neurons in a frequency cluster", "C2", "-"),
                                      ("neuron_freq_share", "mean share of the dominant frequency", "C4", "--")):
            axes[2].plot(*_row_xy(rows, col), color=color, ls=ls, label=label)
        axes[2].set_ylabel("fraction")
        axes[2].set_ylim(-0.02, 1.02)
        axes[3].plot(*_row_xy(rows, "rank_W_L"), color="k")
        axes[3].set_ylabel("rank of W_L (99 % energy)")
        for ax in axes:
            _epoch_axis(ax)
        for ax in axes[:3]:
            ax.legend(loc="best", fontsize=8)
        fig.suptitle(_title(run_name, "The transformer's views (Nanda et al.)"), fontsize=11)
    return _root(fig)


def plot_nanda_phases(runs: dict[str, list[dict]], marks: dict[str, dict[str, int | None]], title: str = "", *,
                      fig: Figure | SubFigure | None = None) -> Figure:
    """Nanda et al.'s progress measures, one column per run (label -> progress.csv rows): train,
    test, restricted and excluded loss (log axis) above, Σθ² below, on a linear epoch axis as their
    figures; the phase boundaries ``marks[label]`` (phases.nanda_phase_epochs) as vertical lines."""
    styles = {"memorization_end": ("C1", "memorization ends"), "cleanup_start": ("C3", "cleanup starts"),
              "cleanup_end": ("C2", "cleanup ends")}
    with _style():
        n = len(runs)
        if fig is None:
            fig, axes = plt.subplots(2, n, figsize=(4.2 * n + 1, 6.2), layout="constrained", squeeze=False,
                                     sharex="col", height_ratios=(2, 1))
        else:
            axes = fig.subplots(2, n, squeeze=False, sharex="col", height_ratios=(2, 1))
        for j, (label, rows) in enumerate(runs.items()):
            top, bottom = axes[0, j], axes[1, j]
            for col, name, color in (("train_loss", "train", "C0"), ("test_loss", "test", "C3"),
                                     ("restricted_loss", "restricted", "C2"), ("excluded_loss", "excluded", "C1")):
                top.plot(*_row_xy(rows, col), color=color, label=f"{name} loss")
            top.set_yscale("log")
            top.set_title(label, fontsize=10)
            bottom.plot(*_row_xy(rows, "sum_sq_weights"), color="k")
            bottom.set_xlabel("epoch")
            for key, (color, name) in styles.items():
                if marks.get(label, {}).get(key) is not None:
                    for ax in (top, bottom):
                        ax.axvline(marks[label][key], color=color, ls=":", lw=1.2, label=name if ax is top else None)
        axes[0, 0].set_ylabel("cross-entropy (nats)")
        axes[1, 0].set_ylabel("sum of squared weights")
        axes[0, 0].legend(loc="best", fontsize=8)
        fig.suptitle(title or "Progress measures and phases (Nanda et al.)", fontsize=11)
    return _root(fig)


def plot_numerics(runs: dict[str, list[dict]], title: str = "", *, styles: dict[str, tuple[str, str]] | None = None,
                  fig: Figure | SubFigure | None = None) -> Figure:
    """The numerics of several runs side by side (label -> progress.csv rows; 4 panels): clean test
    accuracy, the softmax-collapse fractions (float32 solid, float64 dotted), the float64
    cross-entropy train loss (log axis) and the cosine of the descent direction with all the weights
    (docs/numerics.md). ``styles[label]`` = (color, linestyle); default one color per run, solid."""
    styles = styles or {label: (f"C{i % 10}", "-") for i, label in enumerate(runs)}
    with _style():
        fig, axes = _panels(fig, 4, (11, 6.8), ncols=2)
        for label, rows in runs.items():
            color, ls = styles[label]
            axes[0].plot(*_row_xy(rows, "test_acc_clean"), color=color, ls=ls, label=label)
            axes[1].plot(*_row_xy(rows, "softmax_collapse_f32"), color=color, ls=ls)
            axes[1].plot(*_row_xy(rows, "softmax_collapse_f64"), color=color, ls=":", lw=1)
            axes[2].plot(*_row_xy(rows, "train_loss"), color=color, ls=ls)
            axes[3].plot(*_row_xy(rows, "grad_cos_all"), color=color, ls=ls)
        axes[0].set_ylabel("clean test accuracy")
        axes[1].set_ylabel("softmax-collapse fraction\n(float32; float64 dotted)")
        axes[2].set_ylabel("train loss (float64 CE)")
        axes[2].set_yscale("log")
        axes[3].set_ylabel("cos(-gradient, weights)")
        for ax in (axes[0], axes[1]):
            ax.set_ylim(-0.02, 1.02)
        axes[3].set_ylim(-1.02, 1.02)
        for ax in axes:
            _epoch_axis(ax)
        axes[0].legend(loc="best", fontsize=7)
        fig.suptitle(title or "Numerics (Prieto et al. 2025)", fontsize=11)
    return _root(fig)


def draw_all(an: Analysis, floor: dict, xs: list[int], out_dir: Path, run_name: str = "") -> list[Path]:
    """The standard figures of one run, written to out_dir and closed (what `interp-grok analyze`
    draws); returns their paths."""
    builders = {
        "losses": lambda: plot_losses(an, floor, run_name),
        "spectrum_heatmap": lambda: plot_spectrum_heatmap(an, run_name),
        "spectrum_final": lambda: plot_spectrum_final(an, run_name),
        "restricted_excluded": lambda: plot_restricted_excluded(an, floor, run_name),
        "weight_norms": lambda: plot_weight_norms(an, run_name),
        "memorization": lambda: plot_memorization(an, floor, xs, run_name),
    }
    if an.rows and "attn_to_a" in an.rows[0]:  # a transformer run's views
        builders["transformer_views"] = lambda: plot_transformer_views(an, run_name)
    return [save_figure(build(), Path(out_dir) / f"{name}.png", close=True) for name, build in builders.items()]
