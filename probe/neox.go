package probe

import (
	"fmt"

	"github.com/loupe-dev/loupe/probe/compute"
)

// The GPT-NeoX family (Pythia).
//
//	x = W_E[ids]
//	per block, parallel:   x = x + attn(layernorm₁(x)) + mlp(layernorm₂(x))
//	per block, sequential: x = x + attn(layernorm₁(x)); x = x + mlp(layernorm₂(x))
//	logits = layernorm_f(x) · W_Uᵀ
//
// Rotary embeddings turn only the first rotary_pct of each head's
// dimensions. The fused query_key_value weight is laid out per head,
// [head, (q|k|v), d_head], and is split into q, k and v on load.

func loadNeoX(m *Model, l *loader) {
	c := m.Config
	D, H, Dh := c.DModel, c.Heads, c.HeadDim
	m.embed = l.get("gpt_neox.embed_in.weight", c.Vocab, D)
	m.lnFinalW = l.get("gpt_neox.final_layer_norm.weight", D)
	m.lnFinalB = l.get("gpt_neox.final_layer_norm.bias", D)
	if c.TiedEmbed {
		m.unembed = m.embed
	} else {
		m.unembed = l.get("embed_out.weight", c.Vocab, D)
	}
	m.layers = make([]layer, c.Layers)
	for i := range m.layers {
		p := fmt.Sprintf("gpt_neox.layers.%d.", i)
		ly := &m.layers[i]
		ly.ln1W, ly.ln1B = l.get(p+"input_layernorm.weight", D), l.get(p+"input_layernorm.bias", D)
		ly.ln2W, ly.ln2B = l.get(p+"post_attention_layernorm.weight", D), l.get(p+"post_attention_layernorm.bias", D)
		qkv := l.host(p+"attention.query_key_value.weight", 3*H*Dh, D)
		qkvB := l.host(p+"attention.query_key_value.bias", 3*H*Dh)
		if l.err != nil {
			return
		}
		for part, dst := range []*tensor{&ly.wq, &ly.wk, &ly.wv} {
			w := make([]float32, 0, H*Dh*D)
			for h := 0; h < H; h++ {
				row := (h*3 + part) * Dh
				w = append(w, qkv[row*D:(row+Dh)*D]...)
			}
			*dst = compute.FromHostWeight(l.b, w, H*Dh, D)
		}
		for part, dst := range []*tensor{&ly.bq, &ly.bk, &ly.bv} {
			bias := make([]float32, 0, H*Dh)
			for h := 0; h < H; h++ {
				bias = append(bias, qkvB[(h*3+part)*Dh:(h*3+part+1)*Dh]...)
			}
			*dst = l.b.FromHost(bias, H*Dh)
		}
		ly.wo, ly.bo = l.get(p+"attention.dense.weight", D, H*Dh), l.get(p+"attention.dense.bias", D)
		ly.wUp, ly.bUp = l.get(p+"mlp.dense_h_to_4h.weight", c.DMLP, D), l.get(p+"mlp.dense_h_to_4h.bias", c.DMLP)
		ly.wDown, ly.bDown = l.get(p+"mlp.dense_4h_to_h.weight", D, c.DMLP), l.get(p+"mlp.dense_4h_to_h.bias", D)
	}
}

func (p *pass) neoxBlock(i int, x tensor) tensor {
	m, b, ly := p.m, p.b, &p.m.layers[i]
	eps := float32(m.Config.NormEps)
	x = p.hook(i, "hook_resid_pre", x, p.resid())
	n1 := p.hook(i, "ln1.hook_normalized", b.LayerNorm(x, ly.ln1W, ly.ln1B, eps), p.resid())
	attnOut := p.hook(i, "hook_attn_out", p.attentionIn(i, x, func(t tensor) tensor { return b.LayerNorm(t, ly.ln1W, ly.ln1B, eps) }, n1), p.resid())
	if m.Config.ParallelResidual {
		n2 := p.hook(i, "ln2.hook_normalized", b.LayerNorm(p.mlpIn(i, x), ly.ln2W, ly.ln2B, eps), p.resid())
		mlpOut := p.geluMLP(i, n2)
		// HF adds mlp_out + attn_out first, then the residual.
		return p.hook(i, "hook_resid_post", b.Add(b.Add(mlpOut, attnOut), x), p.resid())
	}
	mid := p.hook(i, "hook_resid_mid", b.Add(attnOut, x), p.resid())
	n2 := p.hook(i, "ln2.hook_normalized", b.LayerNorm(p.mlpIn(i, mid), ly.ln2W, ly.ln2B, eps), p.resid())
	mlpOut := p.geluMLP(i, n2)
	return p.hook(i, "hook_resid_post", b.Add(mlpOut, mid), p.resid())
}
