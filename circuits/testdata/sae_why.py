"""Why the SAE method does or does not find an IOI circuit: per-head evidence,
computed with transformers alone (no Loupe code), for a GPT-2 model folder
with a task.jsonl of clean/ABC-corrupted IOI pairs (ioimodel, mixmodel).

    /work/venv/bin/python circuits/testdata/sae_why.py circuits/testdata/ioimodel 0.1,0.2,0.3,2.0,2.3
    /work/venv/bin/python circuits/testdata/sae_why.py circuits/testdata/mixmodel HEADS

Per head, over the first 200 pairs (positives = clean prompts, negatives =
their ABC corruption, as the Go tests use them):

- `patch`: activation patching, noising: the head's z from the corrupted run
  put into the clean run, the mean logit difference (IO - S) lost, as a
  fraction of the clean - corrupted gap (the patching method's node score);
- `sep`: the SAE method's feature (the head's hook_result, z_h W_O[h],
  averaged over every position, BOS included) - distance between the
  positive and negative means over the within-class RMS spread;
- `sepL`: the same at the last position alone; `sepX`: the same over the
  positions before the last (the mean over them);
- `bosP`, `bosN`: the head's attention on BOS from the last position, on
  positives and on negatives;
- `var`: the share of the pooled feature's variance (over positives and
  negatives together) that the class explains (between-class / total);
- `score`: the SAE method's node score (paper's defaults, sae_paper.py's
  autoencoder), mean over 10 seeds, and the node AUC over the heads.

Then the null control (negatives that are other clean prompts) with
features pooled over all positions and at the last one, and whether the
model knows at all that the subject is repeated: a
logistic probe on the residual stream after each block, at the last
position and at S2, telling positives from negatives on held-out prompts.
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import GPT2LMHeadModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sae_diag import method, rank_auc  # noqa: E402


def run(model, ids, patch=None):
    """Logits at the last position, every head's z and BOS attention.

    patch: {(layer, head): z [B, T, dh]} written into the run."""
    L, H = model.config.n_layer, model.config.n_head
    dh = model.config.n_embd // H
    zs, hooks = {}, []
    for l, blk in enumerate(model.transformer.h):
        def pre(mod, args, l=l):
            z = args[0]
            B, T, _ = z.shape
            z4 = z.view(B, T, H, dh).clone()
            for (pl, ph), v in (patch or {}).items():
                if pl == l:
                    z4[:, :, ph] = v
            zs[l] = z4
            return (z4.view(B, T, H * dh),)
        hooks.append(blk.attn.c_proj.register_forward_pre_hook(pre))
    try:
        out = model(torch.tensor(ids), output_attentions=True)
    finally:
        for h in hooks:
            h.remove()
    return out.logits[:, -1], zs, out.attentions


def main(folder, truth_spec, n=200, seeds=10):
    model = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()
    L, H = model.config.n_layer, model.config.n_head
    D = model.config.n_embd
    dh = D // H
    rows = [json.loads(line) for line in open(os.path.join(folder, "task.jsonl"))][:n]
    clean = [r["clean_ids"] for r in rows]
    corrupt = [r["corrupt_ids"] for r in rows]
    io = torch.tensor([r["answer_id"] for r in rows])
    s = torch.tensor([r["wrong_id"] for r in rows])
    truth = np.zeros(L * H, bool)
    for spec in truth_spec.split(","):
        l, h = spec.split(".")
        truth[int(l) * H + int(h)] = True

    def ld(lg):
        return (lg.gather(1, io[:, None]) - lg.gather(1, s[:, None])).squeeze(1).mean().item()

    with torch.no_grad():
        lc, zc, ac = run(model, clean)
        lx, zx, ax = run(model, corrupt)
        gap = ld(lc) - ld(lx)
        # hook_result per head: z_h W_O[h] (c_proj is Conv1D: y = x W + b, W [D, D]).
        feats = np.zeros((2 * n, L * H, len(clean[0]), D), np.float32)
        for l in range(L):
            W = model.transformer.h[l].attn.c_proj.weight.view(H, dh, D)
            for h in range(H):
                feats[:n, l * H + h] = torch.einsum("btd,de->bte", zc[l][:, :, h], W[h]).numpy()
                feats[n:, l * H + h] = torch.einsum("btd,de->bte", zx[l][:, :, h], W[h]).numpy()
        patch = np.zeros(L * H)
        for l in range(L):
            for h in range(H):
                lp, _, _ = run(model, clean, {(l, h): zx[l][:, :, h]})
                patch[l * H + h] = (ld(lc) - ld(lp)) / gap
    pooled = feats.mean(2)

    def sep(x):
        P, N = x[:n], x[n:]
        cp, cn = P.mean(0), N.mean(0)
        spread = np.sqrt((((P - cp) ** 2).sum(1).mean() + ((N - cn) ** 2).sum(1).mean()) / 2)
        return np.linalg.norm(cp - cn) / spread

    def explained(x):
        mu = x.mean(0)
        tot = ((x - mu) ** 2).sum(1).mean()
        between = (np.linalg.norm(x[:n].mean(0) - mu) ** 2 + np.linalg.norm(x[n:].mean(0) - mu) ** 2) / 2
        return between / tot

    scores, aucs = [], []
    for seed in range(seeds):
        sc, _ = method(pooled, n, seed)
        scores.append(sc)
        aucs.append(rank_auc(sc.astype(float), truth))
    scores = np.mean(scores, 0)
    pa = rank_auc(np.abs(patch), truth)
    print(f"{folder}: {n} pairs, clean - corrupted logit difference {gap:.2f}; truth {truth_spec}")
    print(f"SAE node AUC {np.mean(aucs):.3f} ± {np.std(aucs):.3f} over {seeds} seeds; patching node AUC {pa:.3f}")
    print("head  truth  patch    sep   sepL   sepX   var    bosP  bosN  score")
    for l in range(L):
        for h in range(H):
            k = l * H + h
            x = feats[:, k]
            print(f"{l}.{h}   {'*' if truth[k] else ' '}   {patch[k]:6.3f}  {sep(pooled[:, k]):5.2f}  {sep(x[:, -1]):5.2f}  "
                  f"{sep(x[:, :-1].mean(1)):5.2f}  {explained(pooled[:, k]):5.3f}  "
                  f"{ac[l][:, h, -1, 0].mean().item():.2f}  {ax[l][:, h, -1, 0].mean().item():.2f}  {scores[k]:5.1f}")
    t, o = truth, ~truth
    # The null control, independently of Loupe: positives the first half's
    # clean prompts, negatives either their ABC corruption or the second
    # half's clean prompts (nothing to tell apart); features pooled over
    # every position (the method's) or taken at the last one.
    h = n // 2
    for pool, x in [("mean", pooled), ("last", feats[:, :, -1])]:
        res = []
        for negs in [x[n:n + h], x[h:n]]:
            both = np.concatenate([x[:h], negs])
            a = [rank_auc(method(both, h, seed)[0].astype(float), truth) for seed in range(seeds)]
            res.append(f"{np.mean(a):.3f} ± {np.std(a):.3f}")
        print(f"null control, {pool} pooling, {h} pairs: SAE node AUC {res[0]} with ABC negatives, {res[1]} with null negatives")
    # Does the model know that the subject is repeated? A logistic probe on
    # the residual stream (after each block) tells positives from negatives,
    # trained on 300 prompts and tested on the other 100, at the last
    # position and at S2 (position 10, the third name slot).
    with torch.no_grad():
        hc = model(torch.tensor(clean), output_hidden_states=True).hidden_states
        hx = model(torch.tensor(corrupt), output_hidden_states=True).hidden_states
    rng = np.random.default_rng(0)
    perm = rng.permutation(2 * n)
    tr, te = perm[: 3 * n // 2], perm[3 * n // 2:]
    y = np.concatenate([np.ones(n), np.zeros(n)])
    line = []
    for pos, label in [(-1, "last"), (10, "S2")]:
        for l in range(1, L + 1):
            x = torch.cat([hc[l][:, pos], hx[l][:, pos]]).numpy()
            x = (x - x[tr].mean(0)) / (x[tr].std(0) + 1e-6)
            w = torch.zeros(D, requires_grad=True)
            b = torch.zeros(1, requires_grad=True)
            opt = torch.optim.LBFGS([w, b], max_iter=200)
            xt, yt = torch.tensor(x[tr]), torch.tensor(y[tr], dtype=torch.float32)

            def closure():
                opt.zero_grad()
                loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + 1e-3 * (w * w).sum()
                loss.backward()
                return loss
            opt.step(closure)
            with torch.no_grad():
                acc = (((torch.tensor(x[te]) @ w + b) > 0).numpy() == (y[te] > 0.5)).mean()
            line.append(f"{label} L{l - 1} {acc:.2f}")
    print("probe accuracy, repeated subject or not (held out; 0.5 = nothing):", ", ".join(line))
    v = np.array([explained(pooled[:, k]) for k in range(L * H)])
    print(f"mean share of variance the class explains: truth {v[t].mean():.3f}, others {v[o].mean():.3f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
