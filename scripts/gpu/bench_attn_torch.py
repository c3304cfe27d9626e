"""PyTorch side of the attention benchmark (Loupe's TestAttentionSpeed).

Causal scaled_dot_product_attention in bf16 on the shapes Loupe's
benchmark uses: Llama-3-8B prefill (32 query heads, 8 key/value heads,
head dimension 128) at 2K, 8K and 32K tokens, and SmolLM2 64 x 256 (9/3
heads, 64). Each of sdpa's backends PyTorch offers here (flash, cuDNN,
memory-efficient) and its default choice, timed with CUDA events (median
of the repeats after a warm-up). One JSON line per measurement; FLOPs
count 4·B·H·T²·Dh/2.

usage: python3 bench_attn_torch.py
"""
import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = [(1, 2048, 32, 8, 128), (1, 8192, 32, 8, 128), (1, 32768, 32, 8, 128), (64, 256, 9, 3, 64)]
BACKENDS = [("default", None), ("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
            ("efficient", SDPBackend.EFFICIENT_ATTENTION)]


def median_ms(fn, reps):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    torch.manual_seed(0)
    for B, T, H, Hkv, D in SHAPES:
        q = torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(B, Hkv, T, D, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(B, Hkv, T, D, device="cuda", dtype=torch.bfloat16)
        flops = 4 * B * H * T * T * D / 2
        reps = max(5, min(50, int(2e12 / flops)))
        for name, be in BACKENDS:
            def run():
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            try:
                if be is None:
                    ms = median_ms(run, reps)
                else:
                    with sdpa_kernel([be]):
                        ms = median_ms(run, reps)
            except Exception as e:  # a backend that does not take this shape
                print(json.dumps(dict(impl="torch", kind="attention", backend=name, B=B, T=T, H=H, Hkv=Hkv, Dh=D,
                                      error=str(e).splitlines()[0][:200])), flush=True)
                continue
            print(json.dumps(dict(impl="torch", kind="attention", backend=name, B=B, T=T, H=H, Hkv=Hkv, Dh=D,
                                  ms=round(ms, 3), tflops=round(flops / (ms / 1e3) / 1e12, 1))), flush=True)
        del q, k, v
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
