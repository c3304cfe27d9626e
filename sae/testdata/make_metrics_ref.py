"""Reference values for sae/metrics_test.go, computed with numpy alone.

For three small random SAEs in the SAELens layout (W_enc [d_in, d_sae],
W_dec [d_sae, d_in], b_enc, b_dec, threshold) -- standard (ReLU), TopK and
JumpReLU -- and fixed inputs, this writes the latents and reconstructions of
SAELens v6's encode/decode, transcribed to numpy, and the evaluation
metrics as Loupe's issue defines them:

  L0            mean number of non-zero latents per token
  FVU           sum |x - x_hat|^2 / sum |x - mean(x)|^2
  MSE           sum |x - x_hat|^2 / (tokens * d)
  cosine        mean over tokens of cos(x, x_hat)
  relative bias gamma = E|x_hat|^2 / E[x_hat . x]  (Rajamanoharan et al. 2024)
  density       fraction of tokens on which each latent fires; dead fraction

Run: python3 sae/testdata/make_metrics_ref.py  (writes metrics_ref.json beside it)
"""
import json
import os

import numpy as np

rng = np.random.default_rng(20261201)
d_in, d_sae, n = 8, 24, 40


def encode(arch, x, p):
    sae_in = x - p["b_dec"] * p["apply_b_dec_to_input"]
    hidden_pre = sae_in @ p["W_enc"] + p["b_enc"]
    if arch == "standard":
        return np.maximum(hidden_pre, 0)
    if arch == "topk":
        k = p["k"]
        idx = np.argsort(-hidden_pre, axis=-1, kind="stable")[:, :k]
        out = np.zeros_like(hidden_pre)
        vals = np.take_along_axis(hidden_pre, idx, axis=-1)
        np.put_along_axis(out, idx, np.maximum(vals, 0), axis=-1)
        return out
    if arch == "jumprelu":
        return np.maximum(hidden_pre, 0) * (hidden_pre > p["threshold"])
    raise ValueError(arch)


def decode(f, p):
    return f @ p["W_dec"] + p["b_dec"]


def metrics(x, f, xh):
    x64, xh64 = x.astype(np.float64), xh.astype(np.float64)
    err = ((xh64 - x64) ** 2).sum()
    var = ((x64 - x64.mean(0)) ** 2).sum()
    cos = (x64 * xh64).sum(1) / (np.linalg.norm(x64, axis=1) * np.linalg.norm(xh64, axis=1))
    density = (f != 0).mean(0)
    return {
        "l0": float((f != 0).sum(1).mean()),
        "fvu": float(err / var),
        "mse": float(err / x.size),
        "cosine": float(cos.mean()),
        "relative_bias": float((xh64 ** 2).sum() / (xh64 * x64).sum()),
        "density": density.tolist(),
        "dead": float((density == 0).mean()),
    }


cases = []
x = (rng.standard_normal((n, d_in)) * 2 + 0.5).astype(np.float32)
for arch in ["standard", "topk", "jumprelu"]:
    W_dec = rng.standard_normal((d_sae, d_in)).astype(np.float32)
    W_dec /= np.linalg.norm(W_dec, axis=1, keepdims=True)
    p = {
        "W_enc": (W_dec.T + 0.3 * rng.standard_normal((d_in, d_sae))).astype(np.float32),
        "W_dec": W_dec,
        "b_enc": (0.5 * rng.standard_normal(d_sae) - 0.8).astype(np.float32),
        "b_dec": (0.2 * rng.standard_normal(d_in)).astype(np.float32),
        "threshold": (0.5 + rng.random(d_sae)).astype(np.float32),
        "apply_b_dec_to_input": True,
        "k": 4,
    }
    # two latents that never fire, so the dead fraction is not trivially 0
    p["b_enc"][:2] = -100
    f = encode(arch, x, p).astype(np.float32)
    xh = decode(f, p).astype(np.float32)
    cases.append({
        "architecture": arch,
        "d_in": d_in, "d_sae": d_sae, "n": n, "k": p["k"],
        "W_enc": p["W_enc"].ravel().tolist(), "W_dec": p["W_dec"].ravel().tolist(),
        "b_enc": p["b_enc"].tolist(), "b_dec": p["b_dec"].tolist(),
        "threshold": p["threshold"].tolist(),
        "x": x.ravel().tolist(),
        "latents": f.ravel().tolist(), "recon": xh.ravel().tolist(),
        "metrics": metrics(x, f, xh),
    })

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics_ref.json"), "w") as fh:
    json.dump(cases, fh)
