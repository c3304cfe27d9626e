"""Reference values of the tutorial's TokFSM steering measure, for SteerReference.

    /work/venv/bin/python sae/codebook/testdata/make_steer_ref.py \
        --model organism/tokfsm/model > sae/codebook/testdata/steer_ref.json

A transcription in PyTorch of the steering cell of the reference's
tutorials/tokfsm.ipynb (taufeeque9/codebook-features) with its own
prefix_random_states_len=0: the inputs are BOS and each state's two digits;
for a state b, the code ids b's input chooses at its last position, at the
codebooks of a patching, are forced at the last position of every input;
the JS divergence (utils.JSD, kl_div with reduction "none", summed) of every
patched next-token distribution from b's, summed over the inputs and
divided by N-1, is averaged over the targets b; "none" compares the
unpatched inputs with b's; the bars are divided by their largest. The model
is the committed one, loaded as PyTorch users would (transformers and the
codebooks of codebooks.json by forward hooks, organism/tokfsm/train/
codebooks.py). Also written: the fraction of pairs a != b whose patched
distribution is closer to b's than to a's own (Loupe's added rate).
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
from transformers import GPTNeoXForCausalLM

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "organism", "tokfsm", "train"))
import codebooks as cbmod  # noqa: E402


def jsd(logits1, logits2):
    """utils.JSD with reduction="none", summed over the batch and vocabulary."""
    probs1, probs2 = F.softmax(logits1, dim=-1), F.softmax(logits2, dim=-1)
    total_m = (0.5 * (probs1 + probs2)).log()
    loss = F.kl_div(total_m, F.log_softmax(logits1, dim=-1), log_target=True, reduction="none")
    loss = loss + F.kl_div(total_m, F.log_softmax(logits2, dim=-1), log_target=True, reduction="none")
    return 0.5 * loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--targets", default="0,10,20,30,40,50,60,70,80,90", help="target states b (\"all\": every state)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = GPTNeoXForCausalLM.from_pretrained(args.model, torch_dtype=torch.float64).eval()
    cbs = cbmod.load(args.model)
    for cb in cbs:
        cb.double().eval()
    cbmod.attach(model, cbs)
    with open(os.path.join(args.model, "fsm.json")) as f:
        fsm = json.load(f)
    N, base, bos = fsm["states"], fsm["base"], fsm["base"]
    inputs = torch.tensor([[bos, s // base, s % base] for s in range(N)])
    targets = list(range(N)) if args.targets == "all" else [int(t) for t in args.targets.split(",")]

    with torch.no_grad():
        logits = model(inputs).logits[:, -1].double()  # [N, V], every state's own input
        ids = {cb.hook: cb.last_ids[:, -1].clone() for cb in cbs}  # [N, G, k]
    attn = [cb.hook for cb in cbs if cb.hook.endswith("attn.hook_z")]
    mlp = [cb.hook for cb in cbs if cb.hook.endswith("hook_mlp_out")]
    patchings = [("none", []), ("l0_attn", attn[:1]), ("l1_mlp", mlp[1:2]), ("all_attn", attn), ("all_mlp", mlp),
                 ("all_attn_mlp", attn + mlp)]
    rows = []
    for name, sites in patchings:
        total, closer = 0.0, 0
        for b in targets:
            if not sites:
                mod = logits
            else:
                for cb in cbs:
                    if cb.hook in sites:
                        code = ids[cb.hook][b]

                        def force(x, code=code):
                            x = x.clone()
                            x[:, -1] = code  # the final token of every input (all of length 3)
                            return x

                        cb.force = force
                with torch.no_grad():
                    mod = model(inputs).logits[:, -1].double()
                for cb in cbs:
                    cb.force = None
            d = jsd(mod, logits[b].unsqueeze(0)).sum() / (N - 1)
            total += float(d)
            if sites:
                to_b = jsd(mod, logits[b].unsqueeze(0)).sum(-1)
                to_a = jsd(mod, logits).sum(-1)
                closer += int(sum(1 for a in range(N) if a != b and to_b[a] < to_a[a]))
        rows.append({"name": name, "sites": sites, "mean_js": total / len(targets),
                     "closer_to_b": closer / (len(targets) * (N - 1)) if sites else 0.0})
    mx = max(r["mean_js"] for r in rows)
    for r in rows:
        r["normalized_js"] = r["mean_js"] / mx
    print(json.dumps({"model": args.model, "prefix_states": 0, "targets": targets, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
