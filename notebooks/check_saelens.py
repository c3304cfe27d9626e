"""Check that the SAE folders Loupe exports are what SAELens v6 loads.

For every folder given (each a Loupe export, written by the Go test
TestWriteSAELensFixtures with LOUPE_SAE_FIXTURES set), this reads cfg.json
and the safetensors files the way SAELens v6 does -- the version gate of
handle_config_defaulting, the architecture registry, the dtype map,
safe_open/get_tensor, a strict load_state_dict of the architecture's
parameters -- and runs a numpy transcription of SAELens's encode and decode
(SAE.process_sae_in, the architecture's encode, TrainingSAE.decode) on the
inputs in loupe_io.safetensors, comparing with the latents and
reconstructions Loupe computed, to 1e-5. A folder without loupe_io (one
`loupe sae train` wrote) gets the file checks only.

Run: python check_saelens.py DIR... (needs numpy and safetensors only)
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file

# SAELens v6's registry of inference classes and their parameters
# (sae_lens/saes/*.py), for the architectures Loupe writes.
PARAMS = {
    "standard": {"W_enc", "W_dec", "b_enc", "b_dec"},
    "topk": {"W_enc", "W_dec", "b_enc", "b_dec"},
    "jumprelu": {"W_enc", "W_dec", "b_enc", "b_dec", "threshold"},
    "transcoder": {"W_enc", "W_dec", "b_enc", "b_dec"},
    "jumprelu_transcoder": {"W_enc", "W_dec", "b_enc", "b_dec", "threshold"},
}
DTYPES = {"float32": np.float32, "torch.float32": np.float32}
NORMALIZE = {"none", "expected_average_only_in", "constant_norm_rescale", "layer_norm"}


def version_tuple(v):
    parts = []
    for p in v.split("-")[0].split("."):
        parts.append(int("".join(c for c in p if c.isdigit()) or 0))
    return tuple(parts)


def check_cfg(cfg, where):
    version = cfg.get("sae_lens_version") or cfg.get("metadata", {}).get("sae_lens_version")
    assert version and version_tuple(version) >= (6, 0, 0), f"{where}: sae_lens_version {version!r} would be read as a pre-6.0 config"
    arch = cfg["architecture"]
    assert arch in PARAMS, f"{where}: architecture {arch!r}"
    for key in ("d_in", "d_sae", "dtype", "apply_b_dec_to_input", "normalize_activations"):
        assert key in cfg, f"{where}: cfg.json has no {key}"
    assert cfg["normalize_activations"] in NORMALIZE, f"{where}: normalize_activations {cfg['normalize_activations']!r}"
    assert cfg["normalize_activations"] == "none", f"{where}: Loupe folds its normalisation; got {cfg['normalize_activations']!r}"
    assert cfg["dtype"] in DTYPES, f"{where}: dtype {cfg['dtype']!r}"
    if arch == "topk":
        assert isinstance(cfg.get("k"), int) and 0 < cfg["k"] <= cfg["d_sae"], f"{where}: topk needs k"
    if "transcoder" in arch:
        assert cfg.get("d_out", 0) > 0 and cfg.get("hook_name_out"), f"{where}: transcoder needs d_out and hook_name_out"
        assert not cfg["apply_b_dec_to_input"], f"{where}: a transcoder's b_dec is not applied to its input"
    meta = cfg["metadata"]
    for key in ("model_name", "hook_name", "hook_head_index", "context_size", "prepend_bos", "dataset_path"):
        assert key in meta, f"{where}: metadata has no {key}"
    return arch


def encode(arch, cfg, w, x):
    # SAE.process_sae_in: the b_dec term (transcoders skip it)
    if "transcoder" in arch:
        sae_in = x
    else:
        sae_in = x - w["b_dec"] * cfg["apply_b_dec_to_input"]
    hidden_pre = sae_in @ w["W_enc"] + w["b_enc"]
    if arch in ("standard", "transcoder"):
        return np.maximum(hidden_pre, 0)
    if arch == "topk":
        # TopK: the k largest pre-activations, ReLU'd, scattered back
        k = cfg["k"]
        idx = np.argpartition(-hidden_pre, k - 1, axis=-1)[:, :k]
        out = np.zeros_like(hidden_pre)
        np.put_along_axis(out, idx, np.maximum(np.take_along_axis(hidden_pre, idx, -1), 0), -1)
        return out
    # JumpReLU: relu(hidden_pre) * (hidden_pre > threshold)
    return np.maximum(hidden_pre, 0) * (hidden_pre > w["threshold"])


def decode(w, f):
    return f @ w["W_dec"] + w["b_dec"]


def check(folder):
    with open(os.path.join(folder, "cfg.json")) as fh:
        cfg = json.load(fh)
    arch = check_cfg(cfg, folder)
    dtype = DTYPES[cfg["dtype"]]
    w = {k: v.astype(dtype) for k, v in load_file(os.path.join(folder, "sae_weights.safetensors")).items()}
    want = PARAMS[arch]
    assert set(w) == want, f"{folder}: state dict {sorted(w)}, {arch} has {sorted(want)} (strict load)"
    d_in, d_sae = cfg["d_in"], cfg["d_sae"]
    d_out = cfg.get("d_out", d_in) if "transcoder" in arch else d_in
    shapes = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_out), "b_enc": (d_sae,), "b_dec": (d_out,), "threshold": (d_sae,)}
    for k, v in w.items():
        assert v.shape == shapes[k], f"{folder}: {k} has shape {v.shape}, want {shapes[k]}"
    sp = load_file(os.path.join(folder, "sparsity.safetensors"))
    assert set(sp) == {"sparsity"} and sp["sparsity"].shape == (d_sae,), f"{folder}: sparsity.safetensors"
    assert np.all(sp["sparsity"] <= 0), f"{folder}: log10 densities above 0"
    io_path = os.path.join(folder, "loupe_io.safetensors")
    if not os.path.exists(io_path):
        # a folder from `loupe sae train`: the files as SAELens reads them
        print(f"check_saelens: {os.path.basename(folder)}: {arch}, d_in {d_in}, d_sae {d_sae}: cfg.json and weights ok")
        return
    io = load_file(io_path)
    f = encode(arch, cfg, w, io["x"])
    y = decode(w, f)
    np.testing.assert_allclose(f, io["latents"], rtol=1e-5, atol=1e-5, err_msg=f"{folder}: latents")
    np.testing.assert_allclose(y, io["recon"], rtol=1e-5, atol=1e-5, err_msg=f"{folder}: reconstructions")
    l0 = (f != 0).sum(-1).mean()
    print(f"check_saelens: {os.path.basename(folder)}: {arch}, d_in {d_in}, d_sae {d_sae}, {len(f)} rows, L0 {l0:.2f}: ok")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: check_saelens.py DIR...")
    for d in sys.argv[1:]:
        check(d)
