#!/usr/bin/env bash
# The GPU tests. CI has no GPU, so they run in two halves:
#
#   scripts/gpu-test.sh build DIR   here (any Linux x86-64 box with Go): builds
#       the GPU test binaries with CGO_ENABLED=0 into DIR (gzipped), and copies
#       the SmolLM2 GGUF there in parts of at most $PART_MB MiB (default 26) so
#       that it can travel to a GPU machine in several transfers;
#   scripts/gpu-test.sh run DIR...  on the GPU machine, run from the repository
#       root (a checkout of the same commit): joins the GGUF parts found in the DIRs, then runs the cuda
#       package's tests and the probe's tests on the GPU (LOUPE_TEST_DEVICE=cuda),
#       the fp32 mode against the committed transformers references. Logs go to
#       $OUT (or ./gpu-test-logs) as well as stdout. PROBE_RUN and PROBE_SKIP
#       narrow the probe's tests (a panic in one ends the whole binary, so a
#       new GPU test is best run alone first).
#
#   scripts/gpu-test.sh bench DIR   on the GPU machine: the speed benchmark
#       (Loupe and PyTorch on the same random weights of real shapes):
#       attention alone beside sdpa's backends, GEMMs, prefill, decode,
#       SmolLM2 with and without hooks, per-kernel profiles; with
#       BENCH_LONG=1 also issue 11's long-context figure
#       (scripts/gpu/bench-longctx.sh).
#
# Without a GPU every GPU test skips and says why.
set -euo pipefail
mode=${1:-}
shift || true
case "$mode" in
build)
  dir=$(realpath -m "${1:?usage: gpu-test.sh build DIR}")
  cd "$(dirname "$0")/.."
  mkdir -p "$dir"
  export CGO_ENABLED=0
  go test -c -o "$dir/cuda.test" ./probe/compute/cuda
  go test -c -o "$dir/probe.test" ./probe
  go test -c -o "$dir/heads.test" ./heads
  gzip -f -9 "$dir/cuda.test" "$dir/probe.test" "$dir/heads.test" # they travel compressed
  gguf="${LOUPE_SMOLLM2_GGUF:-$(scripts/fetch-smollm2.sh)}"
  split -b "${PART_MB:-26}m" -d "$gguf" "$dir/smollm2.gguf.part"
  sha256sum <"$gguf" | cut -d" " -f1 >"$dir/smollm2.gguf.sha256"
  ls -la "$dir"
  ;;
run)
  [ $# -gt 0 ] || { echo "usage: gpu-test.sh run DIR..." >&2; exit 2; }
  logs=${OUT:-gpu-test-logs}
  mkdir -p "$logs"
  bin=""
  parts=()
  for d in "$@"; do
    [ -e "$d/probe.test.gz" ] && bin=$d
    for p in "$d"/smollm2.gguf.part*; do [ -e "$p" ] && parts+=("$p"); done
    [ -e "$d/smollm2.gguf.sha256" ] && sum=$d/smollm2.gguf.sha256
  done
  [ -n "$bin" ] || { echo "gpu-test.sh: no probe.test.gz in $*" >&2; exit 2; }
  tests=/tmp/loupe-gpu-tests
  mkdir -p "$tests"
  for t in cuda probe heads; do
    if [ -e "$bin/$t.test.gz" ]; then gunzip -c "$bin/$t.test.gz" >"$tests/$t.test"; chmod +x "$tests/$t.test"; fi
  done
  if [ ${#parts[@]} -gt 0 ]; then
    gguf=/tmp/loupe-smollm2.gguf
    IFS=$'\n' sorted=($(for p in "${parts[@]}"; do echo "$(basename "$p") $p"; done | sort | cut -d' ' -f2))
    cat "${sorted[@]}" >"$gguf"
    want=$(cut -d' ' -f1 "${sum:-/dev/null}" 2>/dev/null || true); got=$(sha256sum "$gguf" | cut -d' ' -f1)
    if [ "$want" = "$got" ]; then
      export LOUPE_SMOLLM2_GGUF=$gguf
    else
      echo "gpu-test.sh: the GGUF parts (${#parts[@]}) do not join to the SmolLM2 file (sha256 $got, want ${want:-?}): SmolLM2 tests skip" >&2
    fi
  fi
  export LOUPE_CACHE=${LOUPE_CACHE:-/tmp/loupe-cache}
  status=0
  "$tests/cuda.test" -test.v -test.count=1 -test.timeout="${CUDA_TIMEOUT:-3m}" 2>&1 | tee "$logs/cuda.txt" || status=1
  (cd probe && LOUPE_TEST_DEVICE=cuda LOUPE_TEST_DTYPE=f32 "$tests/probe.test" -test.v -test.count=1 -test.timeout="${PROBE_TIMEOUT:-9m}" -test.run="${PROBE_RUN:-.}" ${PROBE_SKIP:+-test.skip="$PROBE_SKIP"}) 2>&1 | tee "$logs/probe-f32.txt" || status=1
  # loupe heads classify's scores, GPU against CPU (needs the GGUF).
  if [ -n "${LOUPE_SMOLLM2_GGUF:-}" ] && [ -x "$tests/heads.test" ]; then
    (cd heads && LOUPE_TEST_DEVICE=cuda "$tests/heads.test" -test.v -test.count=1 -test.timeout=8m -test.run=ClassifyGPU) 2>&1 | tee "$logs/heads.txt" || status=1
  fi
  # bf16 mode against transformers' own bf16, measured in this same run
  # (needs python3 with torch and transformers, and the gguf package: a
  # gguf-*.whl in one of the DIRs is installed to a private folder).
  if [ -n "${LOUPE_SMOLLM2_GGUF:-}" ] && [ "${GPU_BF16:-1}" = 1 ] && python3 -c "import torch, transformers" 2>/dev/null; then
    for d in "$@"; do
      for w in "$d"/gguf-*.whl; do
        [ -e "$w" ] && python3 -m pip install -q --no-index --no-deps --target /tmp/loupe-site "$w" && export PYTHONPATH=/tmp/loupe-site
      done
    done
    hf=$(dirname "$0")/gpu/hf_bf16.py
    [ -e "$hf" ] || hf=$(dirname "$0")/hf_bf16.py
    refs=$(realpath probe/testdata/ref/smollm2.json)
    PYTHONUNBUFFERED=1 python3 "$hf" "$LOUPE_SMOLLM2_GGUF" "$refs" /tmp/loupe-bf16 2>&1 | grep -v Warning | tee "$logs/hf-bf16.txt" || status=1
    (cd probe && LOUPE_TEST_DEVICE=cuda LOUPE_TEST_DTYPE=bf16 LOUPE_BF16_REFS=/tmp/loupe-bf16 "$tests/probe.test" -test.v -test.count=1 \
      -test.timeout=5m -test.run='BF16') 2>&1 | tee "$logs/probe-bf16.txt" || status=1
  fi
  exit $status
  ;;
bench)
  # The speed benchmark, Loupe and PyTorch side by side on the same random
  # weights of real shapes (written here by scripts/gpu/make_random_model.py
  # unless $BENCH_MODELS already holds them), one JSON line per figure.
  [ $# -gt 0 ] || { echo "usage: gpu-test.sh bench DIR" >&2; exit 2; }
  bin=$1
  logs=${OUT:-gpu-test-logs}
  models=${BENCH_MODELS:-/tmp/loupe-bench-models}
  here=$(dirname "$0")/gpu
  [ -e "$here/bench_torch.py" ] || here=$(dirname "$0")
  mkdir -p "$logs" "$models"
  tests=/tmp/loupe-gpu-tests
  mkdir -p "$tests"
  for t in cuda probe; do gunzip -c "$bin/$t.test.gz" >"$tests/$t.test"; chmod +x "$tests/$t.test"; done
  for m in llama3-8b smollm2; do
    [ -s "$models/$m/config.json" ] || python3 "$here/make_random_model.py" $m "$models/$m"
  done
  status=0
  if [ "${BENCH_TORCH:-1}" = 1 ]; then
    PYTHONUNBUFFERED=1 python3 "$here/bench_attn_torch.py" 2>&1 | grep -v -i warn | grep '^{' | tee "$logs/bench-attn-torch.jsonl" || status=1
    PYTHONUNBUFFERED=1 python3 "$here/bench_torch.py" "$models/llama3-8b" "$models/smollm2" 2>&1 | grep -v Warning | tee "$logs/bench-torch.jsonl" || status=1
  fi
  if [ "${BENCH_LOUPE:-1}" = 1 ]; then
    LOUPE_BENCH_ATTN=1 "$tests/cuda.test" -test.run AttentionSpeed -test.v 2>&1 | grep '^{' | tee "$logs/bench-attn-loupe.jsonl" || status=1
    LOUPE_BENCH_GEMM=1 "$tests/cuda.test" -test.run GEMMSpeed -test.v 2>&1 | tee "$logs/bench-loupe-gemm.jsonl" || status=1
    (cd probe && LOUPE_TEST_DEVICE=cuda LOUPE_TEST_DTYPE=bf16 LOUPE_BENCH_8B="$models/llama3-8b" LOUPE_BENCH_SMOL="$models/smollm2" \
      "$tests/probe.test" -test.run GPUSpeed -test.v -test.timeout=9m) 2>&1 | tee "$logs/bench-loupe.jsonl" || status=1
  fi
  if [ "${BENCH_LONG:-0}" = 1 ]; then
    BENCH_MODELS=$models "$here/bench-longctx.sh" "$bin" "${BENCH_LONG_LENGTHS:-32768,65536,131072,262144}" "${BENCH_LONG_CHUNK:-16384}" || status=1
  fi
  exit $status
  ;;
*)
  echo "usage: gpu-test.sh build DIR | run DIR... | bench DIR" >&2
  exit 2
  ;;
esac
