"""The quadratic-activation one-hot MLP of Gromov (2023) and Doshi et al. (2024), with MSE loss.

    h      = (U[a] + V[b])**2          elementwise, [n, N]
    logits = h @ W                     [n, p]
    loss   = mean over examples and classes of (logits - onehot(label))**2

U, V [p, N] are the first layer's weights on the one-hot of token a and of token b, W [N, p]
the readout; no biases. This is Doshi et al.'s ``fcn`` (d-doshi/Grokking utils/models.py:23-45):
fc1 = nn.Linear(2p, N, bias=False) on the concatenated one-hots (x.flatten(1) of one_hot of
both tokens), so fc1.weight[:, :p] = U.T and fc1.weight[:, p:] = V.T; act = x**2 (nnPower(2),
lines 10-16); fc2 = nn.Linear(N, p, bias=False), fc2.weight = W.T. Their loss is nn.MSELoss()
(mean reduction over n * p entries) against one_hot(label) (utils/optimization.py:87-88,
115-120). Width N is Config.d_mlp; d_model and act are not used. See docs/reproductions.md.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import Config

PARAM_NAMES = ("U", "V", "W")


def doshi_init_std(n_hidden: int) -> float:
    """Doshi et al.'s init std for both layers: sqrt(0.25) / (2N)^(1/3) (utils/models.py:39-40)."""
    return 0.25**0.5 / (2 * n_hidden) ** (1 / 3)


def batched_logits(params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Outputs [K, n, p] of K stacked models (U, V [K, p, N], W [K, N, p]) on pairs a, b int64 [K, n]."""
    k = torch.arange(a.shape[0], device=a.device)[:, None]
    return torch.bmm((params["U"][k, a] + params["V"][k, b]).square(), params["W"])


def batched_mse(logits: torch.Tensor, labels: torch.Tensor, n_k: torch.Tensor,
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per-model nn.MSELoss against one-hot labels [K]: sum over model k's first n_k examples and
    all p classes of (z - onehot)^2, divided by n_k * p; computed in ``dtype``."""
    z = logits.to(dtype)
    target = torch.nn.functional.one_hot(labels, z.shape[-1]).to(dtype)
    se = (z - target).square().sum(-1)  # [K, n]
    if not bool((n_k == labels.shape[1]).all()):  # padded batch: the padding carries no loss
        se = se * (torch.arange(labels.shape[1], device=labels.device)[None, :] < n_k[:, None])
    return se.sum(-1) / (n_k * z.shape[-1])


def grid_logits(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Outputs on the full grid, float32 [p, p, p] indexed (a, b, class)."""
    return (params["U"][:, None, :] + params["V"][None, :, :]).square() @ params["W"]


def gromov_solution(p: int, n_hidden: int, generator: torch.Generator | None = None,
                    dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Gromov's analytic solution (arXiv 2301.02679; science.md section 9) in this family's layout.

    Neuron k has frequency sigma(k) = 1 + k mod (p-1)/2 and random phases phi_u, phi_v:
    U[m, k] = A cos(2 pi sigma m / p + phi_u), V[n, k] = A cos(2 pi sigma n / p + phi_v),
    W[k, q] = A cos(-2 pi sigma q / p - phi_u - phi_v), A = (2/N)^(1/3). Computed in float64.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    k = torch.arange(n_hidden)
    sigma = (1 + k % ((p - 1) // 2)).to(torch.float64)
    phi_u = 2 * torch.pi * torch.rand(n_hidden, generator=g, dtype=torch.float64)
    phi_v = 2 * torch.pi * torch.rand(n_hidden, generator=g, dtype=torch.float64)
    A = (2 / n_hidden) ** (1 / 3)
    x = torch.arange(p, dtype=torch.float64)[:, None]  # token / class
    theta = 2 * torch.pi * sigma[None, :] * x / p  # [p, N]
    return {"U": (A * torch.cos(theta + phi_u)).to(dtype), "V": (A * torch.cos(theta + phi_v)).to(dtype),
            "W": (A * torch.cos(-theta - phi_u - phi_v)).T.contiguous().to(dtype)}


class QuadraticModule(nn.Module):
    """nn.Module holding U, V, W as Parameters; forward(a, b) -> outputs [n, p]."""

    def __init__(self, params: dict[str, torch.Tensor]):
        super().__init__()
        for name in PARAM_NAMES:
            setattr(self, name, nn.Parameter(params[name].clone()))

    def params(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (self.U[a] + self.V[b]).square() @ self.W


class QuadraticFamily:
    """models.ModelFamily for the quadratic one-hot MLP (module docstring). Its batched step is
    plain autograd over a stacked gather + bmm (deterministic on CPU at one thread)."""

    name = "quadratic"
    loss = "mse"
    param_names = PARAM_NAMES

    def param_shapes(self, config: Config) -> dict[str, tuple[int, ...]]:
        return {"U": (config.p, config.d_mlp), "V": (config.p, config.d_mlp), "W": (config.d_mlp, config.p)}

    def init_params(self, config: Config, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Drawn in Doshi et al.'s layout: fc1.weight [N, 2p], then fc2.weight [p, N].

        normal_fan_in (the default): their init, both ~ N(0, 0.25 / (2N)^(2/3))
        (utils/models.py:39-40). torch_default: what nn.Linear alone would give them, U(-1/sqrt(fan_in),
        1/sqrt(fan_in)) with fan_in 2p for fc1 and N for fc2. Times init_scale either way.
        """
        p, n = config.p, config.d_mlp
        if config.init == "normal_fan_in":
            std = doshi_init_std(n)
            fc1 = torch.randn(n, 2 * p, generator=generator) * std
            fc2 = torch.randn(p, n, generator=generator) * std
        else:
            fc1 = torch.empty(n, 2 * p).uniform_(-(2 * p) ** -0.5, (2 * p) ** -0.5, generator=generator)
            fc2 = torch.empty(p, n).uniform_(-n ** -0.5, n ** -0.5, generator=generator)
        out = {"U": fc1[:, :p].T.contiguous(), "V": fc1[:, p:].T.contiguous(), "W": fc2.T.contiguous()}
        if config.init_scale != 1.0:
            out = {k: v * config.init_scale for k, v in out.items()}
        return out

    def logits(self, params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor, config: Config
               ) -> torch.Tensor:
        return (params["U"][a] + params["V"][b]).square() @ params["W"]

    def batched_loss(self, params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor,
                     labels: torch.Tensor, n_k: torch.Tensor, config: Config) -> torch.Tensor:
        return batched_mse(batched_logits(params, a, b), labels, n_k, getattr(torch, config.loss_dtype))

    def grid_logits(self, params: dict[str, torch.Tensor], config: Config) -> torch.Tensor:
        return grid_logits(params)

    def neuron_curves(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """in_a = U[:, k], in_b = V[:, k] over the token, out = W[k, :] over the class: Doshi et al.'s
        U[k], V[k], W[:, k] in their layout (Training_scripts/phase_diagrams_wd.py:135-146)."""
        return {"in_a": params["U"].to(torch.float64).T, "in_b": params["V"].to(torch.float64).T,
                "out": params["W"].to(torch.float64)}

    def embedding(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return params["U"]  # token a's input weights [p, N]: the one-hot model's embedding

    def ablate_neurons(self, params: dict[str, torch.Tensor], keep: torch.Tensor) -> dict[str, torch.Tensor]:
        """Neurons with keep False get their W rows zeroed (their only path to the outputs; Doshi et
        al.'s pruning also zeroes their fc1 rows, which changes nothing downstream)."""
        return {**params, "W": params["W"] * keep[:, None].to(params["W"].dtype)}

    def module(self, params: dict[str, torch.Tensor], config: Config) -> nn.Module:
        return QuadraticModule(params)
