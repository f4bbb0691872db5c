"""The classification losses a model family trains with, batched over a leading model axis, each with
a fused hand-written backward: softmax cross-entropy (the seed's; float64 or float32) and StableMax
cross-entropy (Prieto et al. 2025). Any family whose outputs are class logits calls ``batched_loss``
with its config's ``loss`` and ``loss_dtype``; nothing here knows an architecture.

StableMax, as their code defines it (LucasPrietoAl/grokking-at-the-edge-of-numerical-stability,
utils.py:31-49): s(x) = x + 1 for x >= 0 and 1 / (1 - x + eps) for x < 0 with eps = 1e-30,
log_stablemax = log(s(z) / sum_j s(z_j)), loss = -mean over examples of log_stablemax at the label,
computed in float64 (they cast the logits to float64 and have no float32 variant). No max is
subtracted: unlike softmax it is not shift-invariant. Their eps changes no bit: for x < 0,
1 - x >= 1, and 1e-30 is far below half an ulp of any number >= 1 in float64 or float32, so
1 - x + eps == 1 - x; this module writes s without it (tests/test_numerics.py checks the two agree
bit for bit). ``loss_dtype`` float32 computes the same formula in float32 (the float32-only path).

Gradients (per example, label y, S = sum_j s(z_j), q_j = s(z_j) / S):
    softmax:   dL/dz_j = softmax(z)_j - [j = y]
    StableMax: dL/dz_j = q_j r_j - [j = y] r_y,  r = s'(z) / s(z) = 1 / (1 + z) for z >= 0 and
               s(z) for z < 0 (s' = 1 for z >= 0, s(z)^2 for z < 0)
each divided by the model's n_k (a mean over its first n_k examples; the rest pad a batch).
"""

from __future__ import annotations

import torch

from ..config import CLASSIFIER_LOSSES


def stablemax_s(z: torch.Tensor) -> torch.Tensor:
    """Prieto et al.'s s: z + 1 for z >= 0, 1 / (1 - z) for z < 0 (their eps is a no-op; module docstring)."""
    return torch.where(z < 0, 1.0 / (1.0 - z), z + 1.0)


def log_stablemax(z: torch.Tensor) -> torch.Tensor:
    """log(s(z) / sum_j s(z_j)) over the last axis, in z's dtype (their utils.py:38-40)."""
    s = stablemax_s(z)
    return torch.log(s / s.sum(-1, keepdim=True))


def _valid(labels: torch.Tensor, n_k: torch.Tensor) -> torch.Tensor | None:
    """The mask of counted examples [K, n], or None when nothing pads."""
    if bool((n_k == labels.shape[1]).all()):
        return None
    return torch.arange(labels.shape[1], device=labels.device)[None, :] < n_k[:, None]


def _mean(per_example: torch.Tensor, n_k: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    if valid is None:
        return per_example.sum(-1) / n_k  # no padding: exactly the mean
    return (per_example * valid).sum(-1) / n_k


def _scale_(grad: torch.Tensor, grad_loss: torch.Tensor, n_k: torch.Tensor, valid: torch.Tensor | None) -> None:
    scale = grad_loss / n_k  # [K]
    if valid is None:
        grad *= scale[:, None, None]
    else:
        grad *= (valid * scale[:, None])[..., None]


class _CrossEntropy(torch.autograd.Function):
    """Per-model mean NLL of log_softmax(logits.to(dtype)), with a fused backward
    (softmax - onehot) / n_k. logits [K, n, p], labels int64 [K, n], n_k int64 [K]: model k's
    first n_k examples count (the rest pad a batch whose runs have different training sets)."""

    @staticmethod
    def forward(ctx, logits, labels, n_k, dtype):
        log_probs = logits.to(dtype).log_softmax(dim=-1)
        nll = -log_probs.gather(-1, labels[..., None])[..., 0]  # [K, n]
        valid = _valid(labels, n_k)
        ctx.save_for_backward(log_probs, labels, n_k, valid)
        ctx.in_dtype = logits.dtype
        return _mean(nll, n_k, valid)

    @staticmethod
    def backward(ctx, grad_loss):
        log_probs, labels, n_k, valid = ctx.saved_tensors
        grad = log_probs.exp()  # softmax
        grad.scatter_add_(-1, labels[..., None], torch.full_like(grad[..., :1], -1.0))  # - onehot
        _scale_(grad, grad_loss, n_k, valid)
        return grad.to(ctx.in_dtype), None, None, None


class _StableMaxCrossEntropy(torch.autograd.Function):
    """Per-model mean of -log_stablemax(logits.to(dtype)) at the label, with a fused backward
    (q r - onehot r_y) / n_k (module docstring). Shapes as _CrossEntropy."""

    @staticmethod
    def forward(ctx, logits, labels, n_k, dtype):
        z = logits.to(dtype)
        s = stablemax_s(z)
        total = s.sum(-1, keepdim=True)  # [K, n, 1]
        # log(s_y / S), the entry of their log(s / sum s) at the label, without forming it for every class
        nll = -torch.log(s.gather(-1, labels[..., None]) / total)[..., 0]
        valid = _valid(labels, n_k)
        ctx.save_for_backward(z, s, total, labels, n_k, valid)
        ctx.in_dtype = logits.dtype
        return _mean(nll, n_k, valid)

    @staticmethod
    def backward(ctx, grad_loss):
        z, s, total, labels, n_k, valid = ctx.saved_tensors
        r = torch.where(z < 0, s, 1.0 / s)  # s'(z) / s(z): s for z < 0, 1 / (z + 1) for z >= 0
        grad = s / total * r  # q r
        grad.scatter_add_(-1, labels[..., None], -r.gather(-1, labels[..., None]))  # - onehot r_y
        _scale_(grad, grad_loss, n_k, valid)
        return grad.to(ctx.in_dtype), None, None, None


_FUNCTIONS = {"cross_entropy": _CrossEntropy, "stablemax": _StableMaxCrossEntropy}
assert tuple(_FUNCTIONS) == CLASSIFIER_LOSSES, "config.CLASSIFIER_LOSSES and this module must name the same losses"


def batched_loss(loss: str, logits: torch.Tensor, labels: torch.Tensor, n_k: torch.Tensor,
                 dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per-model mean training loss [K] (``loss``: one of config.CLASSIFIER_LOSSES) of logits [K, n, p],
    labels int64 [K, n], model k's first n_k[k] examples, computed in ``dtype``; differentiable."""
    try:
        fn = _FUNCTIONS[loss]
    except KeyError:
        raise ValueError(f"loss must be one of {', '.join(_FUNCTIONS)} (got {loss!r})") from None
    return fn.apply(logits, labels, n_k, dtype)


def batched_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, n_k: torch.Tensor,
                          dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per-model mean NLL [K]: logits [K, n, p], labels [K, n], model k's first n_k[k] examples."""
    return _CrossEntropy.apply(logits, labels, n_k, dtype)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, dtype: torch.dtype = torch.float64
                  ) -> torch.Tensor:
    """Mean NLL of log_softmax in ``dtype`` (float64 by default, as the seed, to avoid the
    float32 softmax collapse described in science.md section 7). logits [n, p], labels [n]."""
    n = torch.tensor([labels.shape[0]], device=labels.device)
    return _CrossEntropy.apply(logits.unsqueeze(0), labels.unsqueeze(0), n, dtype)[0]


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, dtype: torch.dtype = torch.float64
                            ) -> torch.Tensor:
    """Mean StableMax cross-entropy in ``dtype`` (float64 by default, as their code). logits [n, p], labels [n]."""
    n = torch.tensor([labels.shape[0]], device=labels.device)
    return _StableMaxCrossEntropy.apply(logits.unsqueeze(0), labels.unsqueeze(0), n, dtype)[0]


def per_example_loss(loss: str, logits: torch.Tensor, labels: torch.Tensor,
                     dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per-example training loss [n] of logits [n, p] in ``dtype`` (the forward of batched_loss, unreduced)."""
    z = logits.to(dtype)
    if loss == "cross_entropy":
        return -z.log_softmax(-1).gather(-1, labels[:, None])[:, 0]
    if loss == "stablemax":
        s = stablemax_s(z)
        return -torch.log(s.gather(-1, labels[:, None]) / s.sum(-1, keepdim=True))[:, 0]
    raise ValueError(f"loss must be one of {', '.join(_FUNCTIONS)} (got {loss!r})")
