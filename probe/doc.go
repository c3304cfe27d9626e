// Package probe runs transformer language models with every internal
// activation reachable.
//
// A Model is one architecture family's forward pass (Llama with its
// relatives Mistral, Qwen2, Qwen3 and Phi-3; Gemma 3; GPT-2; GPT-NeoX),
// written once against the compute.Backend interface so that the
// same code runs on the CPU or a GPU. Load opens a Hugging Face directory or
// a GGUF file (package weights) and builds the model from its config.
//
// Every intermediate activation passes a hook point named as in
// TransformerLens (blocks.3.attn.hook_pattern, blocks.3.hook_resid_post, ...;
// HookNames lists them for a model). A forward pass takes Hooks that say
// which activations to keep (glob patterns), which to reduce where they live
// (top-k attended positions, attention mass on a span, entropy) and which to
// change (head ablation, patching, steering). A pass with no hooks only pays
// for a nil check at each point.
//
// Attention runs as the backend's one fused operation (compute.Attention):
// flash-style, never building a T×T score or pattern unless a hook caches
// it. Reductions of hook_pattern (top-k keys, span masses with absolute or
// query-relative ends, masses on per-query key sets, entropy, for chosen
// query rows, optionally summed per head) are computed by that operation
// from the exact softmax, so head scores on long prompts take memory
// linear in the context. Only a layer whose scores or pattern a hook edits
// (or whose raw scores it reduces) goes through scores → softmax → mix.
// Options.Chunk (GenerateOptions.PrefillChunk) reads a long prompt in
// pieces through the KV cache, so that activations take O(chunk) memory;
// a pass estimated not to fit in memory is refused with the longest prompt
// that would.
//
// Shapes of cached activations follow TransformerLens: [batch, pos, d_model]
// for residual-stream hooks, [batch, pos, head, d_head] for hook_q/k/v/z,
// [batch, pos, head, d_model] for hook_result, [batch, head, query, key] for
// hook_attn_scores and hook_pattern. Gemma adds blocks.L.ln1_post and
// blocks.L.ln2_post (its norms after attention and MLP), as TransformerLens
// names them. Sliding-window layers (Config.Window) mask keys outside the
// window in every path: full, KV-cached and fused. Batches are left-padded; a padded key
// is masked and a padded query's row is whatever the masked softmax gives.
package probe
