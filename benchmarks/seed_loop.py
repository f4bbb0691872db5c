"""A faithful copy of the seed notebook's training loop (../shared/seed), as the baseline.

Kept as the notebook wrote it: the concat-embedding MLP, torch's default AdamW, a forward
pass on the test set every epoch, and `.item()` host reads every epoch. Only two things
differ: the labels are built after the noise (the notebook used them before they existed)
and the model's weights are passed in, so both trainers can start from the same point.
"""

from __future__ import annotations

import torch
import torch as t
import tqdm
from torch import nn


class SeedMLP(nn.Module):
    """The notebook's SimpleMLP: embed, concatenate, one ReLU hidden layer, unembed."""

    def __init__(self, params: dict[str, torch.Tensor]):
        super().__init__()
        for name, value in params.items():
            setattr(self, name, nn.Parameter(value.clone()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.W_E[x]  # [batch, n_ctx, d_model]
        x1 = x0.flatten(1)  # [batch, n_ctx * d_model]
        x2 = torch.relu(x1 @ self.W_in + self.b_in) @ self.W_out
        return x2 @ self.W_U


def loss_fn(logits, labels):
    if len(logits.shape) == 3:
        logits = logits[:, -1]
    logits = logits.to(t.float64)
    log_probs = logits.log_softmax(dim=-1)
    correct_log_probs = log_probs.gather(dim=-1, index=labels[:, None])[:, 0]
    return -correct_log_probs.mean()


def seed_train(params, train_dataset, train_labels, test_dataset, test_labels, n_epoch,
               lr=1e-3, wd=1.0, betas=(0.9, 0.98), show_progress=False):
    """The notebook's loop; returns (train_losses, test_losses) as Python lists."""
    simpleMLP = SeedMLP(params)
    optimizer = t.optim.AdamW(simpleMLP.parameters(), lr=lr, betas=betas, weight_decay=wd)
    train_losses, test_losses = [], []
    pbar = tqdm.tqdm(range(1, n_epoch + 1), desc="Training", unit="epoch",
                     dynamic_ncols=True, leave=False, disable=not show_progress)
    for _epoch in pbar:
        simpleMLP.train()
        optimizer.zero_grad()
        train_logits = simpleMLP(train_dataset)
        train_loss = loss_fn(train_logits, train_labels)
        train_loss.backward()
        optimizer.step()

        simpleMLP.eval()
        with t.inference_mode():
            test_logits = simpleMLP(test_dataset)
            test_loss = loss_fn(test_logits, test_labels)

        train_losses.append(train_loss.item())
        test_losses.append(test_loss.item())
        pbar.set_postfix(train=f"{train_loss.item()}", test=f"{test_loss.item()}")
    return train_losses, test_losses
