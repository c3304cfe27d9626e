"""Codebook layers for PyTorch, as Loupe stores and runs them.

A codebook layer (Tamkin, Taufeeque and Goodman 2023; the reference is
taufeeque9/codebook-features, codebook_features/models.py) replaces an
activation by the mean of the k codes most similar to it. As in the
reference's CodebookLayer with the inner-product snap function (the paper's
configurations use it):

    n   = LayerNorm(x)                       (learned weight and bias, eps 1e-5)
    sim = n . c_j / |c_j|                    (ranks as the cosine similarity)
    ids = the k codes of largest sim
    out = mean of those k codes              (it replaces x; it is not rescaled)

A group layer splits the features into G equal chunks with one codebook each:
on attention's pre-projection output (the merged heads, before the output
projection) there is one codebook per head, the reference's "attn_preproj".

Training ("aeloss", the reference default): the task gradient reaches both
the chosen codes and, straight through, the input; the codes also get the
gradient of the reconstruction error mean_t |out_t - n_t|^2, which the input
does not see.

Loupe's file layout (docs/codebooks.md): codebooks.json lists the layers,
codebooks.safetensors holds, per layer at hook H, "H.codes" [G, C, d] and,
when the layer normalises, "H.ln.weight" and "H.ln.bias" [G, d].
"""
import json

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn


class Codebook(nn.Module):
    """G codebooks of C codes of d features, over inputs [..., G*d]."""

    def __init__(self, hook, groups, dim, num_codes, k=1, layernorm=True, eps=1e-5):
        super().__init__()
        self.hook, self.groups, self.dim, self.num_codes, self.k = hook, groups, dim, num_codes, k
        self.eps = eps
        self.codes = nn.Parameter(torch.randn(groups, num_codes, dim))
        self.layernorm = layernorm
        if layernorm:
            self.ln_weight = nn.Parameter(torch.ones(groups, dim))
            self.ln_bias = nn.Parameter(torch.zeros(groups, dim))
        self.mse = torch.zeros(())
        self.counts = torch.zeros(groups, num_codes, dtype=torch.long)
        self.last_ids = None
        self.force = None  # callable(ids [B,T,G,k]) -> ids, for interventions
        self.capture = False  # pass inputs through unchanged, keeping them normalised
        self.captured = None

    def normalise(self, x):
        """x [..., G*d] -> [..., G, d], layer-normalised per group."""
        x = x.reshape(*x.shape[:-1], self.groups, self.dim)
        if not self.layernorm:
            return x
        x = F.layer_norm(x, (self.dim,), eps=self.eps)
        return x * self.ln_weight + self.ln_bias

    def forward(self, x):
        n = self.normalise(x)  # [B, T, G, d]
        if self.capture:
            self.captured = n.detach()
            return x
        B, T = n.shape[0], n.shape[1]
        with torch.no_grad():
            # n . c/|c| ranks as the cosine similarity; one batched product
            # per group, [G, B*T, C], so nothing waits on the host.
            unit = self.codes / torch.linalg.vector_norm(self.codes, dim=-1, keepdim=True)
            ng = n.reshape(B * T, self.groups, self.dim).transpose(0, 1)
            sim = torch.bmm(ng, unit.transpose(1, 2))
            if self.k == 1:
                ids = sim.argmax(dim=-1, keepdim=True)
            else:
                ids = sim.topk(self.k, dim=-1).indices  # [G, B*T, k]
            ids = ids.transpose(0, 1).reshape(B, T, self.groups, self.k)
            if self.force is not None:
                ids = self.force(ids)
        self.last_ids = ids
        offset = (torch.arange(self.groups, device=x.device) * self.num_codes).view(1, 1, -1, 1)
        flat = self.codes.reshape(self.groups * self.num_codes, self.dim)
        chosen = F.embedding(ids.clamp(min=0) + offset, flat)  # [B, T, G, k, d]
        if self.force is not None:  # only forced ids can be -1 (a blocked slot)
            chosen = chosen.masked_fill((ids < 0).unsqueeze(-1), 0.0)
        out = chosen.sum(dim=-2) / self.k
        if self.training:
            self.mse = ((out - n.detach()) ** 2).sum(-1).mean(dim=(0, 1)).sum()
            with torch.no_grad():
                if self.counts.device != ids.device:
                    self.counts = self.counts.to(ids.device)
                # index_add_, not bincount: bincount reads the largest id
                # back to the host, a sync per codebook per step on a GPU.
                flat_ids = (ids.clamp(min=0) + offset).reshape(-1)
                self.counts.view(-1).index_add_(0, flat_ids, torch.ones_like(flat_ids))
            # straight through: the value is out, the input gets out's gradient
            out = out + (n - n.detach())
        return out.reshape(*x.shape)

    def describe(self):
        return {"hook": self.hook, "groups": self.groups, "dim": self.dim, "num_codes": self.num_codes,
                "k": self.k, "reduce": "mean", "similarity": "cosine", "layernorm": self.layernorm,
                "ln_eps": self.eps}

    def tensors(self):
        out = {self.hook + ".codes": self.codes.detach().float().cpu().contiguous()}
        if self.layernorm:
            out[self.hook + ".ln.weight"] = self.ln_weight.detach().float().cpu().contiguous()
            out[self.hook + ".ln.bias"] = self.ln_bias.detach().float().cpu().contiguous()
        return out


def attach(model, codebooks):
    """Insert codebooks into a transformers GPT-NeoX model by forward hooks.

    Hook names are Loupe's (TransformerLens): blocks.L.attn.hook_z is the
    input of attention.dense (the merged heads), blocks.L.hook_mlp_out the
    MLP's output. Returns the hook handles.
    """
    handles = []
    for cb in codebooks:
        parts = cb.hook.split(".")
        layer = model.gpt_neox.layers[int(parts[1])]
        site = ".".join(parts[2:])
        if site == "attn.hook_z":
            handles.append(layer.attention.dense.register_forward_pre_hook(
                lambda mod, args, cb=cb: (cb(args[0]),) + tuple(args[1:])))
        elif site == "hook_mlp_out":
            handles.append(layer.mlp.register_forward_hook(lambda mod, args, out, cb=cb: cb(out)))
        else:
            raise ValueError(f"codebook at {cb.hook}: this script places codebooks at attn.hook_z and hook_mlp_out")
    return handles


def save(codebooks, out_dir):
    meta = {"format": "loupe-codebooks", "version": 1, "codebooks": [cb.describe() for cb in codebooks]}
    tensors = {}
    for cb in codebooks:
        tensors.update(cb.tensors())
    save_file(tensors, f"{out_dir}/codebooks.safetensors")
    with open(f"{out_dir}/codebooks.json", "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


def load(model_dir):
    with open(f"{model_dir}/codebooks.json") as f:
        meta = json.load(f)
    ts = load_file(f"{model_dir}/codebooks.safetensors")
    cbs = []
    for d in meta["codebooks"]:
        cb = Codebook(d["hook"], d["groups"], d["dim"], d["num_codes"], d["k"], d["layernorm"], d["ln_eps"])
        with torch.no_grad():
            cb.codes.copy_(ts[d["hook"] + ".codes"])
            if d["layernorm"]:
                cb.ln_weight.copy_(ts[d["hook"] + ".ln.weight"])
                cb.ln_bias.copy_(ts[d["hook"] + ".ln.bias"])
        cbs.append(cb)
    return cbs
