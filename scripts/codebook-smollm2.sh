#!/usr/bin/env bash
# Issue 13's frozen-model codebook figure, as a command anyone can re-run: a
# codebook of 4608 codes with k = 32 on SmolLM2-135M-Instruct's middle-layer
# residual stream (blocks.15.hook_resid_post of 30 layers) over the fortunes
# corpus, beside a TopK SAE with the same number of active latents (k 32,
# 8 x 576 = 4608 latents) trained on the same tokens; both evaluated on the
# same held-out contexts (CE loss recovered, KL). As in scripts/sae-smollm2.sh
# the distinct training tokens (UNIQUE) are computed once and cycled.
# Usage: scripts/codebook-smollm2.sh [OUT_DIR]; TOKENS, UNIQUE, K, CODES override.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${LOUPE_CACHE:-$HOME/.cache/loupe}/codebook-smollm2-l15}"
gguf=$(scripts/fetch-smollm2.sh)
corpus=$(scripts/fetch-fortunes.sh)
bin="${TMPDIR:-/tmp}/loupe-codebook-run"
go build -o "$bin" ./cmd/loupe
common=(--model "$gguf" --corpus "$corpus" --hook blocks.15.hook_resid_post --k "${K:-32}"
  --tokens "${TOKENS:-200000}" --unique-tokens "${UNIQUE:-50000}" --batch 1024 --lr 1e-3
  --ctx 256 --seqs 4 --eval-contexts 8 --seed 1)
"$bin" codebook train "${common[@]}" --codes "${CODES:-4608}" --out "$out/codebook"
"$bin" sae train "${common[@]}" --arch topk --expansion 8 --eval-tokens 8192 --out "$out/sae"
echo "codebook:"; cat "$out/codebook/eval.json"
echo "sae:"; cat "$out/sae/eval.json"
