#!/usr/bin/env bash
# The frozen-model codebook of scripts/codebook-smollm2.sh with the model on
# a GPU, for a GPU machine without Go or a network: a codebook of 4608 codes
# with k = 32 on SmolLM2-135M-Instruct's blocks.15.hook_resid_post over the
# fortunes corpus, the activations from the GPU forward (bf16 weights), the
# codebook step on the host; then evaluated with the codebook spliced into
# the GPU forward (CE loss recovered, KL, dead codes). Prints the training
# tokens/s and eval.json.
#
#   LOUPE=path/to/loupe GGUF=smollm2.gguf CORPUS=fortunes.jsonl \
#     scripts/gpu/codebook-smollm2-gpu.sh OUT_DIR
#
# TOKENS, UNIQUE, K, CODES, DEVICE override (defaults: 100000, 25000, 32,
# 4608, cuda).
set -euo pipefail
out=${1:?usage: codebook-smollm2-gpu.sh OUT_DIR}
: "${LOUPE:?set LOUPE to the loupe binary}" "${GGUF:?set GGUF to the SmolLM2 GGUF}" "${CORPUS:?set CORPUS to the fortunes corpus}"
mkdir -p "$out"
export LOUPE_CACHE=${LOUPE_CACHE:-/tmp/loupe-cache}
start=$(date +%s.%N)
"$LOUPE" codebook train --device "${DEVICE:-cuda}" --model "$GGUF" --corpus "$CORPUS" --hook blocks.15.hook_resid_post \
  --codes "${CODES:-4608}" --k "${K:-32}" --tokens "${TOKENS:-100000}" --unique-tokens "${UNIQUE:-25000}" --batch 1024 --lr 1e-3 \
  --ctx 256 --seqs 4 --eval-contexts 8 --seed 1 --quiet --out "$out/codebook" 2>&1 | tee "$out/train.txt"
echo "wall $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}") s (load, forward, training, eval)" | tee -a "$out/train.txt"
cat "$out/codebook/eval.json"
