"""The seed notebook's one-hidden-layer MLP, with the field's weight names.

    pre    = [W_E[a]; W_E[b]] @ W_in + b_in
    logits = act(pre) @ W_out @ W_U

The first layer is a sum of two per-token tables, T_a = W_E @ W_in[:d_model] and
T_b = W_E @ W_in[d_model:] (each [p, d_mlp]), so pre = T_a[a] + T_b[b] + b_in exactly.
Building the tables costs p * d_model * d_mlp once instead of n * 2 d_model * d_mlp per
batch, which is what makes training and full-grid analysis cheap.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from .losses import batched_cross_entropy, batched_loss, cross_entropy  # noqa: F401 -- re-exported: their old home

PARAM_NAMES = ("W_E", "W_in", "b_in", "W_out", "W_U")
_ACTS = {"relu": F.relu, "gelu": F.gelu}


def param_shapes(p: int, d_model: int, d_mlp: int) -> dict[str, tuple[int, ...]]:
    return {
        "W_E": (p, d_model),
        "W_in": (2 * d_model, d_mlp),
        "b_in": (d_mlp,),
        "W_out": (d_mlp, d_model),
        "W_U": (d_model, p),
    }


def token_tables(W_E: torch.Tensor, W_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token first-layer tables (T_a, T_b), each [p, d_mlp] (or [K, p, d_mlp] for stacked
    weights with a leading model axis)."""
    d_model = W_E.shape[-1]
    return W_E @ W_in[..., :d_model, :], W_E @ W_in[..., d_model:, :]


class _ReluHead(torch.autograd.Function):
    """logits = relu(T_a[a] + T_b[b] + b_in) @ W_L for K models at once, with a hand-written backward.

    Shapes: T_a, T_b [K, p, d_mlp], b_in [K, d_mlp], W_L [K, d_mlp, p], a, b int64 [K, n] ->
    logits [K, n, p]; model k sees only its own tables and pairs. One model is K = 1: the solo
    trainer and a batch of runs share this one definition (bmm over the model axis gives, slice
    for slice, the bits of the unbatched matrix products).

    Same math as autograd's, about 2x faster on CPU: the first layer is one embedding_bag
    (a sum of three table rows: T_a[a], T_b[b] and b_in) instead of two gathers and two adds,
    the ReLU is in place, its backward is threshold_backward instead of a boolean mask
    (boolean elementwise ops are slow on CPU), and the table gradients are index_add_ instead
    of advanced indexing's sorting index_put_.
    """

    @staticmethod
    def forward(ctx, T_a, T_b, b_in, W_L, a, b):
        K, p, d_mlp = T_a.shape
        n = a.shape[1]
        table = torch.cat([T_a, T_b, b_in[:, None]], dim=1).reshape(K * (2 * p + 1), d_mlp)
        offset = torch.arange(K, device=a.device)[:, None] * (2 * p + 1)  # model k's rows of the table
        rows = torch.stack([a + offset, b + p + offset, (2 * p + offset).expand(K, n)], dim=2)  # [K, n, 3]
        h = F.embedding_bag(rows.reshape(K * n, 3), table, mode="sum").clamp_min_(0).reshape(K, n, d_mlp)
        ctx.save_for_backward(h, W_L, a, b)
        return torch.bmm(h, W_L)

    @staticmethod
    def backward(ctx, grad_logits):
        h, W_L, a, b = ctx.saved_tensors
        K, n, d_mlp = h.shape
        p = W_L.shape[2]
        grad_W_L = torch.bmm(h.transpose(1, 2), grad_logits)
        grad_pre = torch.bmm(grad_logits, W_L.transpose(1, 2))
        # ReLU backward in place: zero where h == 0 (saves an [n, d_mlp] allocation)
        torch.ops.aten.threshold_backward.grad_input(grad_pre, h, 0.0, grad_input=grad_pre)
        flat = grad_pre.reshape(K * n, d_mlp)
        offset = torch.arange(K, device=a.device)[:, None] * p
        grad_T_a = h.new_zeros(K * p, d_mlp).index_add_(0, (a + offset).reshape(-1), flat).reshape(K, p, d_mlp)
        grad_T_b = h.new_zeros(K * p, d_mlp).index_add_(0, (b + offset).reshape(-1), flat).reshape(K, p, d_mlp)
        # every example adds b_in once, as it adds one row of T_a: sum p rows, not n
        return grad_T_a, grad_T_b, grad_T_a.sum(1), grad_W_L, None, None


COMPACT_NAMES = ("W_E", "T_a", "T_b", "b_in", "W_L")


def is_compact(params: dict[str, torch.Tensor]) -> bool:
    """Whether ``params`` is the compact form (W_E, T_a, T_b, b_in, W_L) rather than the five weights."""
    return "T_a" in params and "W_in" not in params


def compact_params(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The compact form of the five weights: everything the logits depend on, and W_E.

    W_E [p, d_model]; T_a, T_b = token_tables(W_E, W_in), each [p, d_mlp]; b_in [d_mlp];
    W_L = W_out @ W_U [d_mlp, p]. grid_logits, mlp_logits, grid_hidden, grid_metrics (all but
    sum_sq_weights), neuron_curves and ablate_neurons accept it in place of the weights; what it
    cannot give is W_in, W_out, W_U separately (their norms, or anything in the d_model basis
    after the embedding).
    """
    if is_compact(params):
        return dict(params)
    T_a, T_b = token_tables(params["W_E"], params["W_in"])
    return {"W_E": params["W_E"], "T_a": T_a, "T_b": T_b, "b_in": params["b_in"],
            "W_L": params["W_out"] @ params["W_U"]}


def _head(params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(T_a, T_b, W_L) of either form."""
    if is_compact(params):
        return params["T_a"], params["T_b"], params["W_L"]
    # W_out @ W_U first: d_mlp*d_model*p once is cheaper than n*d_mlp*d_model per batch
    return (*token_tables(params["W_E"], params["W_in"]), params["W_out"] @ params["W_U"])


def mlp_logits(
    params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor, act: str = "relu"
) -> torch.Tensor:
    """Logits [n, p] for token pairs (a, b), each int64 [n], from a dict of the five weights
    (or their compact form, see compact_params)."""
    stacked = {k: v.unsqueeze(0) for k, v in params.items()}
    return batched_logits(stacked, a.unsqueeze(0), b.unsqueeze(0), act)[0]


def batched_logits(
    params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor, act: str = "relu"
) -> torch.Tensor:
    """Logits [K, n, p] of K models at once: each weight with a leading model axis [K, ...],
    pairs int64 [K, n] (model k on its own pairs)."""
    T_a, T_b, W_L = _head(params)  # W_L: [K, d_mlp, p]
    if act == "relu":
        return _ReluHead.apply(T_a, T_b, params["b_in"], W_L, a, b)
    k = torch.arange(a.shape[0], device=a.device)[:, None]
    return torch.bmm(_ACTS[act](T_a[k, a] + T_b[k, b] + params["b_in"][:, None]), W_L)


def grid_hidden(params: dict[str, torch.Tensor], act: str = "relu") -> torch.Tensor:
    """Hidden activations on the full grid, float32 [p, p, d_mlp] indexed [a, b, neuron]."""
    T_a, T_b, _ = _head(params)
    return _ACTS[act](T_a[:, None, :] + T_b[None, :, :] + params["b_in"])


def grid_logits(params: dict[str, torch.Tensor], act: str = "relu") -> torch.Tensor:
    """Logits on the full grid: float32 [p, p, p] indexed [a, b, c] (input tokens a, b; class c).

    The dataset's labels are flat, int64 [p * p] in a-major order (pair index a * p + b), so
    ``logits.reshape(p * p, p)[i]`` goes with ``labels[i]``. restricted_loss and friends take
    this 3-D tensor; grid_metrics and cross_entropy take the flat [p * p, p] view.
    """
    T_a, T_b, W_L = _head(params)
    return _ACTS[act](T_a[:, None, :] + T_b[None, :, :] + params["b_in"]) @ W_L


def init_params(config: Config, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The initial weights of ``config.init``, times ``config.init_scale``, drawn from ``generator``.

    normal_fan_in (the default, and what the reference runs use): drawn in PARAM_NAMES order,
    W ~ N(0, 1/fan_in) for W_in (fan_in 2 d_model), W_out (d_mlp), W_U (d_model); W_E ~
    N(0, 1/d_model) (its rows are looked up, not multiplied, so d_model sets its scale, as in
    Nanda et al.); b_in = 0.

    torch_default: what PyTorch's own layers give the seed notebook's SimpleMLP. W_E as
    nn.Embedding, N(0, 1); W_in and b_in as nn.Linear(2 d_model, d_mlp), W_out as
    nn.Linear(d_mlp, d_model) and W_U as nn.Linear(d_model, p) (no bias), each weight
    Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)); drawn in that order, each weight in nn.Linear's [out, in]
    layout and transposed to this model's [in, out].
    """
    shapes = param_shapes(config.p, config.d_model, config.d_mlp)
    fan_in = {"W_E": config.d_model, "W_in": 2 * config.d_model, "b_in": 2 * config.d_model,
              "W_out": config.d_mlp, "W_U": config.d_model}
    out = {}
    for name in PARAM_NAMES:
        shape = shapes[name]
        if config.init == "normal_fan_in":
            out[name] = (torch.zeros(shape) if name == "b_in"
                         else torch.randn(shape, generator=generator) / fan_in[name] ** 0.5)
        elif name == "W_E":
            out[name] = torch.randn(shape, generator=generator)
        else:
            bound = 1.0 / fan_in[name] ** 0.5
            t = torch.empty(shape[::-1]).uniform_(-bound, bound, generator=generator)  # [out, in] as nn.Linear
            out[name] = t.T.contiguous() if t.ndim == 2 else t
    if config.init_scale != 1.0:
        out = {k: v * config.init_scale for k, v in out.items()}
    return out


class SimpleMLP(nn.Module):
    """nn.Module wrapper so the optimizer and users' notebooks get named Parameters."""

    def __init__(self, params: dict[str, torch.Tensor], act: str = "relu"):
        super().__init__()
        if act not in _ACTS:
            raise ValueError(f"act must be one of {', '.join(_ACTS)} (got {act!r})")
        self.act = act
        for name in PARAM_NAMES:
            setattr(self, name, nn.Parameter(params[name].clone()))

    @classmethod
    def from_config(cls, config: Config, generator: torch.Generator | None = None) -> SimpleMLP:
        if generator is None:
            generator = torch.Generator().manual_seed(config.seed)
        return cls(init_params(config, generator), config.act)

    def params(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return mlp_logits(self.params(), a, b, self.act)




def neuron_curves(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each hidden neuron's input curves over the tokens and its output curve over the classes: the
    MLP's per-neuron curves that the Fourier and IPR analyses read (analysis.fourier.ipr).

    in_a = (W_E @ W_in[:d_model])[:, i] and in_b = (W_E @ W_in[d_model:])[:, i] over the token,
    out = (W_out @ W_U)[i, :] over the output class; each returned as [d_mlp, p].
    """
    if is_compact(params):  # the compact form (compact_params)
        return {"in_a": params["T_a"].to(torch.float64).T, "in_b": params["T_b"].to(torch.float64).T,
                "out": params["W_L"].to(torch.float64)}
    d_model = params["W_E"].shape[1]
    W_E = params["W_E"].to(torch.float64)
    W_in = params["W_in"].to(torch.float64)
    return {
        "in_a": (W_E @ W_in[:d_model]).T,
        "in_b": (W_E @ W_in[d_model:]).T,
        "out": params["W_out"].to(torch.float64) @ params["W_U"].to(torch.float64),
    }


def ablate_neurons(params: dict[str, torch.Tensor], keep: torch.Tensor) -> dict[str, torch.Tensor]:
    """A copy of params with the hidden neurons where ``keep`` (bool [d_mlp]) is False silenced
    (their W_out rows set to zero, so they no longer reach the logits)."""
    out = dict(params)
    name = "W_L" if is_compact(params) else "W_out"  # the compact form's W_L = W_out @ W_U
    out[name] = params[name] * keep[:, None].to(params[name].dtype)
    return out


class MLPFamily:
    """The seed MLP as a model family (models.ModelFamily). Its training step is the hand-written
    _ReluHead above and the config's loss from models.losses (softmax cross-entropy by default, the
    same _CrossEntropy as before: runs through the protocol are bit-identical to runs from before it existed)."""

    name = "mlp"
    loss = "cross_entropy"
    param_names = PARAM_NAMES

    def param_shapes(self, config: Config) -> dict[str, tuple[int, ...]]:
        return param_shapes(config.p, config.d_model, config.d_mlp)

    def init_params(self, config: Config, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return init_params(config, generator)

    def logits(self, params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor, config: Config
               ) -> torch.Tensor:
        return mlp_logits(params, a, b, config.act)

    def batched_loss(self, params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor,
                     labels: torch.Tensor, n_k: torch.Tensor, config: Config) -> torch.Tensor:
        return batched_loss(config.loss, batched_logits(params, a, b, config.act), labels, n_k,
                            getattr(torch, config.loss_dtype))

    def grid_logits(self, params: dict[str, torch.Tensor], config: Config) -> torch.Tensor:
        return grid_logits(params, config.act)

    def neuron_curves(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return neuron_curves(params)

    def embedding(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return params["W_E"]

    def ablate_neurons(self, params: dict[str, torch.Tensor], keep: torch.Tensor) -> dict[str, torch.Tensor]:
        return ablate_neurons(params, keep)

    def module(self, params: dict[str, torch.Tensor], config: Config) -> nn.Module:
        return SimpleMLP(params, config.act)
