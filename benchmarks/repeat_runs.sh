#!/usr/bin/env bash
# Does training repeat bit for bit on this machine? Five uninterrupted default runs of 400 epochs,
# three at 2 torch threads and two at 1, each into a fresh directory; prints the sha256 of each
# final checkpoint and the final line. Usage: bash benchmarks/repeat_runs.sh [WORKDIR]
set -euo pipefail
bin="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/interp-grok"
work="${1:-$(mktemp -d)}"
lscpu | grep -m1 "Model name"
i=0
for t in 2 2 2 1 1; do
  i=$((i + 1))
  "$bin" train --epochs 400 --threads "$t" --out "$work/r${i}_t$t" > "$work/r$i.log" 2>&1
  echo "run $i, $t threads: $(sha256sum "$work/r${i}_t$t/checkpoints/epoch_000400.safetensors" | cut -c1-16)  $(tail -1 "$work/r$i.log" | cut -d'|' -f1-3)"
done
