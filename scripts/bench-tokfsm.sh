#!/usr/bin/env bash
# The TokFSM codebook model's forward, Loupe beside PyTorch on the same
# cores in one run (Loupe, PyTorch, Loupe), with its 8 codebooks spliced in
# and without: 16 sequences of 128 tokens. Needs a Python with torch and
# transformers (PYTHON, default /work/venv/bin/python). Not part of CI.
# Prints one JSON line per measure.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-/work/venv/bin/python}"
threads=$(go env GOMAXPROCS 2>/dev/null || true)
threads=${threads:-$(nproc)}
loupe() {
  go test ./sae/codebook -run XXX -bench TokFSMForward -benchtime 5x -count 1 2>&1 | grep -E '^Benchmark' |
    awk '{split($1, a, "[=/-]"); print "{\"impl\": \"loupe\", \"codebooks\": " a[3] ", \"tokens_per_s\": " $(NF-1) "}"}'
}
loupe
# PyTorch on as many threads as Loupe, and on one (OpenMP threads spin on a
# shared box, where one thread can be the faster).
for n in $(printf '%s\n' "$threads" 1 | sort -u); do
  (cd organism/tokfsm/train && OMP_NUM_THREADS=$n "$py" bench_forward.py --model ../model --threads "$n" 2>/dev/null)
done
loupe
