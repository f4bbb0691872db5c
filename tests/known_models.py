"""Networks and logits whose answers are known in closed form, shared by the tests."""

from __future__ import annotations

import math

import torch


def fourier_mlp(p: int, freqs: list[int], n_phases: int = 64, scale: float = 40.0) -> dict[str, torch.Tensor]:
    """A ReLU MLP in this project's parametrization that computes (a + b) mod p via ``freqs``.

    d_model = 2 |K|: W_E's columns are cos(w_k x), sin(w_k x). Neuron (k, phi) has
    pre = cos(w_k a + phi) + cos(w_k b + phi) = 2 cos(w_k (a+b)/2 + phi) cos(w_k (a-b)/2) and
    reads out cos(w_k c + 2 phi). Averaged over evenly spaced phases, the cos(2 theta) harmonic of
    relu(cos theta) (coefficient 2 / (3 pi) > 0) leaves
        logit(c) ~ sum_k |cos(w_k (a-b)/2)| cos(w_k (a + b - c)),
    maximal exactly at c = a + b (all weights >= 0, and odd p keeps them > 0).
    """
    d = 2 * len(freqs)
    x = torch.arange(p, dtype=torch.float64)
    W_E = torch.zeros(p, d, dtype=torch.float64)
    W_U = torch.zeros(d, p, dtype=torch.float64)
    phis = 2 * math.pi * torch.arange(n_phases, dtype=torch.float64) / n_phases
    d_mlp = len(freqs) * n_phases
    W_half = torch.zeros(d, d_mlp, dtype=torch.float64)
    W_out = torch.zeros(d_mlp, d, dtype=torch.float64)
    for i, k in enumerate(freqs):
        w = 2 * math.pi * k / p
        W_E[:, 2 * i], W_E[:, 2 * i + 1] = torch.cos(w * x), torch.sin(w * x)
        W_U[2 * i], W_U[2 * i + 1] = torch.cos(w * x), torch.sin(w * x)
        cols = slice(i * n_phases, (i + 1) * n_phases)
        W_half[2 * i, cols], W_half[2 * i + 1, cols] = torch.cos(phis), -torch.sin(phis)
        W_out[cols, 2 * i], W_out[cols, 2 * i + 1] = torch.cos(2 * phis), -torch.sin(2 * phis)
    return {
        "W_E": W_E.float(),
        "W_in": torch.cat([W_half, W_half]).float(),  # the same read-out for a and for b
        "b_in": torch.zeros(d_mlp),
        "W_out": (W_out * scale / n_phases).float(),
        "W_U": W_U.float(),
    }


def cosine_logits(p: int, alphas: dict[int, float]) -> torch.Tensor:
    """L[a, b, c] = sum_k alpha_k cos(w_k (a + b - c)), float64 [p, p, p]."""
    r = torch.arange(p, dtype=torch.float64)
    d = r[:, None, None] + r[None, :, None] - r[None, None, :]
    return sum(alpha * torch.cos(2 * math.pi * k / p * d) for k, alpha in alphas.items())


def fourier_plus_lookup(p: int, freqs: list[int], pairs: torch.Tensor, labels: torch.Tensor,
                        size: float = 1000.0) -> dict[str, torch.Tensor]:
    """fourier_mlp plus one lookup neuron per pair: neuron j fires (value 1) only on pairs[j] = a * p + b
    and writes ``size`` to class labels[j], overriding the circuit there.

    d_model = 2 |K| + p: W_E = [fourier columns | I_p], W_U = [fourier rows; I_p]. Lookup neuron j
    reads indicator(a_j) + indicator(b_j) - 1 (b_in = -1), so its input curves are one-hot
    (IPR 1 / (floor(p/2) + 1)); the circuit's neurons keep their pure cosines (IPR 1).
    The lookup neurons come last: neurons d_mlp - len(pairs) .. d_mlp - 1.
    """
    base = {k: v.double() for k, v in fourier_mlp(p, freqs).items()}
    d0, n0 = base["W_E"].shape[1], base["W_out"].shape[0]
    m, D = pairs.numel(), base["W_E"].shape[1] + p
    W_E = torch.cat([base["W_E"], torch.eye(p, dtype=torch.float64)], dim=1)
    W_U = torch.cat([base["W_U"], torch.eye(p, dtype=torch.float64)], dim=0)
    W_in = torch.zeros(2 * D, n0 + m, dtype=torch.float64)
    W_in[:d0, :n0], W_in[D : D + d0, :n0] = base["W_in"][:d0], base["W_in"][d0:]
    j = torch.arange(m)
    W_in[d0 + pairs // p, n0 + j] = 1.0
    W_in[D + d0 + pairs % p, n0 + j] = 1.0
    b_in = torch.cat([torch.zeros(n0, dtype=torch.float64), -torch.ones(m, dtype=torch.float64)])
    W_out = torch.zeros(n0 + m, D, dtype=torch.float64)
    W_out[:n0, :d0] = base["W_out"]
    W_out[n0 + j, d0 + labels] = size
    return {"W_E": W_E.float(), "W_in": W_in.float(), "b_in": b_in.float(), "W_out": W_out.float(), "W_U": W_U.float()}


def plain_transformer(params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor, act: str = "relu",
                      biases: bool = True) -> torch.Tensor:
    """A one-layer attention-only-then-MLP transformer written the obvious way, over all three
    positions (a, b, "="): the reference the fast family (models.transformer) is checked against.

    Returns every position's logits [n, 3, n_out]; the family reads position 2. Causal mask as
    Nanda et al.'s (progress-measures-paper transformers.py:230): a query attends to itself and
    earlier positions. No LayerNorm.
    """
    p = params["W_E"].shape[0] - 1
    tokens = torch.stack([a, b, torch.full_like(a, p)], dim=1)  # [n, 3]
    x = params["W_E"][tokens] + params["W_pos"]  # [n, 3, d]
    q = torch.einsum("npd,hde->nhpe", x, params["W_Q"])
    k = torch.einsum("npd,hde->nhpe", x, params["W_K"])
    v = torch.einsum("npd,hde->nhpe", x, params["W_V"])
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # [n, h, query, key]
    causal = torch.ones(3, 3, dtype=torch.bool).tril()
    attn = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    z = attn @ v  # [n, h, 3, d_head]
    resid_mid = x + torch.einsum("nhpe,hed->npd", z, params["W_O"])
    b_in, b_out = (params["b_in"], params["b_out"]) if biases else (0.0, 0.0)
    hidden = getattr(torch.nn.functional, act)(resid_mid @ params["W_in"] + b_in)
    resid_post = resid_mid + hidden @ params["W_out"] + b_out
    return resid_post @ params["W_U"]
