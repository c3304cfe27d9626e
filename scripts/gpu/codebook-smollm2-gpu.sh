#!/usr/bin/env bash
# The frozen-model codebook of scripts/codebook-smollm2.sh with the model on
# a GPU, for a GPU machine without Go or a network: a codebook of 4608 codes
# with k = 32 on SmolLM2-135M-Instruct's blocks.15.hook_resid_post over the
# fortunes corpus, the activations from the GPU forward (bf16 weights);
# then evaluated with the codebook spliced into the GPU forward (CE loss
# recovered, KL, dead codes). Two runs side by side, the same but for where
# each training step chooses its codes (the similarity product and top k):
# on the GPU (the default) and on the host (--host-step); their training
# tokens/s give the ratio. Prints both reports and eval.json files.
#
#   LOUPE=path/to/loupe GGUF=smollm2.gguf CORPUS=fortunes.jsonl \
#     scripts/gpu/codebook-smollm2-gpu.sh OUT_DIR
#
# TOKENS, UNIQUE, K, CODES, DEVICE, STEPS override (defaults: 100000, 25000,
# 32, 4608, cuda, "device host").
set -euo pipefail
out=${1:?usage: codebook-smollm2-gpu.sh OUT_DIR}
: "${LOUPE:?set LOUPE to the loupe binary}" "${GGUF:?set GGUF to the SmolLM2 GGUF}" "${CORPUS:?set CORPUS to the fortunes corpus}"
mkdir -p "$out"
export LOUPE_CACHE=${LOUPE_CACHE:-/tmp/loupe-cache}
for step in ${STEPS:-device host}; do
  flag=()
  [ "$step" = host ] && flag=(--host-step)
  start=$(date +%s.%N)
  "$LOUPE" codebook train --device "${DEVICE:-cuda}" --model "$GGUF" --corpus "$CORPUS" --hook blocks.15.hook_resid_post \
    --codes "${CODES:-4608}" --k "${K:-32}" --tokens "${TOKENS:-100000}" --unique-tokens "${UNIQUE:-25000}" --batch 1024 --lr 1e-3 \
    --ctx 256 --seqs 4 --eval-contexts 8 --seed 1 --quiet "${flag[@]}" --out "$out/codebook-$step" 2>&1 | tee "$out/train-$step.txt"
  echo "wall $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}") s (load, forward, training, eval)" | tee -a "$out/train-$step.txt"
  cat "$out/codebook-$step/eval.json"
done
