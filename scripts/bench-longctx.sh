#!/usr/bin/env bash
# Peak RSS of one SmolLM2 forward over 8192 tokens (LOUPE_RSS_TOKENS) with
# the retrieval score's reductions (every layer's top-1 key of the last
# query): the fused attention, the unfused path (every layer builds its
# scores and pattern) and the fused one with a chunked prefill (pieces of
# 1024). Each mode runs in a process of its own, since peak RSS is per
# process. Not part of CI: the unfused pass alone needs several GB.
set -euo pipefail
cd "$(dirname "$0")/.."
export LOUPE_SMOLLM2_GGUF="${LOUPE_SMOLLM2_GGUF:-$(scripts/fetch-smollm2.sh)}"
bin=$(mktemp -d)/probe.test
trap 'rm -rf "$(dirname "$bin")"' EXIT
go test -c -o "$bin" ./probe
for mode in ${MODES:-fused chunked unfused}; do
  (cd probe && LOUPE_RSS_MODE=$mode "$bin" -test.run 'TestLongForwardRSS$' -test.v -test.timeout 30m | grep -E 'RSS |needs about|FAIL' || true)
done
