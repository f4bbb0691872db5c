"""Doshi et al.'s four example runs from *their* random draws, stepped by their math and by ours.

    python checkpoints/doshi_replica.py        # 26 min at one thread beside a sweep; writes doshi-replica.json

Our doshi-wd runs draw their split, corruption and initialization from the project's generators,
so they are not their runs bit for bit. This script rebuilds their draws exactly (written from
reading d-doshi/Grokking 0b4335f, none of their code is used): the pair shuffle of
`utils/datasets.py:16-26` (Python's `random.seed(420)`), the corruption of lines 37-44
(`torch.random.manual_seed(0)`, then `torch.randint(0, p, (n_noise,))` on the first n_noise
shuffled pairs), and the initialization of `utils/models.py:31-40` as the notebook leaves it
(nn.Linear's own default init draws from torch's global generator right after the corruption, then
`normal_(std 0.5 / (2N)^(1/3))` overwrites fc1 and fc2). From those draws it trains each example
run twice, full batch, float32:

- "their_math": one-hot inputs through nn.Linear(2p, N) and nn.Linear(N, p), x**2, nn.MSELoss,
  torch.optim.AdamW with torch's default kernel, as their notebook steps it;
- "our_math": the same weights as U, V, W in the quadratic family's layout, one step of
  `family(config).batched_loss` (what `interp-grok train --model quadratic` runs) and the fused
  AdamW our trainer uses.

and records the training accuracy (against the given labels) and the test accuracy at epoch 1 and
at the epochs their notebook printed (`THEIRS`). Epoch 1 checks the draws against their printed numbers;
the later epochs show how far float rounding alone moves a run. analyses/06 prints the file,
tests/test_doshi_replica.py asserts it and re-derives epoch 1.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from interp_grok.config import Config
from interp_grok.models import family
from interp_grok.models.quadratic import doshi_init_std
from interp_grok.rundir import atomic_write_json
from interp_grok.train import GIT_COMMIT, GIT_DIRTY

OUT = Path(__file__).parent / "doshi-replica.json"
P, N, TRAIN_FRAC, XI, LR = 97, 500, 0.5, 0.35, 1e-2
# Their printed train / test accuracy (Notebooks/Grokking_with_label_corruption.ipynb outputs of
# cells 8, 12, 16 and 20: "epoch epochs:E ... train_acc:... test_acc:..."), by weight decay and epoch.
THEIRS = {
    0.0: {1: (0.051658163265306124, 0.0076514346439957494), 300: (0.9991496598639455, 0.8361317747077577),
          500: (0.9853316326530612, 0.9870350690754517), 1000: (0.9783163265306123, 0.9829968119022316)},
    5.0: {1: (0.05399659863945578, 0.0076514346439957494), 300: (0.8159013605442177, 1.0),
          500: (0.7855017006802721, 1.0)},
    15.0: {1: (0.06398809523809523, 0.007438894792773645), 300: (0.6536989795918368, 1.0),
           500: (0.6536989795918368, 1.0)},
    20.0: {1: (0.06866496598639456, 0.007013815090329437), 300: (0.65625, 1.0),
           500: (0.6560374149659864, 0.9995749202975558), 1000: (0.672406462585034, 0.6984059511158343),
           2000: (0.12181122448979592, 0.0720510095642933)},
}
RUNS = tuple((wd, max(printed), tuple(sorted(printed))) for wd, printed in THEIRS.items())  # (wd, epochs, record)


def their_draws(p: int = P, frac: float = TRAIN_FRAC, xi: float = XI, n_hidden: int = N):
    """Their split, corrupted labels and initial fc1.weight [N, 2p], fc2.weight [p, N], in the
    order their notebook draws them (utils/datasets.py:16-44, utils/models.py:31-40)."""
    pairs = [(i, j) for i in range(p) for j in range(p)]
    random.seed(420)
    order = list(range(len(pairs)))
    random.shuffle(order)
    x = torch.tensor([pairs[i] for i in order])  # [p^2, 2] (a, b) in their shuffled order
    y = (x[:, 0] + x[:, 1]) % p
    n_train = int(frac * len(pairs))
    n_noise = int(xi * n_train)
    torch.random.manual_seed(0)
    labels = y.clone()
    labels[:n_noise] = torch.randint(0, p, (n_noise,))
    fc1, fc2 = nn.Linear(2 * p, n_hidden, bias=False), nn.Linear(n_hidden, p, bias=False)  # default init: draws
    std = doshi_init_std(n_hidden)
    nn.init.normal_(fc1.weight, 0.0, std)
    nn.init.normal_(fc2.weight, 0.0, std)
    return x[:n_train], labels[:n_train], x[n_train:], labels[n_train:], fc1.weight.detach(), fc2.weight.detach()


def run(wd: float, epochs: int, record: tuple[int, ...], math: str) -> dict:
    """Train one example run from their draws; {epoch: [train acc, test acc]} at ``record``."""
    x_tr, y_tr, x_te, y_te, w1, w2 = their_draws()
    config = Config(model="quadratic", noise_kind="uniform", noise_frac=XI, train_frac=TRAIN_FRAC, p=P, d_mlp=N,
                    lr=LR, weight_decay=wd, loss_dtype="float32", epochs=epochs)
    config.finalize()
    if math == "their_math":
        fc1, fc2 = nn.Linear(2 * P, N, bias=False), nn.Linear(N, P, bias=False)
        fc1.weight.data.copy_(w1)
        fc2.weight.data.copy_(w2)
        onehot_tr, onehot_te = (F.one_hot(x, P).float().flatten(1) for x in (x_tr, x_te))  # [n, 2p]

        def outputs(train: bool) -> torch.Tensor:
            return fc2(fc1(onehot_tr if train else onehot_te).pow(2))

        target = F.one_hot(y_tr, P).float()

        def loss() -> torch.Tensor:
            return nn.MSELoss()(outputs(True), target)

        opt = torch.optim.AdamW([fc1.weight, fc2.weight], lr=LR, weight_decay=wd, betas=(0.9, 0.98), eps=1e-8)
    else:
        fam = family(config)
        params = {"U": nn.Parameter(w1[:, :P].T.contiguous()), "V": nn.Parameter(w1[:, P:].T.contiguous()),
                  "W": nn.Parameter(w2.T.contiguous())}

        def outputs(train: bool) -> torch.Tensor:
            x = x_tr if train else x_te
            return fam.logits(params, x[:, 0], x[:, 1], config)

        def loss() -> torch.Tensor:
            stacked = {k: v[None] for k, v in params.items()}  # [1, ...]: the trainer's batch of one
            n = torch.tensor([len(y_tr)])
            return fam.batched_loss(stacked, x_tr[None, :, 0], x_tr[None, :, 1], y_tr[None], n, config).sum()

        opt = torch.optim.AdamW(list(params.values()), lr=LR, weight_decay=wd, betas=(0.9, 0.98), eps=1e-8,
                                foreach=False, fused=True)
    out = {}
    for epoch in range(1, epochs + 1):
        opt.zero_grad()
        loss().backward()
        opt.step()
        if epoch in record:  # like their train_one_epoch_grokking: accuracies after the step
            with torch.no_grad():
                out[str(epoch)] = [float((outputs(True).argmax(1) == y_tr).float().mean()),
                                   float((outputs(False).argmax(1) == y_te).float().mean())]
    return out


def main() -> int:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result = {"what": __doc__.split("\n")[0], "torch": torch.__version__, "git_commit": GIT_COMMIT,
              "git_dirty": GIT_DIRTY, "p": P, "d_mlp": N, "train_frac": TRAIN_FRAC, "noise_frac": XI, "lr": LR,
              "runs": []}
    for wd, epochs, record in RUNS:
        entry = {"weight_decay": wd, "epochs": epochs, "theirs": {str(e): list(v) for e, v in THEIRS[wd].items()}}
        for math in ("their_math", "our_math"):
            entry[math] = run(wd, epochs, record, math)
            print(f"wd {wd}: {math} {entry[math]}", flush=True)
        result["runs"].append(entry)
    result["seconds"] = round(time.perf_counter() - t0)
    atomic_write_json(OUT, result)
    print(f"wrote {OUT} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
