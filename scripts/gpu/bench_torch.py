"""PyTorch/transformers side of the GPU speed benchmark (bf16, sdpa).

Runs on the GPU machine over the models make_random_model.py wrote and
prints one JSON line per measurement, the same workloads as Loupe's
TestGPUSpeed: prefill (last position's logits), SmolLM2 64 x 256 with and
without every layer's residual output cached to the host through forward
hooks, decode with the KV cache (generate, greedy), and bf16 GEMMs of the
prefill shapes.

usage: python3 bench_torch.py LLAMA8B_DIR SMOLLM2_DIR
"""
import json
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def timed(fn, reps=3):
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def emit(**kv):
    print(json.dumps(dict(kv, impl="torch")), flush=True)


def main():
    big, small = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    for M in (2048, 8192, 32768):
        for N, K in ((6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)):
            a = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
            w = torch.randn(N, K, device="cuda", dtype=torch.bfloat16)
            t = timed(lambda: a @ w.T, reps=10)
            emit(kind="gemm", M=M, N=N, K=K, seconds=t, tflops=2 * M * N * K / t / 1e12)
        del a, w
    m = AutoModelForCausalLM.from_pretrained(big, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    V = m.config.vocab_size
    with torch.no_grad():
        for T in (2048, 8192, 32768):
            ids = torch.randint(0, V, (1, T), device="cuda")
            t = timed(lambda: m(ids, logits_to_keep=1, use_cache=False))
            emit(kind="prefill", model="llama3-8b", B=1, T=T, seconds=t, tokens_per_s=T / t)
        ids = torch.randint(0, V, (8, 1024), device="cuda")
        t = timed(lambda: m(ids, logits_to_keep=1, use_cache=False))
        emit(kind="prefill", model="llama3-8b", B=8, T=1024, seconds=t, tokens_per_s=8 * 1024 / t)
        for B in (1, 32):
            ids = torch.randint(0, V, (B, 128), device="cuda")
            n = 64
            t = timed(lambda: m.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False), reps=2)
            emit(kind="decode", model="llama3-8b", B=B, prompt=128, new=n, seconds=t, tokens_per_s=B * n / t)
    del m
    torch.cuda.empty_cache()
    s = AutoModelForCausalLM.from_pretrained(small, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    ids = torch.randint(0, s.config.vocab_size, (64, 256), device="cuda")
    with torch.no_grad():
        t = timed(lambda: s(ids, logits_to_keep=1, use_cache=False), reps=5)
        emit(kind="prefill", model="smollm2", B=64, T=256, hooks="none", seconds=t, tokens_per_s=64 * 256 / t)
        cache = {}

        def hook(i):
            def f(mod, inp, out):
                h = out[0] if isinstance(out, tuple) else out
                cache[i] = h.float().cpu()
            return f
        hs = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(s.model.layers)]
        t = timed(lambda: s(ids, logits_to_keep=1, use_cache=False), reps=5)
        emit(kind="prefill", model="smollm2", B=64, T=256, hooks="resid_post to host", seconds=t, tokens_per_s=64 * 256 / t)
        for h in hs:
            h.remove()


if __name__ == "__main__":
    main()
