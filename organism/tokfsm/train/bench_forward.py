"""PyTorch's forward of the TokFSM codebook model, for scripts/bench-tokfsm.sh.

    python organism/tokfsm/train/bench_forward.py --model organism/tokfsm/model --threads 2

16 sequences of the model's context, with its 8 codebooks (inserted by
forward hooks, codebooks.py) and without; the median of --repeats timed
forwards after one warm-up. Prints one JSON line per case, as Loupe's
BenchmarkTokFSMForward measures the same.
"""
import argparse
import json
import statistics
import time

import numpy as np
import torch
from transformers import GPTNeoXForCausalLM

import codebooks as cbmod
from train import FSM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = GPTNeoXForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    fsm = FSM(f"{args.model}/fsm.json")
    T = model.config.max_position_embeddings
    x = fsm.batch(np.random.default_rng(3), 16, T)
    cbs = cbmod.load(args.model)
    for cb in cbs:
        cb.eval()
    handles = []
    for with_codebooks in (True, False):
        for h in handles:
            h.remove()
        handles = cbmod.attach(model, cbs) if with_codebooks else []
        times = []
        with torch.no_grad():
            model(x)
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
        print(json.dumps({"impl": "pytorch", "codebooks": with_codebooks, "threads": args.threads,
                          "tokens_per_s": x.numel() / statistics.median(times)}), flush=True)


if __name__ == "__main__":
    main()
