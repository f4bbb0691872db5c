"""Nanda et al.'s one-layer transformer (ICLR 2023, "Progress measures for grokking"), as a model family.

What their code computes (mechanistic-interpretability-grokking/progress-measures-paper,
transformers.py; line numbers at commit 23d2c64), in TransformerLens's names and shapes:

    tokens     (a, b, "="), "=" = token p, vocabulary p + 1          (lines 48, 440, 554)
    x[pos]     = W_E[token] + W_pos[pos]                              (Embed, PosEmbed: 158-186)
    attention  one layer, n_heads heads of d_head = d_model // n_heads, causal, scores q.k / sqrt(d_head),
               no biases (Attention: 208-235); attn_out = sum_h z_h @ W_O[h]
    resid_mid  = x + attn_out                                         (TransformerBlock: 277-280)
    MLP        relu(resid_mid @ W_in + b_in) @ W_out + b_out, the only biases (MLP: 238-260)
    logits     = resid_post @ W_U, p + 1 of them, read at the last position (Unembed: 171-177; 450)
    no LayerNorm (use_ln False, line 60; LayerNorm.forward passes x through, 197-205)

Shapes (one model): W_E [p + 1, d_model], W_pos [3, d_model], W_Q, W_K, W_V [n_heads, d_model,
d_head], W_O [n_heads, d_head, d_model], W_in [d_model, d_mlp], b_in [d_mlp], W_out [d_mlp, d_model],
b_out [d_model], W_U [d_model, p + 1] (or [d_model, p] with ``eq_logit`` False). Their own
layouts are transposed ([d_model, d_vocab] for W_E, [heads, d_head, d_model] for W_K, ...);
init_params draws in their layouts and order and transposes, so a generator in the same state
gives their weights exactly (their runs never seed it: transformers.py:468 builds the model
unseeded, and their seed sets only the split, line 441).

**Fast and exact.** Only the "=" position reaches the logits (they read ``[:, -1]``, line 450),
and the causal mask lets it attend to all three positions. Its residual x_eq = W_E[p] + W_pos[2]
is the same for every pair, so its query is; the keys and values at positions 0 and 1 depend on
the token alone. So, per head h, the attention scores are tables S0[a, h], S1[b, h] (p rows) and
one number s2[h]; the head's value at a position, pushed through W_O and W_in (or W_O and W_U),
is a table P0[a, h] [d_mlp] (U0[a, h] [p + 1]) and likewise for b and "=". With
alpha = softmax over (S0[a, h], S1[b, h], s2[h]),

    pre    = x_eq @ W_in + b_in + sum_h alpha0_h P0[a, h] + alpha1_h P1[b, h] + alpha2_h P2[h]
    logits = relu(pre) @ (W_out @ W_U) + (x_eq + b_out) @ W_U + sum_h (the same with U tables)

which is the three-position forward rearranged, not an approximation (tests/test_transformer.py
checks it and its gradients against a plain transformer). Since each head's three weights sum to
1, the "=" terms fold into the constant (alpha2 = 1 - alpha0 - alpha1), so per example it costs
2 n_heads + 1 = 9 table rows (an embedding_bag with the attention weights as per-sample weights)
plus the d_mlp x (p + 1) readout; the tables cost O(p d_model d_mlp) once per step.

**Where their code and TransformerLens's Grokking demo differ**, and what this family does:
- output logits: theirs p + 1 (the "=" column is trained and dropped only in the analysis,
  line 557); the demo p. Default p + 1; ``eq_logit=False`` gives p. ``logits``/``grid_logits``
  always return the p token classes; the training loss uses all the unembedding's columns.
- biases: theirs train b_in and b_out (zero-initialized, lines 243, 245); the demo freezes every
  bias at zero. Default trained; ``biases=False`` keeps them at exactly zero (their gradient is
  zero, so AdamW never moves them).
- init: theirs every matrix randn / sqrt(d_model), W_U randn / sqrt(d_vocab) with d_vocab = p + 1
  (lines 165, 174, 183, 212-215, 242-244): ``init="normal_fan_in"`` (the default). The demo uses
  TransformerLens's default init, every weight N(0, (0.8 / sqrt(d_model))^2):
  ``init="torch_default"`` (the library's own default, as the MLP's torch_default is PyTorch's).
- warm-up: theirs a 10-step linear warm-up, LambdaLR min(step / 10, 1) (line 471): Config
  ``warmup_steps=10`` (train.warmup_lr); the demo has none. Default 0, as for every family.
- loss: their ``cross_entropy_high_precision`` casts the logits to float32 despite its comment
  saying float64 (helpers.py:105-114); ours is the configured loss (softmax or StableMax
  cross-entropy, models.losses) in the configured loss_dtype, float64 by default.

Not the defaults: p = 113, noise 0, split python_shuffle, warm-up 10 are flags (docs/cli.md gives
the paper's command line); the config's defaults are shared by all families.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from .losses import batched_loss

PARAM_NAMES = ("W_E", "W_pos", "W_K", "W_Q", "W_V", "W_O", "W_in", "b_in", "W_out", "b_out", "W_U")
N_CTX = 3  # a, b, "="
_ACTS = {"relu": F.relu, "gelu": F.gelu}
# TransformerLens's default initializer_range is 0.8 / sqrt(d_model) (transformer-lens 4.3.0,
# model_bridge/sources/native/init.py:98-102, "matches the legacy TL scheme ... the grokking demo")
TL_INIT_RANGE = 0.8


def param_shapes(config: Config) -> dict[str, tuple[int, ...]]:
    p, d, m, H = config.p, config.d_model, config.d_mlp, config.n_heads
    dh = d // H
    return {
        "W_E": (p + 1, d), "W_pos": (N_CTX, d),
        "W_K": (H, d, dh), "W_Q": (H, d, dh), "W_V": (H, d, dh), "W_O": (H, dh, d),
        "W_in": (d, m), "b_in": (m,), "W_out": (m, d), "b_out": (d,),
        "W_U": (d, p + 1 if config.eq_logit else p),
    }


def init_params(config: Config, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The initial weights of ``config.init`` times ``config.init_scale``, drawn from ``generator``.

    normal_fan_in (Nanda et al.'s): drawn in their modules' order and layouts (transformers.py:
    Embed 165, PosEmbed 183, Attention W_K, W_Q, W_V, W_O 212-215, MLP W_in, W_out 242-244,
    Unembed 174; the zero biases draw nothing), each randn / sqrt(d_model) except W_U, randn /
    sqrt(p + 1); then transposed to TransformerLens's layouts. With eq_logit False, W_U is drawn
    [d_model, p] at the same scale.

    torch_default (TransformerLens's default init, which its Grokking demo uses): every weight
    N(0, (0.8 / sqrt(d_model))^2), biases zero, drawn in PARAM_NAMES order in these layouts.
    """
    shapes = param_shapes(config)
    p, d, m, H = config.p, config.d_model, config.d_mlp, config.n_heads
    dh = d // H
    g = generator

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=g)

    if config.init == "normal_fan_in":
        s = d**0.5
        out = {"W_E": (randn(d, p + 1) / s).T, "W_pos": randn(N_CTX, d) / s}
        for name in ("W_K", "W_Q", "W_V"):
            out[name] = (randn(H, dh, d) / s).transpose(1, 2)  # theirs [heads, d_head, d_model]
        # theirs [d_model, heads * d_head], z flattened head-major (einops 'b i q h -> b q (i h)', line 233)
        out["W_O"] = (randn(d, H * dh) / s).T.reshape(H, dh, d)
        out["W_in"] = (randn(m, d) / s).T
        out["b_in"] = torch.zeros(m)
        out["W_out"] = (randn(d, m) / s).T
        out["b_out"] = torch.zeros(d)
        out["W_U"] = randn(d, shapes["W_U"][1]) / (p + 1) ** 0.5
    else:
        std = TL_INIT_RANGE / d**0.5
        out = {name: (torch.zeros(shape) if name.startswith("b_") else randn(*shape) * std)
               for name, shape in shapes.items()}
    out = {name: out[name].contiguous() for name in PARAM_NAMES}
    if config.init_scale != 1.0:
        out = {k: v * config.init_scale for k, v in out.items()}
    return out


def _tables(P: dict[str, torch.Tensor], act_biases: bool) -> dict[str, torch.Tensor]:
    """The per-token tables of stacked params (leading model axis K) that the fast forward reads.

    S [K, 2p + 1, H]: attention scores of the "=" query (already / sqrt(d_head)) on the keys of
    token t at position 0 (rows 0..p-1), at position 1 (rows p..2p-1) and of "=" itself (row 2p).
    TP [K, R, d_mlp] and TU [K, R, n_out], R = 2pH + 1: with V_j,h head h's value of key row j
    pushed through W_O and then W_in (TP) or W_U (TU), row (j * H + h) is V_j,h - V_2p,h for the
    token rows j < 2p, and the last row is the constant x_eq @ W_in + b_in + sum_h V_2p,h (TP),
    (x_eq + b_out) @ W_U + sum_h V_2p,h (TU). Since each head's three attention weights sum to 1,
    alpha_a V_a + alpha_b V_b + alpha_eq V_eq = V_eq + alpha_a (V_a - V_eq) + alpha_b (V_b - V_eq):
    an example sums 2H + 1 rows instead of 3H + 1. W_L = W_out @ W_U [K, d_mlp, n_out].
    """
    W_E, W_pos = P["W_E"], P["W_pos"]
    K, V_in, d = W_E.shape
    p = V_in - 1
    H, dh = P["W_Q"].shape[1], P["W_Q"].shape[3]
    x_eq = W_E[:, p] + W_pos[:, 2]  # [K, d]: the "=" position's residual, the same for every pair
    X = torch.cat([W_E[:, :p] + W_pos[:, 0, None], W_E[:, :p] + W_pos[:, 1, None], x_eq[:, None]], 1)  # [K, 2p+1, d]
    q = torch.einsum("kd,khde->khe", x_eq, P["W_Q"])
    kq = torch.einsum("khde,khe->khd", P["W_K"], q) / math.sqrt(dh)  # W_K q per head: scores are X @ kq
    S = torch.bmm(X, kq.transpose(1, 2))  # [K, 2p+1, H]
    v = torch.einsum("ktd,khde->kthe", X, P["W_V"])  # [K, 2p+1, H, dh]
    v = torch.cat([v[:, :2 * p] - v[:, 2 * p:], v[:, 2 * p:]], 1)  # token rows relative to "=" (linear in v)
    b_in, b_out = (P["b_in"], P["b_out"]) if act_biases else (P["b_in"] * 0, P["b_out"] * 0)
    W_OI = torch.einsum("khed,kdm->khem", P["W_O"], P["W_in"])  # [K, H, dh, d_mlp]
    W_OU = torch.einsum("khed,kdv->khev", P["W_O"], P["W_U"])  # [K, H, dh, n_out]
    TP = torch.einsum("kthe,khem->kthm", v, W_OI)  # [K, 2p+1, H, d_mlp]
    TU = torch.einsum("kthe,khev->kthv", v, W_OU)
    c_P = torch.bmm(x_eq[:, None], P["W_in"])[:, 0] + b_in + TP[:, 2 * p].sum(1)
    c_U = torch.bmm((x_eq + b_out)[:, None], P["W_U"])[:, 0] + TU[:, 2 * p].sum(1)
    TP = torch.cat([TP[:, :2 * p].reshape(K, 2 * p * H, -1), c_P[:, None]], 1)
    TU = torch.cat([TU[:, :2 * p].reshape(K, 2 * p * H, -1), c_U[:, None]], 1)
    return {"S": S, "TP": TP, "TU": TU, "W_L": torch.bmm(P["W_out"], P["W_U"])}


def _rows_and_weights(S: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For K models on pairs a, b (int64 [K, n]): the 2H + 1 table rows each example sums (into
    the K models' tables stacked as one [K * R, .] table, R = 2pH + 1) and their weights (the
    attention weights on a and on b, then 1 for the constant row), each [K * n, 2H + 1]."""
    K, n = a.shape
    rows_S, H = S.shape[1], S.shape[2]
    p = (rows_S - 1) // 2
    R = 2 * p * H + 1
    k = torch.arange(K, device=a.device)[:, None]
    flat = S.reshape(K * rows_S, H)
    # index_select (backward: index_add_) rather than advanced indexing (a sorting index_put_)
    s_a = flat.index_select(0, (a + k * rows_S).reshape(-1))
    s_b = flat.index_select(0, (b + p + k * rows_S).reshape(-1))
    s_eq = S[:, 2 * p][:, None].expand(K, n, H).reshape(K * n, H)
    alpha = torch.stack([s_a, s_b, s_eq], 1).softmax(dim=1)  # [K n, 3, H]: over the three key positions
    heads = torch.arange(H, device=a.device)
    base = (k * R).expand(K, n).reshape(-1, 1)
    rows = torch.cat([base + a.reshape(-1, 1) * H + heads, base + (b.reshape(-1, 1) + p) * H + heads,
                      base + (R - 1)], 1)
    weights = torch.cat([alpha[:, :2].reshape(K * n, 2 * H), alpha.new_ones(K * n, 1)], 1)
    return rows, weights


def batched_logits(P: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor, act: str = "relu",
                   biases: bool = True, return_pre: bool = False) -> torch.Tensor:
    """All the unembedding's logits [K, n, n_out] at the "=" position, of K stacked models on pairs
    int64 [K, n] (model k on its own pairs); with ``return_pre``, the MLP pre-activations [K, n, d_mlp]."""
    T = _tables(P, biases)
    K, n = a.shape
    rows, weights = _rows_and_weights(T["S"], a, b)
    pre = F.embedding_bag(rows, T["TP"].reshape(-1, T["TP"].shape[-1]), per_sample_weights=weights, mode="sum")
    if return_pre:
        return pre.reshape(K, n, -1)
    direct = F.embedding_bag(rows, T["TU"].reshape(-1, T["TU"].shape[-1]), per_sample_weights=weights,
                             mode="sum").reshape(K, n, -1)
    if act == "relu":
        return _ReluReadout.apply(pre, direct, T["W_L"])[0]
    return torch.baddbmm(direct, _ACTS[act](pre).reshape(K, n, -1), T["W_L"])


class _ReluReadout(torch.autograd.Function):
    """logits = direct + relu(pre) @ W_L for K models (pre [K n, d_mlp], an embedding_bag's output;
    direct [K, n, n_out]; W_L [K, d_mlp, n_out]), with a hand-written backward.

    Same math as autograd's; faster on CPU because the ReLU runs in place on ``pre`` (autograd's
    allocates a fresh output) and its backward is threshold_backward in place on the contiguous
    bmm output (autograd's meets a transposed gradient, several times slower). The embedding bags
    before it keep autograd's backward, already one fused pass over the rows looked up.
    """

    @staticmethod
    def forward(ctx, pre, direct, W_L):
        h = pre.clamp_min_(0)  # pre is not a view, so it may be modified in place and returned
        ctx.mark_dirty(pre)
        ctx.save_for_backward(h, W_L)
        return torch.baddbmm(direct, h.view(*direct.shape[:2], -1), W_L), h

    @staticmethod
    def backward(ctx, grad_logits, _grad_h):
        h, W_L = ctx.saved_tensors
        h3 = h.view(*grad_logits.shape[:2], -1)
        grad_pre = torch.bmm(grad_logits, W_L.transpose(1, 2))
        torch.ops.aten.threshold_backward.grad_input(grad_pre, h3, 0.0, grad_input=grad_pre)
        return grad_pre.view_as(h), grad_logits, torch.bmm(h3.transpose(1, 2), grad_logits)


def _stack(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.unsqueeze(0) for k, v in params.items()}


def transformer_logits(params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor, act: str = "relu",
                       biases: bool = True) -> torch.Tensor:
    """Logits [n, p] over the token classes (the "=" column, if any, dropped) for pairs a, b (int64 [n])."""
    p = params["W_E"].shape[0] - 1
    return batched_logits(_stack(params), a[None], b[None], act, biases)[0, :, :p]


def grid_pairs(p: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    i = torch.arange(p * p, device=device)
    return i // p, i % p


def grid_logits(params: dict[str, torch.Tensor], act: str = "relu", biases: bool = True) -> torch.Tensor:
    """Logits on the full grid, float32 [p, p, p] indexed (a, b, class), the "=" column dropped
    (as their analysis does, transformers.py:557)."""
    p = params["W_E"].shape[0] - 1
    a, b = grid_pairs(p, params["W_E"].device)
    return transformer_logits(params, a, b, act, biases).reshape(p, p, p)


def grid_pre(params: dict[str, torch.Tensor], biases: bool = True) -> torch.Tensor:
    """The MLP neurons' pre-activations at the "=" position on the full grid, [p, p, d_mlp] (a, b, neuron)."""
    p = params["W_E"].shape[0] - 1
    a, b = grid_pairs(p, params["W_E"].device)
    return batched_logits(_stack(params), a[None], b[None], biases=biases, return_pre=True)[0].reshape(p, p, -1)


def attention_scores(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """The "=" query's attention scores (q . k / sqrt(d_head)), float64 [3, p, H]: row 0 on token t at
    position 0 (a), row 1 on token t at position 1 (b); row 2 holds the score on "=" itself
    (the same for every t). Per-token tables, since the query is the same for every pair."""
    P = {k: v.to(torch.float64)[None] for k, v in params.items()}
    S = _tables(P, True)["S"][0]  # [2p + 1, H]
    p = (S.shape[0] - 1) // 2
    return torch.stack([S[:p], S[p:2 * p], S[2 * p].expand(p, -1)])


def attention_pattern(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """The "=" position's attention on the full grid, float64 [p, p, H, 3] indexed (a, b, head,
    key position a / b / "="): each head's softmax over the three scores; it sums to 1 over the last axis."""
    S = attention_scores(params)
    p, H = S.shape[1], S.shape[2]
    scores = torch.stack([S[0][:, None].expand(p, p, H), S[1][None, :].expand(p, p, H),
                          S[2][:1][None].expand(p, p, H)], -1)
    return scores.softmax(-1)


def neuron_curves(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each MLP neuron's effective input curve over each token and its output curve, [d_mlp, p] float64.

    The attention makes a neuron's pre-activation at "=" a function of (a, b) jointly, not a sum of
    a per-token table as in the MLP family. Its effective input curves are the main effects of
    that function (a two-way ANOVA of the full grid, through the embedding and the attention):
    in_a[i, t] = mean_b pre[t, b, i] - mean_{a,b} pre[a, b, i], in_b likewise over a. Where the
    pre-activation is additive in a and b, pre = grand mean + in_a[a] + in_b[b] exactly, as in the
    MLP family (whose curves carry no constant either). out = (W_out @ W_U)[i, :p], the neuron's
    direct path to the token logits. Biases as trained (a frozen bias is zero anyway).
    """
    p = params["W_E"].shape[0] - 1
    pre = grid_pre(params).to(torch.float64)
    grand = pre.mean((0, 1))
    return {"in_a": (pre.mean(1) - grand).T.contiguous(), "in_b": (pre.mean(0) - grand).T.contiguous(),
            "out": (params["W_out"].to(torch.float64) @ params["W_U"].to(torch.float64))[:, :p]}


def ablate_neurons(params: dict[str, torch.Tensor], keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """A copy of params with the MLP neurons where ``keep`` is False silenced (their W_out rows zeroed:
    their only path to the logits)."""
    return {**params, "W_out": params["W_out"] * keep[:, None].to(params["W_out"].dtype)}


class Transformer(nn.Module):
    """nn.Module holding the eleven weights as Parameters; forward(a, b) -> logits [n, p] (the fast forward)."""

    def __init__(self, params: dict[str, torch.Tensor], act: str = "relu", biases: bool = True):
        super().__init__()
        self.act, self.biases = act, biases
        for name in PARAM_NAMES:
            setattr(self, name, nn.Parameter(params[name].clone()))

    def params(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return transformer_logits(self.params(), a, b, self.act, self.biases)


class TransformerFamily:
    """models.ModelFamily for Nanda et al.'s one-layer transformer (module docstring). Its batched
    step is autograd over the table forward (batched_logits) and the MLP family's fused
    float64 cross-entropy, over all n_out logits."""

    name = "transformer"
    loss = "cross_entropy"
    param_names = PARAM_NAMES

    def param_shapes(self, config: Config) -> dict[str, tuple[int, ...]]:
        return param_shapes(config)

    def init_params(self, config: Config, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return init_params(config, generator)

    def logits(self, params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor, config: Config
               ) -> torch.Tensor:
        return transformer_logits(params, a, b, config.act, config.biases)

    def batched_loss(self, params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor,
                     labels: torch.Tensor, n_k: torch.Tensor, config: Config) -> torch.Tensor:
        return batched_loss(config.loss, batched_logits(params, a, b, config.act, config.biases), labels, n_k,
                            getattr(torch, config.loss_dtype))

    def grid_logits(self, params: dict[str, torch.Tensor], config: Config) -> torch.Tensor:
        return grid_logits(params, config.act, config.biases)

    def neuron_curves(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return neuron_curves(params)

    def embedding(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """W_E without the "=" row, [p, d_model]."""
        return params["W_E"][:-1]

    def ablate_neurons(self, params: dict[str, torch.Tensor], keep: torch.Tensor) -> dict[str, torch.Tensor]:
        return ablate_neurons(params, keep)

    def module(self, params: dict[str, torch.Tensor], config: Config) -> nn.Module:
        return Transformer(params, config.act, config.biases)


def to_transformer_lens(params: dict[str, torch.Tensor], config: Config, device: str | torch.device = "cpu"):
    """A TransformerLens model holding these weights, whose logits at every position are this
    transformer's (so at "=" they are ``batched_logits``'s, all n_out of them).

    TransformerLens 4 removed HookedTransformer; its replacement is a TransformerBridge around a
    TL-native model (``TransformerBridge.boot_native``), with the same hook names (hook_embed,
    blocks.0.attn.hook_pattern, blocks.0.mlp.hook_post, ...), ``run_with_cache`` and
    ``run_with_hooks``. The weights go in through TransformerLens's own converter from the
    HookedTransformer names this family already uses (``convert_tl_checkpoint``), with the biases
    the architecture lacks (b_Q, b_K, b_V, b_O, b_U) set to zero, no normalization, standard
    positional embeddings and a fixed init seed (its random init, overwritten, then never touches
    the caller's global generator). Needs the optional extra: ``pip install 'interp-grok[lens]'``.
    """
    try:
        from transformer_lens import TransformerBridge, TransformerBridgeConfig
        from transformer_lens.utilities.tl_checkpoint_conversion import convert_tl_checkpoint
    except ImportError as e:
        raise ImportError("the TransformerLens export needs the optional extra transformer-lens>=4: "
                          "pip install 'interp-grok[lens]'") from e
    H, d, dh = params["W_Q"].shape
    V_in, V_out = params["W_E"].shape[0], params["W_U"].shape[1]
    cfg = TransformerBridgeConfig(n_layers=1, d_model=d, d_head=dh, n_heads=H, d_mlp=params["W_in"].shape[1],
                                  d_vocab=V_in, d_vocab_out=V_out, n_ctx=N_CTX, act_fn=config.act,
                                  normalization_type=None, positional_embedding_type="standard", seed=0)
    zero = params["W_E"].new_zeros
    b_in, b_out = (params["b_in"], params["b_out"]) if config.biases else (zero(params["b_in"].shape),
                                                                            zero(params["b_out"].shape))
    legacy = {"embed.W_E": params["W_E"], "pos_embed.W_pos": params["W_pos"],
              **{f"blocks.0.attn.{k}": params[k] for k in ("W_Q", "W_K", "W_V", "W_O")},
              "blocks.0.attn.b_Q": zero(H, dh), "blocks.0.attn.b_K": zero(H, dh), "blocks.0.attn.b_V": zero(H, dh),
              "blocks.0.attn.b_O": zero(d),
              "blocks.0.mlp.W_in": params["W_in"], "blocks.0.mlp.b_in": b_in,
              "blocks.0.mlp.W_out": params["W_out"], "blocks.0.mlp.b_out": b_out,
              "unembed.W_U": params["W_U"], "unembed.b_U": zero(V_out)}
    bridge = TransformerBridge.boot_native(cfg, device=device)
    bridge.load_state_dict(convert_tl_checkpoint({k: v.detach().clone() for k, v in legacy.items()}, cfg),
                           strict=True)
    return bridge.eval()
