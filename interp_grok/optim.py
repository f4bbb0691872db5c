"""The optimizers a run trains with: AdamW, and ⊥AdamW (Prieto et al. 2025's ⊥Grad around the same AdamW).

One torch AdamW holds every model of a (batched) step, one param group per model with that run's
lr, betas, eps and weight decay; a group whose run asks for ``orthoadamw`` has its gradients made
orthogonal to its weights (``orthogonalize_``) before that same AdamW steps. So the inner AdamW is
the configured one by construction: Prieto et al.'s wrapper built a second AdamW from lr and weight
decay only, so with ⊥Grad theirs ran at torch's default betas (0.9, 0.999) and eps 1e-8
(grokking_experiments.py:53-67 of LucasPrietoAl/grokking-at-the-edge-of-numerical-stability: ``betas``
is assigned but never passed, and ``optimizer_args`` holds only lr and weight_decay; their issue #11).

⊥Grad follows their code (orthograd.py:23-46), not the paper's formula, because their published runs
are the code's: per parameter tensor w with gradient g (flattened),
    g_perp = g - (w.g / (w.w + 1e-30)) w,    g <- g_perp * (|g| / (|g_perp| + 1e-30)),
in the parameter's dtype (float32), in that order of operations. The paper writes
g - (theta.g / theta.theta) theta over the parameters without the rescaling to |g|. Weight decay is
AdamW's own (decoupled, unprojected), as in their runs. The AdamW state (moments, step) is the
ordinary one, so a resume restores it exactly; the projection keeps no state.
"""

from __future__ import annotations

import torch

from .config import Config

# their orthograd.py:38 and :43: keep a zero weight (b_in at init) or a zero projected gradient finite
ORTHO_EPS = 1e-30


@torch.no_grad()
def orthogonalize_(params: list[torch.Tensor]) -> None:
    """Replace each parameter's .grad by its component orthogonal to the parameter, rescaled to the
    gradient's norm (Prieto et al.'s ⊥Grad, their orthograd.py:32-46); parameters without a grad are skipped."""
    for p in params:
        if p.grad is None:
            continue
        w, g = p.view(-1), p.grad.view(-1)
        proj = torch.dot(w, g) / (torch.dot(w, w) + ORTHO_EPS)
        g_orth = g - proj * w
        g_orth_scaled = g_orth * (g.norm(2) / (g_orth.norm(2) + ORTHO_EPS))
        p.grad.copy_(g_orth_scaled.view_as(p.grad))


def make_optimizer(leaves: list[dict[str, torch.Tensor]], configs: list[Config]) -> torch.optim.AdamW:
    """AdamW over K models: one param group each, with that run's lr, weight decay, betas and eps
    (the fused kernel runs group by group, so each model gets exactly the solo update). A group's
    "orthogonal" entry says whether ``step`` applies ⊥Grad to it first."""
    groups = [{"params": list(lv.values()), "lr": c.lr, "betas": c.betas, "eps": c.adam_eps,
               "weight_decay": c.weight_decay, "orthogonal": c.optimizer == "orthoadamw"}
              for lv, c in zip(leaves, configs)]
    return torch.optim.AdamW(groups, foreach=False, fused=True)  # one kernel for all params of a group


def step(opt: torch.optim.Optimizer) -> None:
    """One optimizer step: ⊥Grad on the groups that ask for it, then the AdamW update of every group."""
    for group in opt.param_groups:
        if group.get("orthogonal"):
            orthogonalize_(group["params"])
    opt.step()
