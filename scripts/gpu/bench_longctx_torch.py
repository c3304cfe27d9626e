"""transformers side of issue 11's long-context figure.

How the papers' code reads attention: the model in bf16 with eager
attention and output_attentions=True, one prompt of random tokens per
length, the top-1 key of every head's every query row taken from the
returned patterns. One JSON line per length: tokens/s and peak GPU memory,
or the out-of-memory error and the memory held when it came.

usage: python3 bench_longctx_torch.py MODEL_DIR LENGTH...
"""
import json
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    path, lengths = sys.argv[1], [int(x) for x in sys.argv[2:]]
    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, attn_implementation="eager").cuda().eval()
    V = m.config.vocab_size
    for T in lengths:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        ids = torch.randint(0, V, (1, T), device="cuda")
        rec = dict(impl="transformers", kind="longctx", attn="eager+output_attentions", T=T)
        try:
            with torch.no_grad():
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                out = m(ids, logits_to_keep=1, use_cache=False, output_attentions=True)
                top = [a.argmax(dim=-1) for a in out.attentions]  # [1, H, T] per layer
                torch.cuda.synchronize()
                sec = time.perf_counter() - t0
            rec.update(seconds=sec, tokens_per_s=T / sec, layers=len(top))
            del out, top
        except torch.OutOfMemoryError as e:
            rec.update(error="out of memory", detail=str(e).splitlines()[0][:160])
        rec.update(peak_gib=torch.cuda.max_memory_allocated() / 2**30)
        print(json.dumps(rec), flush=True)
        if "error" in rec:
            break  # longer prompts need more


if __name__ == "__main__":
    main()
