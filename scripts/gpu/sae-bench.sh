#!/usr/bin/env bash
# SAE training on the GPU: correctness tests and speed figures. CI has no
# GPU, so it runs in two halves:
#
#   scripts/gpu/sae-bench.sh build DIR   here: the test binary of sae/gputest
#       (CGO_ENABLED=0, stripped, gzipped: about 10 MB), scripts/gpu/bench_sae_torch.py and the
#       wheels of EleutherAI sparsify 1.3.3 and the three small packages it
#       needs that the GPU machine lacks (simple-parsing, docstring-parser,
#       natsort), into DIR;
#   scripts/gpu/sae-bench.sh run DIR     on the GPU machine, from DIR's copy:
#       the TestGPU* tests (GPU step vs the CPU step, planted dictionaries,
#       resume, bad input), then Loupe's speed (TestGPUSpeed,
#       TestGPUPipelineSpeed: LOUPE_SAE_BENCH=1) and the PyTorch and sparsify
#       trainers at the same sizes. Logs go to $OUT (or ./sae-gpu-logs).
#       MODE=tests or MODE=bench runs one half only.
set -euo pipefail
mode=${1:-}
dir=${2:?usage: sae-bench.sh build|run DIR}
case "$mode" in
build)
  root=$(cd "$(dirname "$0")/../.." && pwd)
  mkdir -p "$dir/whl"
  (cd "$root" && CGO_ENABLED=0 go test -c -ldflags="-s -w" -o "$dir/sae.test" ./sae/gputest)
  gzip -f -9 "$dir/sae.test"
  cp "$root/scripts/gpu/bench_sae_torch.py" "$dir/"
  py=${PYTHON:-python3}
  for p in eai-sparsify==1.3.3 simple-parsing==0.1.9 docstring-parser==0.18.0 natsort==8.4.0; do
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux2014_x86_64 --platform any -d "$dir/whl" "$p"
  done
  ls -la "$dir" "$dir/whl"
  ;;
run)
  logs=${OUT:-sae-gpu-logs}
  mkdir -p "$logs"
  cd "$dir"
  [ -e sae.test ] || gunzip -kf sae.test.gz
  chmod +x sae.test
  export LOUPE_CACHE=${LOUPE_CACHE:-/tmp/loupe-cache}
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.used --format=csv | tee "$logs/gpu.txt"
  status=0
  if [ "${MODE:-all}" != bench ]; then
    timeout "${TEST_TIMEOUT:-150}" ./sae.test -test.run '^TestGPU' -test.v -test.timeout=10m 2>&1 | tee "$logs/tests.log" | grep -E '^(---|ok|FAIL|PASS|panic)|rel error|atoms recovered|gpu_test' || status=1
  fi
  if [ "${MODE:-all}" != tests ]; then
    LOUPE_SAE_BENCH=${LOUPE_SAE_BENCH:-1} timeout "${BENCH_TIMEOUT:-150}" ./sae.test -test.run 'TestGPUSpeed|TestGPUPipelineSpeed' -test.v -test.timeout=10m 2>&1 | tee "$logs/bench-loupe.log" | grep -E 'sae-bench|---|FAIL|panic|Error' || status=1
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sae-site whl/*.whl
    PYTHONPATH=/tmp/sae-site PYTHONUNBUFFERED=1 timeout "${TORCH_TIMEOUT:-150}" python3 bench_sae_torch.py ${TORCH_WHICH:-all} ${TORCH_SIZES:-} 2>&1 | tee "$logs/bench-torch.log" | grep -vi warning || status=1
  fi
  exit $status
  ;;
*)
  echo "usage: sae-bench.sh build|run DIR" >&2
  exit 2
  ;;
esac
