"""Reference vectors for fsm_reference.go's precision-at-recall measure.

A transcription (not a copy) of taufeeque9/codebook-features'
code_search_utils.get_code_precision_and_recall and
get_neuron_precision_and_recall, run on random data: one codebook's ids
over every position, a state's positions, and neurons' activations.
For each state it writes the most precise code of recall above 1% (ties:
the larger recall) and, per neuron, the precision at that code's recall.

    /work/venv/bin/python sae/codebook/testdata/ref_state_precision.py
"""
import json
import pathlib

import numpy as np
import torch

rng = np.random.default_rng(7)
EX, SEQ, CODES, STATES, NEURONS = 12, 40, 30, 5, 6
ids = rng.integers(0, CODES, size=(EX, SEQ, 1))
# plant states on every other position, and make code s+1 favour state s
labels = np.full((EX, SEQ), -1)
labels[:, 1::2] = rng.integers(0, STATES, size=(EX, SEQ // 2))
for e in range(EX):
    for p in range(SEQ):
        s = labels[e, p]
        if s >= 0 and rng.random() < 0.6:
            ids[e, p, 0] = s + 1
acts = rng.normal(size=(EX, SEQ, NEURONS)).astype(np.float32)
for e in range(EX):
    for p in range(SEQ):
        s = labels[e, p]
        if s >= 0:
            acts[e, p, s % NEURONS] += 1.5

# the dataset-wide firing counts (utils.features_to_tokens' lengths)
counts_all = np.zeros(CODES, dtype=np.int64)
for v in ids.reshape(-1):
    counts_all[v] += 1


def code_prec_recall(token_pos_ids):
    codes = np.array([ids[e, p] for e, p in token_pos_ids])
    codes, counts = np.unique(codes, return_counts=True)
    recall = counts / len(token_pos_ids)
    keep = recall > 0.01
    codes, counts, recall = codes[keep], counts[keep], recall[keep]
    prec = counts / counts_all[codes]
    return codes, prec, recall


flat_sorted = torch.sort(torch.from_numpy(acts.reshape(-1, NEURONS).T.copy()), dim=-1).values


def neuron_prec(token_pos_ids, recall):
    on = torch.sort(torch.stack([torch.from_numpy(acts[e, p]) for e, p in token_pos_ids], dim=-1), dim=-1).values
    m = int(recall * on.shape[-1])
    thresh = on[:, -m]
    den = flat_sorted.shape[-1] - torch.searchsorted(flat_sorted, thresh.unsqueeze(-1)).squeeze(-1)
    return (m / den).tolist()


out = {"ids": ids[:, :, 0].reshape(-1).tolist(), "labels": labels.reshape(-1).tolist(),
       "acts": acts.reshape(-1).tolist(), "codes": CODES, "states": STATES, "neurons": NEURONS, "want": []}
for s in range(STATES):
    tp = [(e, p) for e in range(EX) for p in range(SEQ) if labels[e, p] == s]
    codes, prec, recall = code_prec_recall(tp)
    best = max(range(len(codes)), key=lambda i: (prec[i], recall[i]))
    out["want"].append({"state": s, "code": int(codes[best]), "precision": float(prec[best]),
                        "recall": float(recall[best]), "neuron_precision": neuron_prec(tp, float(recall[best]))})
path = pathlib.Path(__file__).with_name("ref_state_precision.json")
path.write_text(json.dumps(out) + "\n")
print("wrote", path)
