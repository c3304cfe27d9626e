#!/usr/bin/env bash
# BatchTopK and Matryoshka: Loupe against SAELens 6.54.12's own training SAEs
# on the same organism activations, the same batches in the same order
# (`loupe sae train --hook blocks.2.hook_resid_post --k 16 --expansion 8
# --tokens 65536 --batch 1024 --eval-tokens 4096`). sae/RESULTS.md has the
# figures. SAELens is installed with --no-deps into a folder of its own
# (its import needs, not its training runner's), so no environment changes.
# Usage: scripts/sae-batchtopk-saelens.sh [WORK_DIR]; PYTHON names the
# interpreter (torch and numpy installed).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-${TMPDIR:-/tmp}/loupe-batchtopk-saelens}"
py="${PYTHON:-python3}"
mkdir -p "$work"
pylib="$work/pylib"
if [ ! -d "$pylib/sae_lens" ]; then
  # what importing sae_lens.saes needs beyond torch, numpy, transformers and
  # huggingface_hub (datasets comes in through sae_lens.loading)
  "$py" -m pip install -q --no-deps --target "$pylib" sae-lens==6.54.12 "transformer-lens<4" einops \
    jaxtyping wadler-lindig better-abc datasets multiprocess pandas python-dateutil dill xxhash pyarrow
fi
LOUPE_SAE_COMPARE="$work" go test ./sae -run '^TestExportOrganismBatches$' -count=1 >/dev/null
for arch in batchtopk matryoshka; do
  echo "== $arch: Loupe"
  LOUPE_SAE_COMPARE="$work" LOUPE_SAE_ARCH=$arch go test ./sae -run '^TestTrainOnExportedBatches$' -count=1 -v | grep '^{'
  echo "== $arch: SAELens, its defaults (decoder_init_norm 0.1, aux 1, dead window 1000 steps, b_dec 0, clip 1)"
  "$py" scripts/sae_batchtopk_saelens.py --dir "$work" --pylib "$pylib" --arch $arch 2>/dev/null
  for clip in 1 0; do
    echo "== $arch: SAELens with Loupe's settings (unit-norm rows, aux 1/32, dead window 6,553 tokens, geometric-median b_dec), clip $clip"
    "$py" scripts/sae_batchtopk_saelens.py --dir "$work" --pylib "$pylib" --arch $arch \
      --dec-init-norm 1 --aux 0.03125 --dead-window 6 --bdec gm --clip $clip 2>/dev/null
  done
done
