#!/usr/bin/env bash
# SmolLM2-135M prefill, Loupe beside PyTorch sdpa (fp32) on the same cores,
# interleaved: ROUNDS rounds (default 5; ROUNDS_LONG, default 2, for
# lengths above 4096) of one Loupe and one PyTorch measurement per length,
# their order alternating, each with the load average beside it; the last
# lines give each length's median Loupe/PyTorch ratio and its spread
# (scripts/bench_prefill_torch.py). Needs a Python with torch and
# transformers (PYTHON, default /work/venv/bin/python). Not part of CI:
# many minutes of CPU time. Prints JSON lines.
#
# PyTorch runs with OMP_WAIT_POLICY=PASSIVE unless the caller sets it: on a
# machine whose cores other work also wants, OpenMP's default spin-waiting
# at every barrier makes PyTorch 10x slower (2026-12-01, load average 12:
# 17.8 tokens/s at 512 tokens by default, 236 passive), which would flatter
# Loupe.
set -euo pipefail
cd "$(dirname "$0")/.."
export LOUPE_SMOLLM2_GGUF="${LOUPE_SMOLLM2_GGUF:-$(scripts/fetch-smollm2.sh)}"
py="${PYTHON:-/work/venv/bin/python}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
lengths="${LENGTHS:-512,2048,8192}"
bin="$(mktemp -d)/probe.test"
trap 'rm -rf "$(dirname "$bin")"' EXIT
go test -c -o "$bin" ./probe
"$py" scripts/bench_prefill_torch.py --lengths "$lengths" --threads "$(nproc)" --loupe "$bin" \
  --rounds "${ROUNDS:-5}" --rounds-long "${ROUNDS_LONG:-2}" 2>/dev/null
