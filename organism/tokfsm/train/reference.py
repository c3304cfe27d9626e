"""Reference vectors of a trained TokFSM codebook model, for Loupe's tests.

    /work/venv/bin/python organism/tokfsm/train/reference.py \
        --model organism/tokfsm/model --out organism/tokfsm/testdata/reference.json

Loads the model the way PyTorch users would (transformers'
GPTNeoXForCausalLM.from_pretrained plus the codebooks of codebooks.json,
inserted by forward hooks), runs seeded FSM sequences, and writes their
tokens, the logits at every position and the code ids every codebook chose;
then the same with an intervention (codes forced at one position of one
layer's MLP codebook and a few codes disabled at one head) so that Loupe's
interventions are checked too.
"""
import argparse
import json

import numpy as np
import torch
from transformers import GPTNeoXForCausalLM

import codebooks as cbmod
from train import FSM


def run(model, cbs, x):
    with torch.no_grad():
        logits = model(x).logits
    return logits, {cb.hook: cb.last_ids.clone() for cb in cbs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seqs", type=int, default=4)
    ap.add_argument("--len", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = GPTNeoXForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    cbs = cbmod.load(args.model)
    for cb in cbs:
        cb.eval()
    cbmod.attach(model, cbs)
    fsm = FSM(f"{args.model}/fsm.json")
    x = fsm.batch(np.random.default_rng(7), args.seqs, args.len)
    logits, ids = run(model, cbs, x)

    # Intervention: force code F at position P of layer 1's MLP codebook,
    # disable codes D at head 2 of layer 0 everywhere.
    mlp = next(cb for cb in cbs if cb.hook == "blocks.1.hook_mlp_out")
    head = next(cb for cb in cbs if cb.hook == "blocks.0.attn.hook_z")
    P, F = 9, int(ids["blocks.1.hook_mlp_out"][0, 3, 0, 0])
    D = sorted(set(ids["blocks.0.attn.hook_z"][:, :, 2, 0].flatten().tolist()))[:5]

    def force(ids_):
        ids_ = ids_.clone()
        ids_[:, P, 0, 0] = F
        return ids_

    saved = head.codes.data.clone()
    mlp.force = force
    # disabling = the codes can never win: their similarity is -inf
    orig_forward = head.forward

    def disabled_forward(xx):
        n = head.normalise(xx)
        norms = torch.linalg.vector_norm(head.codes, dim=-1)
        sim = torch.einsum("btgd,gcd->btgc", n, head.codes) / norms
        sim[:, :, 2, D] = float("-inf")
        ids_ = sim.topk(head.k, dim=-1).indices
        head.last_ids = ids_
        g = torch.arange(head.groups).view(1, 1, -1, 1)
        return (head.codes[g, ids_].sum(-2) / head.k).reshape(*xx.shape)

    head.forward = disabled_forward
    ilogits, iids = run(model, cbs, x)
    head.forward = orig_forward
    mlp.force = None
    assert torch.equal(saved, head.codes.data)

    def pack(logits, ids):
        return {"logits": logits.flatten().tolist(),
                "ids": {k: v.flatten().tolist() for k, v in ids.items()}}

    out = {"script": "organism/tokfsm/train/reference.py", "torch": torch.__version__,
           "tokens": x.tolist(), "vocab": logits.shape[-1],
           "clean": pack(logits, ids),
           "intervention": {"force": {"hook": "blocks.1.hook_mlp_out", "position": P, "code": F},
                            "disable": {"hook": "blocks.0.attn.hook_z", "group": 2, "codes": D},
                            **pack(ilogits, iids)}}
    with open(args.out, "w") as f:
        json.dump(out, f)
    print("wrote", args.out, "max |logit| change from the intervention",
          float((ilogits - logits).abs().max()))


if __name__ == "__main__":
    main()
