"""PyTorch side of the prefill benchmark (scripts/bench-prefill.sh).

Loads SmolLM2-135M-Instruct from the same Q4_1 GGUF that Loupe runs
(transformers dequantizes it to float32), with attn_implementation="sdpa",
and prints one JSON line per prompt length: tokens/s of a forward pass over
random token ids (the last position's logits, as Loupe's LogitsLast), the
best of --reps runs after one warm-up, on --threads threads.

Needs torch and transformers (the helper venv /work/venv); not part of CI.
"""
import argparse
import json
import os
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=os.environ.get("LOUPE_SMOLLM2_GGUF",
                    os.path.expanduser("~/.cache/loupe/SmolLM2-135M-Instruct.Q4_1.gguf")))
    ap.add_argument("--lengths", default="512,2048,8192")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    d, name = os.path.dirname(os.path.abspath(a.gguf)), os.path.basename(a.gguf)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation="sdpa").eval()
    g = torch.Generator().manual_seed(1)
    for T in [int(x) for x in a.lengths.split(",")]:
        ids = torch.randint(0, model.config.vocab_size, (1, T), generator=g)
        best = float("inf")
        with torch.inference_mode():
            for i in range(a.reps + 1):
                t0 = time.perf_counter()
                model(ids, logits_to_keep=1, use_cache=False)
                dt = time.perf_counter() - t0
                if i > 0:
                    best = min(best, dt)
        print(json.dumps({"impl": "torch-sdpa", "tokens": T, "seconds": round(best, 4),
                          "tokens_per_s": round(T / best, 1), "threads": a.threads,
                          "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
