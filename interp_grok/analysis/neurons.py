"""Periodic versus memorizing neurons: per-neuron IPR and Doshi et al.'s pruning test, with a control.

Doshi et al. 2024 (science.md §5) separate generalizing neurons (a Fourier spectrum concentrated
on one frequency: high inverse participation ratio) from memorizing ones (low IPR), and report
that silencing the low-IPR neurons removes the memorized labels and keeps test accuracy.
Silencing neurons always costs something, so the claim needs a control: the same number of
neurons, chosen at random but matched in size, silenced the same way. ``pruning_experiment``
returns both. Pure functions on tensors; the random draws take an explicit seed.
"""

from __future__ import annotations

import torch

from ..config import Config
from ..evaluation import evaluate
from ..models import ModelFamily, family
from ..models.mlp import neuron_curves
from .fourier import ipr

PERIODIC_IPR = 0.5  # a neuron is "periodic" when its IPR is at least this (a square wave scores 2/3)
NORM_BINS = 4  # the control matches the silenced neurons' size quartiles
CONTROL_DRAWS = 8  # random control sets per experiment
CONTROL_SEED = 0
PRUNING_METRICS = ("test_acc_clean", "train_clean_acc", "train_noisy_memorized_frac", "train_noisy_corrected_frac")
SIZE_RULE = "||[in_a, in_b]|| * ||out|| per neuron (neuron_curves), rank-binned into quantiles"


def neuron_ipr(params: dict[str, torch.Tensor], model: ModelFamily | None = None) -> torch.Tensor:
    """Per-neuron IPR, float64 [d_mlp]: the mean of ipr(in_a) and ipr(in_b) (models.mlp.neuron_curves).

    The convention of analyses/03 and tests/test_reference_runs: the two input curves only.
    Doshi et al. also look at the output curve; a neuron that reads one frequency but writes
    another is still "periodic" here. Works on the five weights or the compact form; ``model``:
    another family's curves (models.ModelFamily.neuron_curves).
    """
    curves = model.neuron_curves(params) if model is not None else neuron_curves(params)
    return (ipr(curves["in_a"]) + ipr(curves["in_b"])) / 2


def neuron_sizes(params: dict[str, torch.Tensor], model: ModelFamily | None = None) -> torch.Tensor:
    """||[in_a; in_b]|| * ||out|| per neuron, float64 [d_mlp].

    ReLU is positively homogeneous: scaling a neuron's input weights by c > 0 and its output
    weights by 1 / c changes nothing the network computes, and leaves this product unchanged
    (the bias b_in, which scales with the inputs, is left out of the norm). For the quadratic
    family (x^2 is homogeneous of degree 2) the product still ranks neurons by their weight.
    """
    curves = model.neuron_curves(params) if model is not None else neuron_curves(params)
    inputs = torch.cat([curves["in_a"], curves["in_b"]], dim=-1).norm(dim=-1)
    return inputs * curves["out"].norm(dim=-1)


def norm_matched_controls(sizes: torch.Tensor, silenced: torch.Tensor, n_draws: int = CONTROL_DRAWS,
                          seed: int = CONTROL_SEED, n_bins: int = NORM_BINS) -> torch.Tensor:
    """Random neuron sets matched in size to ``silenced``: bool [n_draws, d_mlp].

    Neurons are ranked by size and cut into ``n_bins`` equal-count bins (rank * n_bins // d_mlp,
    ties by index). Each draw takes, in every bin, as many neurons as ``silenced`` has there,
    uniformly without replacement among all of the bin's neurons (the silenced ones included).
    So every draw silences exactly as many neurons, with the same size profile. When the
    silenced neurons fill a bin, the control must take that whole bin too.
    """
    n = sizes.numel()
    if silenced.shape != (n,) or silenced.dtype != torch.bool:
        raise ValueError(f"silenced must be bool [{n}] (got {silenced.dtype} {list(silenced.shape)})")
    if not 1 <= n_bins <= n:
        raise ValueError(f"n_bins must be in 1..{n} (got {n_bins})")
    rank = torch.empty(n, dtype=torch.int64)
    rank[torch.argsort(sizes, stable=True)] = torch.arange(n)
    bins = rank * n_bins // n
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(n_draws, n, dtype=torch.bool)
    for b in range(n_bins):
        members = torch.nonzero(bins == b).flatten()
        m = int(silenced[members].sum())
        for d in range(n_draws):
            out[d, members[torch.randperm(members.numel(), generator=g)[:m]]] = True
    return out


def largest(sizes: torch.Tensor, k: int) -> torch.Tensor:
    """bool [d_mlp]: the k neurons of largest size (ties by index, as norm_matched_controls ranks)."""
    if not 0 <= k <= sizes.numel():
        raise ValueError(f"k must be in 0..{sizes.numel()} (got {k})")
    keep = torch.zeros(sizes.numel(), dtype=torch.bool)
    keep[torch.argsort(sizes, stable=True)[sizes.numel() - k:]] = True
    return keep


@torch.no_grad()
def size_ranked_pruning(params: dict[str, torch.Tensor], config: Config, noisy_labels: torch.Tensor,
                        clean_labels: torch.Tensor, train_idx: torch.Tensor, test_idx: torch.Tensor, *,
                        threshold: float = PERIODIC_IPR) -> dict:
    """IPR pruning against pruning by size alone: keep the K periodic neurons (IPR >= threshold),
    or keep the K largest (``neuron_sizes``), silencing the rest either way (as pruning_experiment,
    through the family of ``config``).

    When the periodic neurons are the largest ones, the size-quantile control of
    ``pruning_experiment`` can only reshuffle neurons inside the top bin; keeping the K largest
    is the comparison that holds size fixed at its extreme. Returns ``n_periodic`` (K),
    ``n_periodic_among_largest`` (how many of the K periodic neurons are among the K largest) and
    the PRUNING_METRICS of ``full``, ``ipr_pruned`` and ``largest_kept``.
    """
    model = family(config)

    def metrics(ps: dict[str, torch.Tensor]) -> dict[str, float]:
        m = evaluate(ps, config, noisy_labels, clean_labels, train_idx, test_idx)
        return {k: float(m[k]) for k in PRUNING_METRICS}

    periodic = neuron_ipr(params, model) >= threshold
    top = largest(neuron_sizes(params, model), int(periodic.sum()))
    return {
        "ipr_threshold": threshold,
        "n_neurons": int(periodic.numel()),
        "n_periodic": int(periodic.sum()),
        "n_periodic_among_largest": int((periodic & top).sum()),
        "full": metrics(params),
        "ipr_pruned": metrics(model.ablate_neurons(params, periodic)),
        "largest_kept": metrics(model.ablate_neurons(params, top)),
    }


@torch.no_grad()
def pruning_experiment(params: dict[str, torch.Tensor], config: Config, noisy_labels: torch.Tensor,
                       clean_labels: torch.Tensor, train_idx: torch.Tensor, test_idx: torch.Tensor, *,
                       threshold: float = PERIODIC_IPR, n_draws: int = CONTROL_DRAWS, seed: int = CONTROL_SEED,
                       n_bins: int = NORM_BINS) -> dict:
    """Silence the neurons with IPR < threshold, and as a control random sets matched by size bin
    (norm_matched_controls: as many neurons from each of ``n_bins`` equal-count size bins; the
    default 4 bins are size quartiles, a coarse match: docs/findings.md §4).

    The model family of ``config`` (models.family) gives the neurons' curves, how a neuron is
    silenced (its ablate_neurons: the MLP zeroes the neuron's W_out row) and the outputs the
    metrics are read from (evaluation.evaluate). Returns a JSON-ready dict: the settings; ``full``,
    ``ipr_pruned`` (metrics of PRUNING_METRICS); ``control`` ({metric: {mean, sd, min, max}} over
    the draws, sd with n - 1, 0 for one draw) and ``control_draws`` ({metric: [one value per
    draw]}). If pruning low-IPR neurons forgets the memorized labels far more than the control
    does, the memorization lives in those neurons; if the control forgets as much, pruning only
    shows that removing neurons removes fit.
    """
    labels = (noisy_labels, clean_labels, train_idx, test_idx)
    model = family(config)

    def metrics(ps: dict[str, torch.Tensor]) -> dict[str, float]:
        m = evaluate(ps, config, *labels)
        return {k: float(m[k]) for k in PRUNING_METRICS}

    ablate = model.ablate_neurons
    low = neuron_ipr(params, model) < threshold
    draws = norm_matched_controls(neuron_sizes(params, model), low, n_draws, seed, n_bins)
    per_draw = [metrics(ablate(params, ~d)) for d in draws]
    control_draws = {k: [m[k] for m in per_draw] for k in PRUNING_METRICS}

    def spread(v: list[float]) -> dict[str, float]:
        t = torch.tensor(v, dtype=torch.float64)
        return {"mean": t.mean().item(), "sd": t.std().item() if len(v) > 1 else 0.0,
                "min": t.min().item(), "max": t.max().item()}

    return {
        "ipr_threshold": threshold,
        "ipr_convention": "mean of ipr(in_a) and ipr(in_b)",
        "n_neurons": int(low.numel()),
        "n_silenced": int(low.sum()),
        "control_size": SIZE_RULE,
        "n_bins": n_bins,
        "n_draws": n_draws,
        "seed": seed,
        "full": metrics(params),
        "ipr_pruned": metrics(ablate(params, ~low)),
        "control": {k: spread(v) for k, v in control_draws.items()} if n_draws else {},
        "control_draws": control_draws,
    }
