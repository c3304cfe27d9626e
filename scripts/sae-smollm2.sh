#!/usr/bin/env bash
# The real-text SAE result of issue 12, as a command anyone can re-run: a
# TopK SAE (k 32, x16) on SmolLM2-135M-Instruct's middle-layer residual
# stream (blocks.15.hook_resid_post of 30 layers) over the fortunes corpus
# (scripts/fetch-fortunes.sh), evaluated on held-out quotations. On the
# 2-core CPU the forward pass dominates, so the distinct training tokens
# (UNIQUE) are computed once and cycled for TOKENS in all.
# Usage: scripts/sae-smollm2.sh [OUT_DIR]; TOKENS, UNIQUE, EXPANSION, K override.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${LOUPE_CACHE:-$HOME/.cache/loupe}/sae-smollm2-l15-topk}"
gguf=$(scripts/fetch-smollm2.sh)
corpus=$(scripts/fetch-fortunes.sh)
go build -o "${TMPDIR:-/tmp}/loupe-sae-run" ./cmd/loupe
"${TMPDIR:-/tmp}/loupe-sae-run" sae train --model "$gguf" --corpus "$corpus" \
  --hook blocks.15.hook_resid_post --arch topk --k "${K:-32}" --expansion "${EXPANSION:-16}" \
  --tokens "${TOKENS:-2000000}" --unique-tokens "${UNIQUE:-400000}" --batch 1024 --lr 1e-3 \
  --ctx 256 --seqs 4 --eval-tokens 8192 --eval-contexts 8 --seed 1 --out "$out"
cat "$out/eval.json"
