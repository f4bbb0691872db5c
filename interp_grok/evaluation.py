"""Full-grid evaluation of one set of weights: losses and accuracies on both label sets.

Shared by the trainer (metrics.jsonl) and the analysis layer (progress.csv), so the two
can never disagree about what "test_acc_clean" means.
"""

from __future__ import annotations

import math

import torch

from .config import Config
from .models import family
from .models.mlp import grid_logits, is_compact


def sum_sq_weights(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of squared weights over all parameters (Nanda et al.'s measure), float64 scalar."""
    return sum(v.detach().to(torch.float64).pow(2).sum() for v in params.values())


def weight_norms(params: dict[str, torch.Tensor]) -> dict[str, float]:
    """Frobenius norm of each weight matrix, keyed norm_W_E, norm_W_in, ... (float64)."""
    return {f"norm_{k}": v.detach().to(torch.float64).norm().item() for k, v in params.items()}


@torch.no_grad()
def grid_metrics(
    params: dict[str, torch.Tensor],
    act: str,
    noisy_labels: torch.Tensor,
    clean_labels: torch.Tensor,
    train_idx: torch.Tensor,
    test_idx: torch.Tensor,
) -> dict[str, float]:
    """Losses (float64 NLL) and accuracies of the model on the full p x p grid.

    Labels are int64 [p*p] a-major. "noisy" training examples are those whose noisy label
    differs from the clean one; their accuracy against the noisy label is the memorized
    fraction, against the clean label the corrected fraction. ``params`` may be the compact form
    (models.mlp.compact_params); then sum_sq_weights, which needs the five weights, is NaN.
    """
    p = params["W_E"].shape[0]
    logits = grid_logits(params, act).reshape(p * p, p)  # [a*p + b, c]
    return metrics_from_logits(logits, noisy_labels, clean_labels, train_idx, test_idx) | {
        "sum_sq_weights": math.nan if is_compact(params) else sum_sq_weights(params).item()}


@torch.no_grad()
def evaluate(
    params: dict[str, torch.Tensor],
    config: Config,
    noisy_labels: torch.Tensor,
    clean_labels: torch.Tensor,
    train_idx: torch.Tensor,
    test_idx: torch.Tensor,
) -> dict[str, float]:
    """grid_metrics for any model family: its full-grid outputs, its loss (models.family(config)).

    For the MLP this is grid_metrics(params, config.act, ...) exactly (same operations, same bits).
    """
    fam = family(config)
    p = config.p
    logits = fam.grid_logits(params, config).reshape(p * p, p)
    return metrics_from_logits(logits, noisy_labels, clean_labels, train_idx, test_idx, loss=fam.loss) | {
        "sum_sq_weights": sum_sq_weights(params).item()}


def per_example_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example float64 NLL of log_softmax, [n], for logits [n, C] of any model family."""
    return -logits.to(torch.float64).log_softmax(-1).gather(-1, labels[:, None])[:, 0]


def example_losses(logits: torch.Tensor, labels: torch.Tensor, loss: str = "cross_entropy") -> torch.Tensor:
    """Per-example float64 loss [n] of logits [n, C]: cross_entropy (NLL of log_softmax) or mse
    (mean over the C classes of (z - onehot(label))^2, so its mean over examples is nn.MSELoss)."""
    if loss == "cross_entropy":
        return per_example_cross_entropy(logits, labels)
    z = logits.to(torch.float64)
    if loss == "mse":
        return (z - torch.nn.functional.one_hot(labels, z.shape[-1]).to(torch.float64)).square().mean(-1)
    raise ValueError(f"loss must be cross_entropy or mse (got {loss!r})")


def metrics_from_logits(
    logits: torch.Tensor,
    noisy_labels: torch.Tensor,
    clean_labels: torch.Tensor,
    train_idx: torch.Tensor,
    test_idx: torch.Tensor,
    loss: str = "cross_entropy",
) -> dict[str, float]:
    """The losses and accuracies of grid_metrics from full-grid logits [p*p, p] (a-major).

    ``loss`` is the model family's (models.ModelFamily.loss): the *_loss entries are mean
    cross-entropies (float64 NLL) or mean squared errors against the one-hot label.
    """
    pred = logits.argmax(-1)
    if loss == "cross_entropy":
        log_probs = logits.to(torch.float64).log_softmax(-1)  # once, for both label sets
        nll_noisy = -log_probs.gather(-1, noisy_labels[:, None])[:, 0]
        nll_clean = -log_probs.gather(-1, clean_labels[:, None])[:, 0]
    else:
        nll_noisy, nll_clean = example_losses(logits, noisy_labels, loss), example_losses(logits, clean_labels, loss)
    hit_noisy = (pred == noisy_labels).to(torch.float64)
    hit_clean = (pred == clean_labels).to(torch.float64)
    is_noisy = noisy_labels != clean_labels
    tr_noisy = train_idx[is_noisy[train_idx]]
    tr_clean = train_idx[~is_noisy[train_idx]]

    def mean(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return x[idx].mean() if idx.numel() else torch.tensor(float("nan"), dtype=torch.float64)

    out = {
        "train_loss": mean(nll_noisy, train_idx),
        "test_loss": mean(nll_noisy, test_idx),
        "train_loss_clean": mean(nll_clean, train_idx),
        "test_loss_clean": mean(nll_clean, test_idx),
        "train_acc": mean(hit_noisy, train_idx),
        "test_acc_noisy": mean(hit_noisy, test_idx),
        "test_acc_clean": mean(hit_clean, test_idx),
        "train_clean_acc": mean(hit_noisy, tr_clean),
        "train_noisy_memorized_frac": mean(hit_noisy, tr_noisy),
        "train_noisy_corrected_frac": mean(hit_clean, tr_noisy),
    }
    values = torch.stack(list(out.values())).tolist()  # one host transfer for all of them
    return dict(zip(out, values))
