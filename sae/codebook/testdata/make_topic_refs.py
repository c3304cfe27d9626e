"""Reference outputs of the reference's code search and code patching, for topic.go.

    /work/venv/bin/python sae/codebook/testdata/make_topic_refs.py > sae/codebook/testdata/topic_ref.json

Transcribed from taufeeque9/codebook-features (codebook_features/
code_search_utils.py: search_re, byte_id_to_token_pos_id,
get_code_precision_and_recall, get_codes_from_pattern; utils.py:
patch_in_codes with parse_topic_codes_string's code_pos -1, -2, ...;
tutorials/code_intervention.ipynb: the topic count), run on a seeded
synthetic cache: token texts drawn from a small vocabulary (so that the
pattern "dragon" also starts inside a token, " dragons" and "dragonfly"),
and random code ids of two codebooks, one with two groups, k = 3.
"""
import json
import re

import numpy as np

rng = np.random.default_rng(11)
words = [" the", " dragon", " dragons", " flew", " dragonfly", " a", " cat", " fire", ".", " red", "dr", "agon"]
n_ex, seq_len, k = 12, 40, 3
tokens_str = rng.choice(words, size=(n_ex, seq_len)).tolist()
tokens_text = ["".join(t) for t in tokens_str]
token_byte_pos = np.cumsum(np.array([[len(t) for t in ts] for ts in tokens_str]), axis=1)
books = {"blocks.0.attn.hook_z": (2, 7), "blocks.0.hook_mlp_out": (1, 5)}  # groups, codes
acts = {}
for hook, (groups, codes) in books.items():
    # k distinct codes per position and group, as top-k gives
    a = np.stack([np.stack([np.stack([rng.choice(codes, k, replace=False) for _ in range(seq_len)])
                            for _ in range(n_ex)]) for _ in range(groups)])  # [G, ex, T, k]
    acts[hook] = a
# plant: at " dragon" tokens, group 0 of the attention codebook chooses code 6
# first (the other two slots random), so one code is precise there
a = acts["blocks.0.attn.hook_z"]
for e in range(n_ex):
    for t in range(seq_len):
        if tokens_str[e][t] == " dragon":
            a[0, e, t] = [6] + list(rng.choice(6, 2, replace=False))


def search_re(re_pattern, tokens_text):
    if re_pattern.find("(") == -1:
        re_pattern = f"({re_pattern})"
    return [(i, m.span(1)[0]) for i, text in enumerate(tokens_text) for m in re.finditer(re_pattern, text)
            if m.span(1)[0] != m.span(1)[1]]


def byte_id_to_token_pos_id(example_byte_id, token_byte_pos):
    example_id, byte_id = example_byte_id
    return (example_id, int(np.searchsorted(token_byte_pos[example_id], byte_id, side="right")))


def get_code_precision_and_recall(token_pos_ids, codebook_acts, cb_act_counts):
    codes = np.array([codebook_acts[e, p] for e, p in token_pos_ids])
    codes, counts = np.unique(codes, return_counts=True)
    recall = counts / len(token_pos_ids)
    idx = recall > 0.01
    codes, counts, recall = codes[idx], counts[idx], recall[idx]
    code_acts = np.array([cb_act_counts[c] for c in codes])
    prec = counts / code_acts
    sort_idx = np.lexsort((codes, -prec))  # by precision, highest first; ties by code (the Go order)
    return codes[sort_idx], prec[sort_idx], recall[sort_idx], code_acts[sort_idx]


def get_codes_from_pattern(re_pattern, topk, prec_threshold):
    byte_ids = search_re(re_pattern, tokens_text)
    token_pos_ids = np.unique([byte_id_to_token_pos_id(b, token_byte_pos) for b in byte_ids], axis=0)
    out = []
    for hook, a in acts.items():
        for g in range(a.shape[0]):
            counts = np.bincount(a[g].reshape(-1), minlength=books[hook][1])
            codes, prec, recall, code_acts = get_code_precision_and_recall(token_pos_ids, a[g], counts)
            idx = np.arange(min(topk, len(codes)))
            idx = idx[prec[:topk] > prec_threshold]
            for i in idx:
                out.append({"hook": hook, "group": g, "code": int(codes[i]), "precision": float(prec[i]),
                            "recall": float(recall[i]), "acts": int(code_acts[i])})
    return [list(map(int, t)) for t in token_pos_ids], out


def patch_in_codes(run_cb_ids, pos, code, code_pos):
    pos = slice(None) if pos is None else pos
    run_cb_ids[:, pos, code_pos] = code
    return run_cb_ids


cases = []
for pattern, topk, thr in [("dragon", 5, 0.0), ("dragon", 2, 0.3), ("fire|cat", 5, 0.15), ("flew", 8, 0.1), ("zebra", 5, 0.0),
                             ("red( dragon)", 5, 0.0)]:
    pos, codes = get_codes_from_pattern(pattern, topk, thr)
    cases.append({"pattern": pattern, "topk": topk, "min_precision": thr, "positions": pos, "codes": codes})

# patching: two of the k = 3 slots of group 1 of the attention codebook, at every position
ids = acts["blocks.0.attn.hook_z"][1][:2].copy()  # [B=2, T, k]
patched = ids.copy()
for j, c in enumerate([6, 4]):
    patched = patch_in_codes(patched, None, c, -1 - j)
topic_texts = [["A Dragon flew.", "no", "the DRAGONS"], ["fire!", "a king", "making"]]
fractions = []
for pat in ["dragon", "prince|crown|king|castle"]:
    per = [sum(bool(re.search(pat.lower(), s.lower())) for s in ss) / len(ss) for ss in topic_texts]
    fractions.append({"pattern": pat, "per_prompt": per, "mean": sum(per) / len(per)})

print(json.dumps({
    "tokens_str": tokens_str,
    "acts": {h: a.tolist() for h, a in acts.items()},  # [G, ex, T, k]
    "books": {h: list(v) for h, v in books.items()},
    "k": k,
    "cases": cases,
    "patch": {"ids": ids.tolist(), "codes": [6, 4], "patched": patched.tolist()},
    "topic_texts": topic_texts,
    "fractions": fractions,
}))
