package probe

import "fmt"

// Param is a host copy of one weight matrix or vector.
type Param struct {
	Shape []int
	Data  []float32
}

// Parameter names for Model.Param, TransformerLens-style, in Loupe's
// internal layout: a linear map from in to out is [out, in] (x·Wᵀ), so
// W_Q is [n_heads*d_head, d_model] and W_O is [d_model, n_heads*d_head];
// head h owns rows (W_Q, W_K, W_V) or columns (W_O) h*d_head..(h+1)*d_head
// (key/value head h/(n_heads/n_kv_heads) under grouped-query attention).
//
//	embed.W_E [d_vocab, d_model]     unembed.W_U [d_vocab, d_model]
//	pos_embed.W_pos [n_ctx, d_model] (GPT-2)
//	ln_final.w, ln_final.b           [d_model]
//	blocks.L.attn.W_Q/W_K/W_V/W_O, b_Q/b_K/b_V/b_O
//	blocks.L.ln1.w/b, blocks.L.ln2.w/b
//	blocks.L.ln1_post.w, blocks.L.ln2_post.w (Gemma)
//	blocks.L.attn.q_norm.w, blocks.L.attn.k_norm.w [d_head] (Qwen3, Gemma)
//	blocks.L.mlp.W_gate/W_in [d_mlp, d_model], W_out [d_model, d_mlp], b_in, b_out
//
// Gemma's RMSNorms scale by (1 + w); their .w parameters are that 1 + w,
// as TransformerLens stores them.
//
// A parameter the family lacks (a bias, a gate) gives an error.
func (m *Model) Param(name string) (Param, error) {
	t := m.paramTensor(name)
	if t == nil {
		return Param{}, fmt.Errorf("model has no parameter %q", name)
	}
	return Param{Shape: append([]int(nil), t.Shape()...), Data: m.backend.ToHost(t)}, nil
}

func (m *Model) paramTensor(name string) tensor {
	switch name {
	case "embed.W_E":
		return m.embed
	case "unembed.W_U":
		return m.unembed
	case "pos_embed.W_pos":
		return m.posEmbed
	case "ln_final.w":
		return m.lnFinalW
	case "ln_final.b":
		return m.lnFinalB
	}
	var l int
	var rest string
	if n, _ := fmt.Sscanf(name, "blocks.%d.%s", &l, &rest); n != 2 || l < 0 || l >= len(m.layers) {
		return nil
	}
	ly := &m.layers[l]
	return map[string]tensor{
		"attn.W_Q": ly.wq, "attn.W_K": ly.wk, "attn.W_V": ly.wv, "attn.W_O": ly.wo,
		"attn.b_Q": ly.bq, "attn.b_K": ly.bk, "attn.b_V": ly.bv, "attn.b_O": ly.bo,
		"ln1.w": ly.ln1W, "ln1.b": ly.ln1B, "ln2.w": ly.ln2W, "ln2.b": ly.ln2B,
		"ln1_post.w": ly.ln1PostW, "ln2_post.w": ly.ln2PostW,
		"attn.q_norm.w": ly.qNorm, "attn.k_norm.w": ly.kNorm,
		"mlp.W_gate": ly.wGate, "mlp.W_in": ly.wUp, "mlp.W_out": ly.wDown,
		"mlp.b_in": ly.bUp, "mlp.b_out": ly.bDown,
	}[rest]
}
