#!/usr/bin/env bash
# `loupe sae train --device cuda` for every architecture, on the embedded
# organism (no files needed): each run trains on the GPU, fed from the
# forward pass there, then evaluates and exports; one line per run with its
# L0, FVU, dead fraction and CE loss recovered, from eval.json.
# Usage: LOUPE=path/to/loupe scripts/gpu/sae-cli-archs.sh [OUT_DIR]
# TOKENS (default 65536), DEVICE (default cuda; cpu for a dry run), RUNS
# (arch:dtype pairs, default every architecture in f32 and TopK in bf16).
set -euo pipefail
out="${1:-${OUT:-.}/sae-cli-archs}"
: "${LOUPE:?set LOUPE to a loupe binary}"
mkdir -p "$out"
status=0
for run in ${RUNS:-standard:f32 topk:f32 topk:bf16 batchtopk:f32 jumprelu:f32 matryoshka:f32}; do
  arch=${run%:*} dt=${run#*:}
  dir="$out/$arch-$dt"
  if "$LOUPE" sae train --device "${DEVICE:-cuda}" --train-dtype "$dt" --hook blocks.2.hook_resid_post --arch "$arch" \
      --k 16 --expansion 8 --tokens "${TOKENS:-65536}" --batch 1024 --eval-tokens 4096 --eval-contexts 4 --quiet --out "$dir" >"$dir.log" 2>&1; then
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); d=r.get("downstream") or {}; print("sae-cli %-10s %s l0=%.2f fvu=%.4f dead=%.3f ce_recovered=%s tok/s=%.0f" % (r["architecture"], sys.argv[2], r["l0"], r["fvu"], r["dead_fraction"], d.get("ce_loss_recovered"), r.get("train_tokens_per_second", 0)))' "$dir/eval.json" "$dt"
  else
    echo "sae-cli $arch $dt FAILED:"; tail -5 "$dir.log"; status=1
  fi
done
exit $status
