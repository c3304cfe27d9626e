"""Random-initialised models of real shapes, for the GPU speed benchmark.

Writes OUT/config.json and OUT/model.safetensors (bf16) for a Llama-family
model of the named shape, its weights drawn from N(0, 0.02) (norm weights
1), so that Loupe and PyTorch run the very same weights side by side.

usage: python3 make_random_model.py llama3-8b|smollm2 OUT
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

SHAPES = {
    # Llama-3-8B: 32 layers, d 4096, 32 heads / 8 KV heads, MLP 14336,
    # vocab 128256. The context is raised to 256K: only the shapes matter.
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0, max_position_embeddings=262144,
                      rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=128000, eos_token_id=128001),
    # SmolLM2-135M: 30 layers, d 576, 9 heads / 3 KV heads, MLP 1536, tied.
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, rope_theta=100000.0, max_position_embeddings=8192,
                    rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2),
}


def main():
    shape, out = sys.argv[1], sys.argv[2]
    c = dict(SHAPES[shape], architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu",
             torch_dtype="bfloat16", attention_bias=False, mlp_bias=False, head_dim=SHAPES[shape]["hidden_size"] // SHAPES[shape]["num_attention_heads"])
    os.makedirs(out, exist_ok=True)
    g = torch.Generator(device="cuda").manual_seed(1)
    D, F, V, L = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["num_hidden_layers"]
    Dh = c["head_dim"]
    H, Hkv = c["num_attention_heads"], c["num_key_value_heads"]

    def rnd(*shape):
        return (torch.randn(*shape, generator=g, device="cuda", dtype=torch.float32) * 0.02).to(torch.bfloat16).cpu()

    t = {"model.embed_tokens.weight": rnd(V, D), "model.norm.weight": torch.ones(D, dtype=torch.bfloat16)}
    if not c["tie_word_embeddings"]:
        t["lm_head.weight"] = rnd(V, D)
    for i in range(L):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = torch.ones(D, dtype=torch.bfloat16)
        t[p + "post_attention_layernorm.weight"] = torch.ones(D, dtype=torch.bfloat16)
        t[p + "self_attn.q_proj.weight"] = rnd(H * Dh, D)
        t[p + "self_attn.k_proj.weight"] = rnd(Hkv * Dh, D)
        t[p + "self_attn.v_proj.weight"] = rnd(Hkv * Dh, D)
        t[p + "self_attn.o_proj.weight"] = rnd(D, H * Dh)
        t[p + "mlp.gate_proj.weight"] = rnd(F, D)
        t[p + "mlp.up_proj.weight"] = rnd(F, D)
        t[p + "mlp.down_proj.weight"] = rnd(D, F)
    save_file(t, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    json.dump(c, open(os.path.join(out, "config.json"), "w"), indent=1)
    print(shape, "written to", out, sum(x.numel() for x in t.values()), "parameters", flush=True)


if __name__ == "__main__":
    main()
