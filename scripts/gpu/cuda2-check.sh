#!/usr/bin/env bash
# One GPU call for the asynchronous hook copies and the stacked products
# (issue 10, cuda2): the cuda package's tests, the probe's GPU suite (f32,
# tiny models) and a bf16 subset, then the benchmarks side by side: the
# SmolLM2-shaped 64 x 256 pass with every hook_resid_post cached (Loupe
# asynchronous, Loupe synchronous, PyTorch's hooks sync and non_blocking)
# and the 8B-shaped stacked/separate products profile. Run from the
# repository root on the GPU machine with DIR holding cuda.test.gz,
# probe.test.gz and bench_hooks_torch.py; logs and JSON lines go to $OUT.
#
#   scripts/gpu/cuda2-check.sh DIR
#
# CUDA_RUN and PROBE_RUN narrow the test runs (-test.run patterns; the
# default runs everything), BF16=0 skips the bf16 subset: a shorter check.
set -u
here=$(cd "${1:?usage: cuda2-check.sh DIR}" && pwd)
root=$(pwd)
out=${OUT:-/tmp/cuda2-out}
mkdir -p "$out"
(cd "$here" && gunzip -f ./*.gz && chmod +x ./*.test)
export LOUPE_CACHE=/tmp/loupe-cache
summ() { grep -E "^(--- FAIL|--- PASS|FAIL|ok |PASS|panic)" "$1" | sed 's/ (\([0-9.]*s\))/ \1/' | tr '\n' ' '; echo; }
t0=$(date +%s)
timeout 70 "$here/cuda.test" -test.v -test.count=1 -test.timeout=65s -test.run "${CUDA_RUN:-.}" >"$out/cuda.txt" 2>&1
echo "cuda rc=$? $(( $(date +%s) - t0 ))s"; summ "$out/cuda.txt"
cd "$root/probe"
LOUPE_TEST_DEVICE=cuda LOUPE_TEST_DTYPE=f32 timeout 100 "$here/probe.test" -test.v -test.count=1 -test.timeout=95s -test.run "${PROBE_RUN:-.}" >"$out/probe-f32.txt" 2>&1
echo "probe f32 rc=$? $(( $(date +%s) - t0 ))s"; grep -E "^(--- FAIL|FAIL|panic|ok)" "$out/probe-f32.txt"; grep -c "^--- PASS" "$out/probe-f32.txt"
python3 "$root/scripts/gpu/make_random_model.py" smollm2 /tmp/cuda2-smol >"$out/make-model.txt" 2>&1
PYTHONUNBUFFERED=1 timeout 60 python3 "$here/bench_hooks_torch.py" /tmp/cuda2-smol 2>"$out/torch-hooks.err" | grep '^{' >"$out/torch-hooks.jsonl"
LOUPE_TEST_DEVICE=cuda LOUPE_TEST_DTYPE=bf16 LOUPE_BENCH_SMOL=/tmp/cuda2-smol LOUPE_BENCH_PARTS=smol,profile timeout 60 \
  "$here/probe.test" -test.run 'GPUSpeed$' -test.v -test.count=1 >"$out/loupe-smol.txt" 2>&1
echo "smol bench rc=$? $(( $(date +%s) - t0 ))s"
LOUPE_TEST_DEVICE=cuda LOUPE_TEST_DTYPE=bf16 LOUPE_BENCH_FUSED=1 timeout 80 \
  "$here/probe.test" -test.run 'GPUFusedProductsSpeed' -test.v -test.count=1 >"$out/fused.txt" 2>&1
echo "fused bench rc=$? $(( $(date +%s) - t0 ))s"
[ "${BF16:-1}" = 1 ] && LOUPE_TEST_DEVICE=cuda LOUPE_TEST_DTYPE=bf16 timeout 60 "$here/probe.test" -test.v -test.count=1 -test.timeout=55s \
  -test.run 'BF16OnGPU|HookConsistency|FusedProductsOnGPU|CacheEqualsSynchronousCopy|GenerateBatchEqualsSingle|LlamaFusedResidualAdds|Patch|Ablat' >"$out/probe-bf16.txt" 2>&1
echo "probe bf16 rc=$? $(( $(date +%s) - t0 ))s"; summ "$out/probe-bf16.txt"
cd "$root"
python3 - "$out" <<'PY'
import json, sys, glob, os
out = sys.argv[1]
rows = []
for f in ("cuda.txt", "torch-hooks.jsonl", "loupe-smol.txt", "fused.txt"):
    p = os.path.join(out, f)
    if not os.path.exists(p):
        continue
    for line in open(p):
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
for r in rows:
    k = r.get("kind")
    if k == "hostcopy":
        print("hostcopy", r["what"], r.get("error") or "%.2f GB/s %.1f ms" % (r["GB_per_s"], r["seconds"] * 1e3))
    elif k == "prefill":
        print("smol", r["impl"], r["hooks"], round(r["tokens_per_s"]), "tok/s", round(r["seconds"] * 1e3, 2), "ms")
    elif k == "profile" and r.get("share", 1) > 0.02:
        print("smol-prof", r["name"], r.get("calls", ""), round(r["ms"], 3))
    elif k == "fused-bench":
        print("8B-shape", {a: (round(v, 4) if isinstance(v, float) else v) for a, v in r.items() if a not in ("impl", "kind")})
    elif k == "fused-profile" and r["ms"] > 0.05:
        print("prof", "stacked" if r["stacked"] else "separate", r["T"], r["name"], r.get("calls", ""), round(r["ms"], 3))
PY
