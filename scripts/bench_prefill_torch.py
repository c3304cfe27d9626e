"""PyTorch side of the prefill benchmark (scripts/bench-prefill.sh), and
the driver that interleaves it with Loupe.

Loads SmolLM2-135M-Instruct from the same Q4_1 GGUF that Loupe runs
(transformers dequantizes it to float32), with attn_implementation="sdpa",
and times a forward pass over random token ids (the last position's logits,
as Loupe's LogitsLast) on --threads threads: one warm-up pass, then the
mean of --reps passes, the statistic Loupe's `-benchtime 2x` reports (Go
runs one pass with b.N=1 first, then times b.N=2).

With --loupe BIN (the probe package's test binary) it interleaves: for each
of --rounds rounds and each length, one Loupe measurement (a subprocess
running BenchmarkPrefill/T=N/nohooks) and one PyTorch measurement, in
alternating order from round to round so that a drift in the machine's
load falls on both, and it records the 1-minute load average beside each.
Every measurement is one JSON line; the last lines are, per length, the
median Loupe/PyTorch ratio of the rounds with its smallest and largest.

Needs torch and transformers (the helper venv /work/venv); not part of CI.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import time

import torch
from transformers import AutoModelForCausalLM


def torch_tokens_per_s(model, T, reps, gen):
    ids = torch.randint(0, model.config.vocab_size, (1, T), generator=gen)
    times = []
    with torch.inference_mode():
        for i in range(reps + 1):
            t0 = time.perf_counter()
            model(ids, logits_to_keep=1, use_cache=False)
            if i > 0:
                times.append(time.perf_counter() - t0)
    return T / statistics.mean(times)


def loupe_tokens_per_s(binary, T, gguf):
    env = dict(os.environ, LOUPE_SMOLLM2_GGUF=gguf)
    out = subprocess.run([binary, "-test.run", "XXX", "-test.bench", f"Prefill/T={T}/nohooks$",
                          "-test.benchtime", "2x", "-test.count", "1"],
                         cwd=os.path.dirname(binary) or ".", env=env, capture_output=True, text=True, check=True).stdout
    m = re.search(r"([0-9.]+) tokens/s", out)
    if not m:
        raise SystemExit(f"no tokens/s in the Loupe benchmark's output:\n{out}")
    return float(m.group(1))


def load1():
    return round(os.getloadavg()[0], 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=os.environ.get("LOUPE_SMOLLM2_GGUF",
                    os.path.expanduser("~/.cache/loupe/SmolLM2-135M-Instruct.Q4_1.gguf")))
    ap.add_argument("--lengths", default="512,2048,8192")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--loupe", help="the probe test binary: interleave Loupe with PyTorch")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rounds-long", type=int, default=2, help="rounds for lengths above 4096")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    d, name = os.path.dirname(os.path.abspath(a.gguf)), os.path.basename(a.gguf)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation="sdpa").eval()
    g = torch.Generator().manual_seed(1)
    lengths = [int(x) for x in a.lengths.split(",")]
    if not a.loupe:
        for T in lengths:
            tps = torch_tokens_per_s(model, T, a.reps, g)
            print(json.dumps({"impl": "torch-sdpa", "tokens": T, "tokens_per_s": round(tps, 1),
                              "threads": a.threads, "torch": torch.__version__}), flush=True)
        return
    ratios = {T: [] for T in lengths}
    loupe_all = {T: [] for T in lengths}
    for r in range(max(a.rounds, a.rounds_long)):
        for T in lengths:
            if r >= (a.rounds if T <= 4096 else a.rounds_long):
                continue
            order = ["loupe", "torch"] if r % 2 == 0 else ["torch", "loupe"]
            got = {}
            for impl in order:
                before = load1()
                if impl == "loupe":
                    got[impl] = loupe_tokens_per_s(os.path.abspath(a.loupe), T, a.gguf)
                else:
                    got[impl] = torch_tokens_per_s(model, T, a.reps, g)
                print(json.dumps({"round": r, "impl": impl, "tokens": T, "tokens_per_s": round(got[impl], 1),
                                  "load1_before": before, "load1_after": load1()}), flush=True)
            ratios[T].append(got["loupe"] / got["torch"])
            loupe_all[T].append(got["loupe"])
    for T in lengths:
        rs = ratios[T]
        print(json.dumps({"summary": True, "tokens": T, "rounds": len(rs),
                          "ratio_median": round(statistics.median(rs), 3),
                          "ratio_min": round(min(rs), 3), "ratio_max": round(max(rs), 3),
                          "loupe_median_tokens_per_s": round(statistics.median(loupe_all[T]), 1),
                          "torch": torch.__version__, "threads": a.threads,
                          "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}), flush=True)


if __name__ == "__main__":
    main()
