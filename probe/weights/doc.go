// Package weights reads model weights from Hugging Face directories
// (config.json + safetensors, sharded or not) and from GGUF files, and
// presents both the same way: tensors under their Hugging Face names, in the
// Hugging Face layout (row-major, shape as PyTorch reports it), dequantized to
// float32 only when a tensor is asked for.
//
// Files are memory-mapped; nothing is read before it is needed. Open parses
// and checks only the headers: every tensor's byte range must lie inside its
// file, match its dtype and shape, and not overlap another tensor, so a
// truncated or corrupt file fails at Open with an error naming the file and
// the tensor. Float32 then converts one tensor:
//
//   - safetensors F32, F16, BF16 (also F64, I8, I16, I32); other dtypes
//     (I64, U8, BOOL, F8_*) are listed with their shapes but not converted.
//   - GGUF F32, F16, BF16, F64, I8, I16, I32 and the block quantizations
//     Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, bit-exact with gguf-py's
//     dequantization. Other ggml types (Q2_K, Q3_K, IQ*, TQ*, ...) are listed
//     but Float32 reports the type as unsupported.
//
// GGUF files (versions 2 and 3; architectures llama, qwen2, qwen3, gemma3
// and phi3, SupportedGGUFArchitectures) are translated to what a Hugging
// Face checkpoint of the same model would hold: tensor names
// (blk.3.attn_q.weight -> model.layers.3.self_attn.q_proj.weight; Gemma's
// ffn_norm is its pre_feedforward_layernorm, Phi-3's ffn_up its fused
// gate_up_proj), shapes (ggml lists the fastest dimension first; the shape
// here is reversed), the values where llama.cpp's converters changed them
// (the llama converter interleaves each head's q_proj/k_proj rows for its
// RoPE, the Gemma converter stores norm weights as 1 + w; Float32 undoes
// both), and a config.json synthesized from the <arch>.* metadata, with
// what llama.cpp's graph fixes for the architecture where the metadata is
// silent (Gemma 3: every 6th layer global, local RoPE base 10000). Tensors with no Hugging Face counterpart (such as
// rope_freqs.weight) keep their GGUF names. The raw metadata is in
// Model.Metadata and the embedded tokenizer in Model.Vocab.
//
// Metadata values have Go types matching the GGUF value types (uint8 ...
// float64, bool, string); arrays of a scalar type are typed slices
// ([]int32, []string, ...), arrays of arrays are []any of those.
//
// A Model is safe for concurrent use. Close unmaps the files; it waits for
// Float32 calls in flight, and later calls return an error.
package weights
