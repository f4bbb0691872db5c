"""The seed MLP's math, at its historical import path (it lives in interp_grok.models.mlp).

Kept so that ``from interp_grok.model import grid_logits`` and friends keep working; new code
that should work for any architecture goes through ``interp_grok.models.family(config)``.
"""

from __future__ import annotations

from .models.mlp import (  # noqa: F401  (re-exports)
    _ACTS,
    COMPACT_NAMES,
    PARAM_NAMES,
    MLPFamily,
    SimpleMLP,
    _CrossEntropy,
    _head,
    _ReluHead,
    ablate_neurons,
    batched_cross_entropy,
    batched_logits,
    compact_params,
    cross_entropy,
    grid_hidden,
    grid_logits,
    init_params,
    is_compact,
    mlp_logits,
    param_shapes,
    per_example_cross_entropy,
    token_tables,
)
