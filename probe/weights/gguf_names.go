package weights

import (
	"fmt"
	"strconv"
	"strings"
)

// llama.cpp names tensors its own way (blk.N.attn_q.weight); the rest of
// Loupe, like transformers, speaks Hugging Face names
// (model.layers.N.self_attn.q_proj.weight). These tables translate each
// supported architecture; llama.cpp's converter (convert_hf_to_gguf.py) is
// the source of the GGUF names.

// SupportedGGUFArchitectures are the general.architecture values Open reads.
var SupportedGGUFArchitectures = []string{"llama", "qwen2", "qwen3", "gemma3", "phi3"}

var ggufGlobalNames = map[string]string{
	"token_embd":  "model.embed_tokens",
	"output_norm": "model.norm",
	"output":      "lm_head",
}

// llamaBlockNames serve llama and qwen2 (whose q/k/v carry biases), and
// qwen3 with its QK-norm.
var llamaBlockNames = map[string]string{
	"attn_norm":   "input_layernorm",
	"attn_q":      "self_attn.q_proj",
	"attn_k":      "self_attn.k_proj",
	"attn_v":      "self_attn.v_proj",
	"attn_q_norm": "self_attn.q_norm",
	"attn_k_norm": "self_attn.k_norm",
	"attn_output": "self_attn.o_proj",
	"ffn_norm":    "post_attention_layernorm",
	"ffn_gate":    "mlp.gate_proj",
	"ffn_up":      "mlp.up_proj",
	"ffn_down":    "mlp.down_proj",
}

// gemma3BlockNames: Gemma's four norms per block. llama.cpp calls the
// pre-MLP norm ffn_norm, as it does Llama's post_attention_layernorm.
var gemma3BlockNames = map[string]string{
	"attn_norm":           "input_layernorm",
	"attn_q":              "self_attn.q_proj",
	"attn_k":              "self_attn.k_proj",
	"attn_v":              "self_attn.v_proj",
	"attn_q_norm":         "self_attn.q_norm",
	"attn_k_norm":         "self_attn.k_norm",
	"attn_output":         "self_attn.o_proj",
	"post_attention_norm": "post_attention_layernorm",
	"ffn_norm":            "pre_feedforward_layernorm",
	"ffn_gate":            "mlp.gate_proj",
	"ffn_up":              "mlp.up_proj",
	"ffn_down":            "mlp.down_proj",
	"post_ffw_norm":       "post_feedforward_layernorm",
}

// phi3BlockNames: Phi-3 keeps its fused projections; ffn_up is the fused
// gate_up_proj [2·d_mlp, d_model].
var phi3BlockNames = map[string]string{
	"attn_norm":   "input_layernorm",
	"attn_qkv":    "self_attn.qkv_proj",
	"attn_output": "self_attn.o_proj",
	"ffn_norm":    "post_attention_layernorm",
	"ffn_up":      "mlp.gate_up_proj",
	"ffn_down":    "mlp.down_proj",
}

var ggufBlockNames = map[string]map[string]string{
	"llama":  llamaBlockNames,
	"qwen2":  llamaBlockNames,
	"qwen3":  llamaBlockNames,
	"gemma3": gemma3BlockNames,
	"phi3":   phi3BlockNames,
}

// ggufHFName translates a GGUF tensor name of architecture arch. ok is
// false for names with no Hugging Face counterpart (rope_freqs.weight, for
// one, which llama.cpp stores for Llama-3 RoPE scaling and transformers
// computes); those keep their GGUF names. part is the GGUF part name
// within a block ("attn_q") and "" outside blocks.
func ggufHFName(arch, gguf string) (hf, part string, ok bool) {
	base, suffix, found := cutLast(gguf, ".")
	if !found || (suffix != "weight" && suffix != "bias") {
		return "", "", false
	}
	if hf, ok := ggufGlobalNames[base]; ok {
		return hf + "." + suffix, "", true
	}
	rest, ok := strings.CutPrefix(base, "blk.")
	if !ok {
		return "", "", false
	}
	num, part, ok := strings.Cut(rest, ".")
	if !ok {
		return "", "", false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || strconv.Itoa(n) != num {
		return "", "", false
	}
	hfPart, ok := ggufBlockNames[arch][part]
	if !ok {
		return "", "", false
	}
	return fmt.Sprintf("model.layers.%d.%s.%s", n, hfPart, suffix), part, true
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// unpermute undoes the row interleaving that llama.cpp's converter applies
// to q_proj and k_proj (weights and biases) so that ggml's "normal" RoPE,
// which rotates adjacent pairs (x0,x1), (x2,x3), ..., matches the Hugging
// Face rotate_half RoPE, which rotates (x_i, x_{i+d/2}). The converter does
//
//	w.reshape(n_head, 2, d/n_head/2, *rest).swapaxes(1, 2).reshape(w.shape)
//
// i.e. within each head of hd rows, GGUF row 2j+i holds HF row i*hd/2+j
// (i in {0,1}, j < hd/2). This writes the rows back, one head at a time.
// w is row-major with shape[0] rows.
func unpermute(w []float32, shape []int, heads int) error {
	if len(shape) == 0 || shape[0] == 0 {
		return nil
	}
	rows := shape[0]
	if heads <= 0 || rows%heads != 0 || (rows/heads)%2 != 0 {
		return fmt.Errorf("cannot undo the rotary row permutation: %d rows are not %d heads of an even size", rows, heads)
	}
	rowLen := len(w) / rows
	hd := rows / heads
	half := hd / 2
	tmp := make([]float32, hd*rowLen)
	for h := 0; h < heads; h++ {
		block := w[h*hd*rowLen : (h+1)*hd*rowLen]
		copy(tmp, block)
		for i := 0; i < 2; i++ {
			for j := 0; j < half; j++ {
				src := tmp[(2*j+i)*rowLen : (2*j+i+1)*rowLen]
				copy(block[(i*half+j)*rowLen:], src)
			}
		}
	}
	return nil
}
