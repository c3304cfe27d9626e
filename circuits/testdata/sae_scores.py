"""Reference scores for the SAE circuit method on fixed codes.

A numpy transcription of charlieoneill11/sae-circuits' scoring
(src/node.py unique_to_positives_and_negatives, src/edge.py
gen_co_occurrence_matrix / unique_co_occurrences / edge_circuit_prediction,
normalise=False as main_results.py runs it), on seeded random codes. Writes
sae_scores.json beside this file.

    /work/venv/bin/python circuits/testdata/sae_scores.py
"""
import json
import os

import numpy as np

rng = np.random.default_rng(7)
E, H, F = 20, 12, 6  # examples (first half positive), heads, codes in use
codes = rng.integers(0, F, size=(E, H))
codes[: E // 2, 3] = rng.integers(F, F + 3, size=E // 2)  # a head with positive-only codes
half = E // 2
pos, neg = codes[:half], codes[half:]

node = [len(set(pos[:, h].tolist()) - set(neg[:, h].tolist())) for h in range(H)]

n_feat = F + 3


def cooc(ix):
    m = np.zeros((H, H, n_feat, n_feat))
    for e in range(ix.shape[0]):
        for h1 in range(H):
            for h2 in range(H):
                if h1 != h2:
                    m[h1, h2, ix[e, h1], ix[e, h2]] += 1
    return m


pm, nm = cooc(pos), cooc(neg)
edge = np.zeros((H, H))
for h1 in range(H):
    for h2 in range(H):
        if h1 != h2:
            edge[h1, h2] = np.sum((pm[h1, h2] > 0) & ~(nm[h1, h2] > 0))

k = H * H // 2
order = np.argsort(edge.flatten(), kind="stable")[::-1]
r, c = np.unravel_index(order, edge.shape)
comps = []
for a, b in zip(r, c):
    comps += [int(a), int(b)]
edge_node = np.zeros(H)
for h in comps[:k]:
    edge_node[h] += 1

out = {"examples": E, "heads": H, "codes": codes.flatten().tolist(),
       "node": node, "edge": edge.flatten().tolist(), "k": k, "edge_node": edge_node.tolist()}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sae_scores.json"), "w") as f:
    json.dump(out, f)
