"""transformers' own bf16 error on SmolLM2, for the GPU bf16 check.

Runs on the GPU machine (scripts/gpu-test.sh bf16): loads the SmolLM2 Q4_1
GGUF in transformers twice, float32 (eager attention, as the committed
references) and bfloat16 (its default attention), runs every prompt of
probe/testdata/ref/smollm2.json, writes the float32 logits of every position
(OUT/NAME.f32, [tokens, vocab] little-endian float32) and transformers' bf16
error against them to OUT/hf_bf16.json: max |logit diff|, mean KL(fp32 ||
bf16) over positions (nats), top-1 agreement. The Go test
TestSmolLM2BF16NoWorseThanTransformers reads both and measures Loupe's bf16
mode the same way.

usage: python3 hf_bf16.py GGUF REFS_JSON OUT
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM


def metrics(ref, other):
    d = (ref - other).abs().max().item()
    lr = torch.log_softmax(ref.double(), -1)
    lo = torch.log_softmax(other.double(), -1)
    kl = (lr.exp() * (lr - lo)).sum(-1).mean().item()
    top1 = (ref.argmax(-1) == other.argmax(-1)).double().mean().item()
    return {"max_abs": d, "mean_kl": kl, "top1": top1}


def main():
    gguf, refs, out = sys.argv[1:4]
    os.makedirs(out, exist_ok=True)
    d, name = os.path.split(os.path.abspath(gguf))
    cases = json.load(open(refs))["cases"]
    m32 = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32, attn_implementation="eager").cuda().eval()
    mbf = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.bfloat16).cuda().eval()
    res = {}
    for c in cases:
        ids = torch.tensor([c["ids"]], device="cuda")
        with torch.no_grad():
            l32 = m32(ids).logits[0].float()
            lbf = mbf(ids).logits[0].float()
        l32.cpu().numpy().astype("<f4").tofile(os.path.join(out, c["name"] + ".f32"))
        res[c["name"]] = {"tokens": len(c["ids"]), "hf_bf16": metrics(l32, lbf)}
        print(c["name"], len(c["ids"]), res[c["name"]]["hf_bf16"], flush=True)
    about = {"torch": torch.__version__, "transformers": transformers.__version__,
             "gpu": torch.cuda.get_device_name(), "bf16_attention": mbf.config._attn_implementation}
    json.dump({"about": about, "cases": res}, open(os.path.join(out, "hf_bf16.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
