"""Reference vectors for Loupe's codebook layer (sae/codebook/layer_test.go).

An independent transcription, in PyTorch, of the reference forward pass:
taufeeque9/codebook-features, codebook_features/models.py, at eval time:
CodebookLayer.forward (self.ln then the snap function), with
InnerProductSnapFunction.forward (keep_k_codes=True, the default, so a
disabled code's logit is -inf and the next codes are taken), grouped as
GroupCodebookLayer.forward does (x.chunk(num_codebooks, dim=-1)), and the
eval-time path after hook_codebook_ids (ids of -1 contribute zero and the
mean still divides by k). "sum" multiplies the mean by k (the paper writes
the sum; the code takes the mean).

    /work/venv/bin/python sae/codebook/testdata/make_refs.py

writes sae/codebook/testdata/layer_ref.json.
"""
import json
import os

import torch

torch.manual_seed(1234)


def snap(inputs, codebook, kcodes, disable_codes=(), cosine=True):
    """InnerProductSnapFunction.forward, transcribed (keep_k_codes branch)."""
    cb_norm = torch.linalg.vector_norm(codebook, dim=-1).reshape(1, 1, -1)
    logits = torch.matmul(inputs, codebook.T) / cb_norm
    if cosine:
        logits = logits / torch.norm(inputs, dim=-1, keepdim=True)
    logits[:, :, list(disable_codes)] = float("-inf")
    _, ids = logits.topk(kcodes, dim=-1)
    out = torch.nn.functional.embedding(ids, codebook).sum(dim=-2) / kcodes
    return out, ids


def codebook_layer(x, codes, ln_w, ln_b, k, layernorm, disable=(), forced=None):
    """CodebookLayer.forward at eval time for one group: x [1, T, d]."""
    n = torch.nn.functional.layer_norm(x, (x.shape[-1],), ln_w, ln_b, eps=1e-5) if layernorm else x
    out, ids = snap(n, codes, k, disable)
    if forced is not None:  # what hook_codebook_ids returned
        ids = forced.clone()
        blocked = ids == -1
        ids[blocked] = 0
        out = torch.nn.functional.embedding(ids, codes)
        out[blocked] = 0
        out = out.mean(dim=-2)
        ids[blocked] = -1
    return out, ids


def case(name, rows, groups, dim, codes, k, layernorm, reduce="mean", disable=(), force=False):
    x = torch.randn(1, rows, groups * dim) * 3 + 0.5
    cb = torch.randn(groups, codes, dim) * torch.rand(groups, codes, 1) * 2
    ln_w = 1 + 0.3 * torch.randn(groups, dim)
    ln_b = 0.2 * torch.randn(groups, dim)
    forced = None
    if force:
        forced = torch.randint(-1, codes, (groups, 1, rows, k))
    outs, ids = [], []
    for g, chunk in enumerate(x.chunk(groups, dim=-1)):
        o, i = codebook_layer(chunk, cb[g], ln_w[g], ln_b[g], k, layernorm, disable,
                              None if forced is None else forced[g])
        outs.append(o)
        ids.append(i)
    out = torch.cat(outs, dim=-1)[0]
    if reduce == "sum":
        out = out * k
    ids = torch.stack(ids, dim=2)[0]  # [rows, groups, k]
    return {"name": name, "rows": rows, "groups": groups, "dim": dim, "num_codes": codes, "k": k,
            "layernorm": layernorm, "reduce": reduce, "disable": list(disable),
            "x": x[0].flatten().tolist(), "codes": cb.flatten().tolist(),
            "ln_weight": ln_w.flatten().tolist(), "ln_bias": ln_b.flatten().tolist(),
            "forced": None if forced is None else forced[:, 0].permute(1, 0, 2).flatten().tolist(),
            "want_ids": ids.flatten().tolist(), "want_out": out.flatten().tolist()}


cases = [
    case("one codebook k=1", 12, 1, 16, 50, 1, True),
    case("four heads k=3", 10, 4, 8, 30, 3, True),
    case("four heads k=3 disabled", 10, 4, 8, 30, 3, True, disable=(1, 2, 3, 5, 8, 13, 21)),
    case("no layernorm k=2 sum", 9, 2, 12, 40, 2, False, reduce="sum"),
    case("forced ids with -1", 8, 2, 8, 20, 2, True, force=True),
]
out = os.path.join(os.path.dirname(__file__), "layer_ref.json")
with open(out, "w") as f:
    json.dump({"script": "sae/codebook/testdata/make_refs.py", "torch": torch.__version__, "cases": cases}, f)
print("wrote", out)
