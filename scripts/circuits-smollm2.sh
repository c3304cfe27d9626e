#!/usr/bin/env bash
# Issue 14's SmolLM2-135M-Instruct circuits, as one command: for the IOI,
# greater-than and docstring tasks (32 pairs written by `loupe circuits
# task`, the first 16 used), activation patching, the SAE method and ACDC
# (nodes first, then the edges among the nodes left, at one threshold),
# then each pair of methods' agreement (`loupe circuits compare`).
#
# Usage: scripts/circuits-smollm2.sh OUT_DIR
# Environment (all optional):
#   LOUPE       a built loupe binary (default: go build ./cmd/loupe)
#   GGUF        the SmolLM2 GGUF (default: scripts/fetch-smollm2.sh)
#   DEVICE      auto, cpu or cuda (default auto)
#   PAIRS       pairs per run (16)
#   THRESHOLD   ACDC's KL threshold (0.05)
#   ACDC_BATCH  ACDC edge tests per forward pass (1 on the CPU, 16 elsewhere)
#   ACDC_NODES  1: ACDC decides nodes first (default); 0: every edge of the graph
#   TASKS       tasks to run ("ioi greater-than docstring")
#   METHODS     methods to run ("patching sae acdc")
#   STEP_TIMEOUT  seconds one method may take on one task (3600)
# Every run writes OUT_DIR/TASK-METHOD.{arrow,svg,log,progress}; summary.txt has
# each run's figures and the comparisons.
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:?usage: scripts/circuits-smollm2.sh OUT_DIR}"
mkdir -p "$out"
loupe="${LOUPE:-}"
if [ -z "$loupe" ]; then
  loupe="$out/loupe"
  (cd "$here" && go build -o "$loupe" ./cmd/loupe) || exit 1
fi
gguf="${GGUF:-$("$here/scripts/fetch-smollm2.sh")}"
device="${DEVICE:-auto}"
pairs="${PAIRS:-16}"
threshold="${THRESHOLD:-0.05}"
batch="${ACDC_BATCH:-}"
if [ -z "$batch" ]; then
  batch=16
  [ "$device" = cpu ] && batch=1
fi
tasks="${TASKS:-ioi greater-than docstring}"
methods="${METHODS:-patching sae acdc}"
limit="${STEP_TIMEOUT:-3600}"
summary="$out/summary.txt"
echo "SmolLM2 circuits: device $device, $pairs pairs, ACDC threshold $threshold, batch $batch ($(date -u +%FT%TZ))" | tee -a "$summary"
for t in $tasks; do
  [ -s "$out/$t.jsonl" ] || "$loupe" circuits task "$t" --model "$gguf" --n 32 --out "$out/$t.jsonl" || continue
  metric=logit_diff
  [ "$t" = greater-than ] && metric=prob # the later tens digits' probability mass less the earlier ones'
  for m in $methods; do
    extra=()
    case "$m" in
      acdc) # KL, ACDC's metric
        extra=(--acdc-batch "$batch" --thresholds "$threshold")
        [ "${ACDC_NODES:-1}" = 1 ] && extra+=(--acdc-nodes) ;;
      *) extra=(--metric "$metric") ;;
    esac
    start=$(date +%s)
    timeout "$limit" "$loupe" circuits find --method "$m" --model "$gguf" --device "$device" --task "$out/$t.jsonl" \
      --pairs "$pairs" --quiet "${extra[@]}" --out "$out/$t-$m.arrow" --svg "$out/$t-$m.svg" \
      --log "$out/$t-$m.progress" > "$out/$t-$m.log" 2>&1
    rc=$?
    { echo "== $t $m: exit $rc, $(( $(date +%s) - start )) s wall"; head -c 1500 "$out/$t-$m.log"; tail -n 2 "$out/$t-$m.progress"; } | tee -a "$summary"
  done
  for ab in "patching sae" "patching acdc" "acdc sae"; do
    set -- $ab
    if [ -s "$out/$t-$1.arrow" ] && [ -s "$out/$t-$2.arrow" ]; then
      { echo "== $t: $1 vs $2"; "$loupe" circuits compare "$out/$t-$1.arrow" "$out/$t-$2.arrow" --top 10; } 2>&1 | tee -a "$summary"
    fi
  done
done
