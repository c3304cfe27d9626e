#!/usr/bin/env bash
# SmolLM2-135M prefill, Loupe beside PyTorch sdpa (fp32) on the same cores,
# in one run: Loupe's Go benchmark, then the PyTorch script, then Loupe
# again, at 512, 2048 and 8192 tokens. Needs a Python with torch and
# transformers (PYTHON, default /work/venv/bin/python). Not part of CI:
# minutes of CPU time. Prints tokens/s lines.
set -euo pipefail
cd "$(dirname "$0")/.."
export LOUPE_SMOLLM2_GGUF="${LOUPE_SMOLLM2_GGUF:-$(scripts/fetch-smollm2.sh)}"
py="${PYTHON:-/work/venv/bin/python}"
lengths="${LENGTHS:-512,2048,8192}"
threads=$(go env GOMAXPROCS 2>/dev/null || true)
threads=${threads:-$(nproc)}
loupe() {
  go test ./probe -run XXX -bench "Prefill/T=(${lengths//,/|})/nohooks" -benchtime 1x -count 1 2>&1 | grep -E '^Benchmark' |
    awk '{split($1, a, "[=/]"); print "{\"impl\": \"loupe\", \"tokens\": " a[3] ", \"tokens_per_s\": " $(NF-1) "}"}'
}
loupe
"$py" scripts/bench_prefill_torch.py --lengths "$lengths" --threads "$(nproc)" 2>/dev/null
loupe
