"""Reference vectors of a train_text.py story model, for Loupe's check.

    /work/venv/bin/python organism/tokfsm/train/story_reference.py --model MODEL \
        --stories DATA/heldout.jsonl --out story_ref.json
    LOUPE_STORY_MODEL=MODEL LOUPE_STORY_REF=story_ref.json go test ./sae/codebook -run StoryModel

Loads the model as PyTorch users would (transformers' GPTNeoXForCausalLM
and the codebooks of codebooks.json by forward hooks, codebooks.py),
tokenises a few held-out stories with the tokenizers library (BOS first),
and writes their token ids, the logits at every position and every
codebook's code ids; then the same with codes forced at every position in
the last slots of one head (the reference's patch_in_codes), so Loupe's
topic interventions are checked too.
"""
import argparse
import json

import torch
from tokenizers import Tokenizer
from transformers import GPTNeoXForCausalLM

import codebooks as cbmod


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--stories", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=3)
    ap.add_argument("--len", type=int, default=96)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = GPTNeoXForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    cbs = cbmod.load(args.model)
    for cb in cbs:
        cb.eval()
    cbmod.attach(model, cbs)
    tok = Tokenizer.from_file(f"{args.model}/tokenizer.json")
    bos = tok.token_to_id("<|endoftext|>")
    texts = [json.loads(l)["text"] for l in open(args.stories)][: args.n]
    seqs = [([bos] + tok.encode(t).ids)[: args.len] for t in texts]
    c0 = cbs[0]
    force = {"hook": c0.hook, "group": min(3, c0.groups - 1),
             "codes": [c % c0.num_codes for c in (17, 1234, 99)][: c0.k]}
    out = {"texts": texts, "seqs": seqs, "force": force, "runs": []}
    for forced in (False, True):
        run = []
        for s in seqs:
            if forced:
                def f(ids):
                    ids = ids.clone()
                    for j, c in enumerate(force["codes"]):
                        ids[:, :, force["group"], -1 - j] = c
                    return ids
                cbs[0].force = f
            with torch.no_grad():
                logits = model(torch.tensor([s])).logits[0]
            cbs[0].force = None
            run.append({"logits": logits.tolist(), "ids": {cb.hook: cb.last_ids[0].tolist() for cb in cbs}})
        out["runs"].append(run)
    with open(args.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
