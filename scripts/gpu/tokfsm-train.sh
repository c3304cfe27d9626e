#!/usr/bin/env bash
# TokFSM codebook training on a GPU, and the codebook layer's GPU tests, in
# one device call (the lease is short: everything runs side by side).
#
#   here:  CGO_ENABLED=0 go test -c -trimpath -ldflags="-s -w" -o DIR/codebook.test ./sae/codebook
#          gzip -9 DIR/codebook.test
#          cp organism/tokfsm/train/*.py organism/tokfsm/model/fsm.json scripts/gpu/tokfsm-train.sh DIR
#   there: bash DIR/tokfsm-train.sh DIR     (from the repository root)
#
# Two runs of organism/tokfsm/train/train.py share the GPU, both with the
# reference's configuration (4-layer GPT-NeoX, 1000 codes with k = 1 on every
# head and MLP, batch 512 x 128 tokens, AdamW 1e-3 constant, aeloss,
# codebooks from the first step, codes from N(0, 1)):
#   A: exactly that (no dead-code replacement, as the reference's FSM config);
#   B: the same with dead codes replaced every 100 steps.
# A starts first and B stops SOLO_S seconds before A, so A's last log lines
# measure the tokens/s of one run alone on the GPU. Each run stops itself
# (--max-seconds) and saves; its folder comes back as a .tgz in $OUT.
#
# With INIT=FOLDER (a model with its codebooks, e.g. DIR/init or
# organism/tokfsm/model) only run A runs: it continues FOLDER's model and
# codebooks (fresh AdamW state) with dead codes replaced every REPLACE steps
# (default 100, as B). The test binary may also come as codebook.test.xz.
set -u
dir=$(realpath "${1:?usage: tokfsm-train.sh DIR}")
out=${OUT:-/tmp/tokfsm-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 LOUPE_CACHE=/tmp/loupe-cache
A_S=${A_S:-95}       # training seconds of run A
SOLO_S=${SOLO_S:-20} # A alone at the end
B_START=${B_START:-4}
B_S=$((A_S - SOLO_S - B_START))
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm --format=csv >"$out/gpu.txt" 2>&1
common=(--fsm "$dir/fsm.json" --device "${DEVICE:-cuda}" --seq-len 128 --batch "${BATCH:-512}" --pretrain-steps 0 --steps 20000
  --codes 1000 --k 1 --lr 1e-3 --code-init randn --log-every 50 --ap-every 20 --threads 2 --seed 0)
initA=(--replace-every 0)
if [ -n "${INIT:-}" ]; then
  initA=(--init "$INIT" --init-codebooks "$INIT" --replace-every "${REPLACE:-100}")
fi
a=
if [ "${TRAIN:-1}" != 0 ]; then
  timeout $((A_S + 90)) "${PY:-python3}" "$dir/train.py" "${common[@]}" --out /tmp/runA "${initA[@]}" --max-seconds "$A_S" \
    >"$out/trainA.log" 2>&1 &
  a=$!
fi
# The Go tests: the codebook layer on the GPU (f32 against PyTorch, bf16
# logged, generation GPU = CPU), beside the training.
(
  if [ -e "$dir/codebook.test.xz" ]; then
    "${PY:-python3}" -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" "$dir/codebook.test.xz" /tmp/codebook.test
  else
    gunzip -c "$dir/codebook.test.gz" >/tmp/codebook.test
  fi && chmod +x /tmp/codebook.test &&
    cd sae/codebook && LOUPE_TEST_DEVICE=cuda timeout 90 /tmp/codebook.test -test.run 'GPU' -test.v -test.count=1
) >"$out/gotest.log" 2>&1 &
g=$!
b=
if [ -z "${INIT:-}" ] && [ -n "$a" ]; then
  sleep "$B_START"
  timeout $((B_S + 90)) "${PY:-python3}" "$dir/train.py" "${common[@]}" --out /tmp/runB --replace-every 100 --max-seconds "$B_S" \
    >"$out/trainB.log" 2>&1 &
  b=$!
fi
wait $g
echo "go tests: exit $?" >>"$out/gotest.log"
if [ -n "$b" ]; then
  wait $b
  echo "run B: exit $?" >>"$out/trainB.log"
fi
if [ -n "$a" ]; then
  wait $a
  echo "run A: exit $?" >>"$out/trainA.log"
fi
for r in A B; do
  [ -s /tmp/run$r/model.safetensors ] && tar czf "$out/run$r.tgz" -C /tmp "run$r"
done
grep -h "done:\|exit\|state AP\|device" "$out"/train?.log 2>/dev/null
tail -25 "$out/gotest.log"
ls -la "$out"
