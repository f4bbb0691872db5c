"""Numerical-stability measures of a classifier (Prieto et al. 2025, "Grokking at the edge of numerical
stability"; science.md sections 7 and 11): softmax collapse, exactly-zero losses, the logit scale, the
alignment of the loss gradient with the weights, and slingshot-like spikes of the train loss.

Pure functions, tensors in, tensors out; analysis.measures turns them into progress.csv columns and
analysis.pipeline puts the spike count in summary.json (docs/measurements.md, "Numerics").
"""

from __future__ import annotations

import torch

from ..config import Config
from ..models import ModelFamily
from .phases import SETTLE_FRACTION, last_quarter_change, run_phases

# the spike rule's defaults (loss_spikes; docs/measurements.md): a train loss at least SPIKE_FACTOR times
# the lowest of the previous SPIKE_WINDOW epochs and at least SPIKE_FLOOR
SPIKE_FACTOR = 10.0
SPIKE_WINDOW = 100
SPIKE_FLOOR = 1e-3
# a run has stalled when, over the last quarter, Σθ² moved by at most this share of its final value and
# its clean test accuracy is stationary (stalled; docs/numerics.md's readout)
STALL_WEIGHT_CHANGE = 0.01
# the level at which a collapse column counts as collapsed (first_epoch_reaching; docs/numerics.md)
COLLAPSE_LEVEL = 0.5


def softmax_collapse_fraction(logits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Fraction of rows of ``logits`` [n, C] whose sum_j exp(z_j - max z) rounds to exactly 1 in ``dtype``
    (softmax collapse: every other class's term is absorbed, so the loss and its gradient vanish).

    As Prieto et al.'s logger computes it (logger.py:154-165: the logits cast to the dtype, the max
    subtracted, exp, sum, == 1). float64 scalar; NaN for no rows.
    """
    z = logits.to(dtype)
    sum_exp = torch.exp(z - z.amax(-1, keepdim=True)).sum(-1)
    return (sum_exp == 1).to(torch.float64).mean()


def zero_loss_fraction(logits: torch.Tensor, labels: torch.Tensor, dtype: torch.dtype = torch.float32
                       ) -> torch.Tensor:
    """Fraction of rows whose softmax cross-entropy -log_softmax(z)[label], computed in ``dtype``, is
    exactly 0 (their logger's "zero terms", logger.py:143-152: the training loss, unreduced, == 0).
    float64 scalar."""
    nll = -logits.to(dtype).log_softmax(-1).gather(-1, labels[:, None])[:, 0]
    return (nll == 0).to(torch.float64).mean()


def top_logit_gap(logits: torch.Tensor) -> torch.Tensor:
    """Per row of ``logits`` [n, C] (C >= 2), the largest logit minus the second largest, float64 [n]:
    the logit scale that decides collapse (science.md section 7: about 21 for p = 97 in float32, 41 in
    float64)."""
    top2 = logits.to(torch.float64).topk(2, dim=-1).values
    return top2[:, 0] - top2[:, 1]


def descent_weight_cosines(params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]
                           ) -> dict[str, torch.Tensor]:
    """cos(-g, w) per parameter tensor, and over all of them (key "all"), float64 scalars.

    cos = -<g, w> / (|g| |w|), the tensors flattened; "all" concatenates every tensor first:
    -sum_i <g_i, w_i> / (sqrt(sum_i |g_i|^2) sqrt(sum_i |w_i|^2)). The negative gradient is the descent
    direction, so naive loss minimization (the update scaling the weights up along themselves, Prieto et
    al.) shows as a cosine near +1. 0 where the gradient or the weight is exactly zero (b_in at its
    initialization; a gradient that vanished): torch.nn.functional.cosine_similarity's convention, and
    no NaN in progress.csv.
    """
    out: dict[str, torch.Tensor] = {}
    dot_all = gg_all = ww_all = torch.zeros((), dtype=torch.float64)
    for name, w in params.items():
        w64, g64 = w.detach().to(torch.float64).reshape(-1), grads[name].detach().to(torch.float64).reshape(-1)
        dot, gg, ww = -(g64 @ w64), g64 @ g64, w64 @ w64
        out[name] = _cos(dot, gg, ww)
        dot_all, gg_all, ww_all = dot_all + dot, gg_all + gg, ww_all + ww
    out["all"] = _cos(dot_all, gg_all, ww_all)
    return out


def _cos(dot: torch.Tensor, gg: torch.Tensor, ww: torch.Tensor) -> torch.Tensor:
    denom = (gg * ww).sqrt()
    return dot / denom if denom > 0 else torch.zeros((), dtype=torch.float64)


def training_gradients(fam: ModelFamily, params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor,
                       labels: torch.Tensor, config: Config) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss, gradient of each parameter) of the family's training loss (config.loss in config.loss_dtype,
    ``fam.batched_loss``) of one model's ``params`` on pairs a, b (int64 [n]) with ``labels`` [n]: what
    the optimizer receives. The params are not modified."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    with torch.enable_grad():  # callers may run under no_grad (the analysis pipeline does)
        loss = fam.batched_loss({k: v.unsqueeze(0) for k, v in leaves.items()}, a[None], b[None], labels[None],
                                torch.tensor([labels.numel()], device=labels.device), config)[0]
        grads = torch.autograd.grad(loss, list(leaves.values()))
    return loss.detach(), dict(zip(leaves, grads))


def loss_spikes(losses: torch.Tensor, factor: float = SPIKE_FACTOR, window: int = SPIKE_WINDOW,
                floor: float = SPIKE_FLOOR) -> torch.Tensor:
    """The epochs at which slingshot-like spikes of a per-epoch train loss start, int64 [n_spikes].

    Epoch t is spiking when losses[t] >= factor * min(losses[t - window : t]) and losses[t] >= floor
    (the first epoch has no history and never spikes); a spike is a maximal run of consecutive
    spiking epochs, dated by its first. The floor keeps the quantized near-zero losses of a fitted
    run (float32 steps of ~1.2e-7, science.md section 7) from counting as spikes; the trailing minimum
    makes a loss that has merely not come down yet (early training) no spike.
    """
    x = losses.to(torch.float64).reshape(-1)
    T = x.numel()
    if T < 2:
        return torch.zeros(0, dtype=torch.int64)
    # trailing min over the previous ``window`` epochs: a max pool of -x, padded on the left with -inf
    padded = torch.cat([torch.full((window,), -torch.inf, dtype=torch.float64), -x])
    prev_min = -torch.nn.functional.max_pool1d(padded[None, None], window, stride=1)[0, 0, :T]
    spiking = (x >= factor * prev_min) & (x >= floor)
    starts = spiking & ~torch.cat([torch.zeros(1, dtype=torch.bool), spiking[:-1]])
    return starts.nonzero()[:, 0]


def first_epoch_reaching(epochs, values, level: float) -> int | None:
    """The first epoch whose value is >= level (NaN values never reach), or None: e.g. the first
    checkpoint at which softmax_collapse_f32 reaches COLLAPSE_LEVEL."""
    e = torch.as_tensor(epochs, dtype=torch.float64).reshape(-1)
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if e.numel() != v.numel():
        raise ValueError(f"epochs and values must be of one length (got {e.numel()} and {v.numel()})")
    hit = (v >= level).nonzero()  # NaN >= level is False
    return int(e[hit[0, 0]]) if hit.numel() else None


def stalled(epochs, sum_sq_weights, test_clean, max_weight_change: float = STALL_WEIGHT_CHANGE,
            fraction: float = SETTLE_FRACTION) -> bool:
    """Whether a run has stopped moving over the last ``fraction`` of its epochs: Σθ² changed by at
    most ``max_weight_change`` of its final value there (|Δ| / final, last_quarter_change's Δ) and the
    clean test accuracy is stationary by last_quarter_change's rule. A float32 run whose softmax has
    collapsed gets exactly zero gradients and stalls (Prieto et al. 2025)."""
    w = last_quarter_change(epochs, sum_sq_weights, fraction)
    g = last_quarter_change(epochs, test_clean, fraction)
    final = float(torch.as_tensor(sum_sq_weights, dtype=torch.float64).reshape(-1)[-1])
    return bool(g["stationary"]) and final > 0 and abs(w["delta"]) <= max_weight_change * final


def numerics_readout(rows: list[dict], summary: dict) -> dict:
    """docs/numerics.md's readout of one run from its progress.csv rows (dicts with "epoch") and its
    summary.json: the fit epoch (first checkpoint with train accuracy 1), the grokking epoch
    (summary's first evaluation with clean test accuracy >= 0.95, None if none), the first checkpoint
    at which each collapse fraction reaches COLLAPSE_LEVEL and its largest value, whether the run
    stalled, the largest clean test accuracy, and the final values the page lists."""
    epochs = [int(r["epoch"]) for r in rows]

    def col(k: str) -> list[float]:
        return [float(r[k]) for r in rows]

    last, phases = rows[-1], run_phases(epochs, rows)
    return {
        "epoch": epochs[-1],
        "fit_epoch": first_epoch_reaching(epochs, col("train_acc"), 1.0),
        "grok_epoch": summary.get("epoch_test_acc_clean_first_95"),
        "collapse_epoch_f32": first_epoch_reaching(epochs, col("softmax_collapse_f32"), COLLAPSE_LEVEL),
        "collapse_epoch_f64": first_epoch_reaching(epochs, col("softmax_collapse_f64"), COLLAPSE_LEVEL),
        "collapse_max_f32": max(col("softmax_collapse_f32")),
        "collapse_max_f64": max(col("softmax_collapse_f64")),
        "stalled": stalled(epochs, col("sum_sq_weights"), col("test_acc_clean")),
        "G": float(last["test_acc_clean"]), "G_max": max(col("test_acc_clean")),
        "M": float(last["train_noisy_memorized_frac"]),
        "train_loss": float(last["train_loss"]),
        "collapse_f32": float(last["softmax_collapse_f32"]), "collapse_f64": float(last["softmax_collapse_f64"]),
        "zero_loss_f32": float(last["zero_loss_frac_f32"]), "logit_gap": float(last["logit_gap_mean"]),
        "grad_cos_all": float(last["grad_cos_all"]), "grad_cos_W_U": float(last["grad_cos_W_U"]),
        "sum_sq_weights": float(last["sum_sq_weights"]),
        "phase": phases["final_phase"], "settled": phases["settled"],
        "spikes": summary.get("train_loss_spikes"), "spike_epochs": summary.get("train_loss_spike_epochs"),
    }


__all__ = ["COLLAPSE_LEVEL", "SPIKE_FACTOR", "SPIKE_FLOOR", "SPIKE_WINDOW", "STALL_WEIGHT_CHANGE",
           "descent_weight_cosines", "first_epoch_reaching", "loss_spikes", "numerics_readout",
           "softmax_collapse_fraction", "stalled",
           "top_logit_gap", "training_gradients", "zero_loss_fraction"]
