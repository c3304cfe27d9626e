#!/usr/bin/env bash
# Issue 14's ACDC on a GPU, in one bounded call (about 200 s): from the
# repository root, with a built loupe and the SmolLM2-135M GGUF,
#
#   LOUPE=path/to/loupe G=path/to/SmolLM2.gguf scripts/gpu/circuits-acdc.sh OUT_DIR
#
# 1. the toy IOI model's ACDC (8 pairs, KL, tau 0.05, 16 edge tests a pass)
#    on the device: the CPU keeps 25 edges at distance 0.2184, so this
#    checks the GPU path of the cut edits (split-input hooks, resumed
#    passes) before the long runs;
# 2. ACDC over SmolLM2's whole edge graph (44,371 edges, not nodes first)
#    on 16 IOI pairs at tau 0.05, stopped after FULL_S seconds
#    (--acdc-stop-after): the circuit as it stands (every undecided edge
#    kept, marked partial), the edge tests run and edges decided, so a run
#    that does not finish still gives edge tests/s. On the CPU the whole
#    search took 26.7 CPU-minutes (6,740 edge tests; circuits/RESULTS.md);
# 3. when NODES_S is above 0, the nodes-first search on the same pairs
#    (--acdc-nodes), stopped after NODES_S seconds.
# Each run writes OUT_DIR/NAME.{arrow,svg,log,progress}; summary.txt has
# each run's table. DEVICE (cuda), BATCH (16), FULL_S (170), NODES_S (0)
# and PAIRS (16) may be set; DEVICE=cpu runs the same on the CPU.
set -uo pipefail
out=${1:?usage: circuits-acdc.sh OUT_DIR}
loupe=${LOUPE:-loupe}
gguf=${G:?set G to the SmolLM2 GGUF}
device=${DEVICE:-cuda}
batch=${BATCH:-16}
pairs=${PAIRS:-16}
full_s=${FULL_S:-170}
nodes_s=${NODES_S:-0}
here=$(cd "$(dirname "$0")/../.." && pwd)
toy="$here/circuits/testdata/ioimodel"
mkdir -p "$out"
summary="$out/summary.txt"
echo "circuits-acdc: device $device, batch $batch, $pairs pairs, full graph ${full_s}s, nodes first ${nodes_s}s ($(date -u +%FT%TZ))" | tee -a "$summary"
# run NAME LIMIT ARGS...: one find, its exit status, wall time and output in the summary.
run() {
  local name=$1 limit=$2
  shift 2
  local start=$(date +%s)
  timeout "$limit" "$loupe" circuits find --method acdc --device "$device" --quiet --thresholds 0.05 --acdc-batch "$batch" \
    --out "$out/$name.arrow" --svg "$out/$name.svg" --log "$out/$name.progress" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  { echo "== $name: exit $rc, $(( $(date +%s) - start )) s wall"; head -n 1 "$out/$name.log"; head -n 2 "$out/$name.log" | tail -n 1 | cut -c1-300; grep -A3 '^threshold' "$out/$name.log"; grep '^partial' "$out/$name.log"; tail -n 3 "$out/$name.progress"; } | tee -a "$summary"
}
run toy-acdc 60 --model "$toy" --task "$toy/task.jsonl" --pairs 8
[ -s "$out/ioi.jsonl" ] || "$loupe" circuits task ioi --model "$gguf" --n 32 --out "$out/ioi.jsonl" || exit 1
run ioi-acdc-full $(( full_s + 40 )) --model "$gguf" --task "$out/ioi.jsonl" --pairs "$pairs" --acdc-stop-after "${full_s}s"
if [ "$nodes_s" -gt 0 ]; then run ioi-acdc-nodes $(( nodes_s + 60 )) --model "$gguf" --task "$out/ioi.jsonl" --pairs "$pairs" --acdc-nodes --acdc-stop-after "${nodes_s}s"; fi
