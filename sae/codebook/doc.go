// Package codebook is codebook features (Tamkin, Taufeeque and Goodman
// 2023): a layer that replaces an activation by the mean (or the sum) of the
// k codes most similar to it, out of a learned codebook, and exposes which
// codes it chose.
//
// The layer, as the reference (taufeeque9/codebook-features,
// codebook_features/models.py, CodebookLayer with its inner-product snap
// function) computes it, per row x of the activation:
//
//	n   = LayerNorm(x)              (learned weight and bias; optional)
//	sim = n·c_j / |c_j|             (the cosine similarity up to the factor 1/|n|)
//	ids = the k codes of largest sim, disabled codes left out
//	out = mean (or sum) of those k codes
//
// A layer can hold G codebooks side by side over G equal chunks of the
// features: at attn.hook_z one per head, the reference's "attn_preproj".
//
// Layers reach the forward pass through the probe's hook edits (Splice):
// at blocks.L.attn.hook_z, blocks.L.hook_attn_out, blocks.L.hook_mlp_out or
// blocks.L.hook_resid_post. Each layer makes a nested hook point,
// SITE.hook_codebook_ids ([batch, pos, G, k], or [batch, pos, k] when G is
// 1, float32 holding integer ids), that hooks can cache, or edit to force
// codes: an id of -1 there contributes nothing (the mean still divides by
// k, as the reference does).
//
// On disk (docs/codebooks.md) a set of layers is codebooks.json (the
// layers' descriptions) plus codebooks.safetensors (SITE.codes [G, C, d],
// SITE.ln.weight and SITE.ln.bias [G, d]), written atomically.
package codebook
