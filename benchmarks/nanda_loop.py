"""A faithful re-implementation of Nanda et al.'s training loop, as the transformer's baseline.

Read from mechanistic-interpretability-grokking/progress-measures-paper, transformers.py (commit
23d2c64) and written anew here with their module structure and their per-epoch work:

- modules Embed, PosEmbed, Attention, MLP, TransformerBlock, Unembed and Transformer with
  HookPoints, the same einsums and layouts (lines 113-312), their init (randn / sqrt(d_model),
  W_U randn / sqrt(d_vocab)), d_vocab = p + 1, no LayerNorm;
- gen_train_test: random.seed(seed), random.shuffle of the (i, j, p) triples (lines 437-444);
- full_loss: the model on a list of triples, the last position's p + 1 logits, labels rebuilt in
  Python on every call, and cross_entropy_high_precision, which casts to float32 (lines 447-452;
  helpers.py:105-114);
- every epoch (do_a_training_step, lines 497-510): a train forward and a test forward (the test
  one also builds its graph, as theirs), .item() on both losses, backward, AdamW(lr, wd, betas
  (0.9, 0.98)) step, LambdaLR(min(step / 10, 1)) step, zero_grad.

Left out: wandb, the every-100-epochs state_dict logging and the every-1000-epochs
take_metrics (key frequencies, trig and excluded losses), and the stopping threshold. Nothing
seeds their weights (line 468); here ``torch.manual_seed(seed)`` before the model draws them, so
``their_params`` maps a run's starting point onto interp-grok's layout and both start equal.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch as t
import torch.nn.functional as F
from torch import nn


class HookPoint(nn.Module):
    def __init__(self):
        super().__init__()
        self.name = None

    def give_name(self, name):
        self.name = name

    def forward(self, x):
        return x


class Embed(nn.Module):
    def __init__(self, d_vocab, d_model):
        super().__init__()
        self.W_E = nn.Parameter(t.randn(d_model, d_vocab) / np.sqrt(d_model))

    def forward(self, x):
        return t.einsum("dbp -> bpd", self.W_E[:, x])


class Unembed(nn.Module):
    def __init__(self, d_vocab, d_model):
        super().__init__()
        self.W_U = nn.Parameter(t.randn(d_model, d_vocab) / np.sqrt(d_vocab))

    def forward(self, x):
        return x @ self.W_U


class PosEmbed(nn.Module):
    def __init__(self, max_ctx, d_model):
        super().__init__()
        self.W_pos = nn.Parameter(t.randn(max_ctx, d_model) / np.sqrt(d_model))

    def forward(self, x):
        return x + self.W_pos[: x.shape[-2]]


class Attention(nn.Module):
    def __init__(self, d_model, num_heads, d_head, n_ctx):
        super().__init__()
        self.W_K = nn.Parameter(t.randn(num_heads, d_head, d_model) / np.sqrt(d_model))
        self.W_Q = nn.Parameter(t.randn(num_heads, d_head, d_model) / np.sqrt(d_model))
        self.W_V = nn.Parameter(t.randn(num_heads, d_head, d_model) / np.sqrt(d_model))
        self.W_O = nn.Parameter(t.randn(d_model, d_head * num_heads) / np.sqrt(d_model))
        self.register_buffer("mask", t.tril(t.ones((n_ctx, n_ctx))))
        self.d_head = d_head
        for h in ("hook_k", "hook_q", "hook_v", "hook_z", "hook_attn", "hook_attn_pre"):
            setattr(self, h, HookPoint())

    def forward(self, x):
        k = self.hook_k(t.einsum("ihd,bpd->biph", self.W_K, x))
        q = self.hook_q(t.einsum("ihd,bpd->biph", self.W_Q, x))
        v = self.hook_v(t.einsum("ihd,bpd->biph", self.W_V, x))
        attn_scores_pre = t.einsum("biph,biqh->biqp", k, q)
        attn_scores_masked = t.tril(attn_scores_pre) - 1e10 * (1 - self.mask[: x.shape[-2], : x.shape[-2]])
        attn_matrix = self.hook_attn(F.softmax(self.hook_attn_pre(attn_scores_masked / np.sqrt(self.d_head)), dim=-1))
        z = self.hook_z(t.einsum("biph,biqp->biqh", v, attn_matrix))
        z_flat = z.permute(0, 2, 1, 3).flatten(2)  # their einops.rearrange(z, "b i q h -> b q (i h)")
        return t.einsum("df,bqf->bqd", self.W_O, z_flat)


class MLP(nn.Module):
    def __init__(self, d_model, d_mlp):
        super().__init__()
        self.W_in = nn.Parameter(t.randn(d_mlp, d_model) / np.sqrt(d_model))
        self.b_in = nn.Parameter(t.zeros(d_mlp))
        self.W_out = nn.Parameter(t.randn(d_model, d_mlp) / np.sqrt(d_model))
        self.b_out = nn.Parameter(t.zeros(d_model))
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()

    def forward(self, x):
        x = self.hook_pre(t.einsum("md,bpd->bpm", self.W_in, x) + self.b_in)
        x = self.hook_post(F.relu(x))
        return t.einsum("dm,bpm->bpd", self.W_out, x) + self.b_out


class TransformerBlock(nn.Module):
    def __init__(self, d_model, d_mlp, d_head, num_heads, n_ctx):
        super().__init__()
        self.attn = Attention(d_model, num_heads, d_head, n_ctx)
        self.mlp = MLP(d_model, d_mlp)
        for h in ("hook_attn_out", "hook_mlp_out", "hook_resid_pre", "hook_resid_mid", "hook_resid_post"):
            setattr(self, h, HookPoint())

    def forward(self, x):
        x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(self.hook_resid_pre(x))))
        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(x)))


class Transformer(nn.Module):
    def __init__(self, p=113, d_model=128, num_heads=4, d_mlp=512, n_ctx=3):
        super().__init__()
        d_vocab = p + 1
        self.embed = Embed(d_vocab, d_model)
        self.pos_embed = PosEmbed(n_ctx, d_model)
        self.blocks = nn.ModuleList([TransformerBlock(d_model, d_mlp, d_model // num_heads, num_heads, n_ctx)])
        self.unembed = Unembed(d_vocab, d_model)
        for name, module in self.named_modules():
            if type(module) is HookPoint:
                module.give_name(name)

    def forward(self, x):
        x = self.pos_embed(self.embed(x))
        for block in self.blocks:
            x = block(x)
        return self.unembed(x)


def gen_train_test(p: int, frac_train: float, seed: int):
    pairs = [(i, j, p) for i in range(p) for j in range(p)]
    random.seed(seed)
    random.shuffle(pairs)
    div = int(frac_train * len(pairs))
    return pairs[:div], pairs[div:]


def cross_entropy_high_precision(logits, labels):
    # their comment says float64; their code casts to float32 (helpers.py:111)
    logprobs = F.log_softmax(logits.to(torch.float32), dim=-1)
    return -torch.mean(torch.gather(logprobs, index=labels[:, None], dim=-1))


def full_loss(model, data, p):
    logits = model(data)[:, -1]
    labels = t.tensor([(i + j) % p for i, j, _ in data])
    return cross_entropy_high_precision(logits, labels)


def their_params(model: Transformer) -> dict[str, torch.Tensor]:
    """The model's weights in interp-grok's transformer layout (models.transformer.PARAM_NAMES)."""
    a, m = model.blocks[0].attn, model.blocks[0].mlp
    H, dh, d = a.W_K.shape
    with torch.no_grad():
        return {"W_E": model.embed.W_E.T.clone(), "W_pos": model.pos_embed.W_pos.clone(),
                "W_K": a.W_K.transpose(1, 2).clone(), "W_Q": a.W_Q.transpose(1, 2).clone(),
                "W_V": a.W_V.transpose(1, 2).clone(), "W_O": a.W_O.T.reshape(H, dh, d).clone(),
                "W_in": m.W_in.T.clone(), "b_in": m.b_in.clone(), "W_out": m.W_out.T.clone(),
                "b_out": m.b_out.clone(), "W_U": model.unembed.W_U.clone()}


def nanda_train(p: int, epochs: int, seed: int = 0, frac_train: float = 0.3, lr: float = 1e-3,
                weight_decay: float = 1.0, d_model: int = 128, num_heads: int = 4, d_mlp: int = 512,
                init_seed: int = 0, tensor_data: bool = False):
    """Their loop for ``epochs`` epochs; returns (train losses, the model). ``tensor_data``: the
    triples turned into one index tensor once (their code indexes with the Python list every call)."""
    torch.manual_seed(init_seed)
    model = Transformer(p, d_model, num_heads, d_mlp)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(step / 10, 1))
    train, test = gen_train_test(p, frac_train, seed)
    if tensor_data:
        train_x, test_x = t.tensor(train), t.tensor(test)
        train_y = t.tensor([(i + j) % p for i, j, _ in train])
        test_y = t.tensor([(i + j) % p for i, j, _ in test])

        def loss_of(x, y):
            return cross_entropy_high_precision(model(x)[:, -1], y)
    train_losses, test_losses = [], []
    for _ in range(epochs):
        if tensor_data:
            train_loss, test_loss = loss_of(train_x, train_y), loss_of(test_x, test_y)
        else:
            train_loss, test_loss = full_loss(model, train, p), full_loss(model, test, p)
        train_losses.append(train_loss.item())
        test_losses.append(test_loss.item())
        train_loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return train_losses, model
