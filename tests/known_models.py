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
