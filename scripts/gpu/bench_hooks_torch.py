"""PyTorch side of the hook-cache benchmark: SmolLM2 shape, 64 x 256, bf16.

The SmolLM2 rows of bench_torch.py alone (so they can run beside Loupe's
TestGPUSpeed smol part in a short GPU call), plus PyTorch's own
asynchronous variant of the hooks: no hooks; every layer's output copied
to the host in a forward hook as bench_torch.py does it (.float().cpu(),
synchronous); and the same copies made with .to("cpu", non_blocking=True)
(pinned memory from PyTorch's caching host allocator), waited for once
after the pass. One JSON line per figure; best of 5 after a warm-up, as
bench_torch.py times.

usage: python3 bench_hooks_torch.py SMOLLM2_DIR
"""
import json
import os
import sys
import time

import torch
from transformers import AutoModelForCausalLM


DEV = os.environ.get("BENCH_DEVICE", "cuda")  # "cpu" only to check the script without a GPU


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def timed(fn, reps=5):
    fn()
    sync()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    s = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.bfloat16, attn_implementation="sdpa").to(DEV).eval()
    torch.manual_seed(0)
    ids = torch.randint(0, s.config.vocab_size, (int(os.environ.get("BENCH_B", 64)), 256), device=DEV)
    B, T = ids.shape

    def emit(hooks, t):
        print(json.dumps(dict(kind="prefill", model="smollm2", B=B, T=T, hooks=hooks, seconds=t, tokens_per_s=B * T / t, impl="torch")), flush=True)

    with torch.no_grad():
        emit("none", timed(lambda: s(ids, logits_to_keep=1, use_cache=False)))
        for name, non_blocking in (("resid_post to host", False), ("resid_post to host, non_blocking", True)):
            cache = {}

            def hook(i):
                def f(mod, inp, out):
                    h = out[0] if isinstance(out, tuple) else out
                    cache[i] = h.float().to("cpu", non_blocking=non_blocking)
                return f

            hs = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(s.model.layers)]
            t = timed(lambda: s(ids, logits_to_keep=1, use_cache=False))  # timed() synchronizes after each pass
            for h in hs:
                h.remove()
            # The copies are complete and right: layer 0's output on the
            # host equals a synchronous copy of it.
            want = {}
            hs = [s.model.layers[0].register_forward_hook(lambda m, i, o: want.update(x=(o[0] if isinstance(o, tuple) else o).float().cpu()))]
            s(ids, logits_to_keep=1, use_cache=False)
            hs[0].remove()
            emit(name, t)
            if len(cache) != len(s.model.layers) or not torch.equal(cache[0], want["x"]):
                print(json.dumps(dict(kind="error", hooks=name, error="the cached copies differ from a synchronous copy")), flush=True)


if __name__ == "__main__":
    main()
