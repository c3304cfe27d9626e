#!/usr/bin/env bash
# Issue 11's GPU figure: head scores on long prompts of an 8B model. On a
# GPU machine, from the repository root, with the probe test binary built
# by `scripts/gpu-test.sh build DIR` (DIR/probe.test.gz):
#
#   scripts/gpu/bench-longctx.sh DIR [LENGTHS] [CHUNK]
#
# writes random bf16 weights of the Llama-3-8B shape (make_random_model.py,
# unless $BENCH_MODELS/llama3-8b exists), then prefills one prompt of each
# length (default 32768,65536,131072,262144) in chunks of CHUNK positions
# (default 8192) with the top-1 reduction of every head on every row
# (probe's TestGPULongContext), and runs transformers with
# output_attentions=True at 4096 and 8192 tokens and each length until it
# runs out of memory (bench_longctx_torch.py). JSON lines on stdout and in
# $OUT (or ./gpu-test-logs).
set -euo pipefail
bin=${1:?usage: bench-longctx.sh DIR [LENGTHS] [CHUNK]}
lengths=${2:-32768,65536,131072,262144}
chunk=${3:-8192}
here=$(cd "$(dirname "$0")" && pwd)
logs=${OUT:-gpu-test-logs}
models=${BENCH_MODELS:-/tmp/loupe-bench-models}
mkdir -p "$logs" "$models" /tmp/loupe-gpu-tests
[ -x /tmp/loupe-gpu-tests/probe.test ] || { gunzip -c "$bin/probe.test.gz" >/tmp/loupe-gpu-tests/probe.test; chmod +x /tmp/loupe-gpu-tests/probe.test; }
[ -s "$models/llama3-8b/config.json" ] || python3 "$here/make_random_model.py" llama3-8b "$models/llama3-8b"
status=0
(cd "$here/../../probe" 2>/dev/null || true
  LOUPE_TEST_DEVICE=cuda LOUPE_TEST_DTYPE=bf16 LOUPE_BENCH_8B="$models/llama3-8b" LOUPE_BENCH_LONG="$lengths" LOUPE_BENCH_CHUNK="$chunk" \
    /tmp/loupe-gpu-tests/probe.test -test.run GPULongContext -test.v -test.timeout=9m) 2>&1 | tee "$logs/longctx-loupe.jsonl" || status=1
if [ "${BENCH_TORCH:-1}" = 1 ]; then
  PYTHONUNBUFFERED=1 python3 "$here/bench_longctx_torch.py" "$models/llama3-8b" 4096 8192 ${lengths//,/ } 2>&1 | grep -v Warning | tee "$logs/longctx-torch.jsonl" || status=1
fi
exit $status
