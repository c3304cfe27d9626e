package probe

import "fmt"

// The Gemma 3 family (text model, gemma3_text).
//
//	x = embed[ids] · sqrt(d_model)
//	per block:  x = x + postnorm₁(attn(rmsnorm₁(x)))
//	            x = x + postnorm₂(W_down(gelu_tanh(W_gate n) ⊙ W_up n)),  n = rmsnorm₂(x)
//	logits = rmsnorm_f(x) · W_Eᵀ   (tied)
//
// Every RMSNorm scales by (1 + w): the stored weight is an offset from 1.
// The loader adds the 1 once, so the forward pass calls the plain RMSNorm
// and Param reports 1 + w, as TransformerLens does. Queries and keys pass
// such an RMSNorm over each head's d_head before RoPE (QK-norm). The
// attention scale is query_pre_attn_scalar^(-1/2), not d_head^(-1/2).
// Layers alternate between sliding-window attention with RoPE base
// rope_local_base_freq (10000) and global attention with rope_theta (1e6):
// Config.LayerWindow and Model.ropeFreqs carry the pattern.
//
// Hook points are TransformerLens's for Gemma 2/3: ln1 (input_layernorm),
// ln1_post (post_attention_layernorm), ln2 (pre_feedforward_layernorm),
// ln2_post (post_feedforward_layernorm); hook_attn_out and hook_mlp_out are
// the sublayer outputs after their post-norms, what enters the residual.

func loadGemma3(m *Model, l *loader) {
	c := m.Config
	D, Dh := c.DModel, c.HeadDim
	loadEmbedUnembed(m, l)
	m.lnFinalW = l.gemmaNorm("model.norm.weight", D)
	m.layers = make([]layer, c.Layers)
	for i := range m.layers {
		p := fmt.Sprintf("model.layers.%d.", i)
		ly := &m.layers[i]
		ly.ln1W = l.gemmaNorm(p+"input_layernorm.weight", D)
		ly.ln1PostW = l.gemmaNorm(p+"post_attention_layernorm.weight", D)
		ly.ln2W = l.gemmaNorm(p+"pre_feedforward_layernorm.weight", D)
		ly.ln2PostW = l.gemmaNorm(p+"post_feedforward_layernorm.weight", D)
		ly.qNorm = l.gemmaNorm(p+"self_attn.q_norm.weight", Dh)
		ly.kNorm = l.gemmaNorm(p+"self_attn.k_norm.weight", Dh)
		ly.wq = l.get(p+"self_attn.q_proj.weight", c.Heads*Dh, D)
		ly.wk = l.get(p+"self_attn.k_proj.weight", c.KVHeads*Dh, D)
		ly.wv = l.get(p+"self_attn.v_proj.weight", c.KVHeads*Dh, D)
		ly.wo = l.get(p+"self_attn.o_proj.weight", D, c.Heads*Dh)
		ly.wGate = l.get(p+"mlp.gate_proj.weight", c.DMLP, D)
		ly.wUp = l.get(p+"mlp.up_proj.weight", c.DMLP, D)
		ly.wDown = l.get(p+"mlp.down_proj.weight", D, c.DMLP)
	}
}

// gemmaNorm reads a Gemma RMSNorm weight w and returns 1 + w (in float32,
// as Gemma3RMSNorm computes it).
func (l *loader) gemmaNorm(name string, n int) tensor {
	w := l.host(name, n)
	if l.err != nil {
		return nil
	}
	for i := range w {
		w[i] = 1 + w[i]
	}
	return l.b.FromHost(w, n)
}

func (p *pass) gemma3Block(i int, x tensor) tensor {
	m, b, ly := p.m, p.b, &p.m.layers[i]
	eps := float32(m.Config.NormEps)
	x = p.hook(i, "hook_resid_pre", x, p.resid())
	n1 := p.hook(i, "ln1.hook_normalized", b.RMSNorm(x, ly.ln1W, eps), p.resid())
	attn := p.attentionIn(i, x, func(t tensor) tensor { return b.RMSNorm(t, ly.ln1W, eps) }, n1)
	attnOut := p.hook(i, "ln1_post.hook_normalized", b.RMSNorm(attn, ly.ln1PostW, eps), p.resid())
	attnOut = p.hook(i, "hook_attn_out", attnOut, p.resid())
	mid := p.hook(i, "hook_resid_mid", b.Add(x, attnOut), p.resid())
	n2 := p.hook(i, "ln2.hook_normalized", b.RMSNorm(p.mlpIn(i, mid), ly.ln2W, eps), p.resid())
	gate := p.hook(i, "mlp.hook_pre", b.Linear(n2, ly.wGate, nil), p.mlpShape())
	up := p.hook(i, "mlp.hook_pre_linear", b.Linear(n2, ly.wUp, nil), p.mlpShape())
	act := b.GELU(gate, m.Config.Act == "gelu_pytorch_tanh")
	post := p.hook(i, "mlp.hook_post", b.Mul(act, up), p.mlpShape())
	mlp := b.Linear(post, ly.wDown, nil)
	mlpOut := p.hook(i, "ln2_post.hook_normalized", b.RMSNorm(mlp, ly.ln2PostW, eps), p.resid())
	mlpOut = p.hook(i, "hook_mlp_out", mlpOut, p.resid())
	return p.hook(i, "hook_resid_post", b.Add(mid, mlpOut), p.resid())
}
