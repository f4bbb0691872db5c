"""Restricted and excluded loss of the nanda-repro runs with the key frequencies of Nanda et al.'s own rule.

    python checkpoints/nanda_their_keys.py SWEEP_DIR     # the full sweep (every checkpoint kept)

The committed analyses (`interp-grok analyze`, default logit-outlier key rule) use 15-18 key
frequencies per run; Nanda et al.'s rule (transformer_views.nanda_key_frequencies, on the final
weights) gives 4-5. To read their phases with their keys, this computes, at every checkpoint of
each run, the restricted loss (all pairs) and the excluded loss (training pairs) against the labels
with the run's own keys by their rule, and writes checkpoints/sweeps/nanda-repro/their_keys.csv
(run, epoch, keys, restricted_loss, excluded_loss). Read by analyses/08_nanda_reproduction.py,
asserted by tests/test_nanda_reproduction.py. Safetensors only; nothing is unpickled.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from interp_grok import excluded_loss, family, load_run, nanda_key_frequencies, restricted_loss
from interp_grok import transformer_grid_pre as grid_pre
from interp_grok.rundir import atomic_write_text

OUT = Path(__file__).parent / "sweeps" / "nanda-repro" / "their_keys.csv"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not (Path(argv[0]) / "runs").is_dir():
        print(__doc__)
        return 2
    torch.set_num_threads(1)
    rows = []
    for run_dir in sorted((Path(argv[0]) / "runs").iterdir()):
        run = load_run(run_dir)
        final = run.checkpoint_epochs[-1]
        P = run.params(final)
        keys = nanda_key_frequencies(torch.relu(grid_pre(P, run.config.biases).double()))
        labels, tr = run.dataset.noisy_labels, run.dataset.train_idx
        fam = family(run.config)
        for epoch in run.checkpoint_epochs:
            logits = fam.grid_logits(run.params(epoch), run.config)
            rows.append({"run": run_dir.name, "epoch": epoch, "keys": " ".join(map(str, keys.tolist())),
                         "restricted_loss": restricted_loss(logits, keys, labels).item(),
                         "excluded_loss": excluded_loss(logits, keys, labels, tr).item()})
        print(f"{run_dir.name}: keys {keys.tolist()}, {len(run.checkpoint_epochs)} checkpoints", flush=True)
    lines = ["run,epoch,keys,restricted_loss,excluded_loss"]
    lines += [f"{r['run']},{r['epoch']},{r['keys']},{r['restricted_loss']!r},{r['excluded_loss']!r}" for r in rows]
    atomic_write_text(OUT, "\n".join(lines) + "\n")
    sys.path.insert(0, str(Path(__file__).parent))
    from build_sweep import _sha256sums

    _sha256sums(OUT.parent)  # the sweep copy's SHA256SUMS, this file included
    print(f"wrote {OUT} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
