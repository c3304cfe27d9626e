#!/usr/bin/env bash
# A long TokFSM codebook training on one GPU, in one device call, continuing
# a committed model (organism/tokfsm/model by default) with the reference's
# recipe (organism/tokfsm/train/train.py: batch 512 x 128, AdamW 1e-3
# constant, aeloss, 1000 codes with k = 1 on every head and MLP) and dead
# codes replaced every REPLACE steps.
#
#   here:  cp organism/tokfsm/train/*.py scripts/gpu/tokfsm-long.sh DIR
#   there: bash DIR/tokfsm-long.sh DIR          (from the repository root)
#
# Two segments, one after the other, so that their speeds compare in one
# run on one GPU (the ratio is the figure; both train the same model):
#   1. eager PyTorch for SEG1_S seconds from INIT (fresh AdamW state);
#      it saves its AdamW state and dead-code counts (--save-optimizer);
#   2. torch.compile'd for SEG2_S seconds, resuming segment 1 exactly
#      (--resume: AdamW state, step count, counts). Should compilation
#      fail, segment 2 runs eager instead (said in its log).
# Each segment stops itself (--max-seconds) and saves; the last one stops
# replacing dead codes in its last 20%. Back in $OUT: final.tgz (the model
# folder without the optimizer state), optimizer.pt + counts.pt + resume.json
# (to continue it with --resume in a later call), the logs.
set -u
dir=$(realpath "${1:?usage: tokfsm-long.sh DIR}")
out=${OUT:-/tmp/tokfsm-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
INIT=${INIT:-organism/tokfsm/model}
SEG1_S=${SEG1_S:-35}
SEG2_S=${SEG2_S:-400}
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv >"$out/gpu.txt" 2>&1
common=(--fsm "$dir/fsm.json" --device "${DEVICE:-cuda}" --seq-len 128 --batch "${BATCH:-512}" --pretrain-steps 0
  --steps 100000 --codes 1000 --k 1 --lr 1e-3 --code-init randn --log-every 100 --ap-every "${AP_EVERY:-30}"
  --threads 4 --seed "${SEED:-0}" --replace-every "${REPLACE:-100}" --save-optimizer)
[ -e "$dir/fsm.json" ] || cp "$INIT/fsm.json" "$dir/fsm.json"
if [ -e "$INIT/resume.json" ]; then seg1=(--resume "$INIT"); else seg1=(--init "$INIT" --init-codebooks "$INIT"); fi
timeout $((SEG1_S + 120)) "$PY" "$dir/train.py" "${common[@]}" "${seg1[@]}" --out /tmp/seg1 --max-seconds "$SEG1_S" \
  --replace-stop 1 --compile off >"$out/seg1.log" 2>&1
echo "segment 1: exit $?" >>"$out/seg1.log"
final=/tmp/seg1
# The codebook layer's Go GPU tests (codebook.test.xz or .gz in DIR, when
# there) run beside segment 2's compilation, which is CPU work; they end
# within about a minute, so only the first of segment 2's rate windows
# shares the GPU with them.
g=
if [ -e "$dir/codebook.test.xz" ] || [ -e "$dir/codebook.test.gz" ]; then
  (
    if [ -e "$dir/codebook.test.xz" ]; then
      "$PY" -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" "$dir/codebook.test.xz" /tmp/codebook.test
    else
      gunzip -c "$dir/codebook.test.gz" >/tmp/codebook.test
    fi && chmod +x /tmp/codebook.test &&
      cd sae/codebook && LOUPE_CACHE=/tmp/loupe-cache LOUPE_TEST_DEVICE=cuda timeout 120 /tmp/codebook.test -test.run 'GPU' -test.v -test.count=1
    echo "go tests: exit $?"
  ) >"$out/gotest.log" 2>&1 &
  g=$!
fi
if [ -s /tmp/seg1/resume.json ]; then
  s2start=$SECONDS
  timeout $((SEG2_S + 150)) "$PY" "$dir/train.py" "${common[@]}" --resume /tmp/seg1 --out /tmp/seg2 \
    --max-seconds "$SEG2_S" --compile "${COMPILE:-on}" >"$out/seg2.log" 2>&1
  echo "segment 2: exit $?" >>"$out/seg2.log"
  if [ -s /tmp/seg2/resume.json ]; then
    final=/tmp/seg2
  else
    echo "segment 2 failed; eager instead" >>"$out/seg2.log"
    rm -rf /tmp/seg2
    left=$((SEG2_S - (SECONDS - s2start)))  # the same end as planned
    [ "$left" -lt 30 ] && left=30
    timeout $((left + 120)) "$PY" "$dir/train.py" "${common[@]}" --resume /tmp/seg1 --out /tmp/seg2 \
      --max-seconds "$left" --compile off >"$out/seg2-eager.log" 2>&1
    echo "segment 2 (eager): exit $?" >>"$out/seg2-eager.log"
    [ -s /tmp/seg2/resume.json ] && final=/tmp/seg2
  fi
fi
[ -n "$g" ] && wait "$g"
mv "$final/optimizer.pt" "$final/counts.pt" "$out/" 2>/dev/null
cp "$final/resume.json" "$out/" 2>/dev/null
tar czf "$out/final.tgz" -C "$(dirname "$final")" "$(basename "$final")"
grep -h "first step\|done:\|exit\|state AP\|device\|failed" "$out"/seg*.log
grep -h "^--- \|^ok\|FAIL\|exit" "$out/gotest.log" 2>/dev/null
ls -la "$out"
