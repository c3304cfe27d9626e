package probe

import "fmt"

// The Llama family: Llama 1-3, Mistral, Qwen2, SmolLM.
//
//	x = embed[ids]
//	per block:  x = x + attn(rmsnorm₁(x))      (RoPE on q and k, GQA)
//	            x = x + W_down(silu(W_gate n) ⊙ W_up n),  n = rmsnorm₂(x)
//	logits = rmsnorm_f(x) · W_Uᵀ   (W_U = embed when tied)

func loadLlama(m *Model, l *loader) {
	c := m.Config
	D, Dh := c.DModel, c.HeadDim
	m.embed = l.get("model.embed_tokens.weight", c.Vocab, D)
	m.lnFinalW = l.get("model.norm.weight", D)
	if c.TiedEmbed || !l.has("lm_head.weight") {
		m.unembed = m.embed
	} else {
		m.unembed = l.get("lm_head.weight", c.Vocab, D)
	}
	m.layers = make([]layer, c.Layers)
	for i := range m.layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		ly := &m.layers[i]
		ly.ln1W = l.get(p+"input_layernorm.weight", D)
		ly.ln2W = l.get(p+"post_attention_layernorm.weight", D)
		ly.wq = l.get(p+"self_attn.q_proj.weight", c.Heads*Dh, D)
		ly.wk = l.get(p+"self_attn.k_proj.weight", c.KVHeads*Dh, D)
		ly.wv = l.get(p+"self_attn.v_proj.weight", c.KVHeads*Dh, D)
		ly.wo = l.get(p+"self_attn.o_proj.weight", D, c.Heads*Dh)
		ly.bq = l.optional(p+"self_attn.q_proj.bias", c.Heads*Dh)
		ly.bk = l.optional(p+"self_attn.k_proj.bias", c.KVHeads*Dh)
		ly.bv = l.optional(p+"self_attn.v_proj.bias", c.KVHeads*Dh)
		ly.bo = l.optional(p+"self_attn.o_proj.bias", D)
		ly.wGate = l.get(p+"mlp.gate_proj.weight", c.DMLP, D)
		ly.wUp = l.get(p+"mlp.up_proj.weight", c.DMLP, D)
		ly.wDown = l.get(p+"mlp.down_proj.weight", D, c.DMLP)
		if c.AttnBias && ly.bq == nil && l.err == nil {
			l.err = fmt.Errorf("tensor %q: missing (the config asks for attention biases)", p+"self_attn.q_proj.bias")
		}
	}
}

func (p *pass) llamaBlock(i int, x tensor) tensor {
	m, b, ly := p.m, p.b, &p.m.layers[i]
	eps := float32(m.Config.NormEps)
	x = p.hook(i, "hook_resid_pre", x, p.resid())
	n1 := p.hook(i, "ln1.hook_normalized", b.RMSNorm(x, ly.ln1W, eps), p.resid())
	attnOut := p.attentionIn(i, x, func(t tensor) tensor { return b.RMSNorm(t, ly.ln1W, eps) }, n1)
	mid := p.hook(i, "hook_resid_mid", b.Add(x, attnOut), p.resid())
	n2 := p.hook(i, "ln2.hook_normalized", b.RMSNorm(p.mlpIn(i, mid), ly.ln2W, eps), p.resid())
	gate := p.hook(i, "mlp.hook_pre", b.Linear(n2, ly.wGate, nil), p.mlpShape())
	up := p.hook(i, "mlp.hook_pre_linear", b.Linear(n2, ly.wUp, nil), p.mlpShape())
	post := p.hook(i, "mlp.hook_post", b.SwiGLU(gate, up), p.mlpShape())
	mlpOut := p.hook(i, "hook_mlp_out", b.Linear(post, ly.wDown, nil), p.resid())
	return p.hook(i, "hook_resid_post", b.Add(mid, mlpOut), p.resid())
}

func (p *pass) llamaFinal(x tensor) tensor {
	return p.b.RMSNorm(x, p.m.lnFinalW, float32(p.m.Config.NormEps))
}
