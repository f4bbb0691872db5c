"""Model families: the one protocol every architecture implements, and the registry of them.

A family owns everything that depends on the architecture: parameter names and shapes, the
initialization, the forward pass on (a, b) pairs, the training loss (its batched form, with a
leading model axis, is the training step's forward), the full-grid logits [p, p, p], the
per-neuron curves the Fourier and IPR analyses read, and the embedding-like matrix [p, d] whose
Fourier spectrum the analysis reports. The trainer, the run format and the analyses ask
``family(config)`` for these and never test which architecture they hold.

Families: ``mlp`` (the seed's one-hidden-layer MLP, interp_grok.models.mlp), ``quadratic``
(Doshi et al. 2024 / Gromov 2023, interp_grok.models.quadratic) and ``transformer`` (Nanda et
al. 2023's one-layer transformer, interp_grok.models.transformer; its per-neuron curves are its
MLP neurons' effective input curves over each token, read through the embedding and attention).
A further family is one more module with a class satisfying ModelFamily and one more entry in
FAMILIES and config.MODELS.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from ..config import MODELS, Config

LOSSES = ("cross_entropy", "mse")  # what evaluation.metrics_from_logits knows how to report


@runtime_checkable
class ModelFamily(Protocol):
    """What the toolkit needs of an architecture. ``params`` is a dict of float32 tensors named
    ``param_names`` (checkpoints store exactly these); "stacked" params have a leading model axis K."""

    name: str  # the Config.model value
    # one of LOSSES: the kind of loss metrics.jsonl's evaluations report as train/test loss (cross_entropy: the
    # float64 softmax NLL, whichever of config.CLASSIFIER_LOSSES the run trains with; mse: the family's own)
    loss: str
    param_names: tuple[str, ...]  # in initialization order

    def param_shapes(self, config: Config) -> dict[str, tuple[int, ...]]:
        """Every parameter's shape (one model, no model axis)."""
        ...

    def init_params(self, config: Config, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The initial weights for ``config`` (its init scheme and init_scale), drawn from ``generator``."""
        ...

    def logits(self, params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor, config: Config
               ) -> torch.Tensor:
        """Outputs [n, p] for pairs a, b (int64 [n])."""
        ...

    def batched_loss(self, params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor,
                     labels: torch.Tensor, n_k: torch.Tensor, config: Config) -> torch.Tensor:
        """Per-model training loss [K] of stacked params on pairs a, b and labels (int64 [K, n]),
        model k's first n_k[k] examples counting (the rest pad); differentiable. A classifier computes
        config.loss in config.loss_dtype with models.losses.batched_loss."""
        ...

    def grid_logits(self, params: dict[str, torch.Tensor], config: Config) -> torch.Tensor:
        """Outputs on the full grid, float32 [p, p, p] indexed (a, b, class)."""
        ...

    def neuron_curves(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each hidden neuron's input curves over the tokens (in_a, in_b) and its output curve over
        the classes (out), each float64 [n_neurons, p]: what fourier.ipr and the Fourier analyses read."""
        ...

    def embedding(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The embedding-like matrix [p, d] (token axis first) whose Fourier spectrum is reported
        (progress.csv's gini_W_E, embed_fourier.safetensors, the key frequencies)."""
        ...

    def ablate_neurons(self, params: dict[str, torch.Tensor], keep: torch.Tensor) -> dict[str, torch.Tensor]:
        """A copy of params with the hidden neurons where ``keep`` (bool [n_neurons]) is False silenced."""
        ...

    def module(self, params: dict[str, torch.Tensor], config: Config) -> nn.Module:
        """An nn.Module holding copies of params as named Parameters; forward(a, b) -> outputs [n, p]."""
        ...


def _registry() -> dict[str, ModelFamily]:
    from .mlp import MLPFamily
    from .quadratic import QuadraticFamily
    from .transformer import TransformerFamily

    return {f.name: f for f in (MLPFamily(), QuadraticFamily(), TransformerFamily())}


FAMILIES: dict[str, ModelFamily] = _registry()
assert tuple(FAMILIES) == MODELS, "config.MODELS and the registry must name the same families"


def family(which: Config | str) -> ModelFamily:
    """The family of a config (its ``model`` setting) or of a family name."""
    name = which if isinstance(which, str) else which.model
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"model must be one of {', '.join(FAMILIES)} (got {name!r})") from None


__all__ = ["FAMILIES", "LOSSES", "ModelFamily", "family"]
