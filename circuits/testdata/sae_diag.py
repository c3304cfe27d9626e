"""Does a task give the SAE method what it needs? For each head: how far
its pooled output (the method's feature) tells positives from negatives,
and the method's node score with the paper's autoencoder (sae_paper.py's
PyTorch transcription), over several seeds.

    LOUPE_SAE_DUMP=/tmp/saedump go test ./circuits -run DumpSAEFeatures
    /work/venv/bin/python circuits/testdata/sae_diag.py /tmp/saedump

Per head: `sep`, the distance between the positive and negative means of
its feature over the within-class spread (RMS distance to the own class
mean); `nc`, nearest-class-mean accuracy (0.5 = nothing to tell apart);
`codes` P/N, distinct codes on positives / negatives; `score`, codes seen
on positives only (the method's node score, last seed). A `*` marks a
head of the known circuit.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sae_paper import SAE  # noqa: E402

TRUTH = {"toyioi": [(0, 1), (0, 2), (0, 3), (2, 0), (2, 3)],
         "organism": [(1, 0), (1, 1), (2, 1), (2, 2), (2, 3), (2, 6), (2, 7)]}


def rank_auc(scores, truth):
    p, n = scores[truth], scores[~truth]
    return ((p[:, None] > n[None, :]).sum() + 0.5 * (p[:, None] == n[None, :]).sum()) / (len(p) * len(n))


def method(x, n, seed, examples=10, latents=200, epochs=500, lr=1e-3, lam=0.02):
    torch.manual_seed(seed)
    allx = torch.tensor(x)
    train = allx[torch.randperm(allx.shape[0])[:examples]]
    m = SAE(x.shape[2], latents)
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    for _ in range(epochs):
        opt.zero_grad()
        f, xh = m(train)
        loss = torch.nn.functional.mse_loss(xh, train) + lam * f.reshape(-1, latents).abs().sum(1).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        f, _ = m(allx)
    codes = f.argmax(-1).numpy()
    return np.array([len(set(codes[:n, h]) - set(codes[n:, h])) for h in range(codes.shape[1])]), codes


def main(folder, seeds=5):
    for task in ["toyioi", "organism"]:
        for pool in ["mean", "last"]:
            meta = json.load(open(os.path.join(folder, task + pool + ".json")))
            n, H = meta["n"], meta["heads"]
            x = np.fromfile(os.path.join(folder, task + pool + ".f32"), dtype=np.float32).reshape(2 * n, -1, meta["d"])
            truth = np.zeros(x.shape[1], bool)
            for l, h in TRUTH[task]:
                truth[l * H + h] = True
            aucs = []
            for seed in range(seeds):
                score, codes = method(x, n, seed)
                aucs.append(rank_auc(score.astype(float), truth))
            print(f"{task}, {pool} pooling, {n} pairs: node AUC {np.mean(aucs):.3f} ± {np.std(aucs):.3f} over {seeds} seeds")
            P, N = x[:n], x[n:]
            for h in range(x.shape[1]):
                cp, cn = P[:, h].mean(0), N[:, h].mean(0)
                spread = np.sqrt((((P[:, h] - cp) ** 2).sum(1).mean() + ((N[:, h] - cn) ** 2).sum(1).mean()) / 2)
                sep = np.linalg.norm(cp - cn) / spread
                nc = np.concatenate([np.linalg.norm(P[:, h] - cp, axis=1) < np.linalg.norm(P[:, h] - cn, axis=1),
                                     np.linalg.norm(N[:, h] - cn, axis=1) < np.linalg.norm(N[:, h] - cp, axis=1)]).mean()
                print(f"  {h // H}.{h % H} {'*' if truth[h] else ' '} sep {sep:5.2f}  nc {nc:.2f}  codes P{len(set(codes[:n, h]))}/N{len(set(codes[n:, h]))}  score {score[h]}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/saedump")
