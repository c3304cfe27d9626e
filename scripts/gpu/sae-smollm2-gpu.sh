#!/usr/bin/env bash
# The real-text SAE result of issue 12 on a GPU: scripts/sae-smollm2.sh's
# TopK SAE (k 32, x8, SmolLM2-135M-Instruct blocks.15.hook_resid_post, the
# fortunes corpus, the same held-out split and hyperparameters), with the
# forward pass and the training on the GPU, so every training token comes
# from a forward pass of its own (no --unique-tokens cache) and the run can
# see the whole corpus several times over.
#
# Usage: LOUPE=path/to/loupe GGUF=SmolLM2-135M-Instruct.Q4_1.gguf \
#          CORPUS=fortunes-1.99.1-7.3.jsonl scripts/gpu/sae-smollm2-gpu.sh [OUT_DIR]
# TOKENS (default 8,000,000), EXPANSION, K, BATCH, LR, HOOK override; DEVICE
# (default cuda) may be cpu for a dry run. eval.json is printed at the end.
set -euo pipefail
out="${1:-${OUT:-.}/sae-smollm2-gpu}"
: "${LOUPE:?set LOUPE to a loupe binary}" "${GGUF:?set GGUF to the SmolLM2 GGUF}" "${CORPUS:?set CORPUS to the fortunes JSON lines}"
"$LOUPE" sae train --model "$GGUF" --corpus "$CORPUS" --device "${DEVICE:-cuda}" --weight-dtype f32 --train-dtype f32 \
  --hook "${HOOK:-blocks.15.hook_resid_post}" --arch topk --k "${K:-32}" --expansion "${EXPANSION:-8}" \
  --tokens "${TOKENS:-8000000}" --batch "${BATCH:-1024}" --lr "${LR:-1e-3}" \
  --ctx 256 --seqs 32 --eval-tokens "${EVAL_TOKENS:-8192}" --eval-contexts "${EVAL_CONTEXTS:-64}" --seed 1 --quiet --out "$out"
cat "$out/eval.json"
